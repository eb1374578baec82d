"""gunicorn settings and hooks for qs-gateway (``gunicorn -c python:qs_gateway.serving.gunicorn_config``).

The gateway's own gthread worker (:mod:`.worker`): requests wait on RE Manager and Redis, not on
the CPU; headers are read by the worker's event loop, and open streams are served by one fan-out
thread per worker (:mod:`qs_gateway.streaming`). No preloading: every worker builds its own
application after the fork, and the ZeroMQ context, sockets and threads are created in the
worker (``post_worker_init``), never in the master.
"""

from __future__ import annotations

import gc
import os
import secrets
import shutil
import signal
import sys
import tempfile

from qs_gateway.config import ConfigError, load_settings
from qs_gateway.config.environment import LOG_LEVEL_DEFAULT, LOG_LEVEL_ENV
from qs_gateway.extensions import EXTENSION_KEY, check_settings
from qs_gateway.logs import configure_logging, make_formatter
from qs_gateway.metrics import MULTIPROCESS_DIR_ENV, mark_worker_dead, prepare_multiprocess_dir
from qs_gateway.serving.turns import release_slot, reserve_slot, share_counts

try:
    _settings = load_settings()
    check_settings(_settings)
except ConfigError as exc:
    print(f"qs-gateway: configuration error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

bind = [_settings.serving.bind]
if _settings.http.metrics_bind:
    bind.append(_settings.http.metrics_bind)  # served /metrics only (see qs_gateway.api.metrics)
workers = _settings.serving.workers
threads = _settings.serving.threads
# gthread, reading request headers in its event loop and bodies at a pace (see qs_gateway.serving.worker)
worker_class = "qs_gateway.serving.worker.GatewayWorker"
preload_app = False
# For gthread this is a heartbeat, not a request limit: request deadlines are enforced by the app.
timeout = 60
graceful_timeout = 10
# Longer than nginx's upstream keep-alive, so the proxy closes idle connections, not gunicorn.
keepalive = 65
worker_connections = 1000
errorlog = "-"
loglevel = os.environ.get(LOG_LEVEL_ENV, LOG_LEVEL_DEFAULT)
# gunicorn's access log is off: the gateway logs one line per request itself (qs_gateway.request).
accesslog = None
proc_name = "qs-gateway"
# gunicorn's control socket has one default path per user: several gateways on a host would collide.
control_socket_disable = True
wsgi_app = "qs_gateway.app:create_app()"


_created_metrics_dir: str | None = None


def on_starting(server) -> None:  # noqa: ANN001 - gunicorn's hook signature
    """Generate the single-user key once, in the master, so every worker gets the same one.
    Set up logging and the metrics directory before any worker is forked. SIGHUP stops the
    master (as SIGTERM does), unless ``qs-gateway serve --reload-on-hup`` started it."""
    if not getattr(server.app, "reload_on_hup", False):
        # gunicorn dispatches a signal to the master's ``handle_<name>`` (its own reloads on HUP)
        server.handle_hup = server.handle_term
    auth = _settings.auth
    if not auth.providers and not auth.single_user_api_key:
        key = secrets.token_hex(32)
        os.environ["QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY"] = key
        print(f"qs-gateway: no single-user API key configured; generated one: {key}", file=sys.stderr, flush=True)
    configure_logging(_settings.serving.log_format, loglevel)
    for handler in server.log.error_log.handlers:
        handler.setFormatter(make_formatter(_settings.serving.log_format))
    if _settings.http.metrics_enabled:
        _prepare_metrics_dir()
    share_counts(workers)  # the workers' connection counts, so that they take turns at accepting


def pre_fork(server, worker) -> None:  # noqa: ANN001
    reserve_slot(worker)


def _prepare_metrics_dir() -> None:
    """Workers write their metric values to files here; the master empties it at start (values of
    an earlier run must not count) and removes it at exit if it made it."""
    global _created_metrics_dir
    path = os.environ.get(MULTIPROCESS_DIR_ENV)
    if not path:
        path = _created_metrics_dir = tempfile.mkdtemp(prefix="qs-gateway-metrics-")
        os.environ[MULTIPROCESS_DIR_ENV] = path
    prepare_multiprocess_dir(path)


def child_exit(server, worker) -> None:  # noqa: ANN001
    release_slot(worker)
    if _settings.http.metrics_enabled:
        mark_worker_dead(worker.pid)


def on_exit(server) -> None:  # noqa: ANN001
    if _created_metrics_dir:
        shutil.rmtree(_created_metrics_dir, ignore_errors=True)


def post_worker_init(worker) -> None:  # noqa: ANN001
    services = worker.wsgi.extensions[EXTENSION_KEY]
    # Everything loaded so far (modules, the app) lives as long as the worker: keep it out of
    # the collector's reach, so that a full collection walks only what requests created and
    # never pauses the worker for long (20-30 ms otherwise).
    gc.collect()
    gc.freeze()
    services.open()

    # gunicorn's SIGTERM handler only stops accepting; open streams would hold the worker for
    # the whole graceful timeout. Tell them to end first.
    graceful_stop = signal.getsignal(signal.SIGTERM)

    def end_streams_then_stop(signum, frame) -> None:  # noqa: ANN001
        services.begin_shutdown()
        if callable(graceful_stop):
            graceful_stop(signum, frame)

    signal.signal(signal.SIGTERM, end_streams_then_stop)


def worker_exit(server, worker) -> None:  # noqa: ANN001
    wsgi = getattr(worker, "wsgi", None)
    if wsgi is not None:
        wsgi.extensions[EXTENSION_KEY].close()


def when_ready(server) -> None:  # noqa: ANN001
    # The first words are what bluesky-httpserver prints, so its test fixtures can wait for them.
    server.log.info(
        "Bluesky HTTP Server started successfully: qs-gateway %s on %s (%d workers x %d threads), RE Manager at %s",
        __import__("qs_gateway").__version__,
        ", ".join(bind),
        workers,
        threads,
        _settings.zmq.control_address,
    )
