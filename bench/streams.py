"""Live streams under load: N subscribers of console output and status, in the shipped deployment.

A private stack (Redis, RE Manager with its worker environment open, the gateway under gunicorn
on a unix socket with its production settings, nginx with ``deploy/nginx.conf`` over TLS) and,
with ``--reference``, bluesky-httpserver under uvicorn in front of the same RE Manager. For each
N, client processes (:mod:`bench.subscribers`) open N subscribers; then RE Manager runs a
script that prints ``--console-rate`` lines a second for ``--stream-seconds``, while wrk polls
``GET /api/status`` through the same front door. What RE Manager published meanwhile is
recorded by a subscriber of our own on its info socket: every subscriber must receive all of
it, in order. Latency is the arrival time minus the time RE Manager stamped on the message.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from qs_gateway.serving.proxy import behind_nginx
from qs_gateway.serving.stack import ManagedProcess, ManagerPorts, start_gateway
from qs_gateway.transport import Codec
from qs_gateway.transport.subscriber import CONSOLE_TOPIC, INFO_TOPIC, Subscriber

from . import REPO, direct
from .usage import StatusPoller, Watch

SIZES = (0, 100, 500, 1000)  # 0: the status latency without streams, beside the others
SUBSCRIBERS_PER_PROCESS = 250
SETTLE_SECONDS = 2.0  # after the last line, for the last messages to arrive
GATEWAY_MIX = ("console_sse", "status_sse", "console_ws", "status_ws")
REFERENCE_MIX = ("console_ws", "status_ws")  # bluesky-httpserver has no Server-Sent Events


@dataclass
class StreamRow:
    server: str
    subscribers: int
    mix: str
    connected: int = 0
    refused: dict = field(default_factory=dict)
    received: int = 0
    expected: int = 0
    in_order: int = 0  # subscribers that got every message in order
    p50: float | None = None
    p99: float | None = None
    cpu_percent: float = 0.0  # of one core, the server's processes together
    rss_mb: list[float] = field(default_factory=list)  # peak, per server process
    status_p99: float | None = None
    console_rate: float = 0.0
    note: str = ""


class Published(threading.Thread):
    """What RE Manager publishes, recorded on its info socket: (topic, time, message)."""

    def __init__(self, info_address: str) -> None:
        super().__init__(daemon=True)
        self.subscriber = Subscriber(info_address, Codec("json"))
        self.messages: list[tuple[str, float, dict]] = []
        self._done = threading.Event()

    def run(self) -> None:
        self.subscriber.open()
        try:
            while not self._done.is_set():
                for topic, message in self.subscriber.receive(timeout=0.2):
                    if isinstance(message, dict) and isinstance(message.get("time"), int | float):
                        self.messages.append((topic, message["time"], message))
        finally:
            self.subscriber.close()

    def stop(self) -> None:
        self._done.set()
        self.join()

    def between(self, start: float, end: float) -> dict[str, list[float]]:
        """The times of console messages and of statuses published in [start, end]."""
        console = [t for topic, t, _ in self.messages if topic == CONSOLE_TOPIC and start <= t <= end]
        status = [t for topic, t, m in self.messages if topic == INFO_TOPIC and _is_status(m) and start <= t <= end]
        return {"console": console, "status": status}


def _is_status(message: dict) -> bool:
    return isinstance(message.get("msg"), dict) and isinstance(message["msg"].get("status"), dict)


def open_subscribers(url: str, api_key: str, cafile: str | None, kinds: tuple[str, ...], total: int) -> list:
    per_kind = total // len(kinds)
    counts = {kind: per_kind + (1 if i < total % len(kinds) else 0) for i, kind in enumerate(kinds)}
    processes = []
    groups = -(-total // SUBSCRIBERS_PER_PROCESS)
    for group in range(groups):
        share = {k: c // groups + (1 if group < c % groups else 0) for k, c in counts.items()}
        spec = ",".join(f"{k}:{c}" for k, c in share.items() if c)
        command = [sys.executable, "-m", "bench.subscribers", "--url", url, "--api-key", api_key, "--kinds", spec]
        if cafile:
            command += ["--cafile", cafile]
        processes.append(subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO))
    return processes


def console_script(lines: int, rate: float, marker: str) -> str:
    return (
        "import sys, time\n"
        f"for i in range({lines}):\n"
        f"    sys.stdout.write('{marker} %d\\n' % i)\n"
        "    sys.stdout.flush()\n"
        f"    time.sleep({1 / rate})\n"
    )


def open_environment(control_address: str, timeout: float = 60) -> None:
    """RE Manager's worker environment open and idle: scripts run there."""
    if not direct.request(control_address, "status")["worker_environment_exists"]:
        direct.request(control_address, "environment_open")
    wait_idle(control_address, timeout)


def wait_idle(control_address: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = direct.request(control_address, "status")
        if status["manager_state"] == "idle" and status["worker_environment_exists"]:
            return
        time.sleep(0.2)
    raise TimeoutError(f"RE Manager did not become idle with its environment open in {timeout} s")


@dataclass
class Delivery:
    """What N subscribers received of what RE Manager published while they listened."""

    connected: int = 0
    refused: dict = field(default_factory=dict)  # status -> how many
    received: int = 0  # messages, over all subscribers
    expected: int = 0
    in_order: int = 0  # subscribers that got every message, in order, once
    latencies: dict[str, list[float]] = field(default_factory=dict)  # ms, by kind
    from_redis: list[float] = field(default_factory=list)  # ms after the message was in Redis (gateway only)
    console_rate: float = 0.0  # lines a second RE Manager printed


def deliver(
    url: str, api_key: str, cafile: str | None, ports: ManagerPorts, kinds: tuple[str, ...], total: int,
    seconds: float, rate: float, *, redis_client: redis.Redis | None = None, redis_prefix: str | None = None,
    window: contextlib.AbstractContextManager | None = None,
) -> Delivery:  # fmt: skip
    """Open ``total`` subscribers of ``kinds`` at ``url``, let RE Manager print ``rate`` lines a second
    for ``seconds``, and check what each subscriber got (``window`` is entered meanwhile)."""
    delivery = Delivery()
    wait_idle(ports.control_address)
    published = Published(ports.info_address)
    published.start()
    clients = open_subscribers(url, api_key, cafile, kinds, total)
    results = []
    try:
        for client in clients:
            opened = json.loads(client.stdout.readline())
            delivery.connected += opened["connected"]
            for status, count in opened["refused"].items():
                delivery.refused[status] = delivery.refused.get(status, 0) + count
        time.sleep(1.0)  # every subscriber is in: the window starts
        start = time.time()
        with window or contextlib.nullcontext():
            script = console_script(int(seconds * rate), rate, "bench")
            direct.request(ports.control_address, "script_upload", {"script": script})
            time.sleep(seconds + 0.5)
            end = time.time()
            time.sleep(SETTLE_SECONDS)
    finally:
        for client in clients:
            try:
                client.stdin.write("stop\n")
                client.stdin.flush()
                results += json.loads(client.stdout.readline())
            finally:
                client.wait(30)
        published.stop()
    expected = published.between(start, end)
    delivery.console_rate = len(expected["console"]) / (end - start)
    ids, stored = _stream_times(redis_client, redis_prefix) if redis_client is not None else ({}, {})
    for subscriber in results:
        if subscriber["status"] not in (101, 200):
            continue
        wanted = expected["console" if subscriber["kind"].startswith("console") else "status"]
        wanted_set = set(wanted)
        got = []
        latencies = delivery.latencies.setdefault(subscriber["kind"], [])
        for key, arrived in subscriber["received"]:
            sent = ids.get(key) if isinstance(key, str) else key
            if sent in wanted_set:
                got.append(sent)
                latencies.append((arrived - sent) * 1000)
                if sent in stored:
                    delivery.from_redis.append((arrived - stored[sent]) * 1000)
        delivery.expected += len(wanted)
        delivery.received += len(set(got))
        delivery.in_order += got == wanted
    return delivery


def measure_once(
    name: str, url: str, api_key: str, cafile: str | None, server_pid: int, ports: ManagerPorts,
    kinds: tuple[str, ...], total: int, args: argparse.Namespace, proxy_pid: int | None = None,
    redis_client: redis.Redis | None = None, redis_prefix: str | None = None,
) -> StreamRow:  # fmt: skip
    poller = StatusPoller(f"{url}/api/status", api_key, cafile, args.stream_seconds + SETTLE_SECONDS)
    watch = Watch(server_pid, {"nginx": proxy_pid} if proxy_pid else {}, poller)
    delivery = deliver(url, api_key, cafile, ports, kinds, total, args.stream_seconds, args.console_rate,
                       redis_client=redis_client, redis_prefix=redis_prefix, window=watch)  # fmt: skip
    row = StreamRow(name, total, "+".join(kinds), delivery.connected, delivery.refused, delivery.received,
                    delivery.expected, delivery.in_order, console_rate=delivery.console_rate)  # fmt: skip
    row.cpu_percent, row.rss_mb, row.status_p99 = watch.server.cpu_percent, watch.server.worker_peaks(), poller.p99()
    everything = [latency for latencies in delivery.latencies.values() for latency in latencies]
    if everything:
        row.p50, row.p99 = _percentile(everything, 0.5), _percentile(everything, 0.99)
    notes = [f"{kind} p99 {_ms(_percentile(lat, 0.99))}" for kind, lat in delivery.latencies.items() if lat]
    if delivery.from_redis:
        notes.append(f"from Redis to the client p99 {_ms(_percentile(delivery.from_redis, 0.99))}")
    notes += [f"CPU of {name} {percent:.0f}%" for name, percent in watch.other_cpu.items()]
    row.note = "; ".join(notes)
    return row


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * fraction + 0.5) - 1)]


def _stream_times(client: redis.Redis, prefix: str) -> tuple[dict[str, float], dict[float, float]]:
    """From the gateway's Redis streams: status id -> the time RE Manager stamped (Server-Sent
    Events carry the id), and stamped time -> when the message was stored (the id's milliseconds)."""
    ids, stored = {}, {}
    for name in ("console", "info"):
        for entry_id, fields in client.xrange(f"{prefix}:{name}:stream"):
            message = json.loads(fields[b"data"])
            stored[message["time"]] = int(entry_id.split(b"-")[0]) / 1000
            if name == "info" and _is_status(message):
                ids[entry_id.decode()] = message["time"]
    return ids, stored


def gateway_rows(
    workdir: Path, env: dict, ports: ManagerPorts, redis_port: int, api_key: str, args: argparse.Namespace
) -> list[StreamRow]:
    socket_path = workdir / "gateway.sock"
    gateway, _ = start_gateway(workdir, {**env, "QS_GATEWAY_PROXY_HOPS": "1"}, unix_socket=socket_path,
                               log_name="gateway-streams.log")  # fmt: skip
    proxy = None
    try:
        proxy = behind_nginx(workdir / "nginx", socket_path, worker_processes="auto")
        client = redis.Redis(port=redis_port)
        prefix = env.get("QS_GATEWAY_REDIS_PREFIX", "qs_gateway")
        rows = []
        for total in args.stream_sizes:
            print(f"gateway, {total} subscribers ...", file=sys.stderr)
            rows.append(measure_once(
                "gateway (nginx + gunicorn)", proxy.url, api_key, str(proxy.cert), gateway.pid, ports, GATEWAY_MIX,
                total, args, proxy_pid=proxy.process.pid, redis_client=client, redis_prefix=prefix,
            ))  # fmt: skip
        return rows
    finally:
        if proxy is not None:
            proxy.stop()
        gateway.stop()


def reference_rows(
    reference: ManagedProcess, url: str, ports: ManagerPorts, api_key: str, args: argparse.Namespace
) -> list[StreamRow]:
    rows = []
    for total in args.stream_sizes:
        print(f"bluesky-httpserver, {total} subscribers ...", file=sys.stderr)
        rows.append(measure_once(
            "bluesky-httpserver (uvicorn)", url, api_key, None, reference.pid, ports, REFERENCE_MIX, total, args
        ))  # fmt: skip
    return rows


def table(rows: list[StreamRow]) -> str:
    lines = [
        "| server | subscribers | connected | received / expected | all in order | p50 ms | p99 ms "
        "| server CPU | RSS per process (MB) | `/api/status` p99 ms | console lines/s | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        refused = ", ".join(f"{n}× {status}" for status, n in r.refused.items())
        connected = f"{r.connected:,}" + (f" (refused: {refused})" if refused else "")
        lines.append(
            f"| {r.server} | {r.subscribers:,} ({r.mix}) | {connected} "
            f"| {r.received:,} / {r.expected:,} | {r.in_order:,} | {_ms(r.p50)} | {_ms(r.p99)} | {r.cpu_percent:.0f}% "
            f"| {', '.join(f'{mb:.0f}' for mb in r.rss_mb)} | {_ms(r.status_p99)} | {r.console_rate:.1f} | {r.note} |"
        )
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:,.1f}"


def goals(rows: list[StreamRow]) -> list[tuple[str, bool, str]]:
    gateway = [r for r in rows if r.server.startswith("gateway")]
    largest = max(gateway, key=lambda r: r.subscribers, default=None)
    if largest is None:
        return []
    all_in = largest.connected == largest.subscribers and largest.received == largest.expected
    return [
        (f"{largest.subscribers:,} subscribers connected and every message received in order",
         all_in and largest.in_order == largest.connected,
         f"{largest.connected:,} connected, {largest.received:,}/{largest.expected:,}, {largest.in_order:,} in order"),
        (f"stream p99 <= 250 ms at {largest.subscribers:,}", (largest.p99 or 1e9) <= 250, f"{_ms(largest.p99)} ms"),
        ("`/api/status` p99 <= 30 ms meanwhile", (largest.status_p99 or 1e9) <= 30, f"{_ms(largest.status_p99)} ms"),
        ("RSS per worker < 100 MB with the streams", max(largest.rss_mb) < 100, f"{max(largest.rss_mb):.0f} MB"),
    ]  # fmt: skip
