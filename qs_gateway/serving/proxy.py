"""nginx in front of the gateway with the shipped ``deploy/nginx.conf``, for the tests and the benchmark.

The site file is used as it is; only its socket path, listen addresses and certificate paths
are replaced, and it is included in a minimal main configuration of our own (the one a
distribution ships holds ``events {}``, where ``worker_connections`` is set).
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .stack import ManagedProcess, free_port

SHIPPED_SITE = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"  # in a checkout
PREFIX = "/qserver"

_MAIN_CONF = """\
{user}
worker_processes {worker_processes};
worker_rlimit_nofile {open_files};
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log {access_log};
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/qs-gateway.conf;
}}
"""


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, its own CA, and its key: (cert.pem, key.pem)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def render_site(site: str, socket_path: Path, port: int, redirect_port: int, cert: Path, key: Path) -> str:
    replacements = {
        "server unix:/run/qs-gateway/gateway.sock;": f"server unix:{socket_path};",
        "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
        "listen 80;": f"listen 127.0.0.1:{redirect_port};",
        "/etc/ssl/certs/qs-gateway.pem": str(cert),
        "/etc/ssl/private/qs-gateway.key": str(key),
    }
    for old, new in replacements.items():
        if old not in site:
            raise ValueError(f"deploy/nginx.conf changed shape: {old!r} is not there")
        site = site.replace(old, new)
    return site


@dataclass
class Proxy:
    process: ManagedProcess
    url: str  # https://localhost:port/qserver
    cert: Path
    workdir: Path

    def trust(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cert)

    def stop(self) -> None:
        self.process.stop()


def start_nginx(
    workdir: Path,
    socket_path: Path,
    *,
    site: Path = SHIPPED_SITE,
    worker_processes: int | str = 1,
    worker_connections: int = 256,
    access_log: bool = True,
) -> Proxy:
    """nginx with ``site`` in front of the gateway listening on ``socket_path``."""
    import httpx

    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = self_signed_certificate(workdir)
    port = free_port()
    (workdir / "qs-gateway.conf").write_text(render_site(site.read_text(), socket_path, port, free_port(), cert, key))
    main = _MAIN_CONF.format(
        user="user root;" if os.geteuid() == 0 else "",  # its workers must reach the socket in a temp dir
        dir=workdir,
        worker_processes=worker_processes,
        worker_connections=worker_connections,
        open_files=2 * worker_connections + 64,
        access_log=f"{workdir}/access.log" if access_log else "off",
    )
    (workdir / "nginx.conf").write_text(main)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    process = ManagedProcess(
        "nginx",
        [nginx, "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", str(workdir / "nginx.conf"),
         "-g", "daemon off;"],
        workdir / "nginx.out",
    ).start()  # fmt: skip
    proxy = Proxy(process, f"https://localhost:{port}{PREFIX}", cert, workdir)
    trust = proxy.trust()
    process.wait_until(lambda: httpx.get(f"{proxy.url}/healthz", verify=trust).status_code == 200, 15, "proxying")
    return proxy
