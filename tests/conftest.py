"""Fixtures: a private Redis and RE Manager per session, the app in-process and under gunicorn.

Every process is started on free loopback ports, waited for until it answers, and stopped by
its process group; nothing here touches the Redis on 6379 or a manager started by hand.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from qs_gateway.extensions import EXTENSION_KEY
from qs_gateway.serving.stack import STOP_SIGNALS, start_gateway, start_re_manager, start_redis

from .auth_support import app_builder, toy_config
from .support import Manager, SentToManager, http_api, keyed_client, make_app, reset_manager, spy_on, zmq_api

_TEXT_LOG_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d [\d:]+ [+-]\d{4})\] \[\d+\] \[(\w+)\]")
_TROUBLE = {"warning", "error", "critical"}
_LOGS_SHOWN_ON_FAILURE = 200  # lines at most
_STARTED = pytest.StashKey[float]()  # when a test's setup began


def _gateway_logs(basetemp: Path) -> list[Path]:
    """The log files of every gateway the tests started (``log_name`` of ``start_gateway``)."""
    logs = {*basetemp.rglob("gateway*.log"), *basetemp.rglob("gunicorn*.log")}
    return sorted(log for log in logs if not log.is_symlink())


def _log_line_head(line: str) -> tuple[float, str] | None:
    """(time, level) of the first line of a gateway log record, text or JSON; None otherwise."""
    if line.startswith("{"):
        try:
            record = json.loads(line)
            when = datetime.fromisoformat(record["time"].replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        return when.timestamp(), str(record.get("level", "")).lower()
    match = _TEXT_LOG_LINE.match(line)
    if match is None:
        return None
    when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S %z")
    return when.timestamp(), match.group(2).lower()


def _gateway_trouble(basetemp: Path, since: float) -> str:
    """Warnings, errors and their tracebacks that gateway logs got since ``since`` (epoch s)."""
    shown: list[str] = []
    for log in _gateway_logs(basetemp):
        if log.stat().st_mtime < since:
            continue
        keep = False
        for line in log.read_text(errors="replace").splitlines():
            head = _log_line_head(line)
            if head is not None:
                when, level = head
                keep = when >= since - 1 and level in _TROUBLE  # text logs: whole seconds
            if keep:
                shown.append(f"{log.name}: {line}")
    return "\n".join(shown[-_LOGS_SHOWN_ON_FAILURE:])


def pytest_configure(config: pytest.Config) -> None:
    # A run ended by SIGTERM or SIGHUP (a CI job's timeout, a closed terminal) ends as after
    # Ctrl-C: pytest then runs the fixtures' finalizers, which stop what the fixtures started.
    # SIGINT is set too: a run started in the background inherits it ignored.
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in STOP_SIGNALS:
        signal.signal(sig, interrupt)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    # A failing end-to-end test shows what the gateways logged while it ran: CI keeps no files.
    outcome = yield
    report = outcome.get_result()
    if call.when == "setup":
        item.stash[_STARTED] = call.start
    if report.failed and call.when in ("setup", "call"):
        basetemp = item.config._tmp_path_factory.getbasetemp()
        trouble = _gateway_trouble(basetemp, since=item.stash.get(_STARTED, call.start))
        if trouble:
            report.sections.append(("gateway warnings and errors", trouble))


# What gunicorn and Flask log when a request raised instead of being answered, or a worker's
# loop raised (gunicorn starts another, and the connections it held are cut): never expected.
_UNHANDLED = (
    "qs_gateway.api.errors: Unhandled error",
    '"message":"Unhandled error"',
    "Error handling request",
    "Exception in worker process",
)


@pytest.fixture(autouse=True)
def no_unhandled_errors_in_gateways(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test during which any gateway under gunicorn hit an exception it did not handle.

    Such a request got a bare 500, which a test looking elsewhere would not notice.
    """
    basetemp = request.config._tmp_path_factory.getbasetemp()
    offsets = {log: log.stat().st_size for log in _gateway_logs(basetemp)}
    yield
    found: list[str] = []
    for log in _gateway_logs(basetemp):
        with log.open("rb") as file:
            file.seek(offsets.get(log, 0))
            written = file.read().decode(errors="replace")
        found += [f"{log.name}: {line}" for line in written.splitlines() if any(m in line for m in _UNHANDLED)]
    if found:
        pytest.fail("a gateway failed to handle a request:\n" + "\n".join(found[:20]), pytrace=False)


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def redis_port(stack_dir: Path) -> Iterator[int]:
    process, port = start_redis(stack_dir / "redis")
    yield port
    process.stop()


@pytest.fixture(scope="session")
def re_manager(stack_dir: Path, redis_port: int) -> Iterator[Manager]:
    workdir = stack_dir / "re-manager"
    workdir.mkdir()
    process, ports = start_re_manager(workdir, redis_port=redis_port, name_prefix="qs_gateway_tests")
    yield Manager(process, ports, workdir, redis_port)
    process.stop()


@pytest.fixture(scope="session")
def zmq_rm(re_manager: Manager) -> Iterator:
    rm = zmq_api(re_manager.control_address)
    yield rm
    rm.close()


@pytest.fixture
def manager_idle(zmq_rm):
    """RE Manager idle with an empty queue and history (environment left as it is)."""
    reset_manager(zmq_rm)
    return zmq_rm


@pytest.fixture
def manager_open(zmq_rm):
    """As ``manager_idle``, with the worker environment open."""
    reset_manager(zmq_rm, environment=True)
    return zmq_rm


@pytest.fixture
def manager_closed(zmq_rm):
    """As ``manager_idle``, with the worker environment closed."""
    reset_manager(zmq_rm, environment=False)
    return zmq_rm


@pytest.fixture
def app(re_manager: Manager) -> Iterator[Flask]:
    app = make_app(re_manager)
    yield app
    app.extensions[EXTENSION_KEY].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """An in-process client that sends the single-user API key."""
    return keyed_client(app)


@pytest.fixture
def RM(gateway_url: str) -> Iterator:
    """bluesky-queueserver-api in HTTP mode, as beamline scripts use it, against ``gateway_url``."""
    rm = http_api(gateway_url)
    yield rm
    rm.close()


@pytest.fixture
def build_app(tmp_path: Path, re_manager: Manager) -> Iterator:
    """Builds in-process gateways from configurations (see auth_support.app_builder)."""
    with app_builder(tmp_path, re_manager) as build:
        yield build


@pytest.fixture
def toy(build_app) -> FlaskClient:  # noqa: ANN001
    """A client of a gateway with the toy provider (anonymous access off)."""
    return build_app(toy_config()).test_client()


@pytest.fixture
def sent(app: Flask) -> SentToManager:
    """What ``app`` sends to RE Manager during the test."""
    return spy_on(app)


@pytest.fixture
def anonymous(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="session")
def gateway_url(stack_dir: Path, re_manager: Manager) -> Iterator[str]:
    """The gateway under real gunicorn: three workers of four threads."""
    process, url = start_gateway(
        stack_dir,
        re_manager.gateway_env(QS_GATEWAY_WORKERS="3", QS_GATEWAY_THREADS="4", QS_GATEWAY_WORKER_HEADER="1"),
        log_name="gunicorn.log",
    )
    yield url
    process.stop()
