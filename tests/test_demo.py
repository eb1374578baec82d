"""The demo command brings up Redis, RE Manager and the gateway, and Ctrl-C stops all three."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx

from qs_gateway.serving.stack import free_port


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_demo_answers_the_readme_curl_line_and_stops_cleanly():
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QSERVER_", "QS_GATEWAY_"))}
    demo = subprocess.Popen(
        [sys.executable, "-m", "qs_gateway.serving.cli", "demo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    output = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            assert line, "the demo exited:\n" + "".join(output)
            output.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(output)
        curl = re.search(r'curl -s -H "Authorization: ApiKey (\w+)" (\S+)/api/status', text)
        assert curl, text
        key, url = curl.groups()
        assert url == f"http://127.0.0.1:{port}"
        status = httpx.get(f"{url}/api/status", headers={"Authorization": f"ApiKey {key}"})
        assert status.status_code == 200 and status.json()["manager_state"] == "idle"
        ports = [
            port,
            int(re.search(r"Redis\s+redis://127.0.0.1:(\d+)", text).group(1)),
            int(re.search(r"RE Manager\s+tcp://127.0.0.1:(\d+)", text).group(1)),
        ]
        assert all(listening(p) for p in ports)
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(60)
    assert demo.returncode == 0
    assert not any(listening(p) for p in ports), "a process of the demo is still running"
