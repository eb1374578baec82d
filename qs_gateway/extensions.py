"""The services an application uses, bound to it in ``app.extensions``.

Building them opens nothing: the socket pool creates its ZeroMQ context on first use in each
process (after gunicorn forks), and the Redis client connects on first use. gunicorn's worker
hooks call :meth:`Services.open` and :meth:`Services.close`.
"""

from __future__ import annotations

from flask import Flask, current_app

from .auth.setup import build_authenticator
from .auth.sso import SingleSignOn
from .config import Settings
from .config.gateway import ManagerSettings
from .config.options import option_named
from .extending import load_custom_modules
from .manager import ManagerClient, StatusCache, TimeoutPolicy
from .manager.item_state import ItemStates
from .manager.methods import check_method_names
from .manager.validation import ItemValidator
from .metrics import GatewayMetrics
from .notifications import NotificationStore, Notifier
from .redis_store import RedisStore
from .streaming.console import ConsoleLog
from .streaming.hub import StreamHub
from .streaming.ingest import Ingester
from .streaming.keys import StreamKeys
from .submissions import IdempotencyStore, SubmissionStore
from .transport import CircuitBreaker, Codec, SocketPool, Timeouts
from .transport.subscriber import Subscriber

EXTENSION_KEY = "qs_gateway"


def check_settings(settings: Settings) -> None:
    """What the configuration cannot check alone (:mod:`qs_gateway.config` knows nothing of the
    rest of the package): the names of RE Manager's methods."""
    option = option_named(ManagerSettings, "method_timeouts")
    check_method_names(settings.manager.method_timeouts, f"{option.yaml_name} ({option.env})")


class Services:
    def __init__(self, settings: Settings) -> None:
        check_settings(settings)
        self.settings = settings
        manager, streams = settings.manager, settings.streams
        self.gzip_min_bytes = settings.http.gzip_min_bytes
        self.store = RedisStore(settings.redis)
        self.pool = SocketPool(
            settings.zmq.control_address,
            size=manager.pool_size,
            checkout_timeout=manager.pool_timeout,
            codec=Codec(settings.zmq.encoding),
            server_public_key=settings.zmq.public_key,
            breaker=CircuitBreaker(threshold=manager.breaker_threshold, open_seconds=manager.breaker_open_seconds),
        )
        self.manager = ManagerClient(
            self.pool,
            StatusCache(self.store, manager.status_ttl, manager.status_lease),
            TimeoutPolicy(
                default=Timeouts(send=manager.timeout_send, receive=manager.timeout_receive),
                bulk_receive=manager.timeout_receive_bulk,
                per_method=manager.method_timeouts,
            ),
        )
        self.item_validator = ItemValidator(self.manager)
        self.item_states = ItemStates(self.manager)
        self.auth, self.accounts = build_authenticator(settings.auth, self.store, settings.auth_limits)
        self.sso = SingleSignOn(self.accounts)
        self.console = ConsoleLog(self.store)
        self.stream_keys = StreamKeys.of(self.store)
        self.hub = StreamHub(
            settings.redis,
            max_streams=streams.stream_limit,
            queue_length=streams.stream_queue_length,
            heartbeat_seconds=streams.sse_heartbeat_seconds,
        )
        self.ingester = Ingester(
            self.store,
            lambda: Subscriber(settings.zmq.info_address, Codec(settings.zmq.encoding)),
            lease_seconds=streams.ingest_lease_seconds,
            console_length=streams.console_stream_length,
            info_length=streams.info_stream_length,
            status_max_age=streams.published_status_max_age,
        )
        self.notifications = NotificationStore(self.store, self.stream_keys.leader)
        self.submissions = SubmissionStore(
            self.store,
            expiry_seconds=settings.submissions.submission_expiry_seconds,
            retention_seconds=settings.submissions.submission_retention_seconds,
        )
        self.idempotency = IdempotencyStore(self.store, retention_seconds=settings.submissions.idempotency_seconds)
        self.notifier = None
        if settings.notifications.targets:
            self.notifier = Notifier(
                self.notifications,
                self.manager,
                settings.notifications.targets,
                self.ingester,
                silence_seconds=settings.notifications.manager_silence_seconds,
            )
            self.ingester.on_status = self.notifier.status_appended
        self.custom_modules = load_custom_modules(settings.extensions.custom_modules)
        self.metrics = None
        if settings.http.metrics_enabled:
            self.metrics = GatewayMetrics()

    def open(self) -> None:
        """Start what a serving worker runs: the ZeroMQ context, the ingest, notifier and status
        lease threads."""
        self.pool.open()
        self.manager.status_cache.start_renewing()
        self.ingester.start()
        if self.notifier is not None:
            self.notifier.start()
        if self.metrics is not None:
            self.metrics.watch_gc()  # from here on collections pause requests

    def begin_shutdown(self) -> None:
        """The worker was asked to stop: open streams end now instead of holding it up."""
        self.hub.shutdown()

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.stop_watching_gc()
        self.hub.shutdown()
        if self.notifier is not None:
            self.notifier.stop()
        self.ingester.stop()
        self.manager.status_cache.stop_renewing()
        stop_polling = getattr(self.auth.api_access, "stop", None)
        if callable(stop_polling):
            stop_polling()
        self.pool.close()
        self.store.close()


def init_services(app: Flask, settings: Settings) -> Services:
    services = Services(settings)
    app.extensions[EXTENSION_KEY] = services
    return services


def services() -> Services:
    return current_app.extensions[EXTENSION_KEY]
