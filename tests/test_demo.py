"""``qs-gateway demo`` brings up Redis, RE Manager and the gateway; ``qs-gateway demo`` and
``qs-gateway serve`` stop everything they started, and nothing else, on SIGINT, SIGTERM and
SIGHUP within 10 s, also when started with SIGINT ignored (a background job, nohup, a service
manager). A busy port is reported before anything starts."""

from __future__ import annotations

import http.server
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from qs_gateway.serving.stack import ManagedProcess, PortInUse, free_port, start_gateway

from .processes import TreeWatcher, living_in_groups, process_table, tree_of
from .support import wait_for

STOP_WITHIN = 10.0  # seconds from the signal until nothing of it is left
START_WITHIN = 180.0  # a busy machine starts RE Manager slowly
# `sh` sets SIGINT ignored and execs the command, which inherits that (as `cmd &` in a script does)
SIGINT_IGNORED = ("sh", "-c", 'trap "" INT; exec "$@"', "sh")
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def sigint_ignored(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as status:
        ignored = int(next(line for line in status if line.startswith("SigIgn:")).split()[1], 16)
    return bool(ignored & (1 << (signal.SIGINT - 1)))


class Demo:
    """``qs-gateway demo`` in its own session, its output read by a thread, its processes watched."""

    def __init__(self, port: int, launcher: tuple[str, ...] = ()) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QSERVER_", "QS_GATEWAY_"))}
        self.popen = subprocess.Popen(
            [*launcher, sys.executable, "-m", "qs_gateway.serving.cli", "demo", "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.watcher = TreeWatcher(self.popen.pid)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            self.lines.put(line)
        self.lines.put(None)

    @property
    def text(self) -> str:
        return "".join(self.output)

    def wait_for_line(self, words: str, timeout: float = START_WITHIN) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"the demo exited before {words!r}:\n{self.text}")
            self.output.append(line)
            if words in line:
                return
        raise AssertionError(f"no {words!r} from the demo after {timeout} s:\n{self.text}")

    def stop_with(self, sig: int) -> float:
        """Send ``sig`` to the demo alone; the seconds until it and all it started are gone."""
        signalled = time.monotonic()
        self.popen.send_signal(sig)
        self.popen.wait(STOP_WITHIN + 20)  # measured below
        wait_for(lambda: not living_in_groups(self.watcher.groups), STOP_WITHIN + 20, "the demo's processes to end")
        self.watcher.stop()
        return time.monotonic() - signalled

    def rest_of_output(self) -> str:
        self.popen.wait(STOP_WITHIN + 20)
        while (line := self.lines.get(timeout=10)) is not None:
            self.output.append(line)
        return self.text


@pytest.fixture
def demos() -> Iterator[list[Demo]]:
    """Starts demos; whatever happens in the test, nothing they started is left afterwards."""
    started: list[Demo] = []
    yield started
    for demo in started:
        demo.watcher.kill_all()
        demo.popen.kill()
        demo.popen.wait()


def start_demo(demos: list[Demo], port: int, launcher: tuple[str, ...] = ()) -> Demo:
    demo = Demo(port, launcher)
    demos.append(demo)
    return demo


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda sig: signal.Signals(sig).name)
def test_demo_answers_the_readme_curl_line_and_stops_everything_on_a_signal(demos, sig):
    port = free_port()
    demo = start_demo(demos, port)
    demo.wait_for_line("Press Ctrl-C")
    curl = re.search(r'curl -s -H "Authorization: ApiKey (\w+)" (\S+)/api/status', demo.text)
    assert curl, demo.text
    key, url = curl.groups()
    assert url == f"http://127.0.0.1:{port}"
    status = httpx.get(f"{url}/api/status", headers={"Authorization": f"ApiKey {key}"}, timeout=30)
    assert status.status_code == 200 and status.json()["manager_state"] == "idle"
    ports = [
        port,
        int(re.search(r"Redis\s+redis://127.0.0.1:(\d+)", demo.text).group(1)),
        int(re.search(r"RE Manager\s+tcp://127.0.0.1:(\d+)", demo.text).group(1)),
    ]
    assert all(listening(p) for p in ports)
    # Redis, RE Manager (with its own child) and gunicorn (with its workers), each its own group
    assert len(demo.watcher.groups - {demo.popen.pid}) == 3, demo.watcher.groups

    took = demo.stop_with(sig)

    assert took < STOP_WITHIN, f"stopping took {took:.1f} s"
    assert demo.popen.returncode == 0, demo.rest_of_output()
    assert f"Stopping ({signal.Signals(sig).name})" in demo.rest_of_output()
    assert not any(listening(p) for p in ports), "a process of the demo is still listening"


def test_a_demo_started_with_sigint_ignored_stops_on_sigint(demos):
    demo = start_demo(demos, free_port(), SIGINT_IGNORED)
    demo.wait_for_line("Starting Redis")
    assert sigint_ignored(demo.popen.pid) is False, "the demo keeps the inherited SIG_IGN"
    demo.wait_for_line("Press Ctrl-C")
    # what the demo starts gets the default action again, not the inherited SIG_IGN
    children = [info.pid for info in tree_of(demo.popen.pid, process_table())[1:]]
    assert children and not any(sigint_ignored(pid) for pid in children)

    took = demo.stop_with(signal.SIGINT)

    assert took < STOP_WITHIN and demo.popen.returncode == 0, demo.rest_of_output()


def test_a_signal_while_the_demo_starts_stops_what_was_started(demos):
    demo = start_demo(demos, free_port())
    demo.wait_for_line("Starting RE Manager")
    # RE Manager is starting (it takes seconds): the demo is waiting for it
    wait_for(lambda: len(demo.watcher.groups - {demo.popen.pid}) >= 2, 60, "RE Manager's process")

    took = demo.stop_with(signal.SIGTERM)

    assert took < STOP_WITHIN and demo.popen.returncode == 0, demo.rest_of_output()
    assert "is running" not in demo.rest_of_output()


class _StaleGateway(http.server.BaseHTTPRequestHandler):
    """Answers like a gateway left running: 404 to the readiness probe."""

    def do_GET(self) -> None:
        self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def busy_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StaleGateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_busy_port_is_reported_before_anything_starts(demos, busy_port):
    demo = start_demo(demos, busy_port)
    output = demo.rest_of_output()
    assert demo.popen.returncode == 1, output
    assert f"port {busy_port} of 127.0.0.1 is in use" in output
    assert "Starting" not in output and "is running" not in output
    assert demo.watcher.descendants_seen == 0, "the demo started something"


def test_start_gateway_refuses_a_busy_port(tmp_path, busy_port):
    with pytest.raises(PortInUse, match=str(busy_port)):
        start_gateway(tmp_path, {}, port=busy_port)


# -- qs-gateway serve ---------------------------------------------------------------------------


@pytest.fixture
def serve(tmp_path, re_manager) -> Iterator:
    """Starts ``qs-gateway serve`` (two workers); stopped by group whatever happens."""
    started: list[ManagedProcess] = []

    def start(launcher: tuple[str, ...] = ()) -> ManagedProcess:
        env = re_manager.gateway_env(QS_GATEWAY_WORKERS="2", QS_GATEWAY_THREADS="2")
        process, _ = start_gateway(tmp_path, env, launcher=launcher, log_name=f"gateway-{len(started)}.log")
        started.append(process)
        wait_for(lambda: len(tree_of(process.pid, process_table())) >= 3, 60, "the master and two workers")
        return process

    yield start
    for process in started:
        process.stop()


def stop_serve_with(process: ManagedProcess, sig: int) -> float:
    """Send ``sig`` to gunicorn's master alone; the seconds until its whole group is gone."""
    signalled = time.monotonic()
    os.kill(process.pid, sig)
    wait_for(lambda: not process.running(), STOP_WITHIN + 20, "the master to exit")
    wait_for(lambda: not living_in_groups({process.pid}), STOP_WITHIN + 20, "the workers to exit")
    return time.monotonic() - signalled


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda sig: signal.Signals(sig).name)
def test_serve_stops_with_its_workers_on_a_signal(serve, sig):
    process = serve()
    took = stop_serve_with(process, sig)
    assert took < STOP_WITHIN, f"stopping took {took:.1f} s:\n{process.log_tail()}"
    assert "Handling signal: " + signal.Signals(sig).name[3:].lower() in process.log_tail(100)


def test_serve_started_with_sigint_ignored_stops_on_sigint(serve):
    process = serve(SIGINT_IGNORED)
    took = stop_serve_with(process, signal.SIGINT)
    assert took < STOP_WITHIN, f"stopping took {took:.1f} s:\n{process.log_tail()}"
