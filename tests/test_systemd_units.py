"""deploy/'s systemd units, run for real: each ExecStart with its environment file, as systemd
would expand it (only installation paths, addresses and ports are replaced)."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest

from qs_gateway.config import all_options, load_settings
from qs_gateway.config.reference import documented_entries
from qs_gateway.serving.stack import (
    ManagedProcess,
    free_port,
    http_status,
    manager_status,
    simulated_profile,
    stop_all,
)

from .processes import process_table, tree_of
from .support import wait_for

DEPLOY = Path(__file__).parents[1] / "deploy"
INSTALLED_BIN = "/opt/qs-gateway/venv/bin/"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str
    parser.read_string((DEPLOY / name).read_text())
    return parser


def environment_file(name: str) -> dict[str, str]:
    pairs = {}
    for line in (DEPLOY / name).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def command(service: configparser.ConfigParser, env: dict[str, str]) -> list[str]:
    """ExecStart with ${VAR} expanded from the environment, the programs taken from this venv."""
    line = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], service["Service"]["ExecStart"])
    args = shlex.split(line)
    assert args[0].startswith(INSTALLED_BIN)
    args[0] = str(Path(sys.executable).with_name(args[0][len(INSTALLED_BIN) :]))
    return args


def test_environment_files_name_only_known_variables():
    readable = {name for option in all_options() for name in (option.env, *option.deprecated_env) if name}
    known = readable | {entry.env for entry in documented_entries() if entry.env}  # PROMETHEUS_MULTIPROC_DIR
    gateway_env = environment_file("gateway.env")
    assert set(gateway_env) <= known, set(gateway_env) - known
    settings = load_settings(environ=gateway_env)
    assert settings.serving.bind == "unix:/run/qs-gateway/gateway.sock"
    assert settings.http.proxy_hops == 1 and settings.http.metrics_enabled

    gateway = unit("qs-gateway.service")["Service"]
    # the socket and the metrics files live in the runtime directory systemd makes
    assert gateway["RuntimeDirectory"] == "qs-gateway"
    assert gateway_env["PROMETHEUS_MULTIPROC_DIR"].startswith("/run/qs-gateway/")
    assert "/etc/qs-gateway/gateway.env" == gateway["EnvironmentFile"]

    manager_env = environment_file("re-manager.env")
    manager_exec = unit("qs-re-manager.service")["Service"]["ExecStart"]
    for name in manager_env:
        assert f"${{{name}}}" in manager_exec or name.endswith("_FOR_SERVER"), name


@pytest.fixture
def notify_socket(tmp_path):
    """A socket standing in for systemd's, to see gunicorn report readiness (Type=notify)."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(30)
    yield path, sock
    sock.close()


def test_both_units_start_and_the_gateway_is_ready(tmp_path, redis_port, notify_socket):
    manager_env = {
        **environment_file("re-manager.env"),
        "RE_MANAGER_STARTUP_DIR": str(simulated_profile(tmp_path)),
        "RE_MANAGER_REDIS_ADDR": f"127.0.0.1:{redis_port}",
        "RE_MANAGER_REDIS_NAME_PREFIX": "qs_gateway_unit_test",
        "QSERVER_ZMQ_CONTROL_ADDRESS_FOR_SERVER": f"tcp://127.0.0.1:{free_port()}",
        "QSERVER_ZMQ_INFO_ADDRESS_FOR_SERVER": f"tcp://127.0.0.1:{free_port()}",
    }
    control = manager_env["QSERVER_ZMQ_CONTROL_ADDRESS_FOR_SERVER"]
    manager = ManagedProcess(
        "qs-re-manager.service",
        command(unit("qs-re-manager.service"), manager_env),
        tmp_path / "re-manager.log",
        env={**os.environ, **manager_env},
    )
    socket_path = tmp_path / "run" / "gateway.sock"
    socket_path.parent.mkdir()  # systemd's RuntimeDirectory
    metrics_port = free_port()
    gateway_env = {
        **environment_file("gateway.env"),
        "QSERVER_ZMQ_CONTROL_ADDRESS": control,
        "QSERVER_ZMQ_INFO_ADDRESS": manager_env["QSERVER_ZMQ_INFO_ADDRESS_FOR_SERVER"],
        "QS_GATEWAY_BIND": f"unix:{socket_path}",
        "QS_GATEWAY_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "QS_GATEWAY_METRICS_BIND": f"127.0.0.1:{metrics_port}",
        "PROMETHEUS_MULTIPROC_DIR": str(socket_path.parent / "metrics"),
        "NOTIFY_SOCKET": str(notify_socket[0]),
    }
    gateway = ManagedProcess(
        "qs-gateway.service",
        command(unit("qs-gateway.service"), gateway_env),
        tmp_path / "gateway.log",
        env={**os.environ, **gateway_env},
    )
    try:
        manager.start()
        gateway.start()
        manager.wait_until(lambda: manager_status(control)["manager_state"] == "idle", 60, "idle")
        assert b"READY=1" in notify_socket[1].recv(4096)
        gateway.wait_until(lambda: http_status(f"unix:{socket_path}", "/readyz") == 200, 60, "ready")
        transport = httpx.HTTPTransport(uds=str(socket_path))
        with httpx.Client(transport=transport, base_url="http://localhost") as client:
            key = gateway_env["QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY"]
            status = client.get("/api/status", headers={"Authorization": f"ApiKey {key}"})
        assert status.json()["manager_state"] == "idle"
        assert "qs_gateway_pool_size" in httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text

        # `systemctl reload` (ExecReload: HUP) replaces the workers; the gateway goes on serving
        assert unit("qs-gateway.service")["Service"]["ExecReload"] == "/bin/kill -HUP $MAINPID"
        workers = {info.pid for info in tree_of(gateway.pid, process_table())[1:]}
        os.kill(gateway.pid, signal.SIGHUP)
        wait_for(
            lambda: (now := {info.pid for info in tree_of(gateway.pid, process_table())[1:]}) and not now & workers,
            60,
            "new workers in place of the old",
        )
        # a new worker may still be loading the application: the request waits in the socket's
        # backlog meanwhile, and is answered (not refused) once it is ready
        assert gateway.running() and http_status(f"unix:{socket_path}", "/readyz", timeout=60) == 200
    finally:
        stop_all([gateway, manager])
