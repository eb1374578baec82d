"""Starting and stopping a private stack: Redis, RE Manager (simulated profile) and the gateway.

Used by ``qs-gateway demo``, by the test fixtures and by the benchmark. Every process runs in
its own process group on free loopback ports, is waited for until it answers, and is stopped by
signalling its group (RE Manager's worker process goes with it).
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..transport import CircuitBreaker, Codec, SocketPool, Timeouts


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bin(name: str) -> str:
    """A console script of this environment (beside the interpreter), else from PATH."""
    local = Path(sys.executable).with_name(name)
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name!r} is not installed")
    return found


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
        return self.popen is not None and self.popen.poll() is None

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
                if ready():
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not {what} after {timeout} s:\n{self.log_tail()}")

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen is None:
            return
        if self.running():
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the group (RE Manager's worker, gunicorn's workers) goes too.
        self.signal_group(signal.SIGKILL)
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass


# -- Redis -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisTls:
    """A certificate, its key and the CA that signed it: Redis (or a Sentinel) then speaks only TLS."""

    cert: Path
    key: Path
    ca: Path

    def args(self, port: int) -> list[str]:
        return [
            "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(self.cert), "--tls-key-file",
            str(self.key), "--tls-ca-cert-file", str(self.ca), "--tls-auth-clients", "no", "--tls-replication", "yes",
        ]  # fmt: skip

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def answers_ping(host: str, port: int, tls: RedisTls | None = None) -> bool:
    """Whether a Redis (or Sentinel) answers PING: +PONG, or -NOAUTH from one that wants a password."""
    with socket.create_connection((host, port), timeout=0.5) as raw:
        sock = tls.context().wrap_socket(raw, server_hostname=host) if tls is not None else raw
        sock.sendall(b"PING\r\n")
        return sock.recv(16)[:1] in (b"+", b"-")


def start_redis(
    workdir: Path,
    port: int | None = None,
    extra_args: Sequence[str] = (),
    *,
    bind: Sequence[str] = ("127.0.0.1",),
    launcher: Sequence[str] = (),
    tls: RedisTls | None = None,
    config: Path | None = None,
    name: str = "redis",
) -> tuple[ManagedProcess, int]:
    """A redis-server on ``port`` (a free one by default) of the first ``bind`` address.

    ``launcher`` is put in front of the command (``ip netns exec <namespace>``); ``config`` is a
    configuration file to start with (a Sentinel's: ``extra_args`` then include ``--sentinel``).
    """
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    listen = tls.args(port) if tls is not None else ["--port", str(port)]
    proc = ManagedProcess(
        name,
        [
            *launcher,
            shutil.which("redis-server") or "redis-server",
            *([str(config)] if config is not None else []),
            *listen,
            "--bind",
            *bind,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            *extra_args,
        ],
        workdir / f"{name}.log",
    ).start()
    proc.wait_until(lambda: answers_ping(bind[0], port, tls), 10, "answering PING")
    return proc, port


# -- RE Manager --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManagerPorts:
    control: int
    info: int
    host: str = "127.0.0.1"

    @property
    def control_address(self) -> str:
        return f"tcp://{self.host}:{self.control}"

    @property
    def info_address(self) -> str:
        return f"tcp://{self.host}:{self.info}"


def simulated_profile(workdir: Path) -> Path:
    """A private copy of bluesky-queueserver's simulated startup profile (RE Manager writes
    into its profile directory, so each stack gets its own). The package is found, not imported
    (importing it takes a quarter of a second)."""
    package = importlib.util.find_spec("bluesky_queueserver")
    if package is None or not package.submodule_search_locations:
        raise FileNotFoundError("bluesky-queueserver is not installed")
    source = Path(package.submodule_search_locations[0]) / "profile_collection_sim"
    target = workdir / "profile_collection_sim"
    if not target.exists():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def manager_status(address: str, timeout: float = 1.0, encoding: str = "json", public_key: str | None = None) -> dict:
    """One ``status`` request over a fresh socket."""
    pool = SocketPool(
        address,
        size=1,
        codec=Codec(encoding),
        server_public_key=public_key,
        breaker=CircuitBreaker(threshold=1000, open_seconds=0),
    )
    try:
        return pool.request({"method": "status", "params": {}}, timeouts=Timeouts(send=timeout, receive=timeout))
    finally:
        pool.close()


def start_re_manager(
    workdir: Path,
    *,
    redis_port: int,
    ports: ManagerPorts | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    encoding: str = "json",
    public_key: str | None = None,
    name_prefix: str = "qs_gateway_stack",
    timeout: float = 30.0,
    launcher: Sequence[str] = (),
) -> tuple[ManagedProcess, ManagerPorts]:
    """RE Manager on ``ports`` (free loopback ports by default), with the Redis at 127.0.0.1:``redis_port``
    as seen from where it runs (``launcher``: e.g. ``ip netns exec <namespace>``)."""
    ports = ports or ManagerPorts(free_port(), free_port())
    profile = simulated_profile(workdir)
    proc = ManagedProcess(
        "start-re-manager",
        [
            *launcher,
            _bin("start-re-manager"),
            "--startup-dir",
            str(profile),
            "--redis-addr",
            f"127.0.0.1:{redis_port}",
            "--redis-name-prefix",
            name_prefix,
            "--zmq-control-addr",
            ports.control_address,
            "--zmq-info-addr",
            ports.info_address,
            "--zmq-publish-console",
            "ON",
            "--zmq-encoding",
            encoding,
            *extra_args,
        ],
        workdir / "re-manager.log",
        env={**os.environ, **(env or {})},
    ).start()
    proc.wait_until(
        lambda: (
            manager_status(ports.control_address, encoding=encoding, public_key=public_key)["manager_state"] == "idle"
        ),
        timeout,
        "idle",
    )
    return proc, ports


# -- the gateway under gunicorn ----------------------------------------------------------------


def http_status(url: str, path: str, timeout: float = 1.0) -> int:
    """The status of ``GET path`` at ``url``: ``http://host:port`` or ``unix:/path/to/socket``."""
    if url.startswith("unix:"):
        connection: http.client.HTTPConnection = _UnixHTTPConnection(url[len("unix:") :], timeout)
    else:
        connection = http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=timeout)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def start_gateway(
    workdir: Path,
    env: Mapping[str, str],
    *,
    port: int | None = None,
    unix_socket: Path | None = None,
    timeout: float = 30.0,
    log_name: str = "gateway.log",
    python: str = sys.executable,
    cwd: Path | None = None,
    host: str = "127.0.0.1",
    launcher: Sequence[str] = (),
) -> tuple[ManagedProcess, str]:
    """``qs-gateway serve`` with ``env`` (which must carry the QSERVER_*/QS_GATEWAY_* settings).

    It listens on ``unix_socket`` if given (the URL returned is then ``unix:/path``), else on a
    port of ``host`` (``http://host:port``). ``python`` is the interpreter of the environment
    the gateway is installed in (by default this one); ``launcher`` goes in front of the
    command (``ip netns exec <namespace>``).
    """
    if unix_socket is not None:
        url = f"unix:{unix_socket}"
    else:
        url = f"http://{host}:{port or free_port()}"
    bind = url if unix_socket is not None else url.removeprefix("http://")
    full_env = {**os.environ, **env, "QS_GATEWAY_BIND": bind}
    proc = ManagedProcess(
        "qs-gateway",
        [*launcher, python, "-m", "qs_gateway.serving.cli", "serve"],
        workdir / log_name,
        env=full_env,
        cwd=cwd,
    ).start()
    proc.wait_until(lambda: http_status(url, "/api/nonexistent-readiness-probe") == 404, timeout, "answering HTTP")
    return proc, url
