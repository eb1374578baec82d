"""Workers take turns at accepting connections (qs_gateway/serving/turns.py): gunicorn with the
gateway's worker, two workers, the master's hooks as the gateway's configuration sets them; which
worker holds a connection is read from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

from qs_gateway.serving.stack import ManagedProcess, free_port
from qs_gateway.serving.turns import ConnectionCounts

from .support import read_answer, wait_for

ROOT = Path(__file__).resolve().parents[1]
GET_PLAIN = b"GET /plain HTTP/1.1\r\nHost: turns\r\n\r\n"
HOOKS = """\
from qs_gateway.serving.turns import release_slot, reserve_slot, share_counts


def on_starting(server):
    share_counts(2)


def pre_fork(server, worker):
    reserve_slot(worker)


def child_exit(server, worker):
    release_slot(worker)
"""


# -- the table ---------------------------------------------------------------------------------


def test_counts_are_read_across_a_fork_and_only_of_workers_that_accept():
    counts = ConnectionCounts(4)
    first, second = counts.reserve(), counts.reserve()
    assert (first, second) == (0, 1)
    counts.claim(first, os.getpid())
    counts.hold(first, 3)
    assert not counts.another_holds_fewer(first, 3), "a reserved slot (no worker yet) counts as 0 connections"
    child = os.fork()
    if child == 0:  # the worker, writing into the table it inherited
        counts.claim(second, os.getpid())
        counts.hold(second, 1)
        os._exit(0)
    assert os.waitpid(child, 0)[1] == 0
    assert counts.another_holds_fewer(first, 3), "the child's count did not reach the parent"
    assert not counts.another_holds_fewer(second, 1)
    counts.withdraw(second)  # it stops accepting
    assert not counts.another_holds_fewer(first, 3)
    counts.release(second)
    assert counts.reserve() == second
    assert [counts.reserve(), counts.reserve()] == [2, 3] and counts.reserve() is None


def test_the_gateways_configuration_gives_each_worker_a_slot(tmp_path):
    """gunicorn_config's on_starting / pre_fork / child_exit (in a fresh interpreter: the module
    reads the settings when imported)."""
    script = """
import logging
from types import SimpleNamespace as N
from qs_gateway.serving import gunicorn_config as config, turns
server = N(app=N(reload_on_hup=False), log=N(error_log=logging.getLogger("master")), handle_term=None)
config.on_starting(server)
workers = [N(pid=10 + n) for n in range(3)]
for worker in workers:
    config.pre_fork(server, worker)
assert [w.accept_slot for w in workers] == [0, 1, 2], [w.accept_slot for w in workers]
config.child_exit(server, workers[1])
replacement = N(pid=20)
config.pre_fork(server, replacement)
assert replacement.accept_slot == 1
print("ok")
"""
    env = {**os.environ, "QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY": "TurnsTestKeyOfTheGateway2026120712345"}
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True,
                                          text=True, timeout=60)  # fmt: skip
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


# -- gunicorn ----------------------------------------------------------------------------------


def _workers(master: int) -> list[int]:
    return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


OPEN_STATES = ("01", "08")  # ESTABLISHED, CLOSE_WAIT (the client closed, the worker has not)


def _open_server_ends(server_port: int) -> dict[int, str]:
    """The server's ends of connections to ``server_port`` not closed yet: client port -> inode."""
    ends = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
        if local == server_port and fields[3] in OPEN_STATES:
            ends[remote] = fields[9]
    return ends


def _holder(client: socket.socket, server_port: int, workers: list[int]) -> int:
    """The worker that holds the server's end of ``client``'s connection."""
    client_port = client.getsockname()[1]
    inode = _open_server_ends(server_port).get(client_port)
    assert inode is not None, f"no server socket for the connection from port {client_port}"
    for pid in workers:
        with contextlib.suppress(FileNotFoundError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == f"socket:[{inode}]":
                        return pid
    raise AssertionError(f"no worker holds socket {inode}")


def _server_ends(server_port: int, client_ports: set[int]) -> set[int]:
    """Which of ``client_ports``' connections the server has not closed its end of yet."""
    return client_ports & set(_open_server_ends(server_port))


@contextlib.contextmanager
def _gunicorn(workdir: Path, worker_class: str) -> Iterator[SimpleNamespace]:
    port = free_port()
    (workdir / "turns.conf.py").write_text(HOOKS)
    process = ManagedProcess(
        "gunicorn",
        [sys.executable, "-m", "gunicorn", "--config", str(workdir / "turns.conf.py"), "--worker-class", worker_class,
         "--workers", "2", "--threads", "4", "--bind", f"127.0.0.1:{port}", "tests.gunicorn_contract_app:app"],
        workdir / "gunicorn.log", cwd=ROOT,
    ).start()  # fmt: skip
    stopped: list[int] = []
    try:
        address = ("127.0.0.1", port)
        process.wait_until(lambda: len(_workers(process.pid)) == 2 and _served(_connect(address)), 30, "serving")
        workers = _workers(process.pid)
        _until_each_worker_has_accepted(address, port, workers)
        yield SimpleNamespace(address=address, port=port, workers=workers, stopped=stopped)
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        process.stop()


def _until_each_worker_has_accepted(address: tuple[str, int], port: int, workers: list[int]) -> None:
    """Hold new connections until each worker holds one, then close them all and wait until the
    workers have: each worker has then claimed its slot (a worker still starting is left out of
    the turns), and they hold none."""
    deadline = time.monotonic() + 60
    with contextlib.ExitStack() as stack:
        holders: dict[int, int] = {}
        while set(holders.values()) != set(workers):
            assert time.monotonic() < deadline, f"only workers {sorted(set(holders.values()))} accepted"
            sock = stack.enter_context(_connect(address))
            assert _served(sock)
            holders[sock.getsockname()[1]] = _holder(sock, port, workers)
    wait_for(lambda: not _server_ends(port, set(holders)), 10, "the workers closing the warm-up connections")


def _connect(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=10)


def _served(sock: socket.socket) -> bool:
    """One request on ``sock`` (kept open), answered: the connection has been accepted."""
    sock.sendall(GET_PLAIN)
    return read_answer(sock, 10, enough=b"\r\n\r\nplain").startswith(b"HTTP/1.1 200")


def test_new_connections_go_to_the_worker_that_holds_fewer(tmp_path):
    with _gunicorn(tmp_path, "tests.gunicorn_contract_app.PatientWorker") as served, contextlib.ExitStack() as stack:
        held: dict[socket.socket, int] = {}
        for n in range(1, 9):
            sock = stack.enter_context(_connect(served.address))
            assert _served(sock)
            held[sock] = _holder(sock, served.port, served.workers)
            if n % 2 == 0:
                assert sorted(Counter(held.values()).values()) == [n // 2, n // 2], f"after {n} connections"
        emptied = served.workers[0]
        closed = [sock for sock, pid in held.items() if pid == emptied]
        ports = {sock.getsockname()[1] for sock in closed}
        for sock in closed:
            sock.close()
            del held[sock]
        wait_for(lambda: not _server_ends(served.port, ports), 10, "the worker closing its ends of the connections")
        # the worker that holds none is the one that takes the next four
        for _ in range(4):
            sock = stack.enter_context(_connect(served.address))
            assert _served(sock)
            assert _holder(sock, served.port, served.workers) == emptied


def test_a_worker_that_does_not_take_its_turn_is_not_waited_for(tmp_path):
    """A worker that holds fewer but does not accept (stopped here; starved of CPU in life): the
    other takes the connection after its short wait."""
    with _gunicorn(tmp_path, "qs_gateway.serving.worker.GatewayWorker") as served, contextlib.ExitStack() as stack:
        stuck, other = served.workers
        os.kill(stuck, signal.SIGSTOP)
        served.stopped.append(stuck)
        for _ in range(3):
            sock = stack.enter_context(_connect(served.address))
            assert _served(sock), "a connection waited for a stopped worker"
            assert _holder(sock, served.port, served.workers) == other
