"""nginx in front of the gateway with the shipped ``deploy/nginx.conf``, for the tests and the benchmark.

The site file is used as it is; only its upstream servers, listen addresses and certificate paths
are replaced, and it is included in a minimal main configuration of our own (the one a
distribution ships holds ``events {}``, where ``worker_connections`` is set).
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from .stack import ManagedProcess, free_port, stopped_on_failure

SHIPPED_SITE = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"  # in a checkout
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PREFIX = "/qserver"
SHIPPED_UPSTREAM = "server unix:/run/qs-gateway/gateway.sock;"  # in each upstream of the site

# Room for a thousand streams and more (two connections each); worker_processes comes with -g.
MAIN_CONF = """\
{user}
pid {dir}/nginx.pid;
worker_rlimit_nofile 10000;
error_log {dir}/error.log info;
events {{ worker_connections 4096; }}
http {{
    access_log {dir}/access.log;
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


def render_site(upstream: str, port: int, redirect_port: int, cert: Path, key: Path) -> str:
    """The shipped site, in front of ``upstream`` (``unix:/path`` or ``host:port``)."""
    text = SHIPPED_SITE.read_text()
    if SHIPPED_UPSTREAM not in text:
        raise ValueError(f"deploy/nginx.conf changed shape: {SHIPPED_UPSTREAM!r} is not there")
    text = text.replace(SHIPPED_UPSTREAM, f"server {upstream};")  # the API's and the streams' upstream
    replacements = {
        "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
        "listen 80;": f"listen 127.0.0.1:{redirect_port};",
        "/etc/ssl/certs/qs-gateway.pem": str(cert),
        "/etc/ssl/private/qs-gateway.key": str(key),
    }
    for old, new in replacements.items():
        if text.count(old) != 1:
            raise ValueError(f"deploy/nginx.conf changed shape: {old!r} is not there once")
        text = text.replace(old, new)
    return text


def start_nginx(
    workdir: Path,
    upstream: str,
    cert: Path,
    key: Path,
    worker_processes: int | str = 1,
    edits: Mapping[str, str] = MappingProxyType({}),
) -> tuple[ManagedProcess, int]:
    """nginx with the shipped site in front of ``upstream``, on a free port (returned); ``edits``
    replace lines of the site, each of which must be there once."""
    port = free_port()
    site = render_site(upstream, port, free_port(), cert, key)
    for shipped, edited in edits.items():
        if site.count(shipped) != 1:
            raise ValueError(f"deploy/nginx.conf lacks {shipped!r}")
        site = site.replace(shipped, edited)
    (workdir / "qs-gateway.conf").write_text(site)
    user = "user root;" if os.geteuid() == 0 else ""  # workers must reach the socket in the temp dir
    (workdir / "nginx.conf").write_text(MAIN_CONF.format(user=user, dir=workdir))
    nginx = ManagedProcess(
        "nginx",
        [NGINX, "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", str(workdir / "nginx.conf"),
         "-g", f"daemon off; worker_processes {worker_processes};"],
        workdir / "nginx.out",
    ).start()  # fmt: skip
    return nginx, port


@dataclass
class Proxy:
    process: ManagedProcess
    url: str  # https://localhost:port/qserver
    cert: Path

    def stop(self) -> None:
        self.process.stop()


def behind_nginx(workdir: Path, socket_path: Path, worker_processes: int | str = 1) -> Proxy:
    """nginx (TLS, its own certificate) in front of the gateway on ``socket_path``, proxying."""
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = self_signed_certificate(workdir)
    process, port = start_nginx(workdir, f"unix:{socket_path}", cert, key, worker_processes)
    proxy = Proxy(process, f"https://localhost:{port}{PREFIX}", cert)
    trust = ssl.create_default_context(cafile=cert)
    with stopped_on_failure(process):
        process.wait_until(lambda: _answers(f"{proxy.url}/healthz", trust), 15, "proxying")
    return proxy


def _answers(url: str, trust: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(url, context=trust, timeout=2) as answer:
            return answer.status == 200
    except (OSError, urllib.error.URLError):
        return False
