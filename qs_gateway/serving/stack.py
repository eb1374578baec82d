"""Starting and stopping a private stack: Redis, RE Manager (simulated profile) and the gateway.

Used by ``qs-gateway demo``, by the test fixtures and by the benchmark. Every process runs in
its own process group on free loopback ports, is waited for until it answers (and stopped again
if it does not, or if the wait is interrupted), and is stopped by signalling its group (RE
Manager's worker process goes with it).
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import shutil
import socket
import ssl
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..transport import CircuitBreaker, Codec, SocketPool, Timeouts
from .processes import (  # noqa: F401 - the demo, the tests and the benchmark take them from here
    STOP_SIGNALS,
    ManagedProcess,
    PortInUse,
    ensure_port_free,
    free_port,
    stop_all,
    stopped_on_failure,
)


def _bin(name: str) -> str:
    """A console script of this environment (beside the interpreter), else from PATH."""
    local = Path(sys.executable).with_name(name)
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name!r} is not installed")
    return found


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
    ).start_until(lambda: answers_ping(bind[0], port, tls), 10, "answering PING")
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
    ).start_until(
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
    serve_args: Sequence[str] = (),
) -> tuple[ManagedProcess, str]:
    """``qs-gateway serve [serve_args]`` with ``env`` (which must carry the settings).

    It listens on ``unix_socket`` if given (the URL returned is then ``unix:/path``), else on a
    port of ``host`` (``http://host:port``). ``python`` is the interpreter of the environment
    the gateway is installed in (by default this one); ``launcher`` goes in front of the
    command (``ip netns exec <namespace>``).
    """
    if unix_socket is not None:
        url = f"unix:{unix_socket}"
    else:
        port = port or free_port()
        if not launcher:  # else it listens in another network namespace
            ensure_port_free(host, port)
        url = f"http://{host}:{port}"
    bind = url if unix_socket is not None else url.removeprefix("http://")
    proc = ManagedProcess(
        "qs-gateway",
        [*launcher, python, "-m", "qs_gateway.serving.cli", "serve", *serve_args],
        workdir / log_name,
        env={**os.environ, **env, "QS_GATEWAY_BIND": bind},
        cwd=cwd,
    ).start_until(lambda: http_status(url, "/api/nonexistent-readiness-probe") == 404, timeout, "answering HTTP")
    return proc, url
