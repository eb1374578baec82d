"""A pytest plugin for the reference's suites: their server fixtures start qs-gateway instead.

bluesky-httpserver's ``fastapi_server`` (per module) and ``fastapi_server_fs`` (per test, started
by the test itself) run uvicorn with the reference server. Here they run ``qs-gateway serve``
(gunicorn) from the plain install, on the same address, with the same environment the reference
fixture would give its server (what the test set with ``monkeypatch`` included) and a fresh Redis
key prefix for every start, as every reference test expects a fresh server. Nothing else of the
suites is replaced: the test modules import these fixtures from the reference's conftest, which
is patched before any test module is imported.

Runs inside the reference's environment, so it uses the standard library and pytest only.
"""

from __future__ import annotations

import http.client
import itertools
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import bluesky_httpserver.tests.conftest as reference
import pytest
from bluesky_queueserver.manager.tests.common import re_manager_factory  # noqa: F401 - re_manager needs it

GATEWAY_PYTHON = os.environ["QS_CONFORMANCE_GATEWAY_PYTHON"]
WORKERS = os.environ.get("QS_CONFORMANCE_WORKERS", "1")
LOGS = Path(os.environ["QS_CONFORMANCE_LOGS"])
START_TIMEOUT = 120.0  # seconds; a loaded machine imports slowly
STOP_TIMEOUT = 20.0
# One file per running gateway, naming its process group: scripts/conformance stops what is left
# there when pytest itself was killed before its finalizers could run.
GROUPS = Path(os.environ["QS_CONFORMANCE_GROUPS"])
_starts = itertools.count(1)


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _answers_http(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
    except urllib.error.HTTPError:
        return True  # any status: the gateway is listening and answering
    except (OSError, http.client.HTTPException):
        # HTTPException: before the gateway listens, a connect to a port of the ephemeral range
        # (the reference's 60610 is one) can be given that very port as its source and connect
        # to itself; it then reads its own request back (BadStatusLine: GET /api/...)
        return False
    return True


class Gateway:
    """One ``qs-gateway serve`` in a process group of its own."""

    def __init__(self, host: str, port: int | str, api_key: str | None) -> None:
        self.host = "127.0.0.1" if host == "localhost" else host
        self.port = int(port)
        self.api_key = api_key
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        number = next(_starts)
        deadline = time.monotonic() + START_TIMEOUT
        while not _port_is_free(self.host, self.port):  # the previous server is still going away
            if time.monotonic() > deadline:
                raise RuntimeError(f"port {self.port} stays in use")
            time.sleep(0.1)
        env = dict(os.environ)
        if self.api_key:
            env["QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY"] = self.api_key
        env.update(
            QS_GATEWAY_BIND=f"{self.host}:{self.port}",
            QS_GATEWAY_WORKERS=WORKERS,
            QS_GATEWAY_REDIS_PREFIX=f"qs_conformance_{os.getpid()}_{number}",
        )
        self.log_path = LOGS / f"gateway-{os.getpid()}-{number}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [GATEWAY_PYTHON, "-m", "qs_gateway.serving.cli", "serve"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.group_record = GROUPS / f"gateway-{os.getpid()}-{number}"
        self.group_record.write_text(str(self.process.pid))
        url = f"http://{self.host}:{self.port}/api/nonexistent-readiness-probe"
        while not _answers_http(url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"qs-gateway did not start; its log:\n{self.log_path.read_text()[-4000:]}")
            time.sleep(0.05)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Stops the whole group, also when its first process has already gone."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass  # nothing of the group is left
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.group_record.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def fastapi_server() -> Iterator[None]:
    gateway = Gateway(reference.SERVER_ADDRESS, reference.SERVER_PORT, reference.API_KEY_FOR_TESTS)
    try:
        gateway.start()
        yield
    finally:
        gateway.stop()


@pytest.fixture
def fastapi_server_fs() -> Iterator[Callable[..., None]]:
    started: list[Gateway] = []

    def start(
        http_server_host: str = reference.SERVER_ADDRESS,
        http_server_port: str = reference.SERVER_PORT,
        api_key: str | None = reference.API_KEY_FOR_TESTS,
    ) -> None:
        if started and started[-1].running():
            return  # as the reference's xprocess.ensure: a server that is up is the one used
        gateway = Gateway(http_server_host, http_server_port, api_key)
        started.append(gateway)
        gateway.start()

    try:
        yield start
    finally:
        for gateway in started:
            gateway.stop()


# The test modules import the fixtures by name from the reference's conftest: patch it now,
# before pytest imports any of them.
reference.fastapi_server = fastapi_server
reference.fastapi_server_fs = fastapi_server_fs
