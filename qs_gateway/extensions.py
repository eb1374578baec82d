"""The services an application uses, bound to it in ``app.extensions``.

Building them opens nothing: the socket pool creates its ZeroMQ context on first use in each
process (after gunicorn forks), and the Redis client connects on first use. gunicorn's worker
hooks call :meth:`Services.open` and :meth:`Services.close`.
"""

from __future__ import annotations

from flask import Flask, current_app

from .auth.setup import build_authenticator
from .config import Settings
from .manager import ManagerClient, StatusCache, TimeoutPolicy
from .redis_store import RedisStore
from .transport import CircuitBreaker, Codec, SocketPool, Timeouts

EXTENSION_KEY = "qs_gateway"


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        options = settings.gateway
        self.store = RedisStore(options["redis_url"], options["redis_prefix"])
        self.pool = SocketPool(
            settings.zmq.control_address,
            size=options["pool_size"],
            checkout_timeout=options["pool_timeout"],
            codec=Codec(settings.zmq.encoding),
            server_public_key=settings.zmq.public_key,
            breaker=CircuitBreaker(
                threshold=options["breaker_threshold"], open_seconds=options["breaker_open_seconds"]
            ),
        )
        self.manager = ManagerClient(
            self.pool,
            StatusCache(self.store, options["status_ttl"]),
            TimeoutPolicy(
                default=Timeouts(send=options["timeout_send"], receive=options["timeout_receive"]),
                per_method=options["method_timeouts"],
            ),
        )
        self.auth, self.accounts = build_authenticator(settings.auth, self.store)

    def open(self) -> None:
        self.pool.open()

    def close(self) -> None:
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
