"""The applications alone: microseconds per ``GET /api/status`` of the gateway's WSGI application
and per constant body of the framework floor's, each called directly with a WSGI environ in one
process (no gunicorn, no socket, no kernel, no other thread competing).

The HTTP rows vary by ±10 % from one 5 s window to the next, more than a cut of a few
microseconds moves them. Both numbers here move with the machine too, but together: their ratio
held within a per cent between runs, so it shows such a cut (and what the application costs
beside the framework). The gateway is configured by the environment
as under gunicorn and reads the same Redis and RE Manager; run as a child process by
``bench.run`` (``python -m bench.inprocess``), it prints one JSON object.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from qs_gateway.metrics import MULTIPROCESS_DIR_ENV

from . import REPO
from .rows import INPROCESS_FLOOR, INPROCESS_STATUS, Row, compare

CALLS = 2_000  # per batch
BATCHES = 9  # of each application, alternating; the median batch counts
WARM_UP = 500

WsgiApp = Callable[[dict, Callable], object]


def environ_of(path: str, headers: dict[str, str]) -> dict:
    """A GET request's WSGI environ, as gunicorn builds it for a kept-alive loopback client."""
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "RAW_URI": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    environ.update({"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()})
    return environ


def _start_response(status: str, headers: list, exc_info: object = None) -> Callable[[bytes], None]:
    if not status.startswith("200"):
        raise AssertionError(f"the application answered {status}")
    return lambda data: None


def batch_micros(app: WsgiApp, environ: dict, calls: int) -> float:
    """Microseconds per request over ``calls`` requests, each with a fresh copy of ``environ``."""
    started = time.perf_counter()
    for _ in range(calls):
        request = dict(environ)
        request["wsgi.input"] = io.BytesIO(b"")
        body = app(request, _start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return (time.perf_counter() - started) / calls * 1e6


def median_micros(
    apps: dict[str, tuple[WsgiApp, dict]], batches: int = BATCHES, calls: int = CALLS
) -> dict[str, float]:
    """The median batch of each application, the batches alternating so that both see the same
    moments of the machine."""
    for app, environ in apps.values():
        batch_micros(app, environ, WARM_UP)
    times: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(batches):
        for name, (app, environ) in apps.items():
            times[name].append(batch_micros(app, environ, calls))
    return {name: statistics.median(values) for name, values in times.items()}


def rows(env: dict[str, str], workdir: Path) -> list[Row]:
    """This module in a child process configured as the gateway's workers are (its metrics in
    a directory of its own: the workers' request counts stay theirs)."""
    metrics_dir = workdir / "metrics-inprocess"
    metrics_dir.mkdir(exist_ok=True)
    child_env = {**os.environ, **env, MULTIPROCESS_DIR_ENV: str(metrics_dir), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", __name__], env=child_env, cwd=REPO, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.inprocess failed:\n{done.stderr}")
    micros = json.loads(done.stdout.strip().splitlines()[-1])
    floor = Row(INPROCESS_FLOOR, 1, rate=1e6 / micros["floor"], note=f"{micros['floor']:.1f} µs per request")
    gateway = Row(INPROCESS_STATUS, 1, rate=1e6 / micros["gateway"], note=f"{micros['gateway']:.1f} µs per request")
    return [floor, compare(gateway, floor)]


def main() -> None:
    from qs_gateway.app import create_app

    from . import floor_app

    key = os.environ["QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY"]
    apps = {
        "gateway": (create_app(), environ_of("/api/status", {"Authorization": f"ApiKey {key}"})),
        "floor": (floor_app.app, environ_of("/small", {})),
    }
    print(json.dumps(median_micros(apps)))


if __name__ == "__main__":
    main()
