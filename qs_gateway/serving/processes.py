"""Processes the project starts: each in a process group of its own, waited for until it is
ready (and stopped again if it is not, or if the wait is interrupted), stopped by signalling its
group; and the loopback ports they listen on."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

# The signals on which the processes of the project stop (a terminal's hang-up too).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PortInUse(RuntimeError):
    pass


def ensure_port_free(host: str, port: int) -> None:
    """Raise :class:`PortInUse` if something listens on ``host:port``: whatever it is would answer
    the readiness check of a server started there, which then could not bind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # as gunicorn binds: connections of an earlier server still in TIME_WAIT do not count
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise PortInUse(f"port {port} of {host} is in use: stop what listens there") from None


@dataclass
class ManagedProcess:
    name: str
    args: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    popen: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> "ManagedProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            list(self.args),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(self.env) if self.env is not None else None,
            cwd=self.cwd,
            start_new_session=True,  # own process group: stopped as a whole
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        """Whether it has not exited. It is reaped only by :meth:`stop`: as a zombie it keeps its
        process group ID from going to another process, so signalling the group stays safe."""
        if self.popen is None or self.popen.returncode is not None:
            return False
        try:
            return os.waitid(os.P_PID, self.popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:  # reaped by someone else
            return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"{self.name} exited before {what}:\n{self.log_tail()}")
            try:
                if ready() and self.running():  # the answer came while ours was alive
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not {what} after {timeout} s:\n{self.log_tail()}")

    def start_until(self, ready: Callable[[], bool], timeout: float, what: str) -> "ManagedProcess":
        """Start, and wait until ``ready()``; stopped again if it does not get there."""
        with stopped_on_failure(self):
            self.start()
            self.wait_until(ready, timeout, what)
        return self

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 10.0) -> None:
        stop_all([self], timeout)


def stop_all(processes: Iterable[ManagedProcess], timeout: float = 10.0) -> None:
    """Stop the processes together, each with its process group: SIGTERM to every group, one
    deadline for all, then SIGKILL to what is left (RE Manager's worker, gunicorn's workers)."""
    started = [process for process in processes if process.popen is not None]
    for process in started:
        if process.running():
            process.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(process.running() for process in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    for process in started:
        # While the leader is unreaped (see running) or any member is left, the group ID is ours.
        process.signal_group(signal.SIGKILL)
        try:
            process.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass


@contextmanager
def stopped_on_failure(*processes: ManagedProcess) -> Iterator[None]:
    """Stop the processes if the block fails or is interrupted (a signal): none is left half-started."""
    try:
        yield
    except BaseException:
        stop_all(processes)
        raise
