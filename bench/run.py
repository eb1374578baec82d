"""``python -m bench.run``: the benchmark table of qs-gateway, measured in one run.

Starts a private stack (Redis, RE Manager with the simulated profile, the gateway under gunicorn
with its production settings), a bare Flask app under the same gunicorn settings, and loads
them from separate processes (wrk; Python processes for direct ZeroMQ). Each row is compared
with its ceiling measured in the same run: machines are noisy, ratios are what count.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from qs_gateway.serving.stack import (
    ManagedProcess,
    ManagerPorts,
    free_port,
    start_gateway,
    start_re_manager,
    start_redis,
)

from . import direct, streams, wrk
from .usage import ProcessUsage

API_KEY = "BenchmarkKeyOfTheGateway20261202xyz"  # 32+ letters and digits: shorter keys are refused
HEADERS = {"Authorization": f"ApiKey {API_KEY}"}
ITEM = {"item_type": "plan", "name": "count", "args": [["det1", "det2"]]}
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    what: str
    concurrency: int | str
    rate: float | None = None
    p50: float | None = None
    p99: float | None = None
    ceiling: str = ""
    ratio: float | None = None
    note: str = ""


def from_latencies(what: str, concurrency: int, latencies: list[float], seconds: float) -> Row:
    ordered = sorted(latencies)
    return Row(
        what,
        concurrency,
        rate=len(ordered) / seconds,
        p50=statistics.median(ordered) * 1000,
        p99=ordered[int(len(ordered) * 0.99) - 1] * 1000,
    )


def from_wrk(what: str, concurrency: int, result: wrk.Result) -> Row:
    note = f"{result.errors} errors" if result.errors else ""
    return Row(what, concurrency, result.requests_per_second, result.p50_ms, result.p99_ms, note=note)


def compare(row: Row, ceiling: Row) -> Row:
    row.ceiling = f"{ceiling.what} @{ceiling.concurrency}"
    row.ratio = row.rate / ceiling.rate if ceiling.rate else None
    return row


def start_floor(workdir: Path, workers: int, threads: int) -> tuple[ManagedProcess, str]:
    port = free_port()
    process = ManagedProcess(
        "floor",
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "-k",
            "gthread",
            "-w",
            str(workers),
            "--threads",
            str(threads),
            "-b",
            f"127.0.0.1:{port}",
            "--keep-alive",
            "65",
            "--no-control-socket",
            "bench.floor_app:app",
        ],
        workdir / "floor.log",
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=workdir,  # not the repository: its gunicorn.conf.py is the gateway's
    ).start()
    url = f"http://127.0.0.1:{port}"
    process.wait_until(lambda: httpx.get(f"{url}/small").status_code == 200, 30, "answering")
    return process, url


def fill_queue(address: str, count: int) -> None:
    direct.request(address, "queue_clear")
    batch = {"items": [ITEM] * 100, "user": "bench", "user_group": "primary"}
    for _ in range(count // 100):
        direct.request(address, "queue_item_add_batch", batch)


def gc_pauses(metrics_url: str) -> tuple[float, int]:
    """The longest garbage-collection pause in any worker (ms) and how many exceeded 20 ms."""
    text = httpx.get(metrics_url).text
    longest = max(
        (float(v) for v in re.findall(r"^qs_gateway_gc_pause_max_seconds\S* (\S+)$", text, re.M)), default=0.0
    )
    total = sum(float(v) for v in re.findall(r"^qs_gateway_gc_pause_seconds_count\S* (\S+)$", text, re.M))
    under = sum(float(v) for v in re.findall(r'^qs_gateway_gc_pause_seconds_bucket\{le="0.02"\S* (\S+)$', text, re.M))
    return longest * 1000, int(total - under)


def http_rows(name: str, url: str, floor_url: str, control_address: str, seconds: float, direct_add: Row) -> list[Row]:
    """The HTTP rows, the same for the gateway and for bluesky-httpserver. Each row is measured
    right after its framework floor, so that both see the same machine."""
    rows = []

    def floor(path: str, c: int) -> Row:
        body = "constant body" if path == "/small" else "constant 200 KB body"
        row = from_wrk(f"Flask + gunicorn, {body}", c, wrk.run(f"{floor_url}{path}", connections=c, seconds=seconds))
        rows.append(row)
        return row

    for c in (1, 8, 32, 64):
        ceiling = floor("/small", c)
        result = wrk.run(f"{url}/api/status", connections=c, seconds=seconds, headers=HEADERS)
        rows.append(compare(from_wrk(f"{name} `GET /api/status`", c, result), ceiling))
    body = httpx.Request("POST", url, json={"item": ITEM}).content
    result = wrk.run(
        f"{url}/api/queue/item/add", connections=8, seconds=seconds, headers=HEADERS, method="POST", body=body
    )
    rows.append(compare(from_wrk(f"{name} `POST /api/queue/item/add`", 8, result), direct_add))
    fill_queue(control_address, 1000)
    for c in (1, 8):
        ceiling = floor("/large", c)
        result = wrk.run(f"{url}/api/queue/get", connections=c, seconds=seconds, headers=HEADERS)
        rows.append(compare(from_wrk(f"{name} `GET /api/queue/get`, 1,000 items", c, result), ceiling))
    fill_queue(control_address, 0)
    return rows


def start_reference(workdir: Path, venv: Path, ports: ManagerPorts) -> tuple[ManagedProcess, str]:
    """bluesky-httpserver from a side environment (``scripts/bench --reference``), one uvicorn
    process as it is deployed, in front of the same RE Manager."""
    port = free_port()
    process = ManagedProcess(
        "bluesky-httpserver",
        [
            str(venv / "bin" / "uvicorn"),
            "bluesky_httpserver.server:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        workdir / "reference.log",
        env={
            **os.environ,
            "QSERVER_ZMQ_CONTROL_ADDRESS": ports.control_address,
            "QSERVER_ZMQ_INFO_ADDRESS": ports.info_address,
            "QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY": API_KEY,
        },
        cwd=workdir,
    ).start()
    url = f"http://127.0.0.1:{port}"
    process.wait_until(lambda: httpx.get(f"{url}/api/status", headers=HEADERS).status_code == 200, 60, "answering")
    return process, url


def gateway_http_rows(
    args: argparse.Namespace, url: str, gateway: ManagedProcess, floor_url: str, ports: ManagerPorts
) -> tuple[list[Row], Row]:
    """The direct ZeroMQ ceilings, then the gateway's HTTP rows against them and the floor."""
    seconds = args.seconds
    rss = ProcessUsage(gateway.pid)
    for _ in range(20):
        httpx.get(f"{url}/api/status", headers=HEADERS)
    time.sleep(1)
    idle = rss.workers_now()

    print("direct ZeroMQ ...", file=sys.stderr)
    direct_status = {
        c: from_latencies(
            "direct ZeroMQ `status`", c, direct.run(ports.control_address, "status", {}, c, seconds), seconds
        )
        for c in (1, 8)
    }
    direct_add = from_latencies(
        "direct ZeroMQ `queue_item_add`",
        8,
        direct.run(
            ports.control_address,
            "queue_item_add",
            {"item": ITEM, "user": "bench", "user_group": "primary"},
            8,
            seconds,
        ),
        seconds,
    )
    fill_queue(ports.control_address, 1000)
    direct_get = {
        c: from_latencies(
            "direct ZeroMQ `queue_get`, 1,000 items",
            c,
            direct.run(ports.control_address, "queue_get", {}, c, seconds),
            seconds,
        )
        for c in (1, 8)
    }
    fill_queue(ports.control_address, 0)
    rows = [*direct_status.values(), direct_add, *direct_get.values()]

    print("gateway ...", file=sys.stderr)
    with rss:
        rows += http_rows("gateway", url, floor_url, ports.control_address, seconds, direct_add)
    loaded = rss.worker_peaks()
    rows.append(Row("gateway RSS per worker, idle (MB)", "-", note=", ".join(f"{v:.0f}" for v in idle)))
    rows.append(Row("gateway RSS per worker, loaded peak (MB)", "-", note=", ".join(f"{v:.0f}" for v in loaded)))
    longest, over = gc_pauses(f"http://127.0.0.1:{args.metrics_port}/metrics")
    rows.append(Row("gateway garbage-collection pauses", "-", note=f"longest {longest:.1f} ms; {over} over 20 ms"))
    return rows, direct_add


def measure(args: argparse.Namespace) -> tuple[list[Row], list[streams.StreamRow]]:
    workdir = Path(tempfile.mkdtemp(prefix="qs-gateway-bench-"))
    processes: list[ManagedProcess] = []
    rows: list[Row] = []
    stream_rows: list[streams.StreamRow] = []
    try:
        redis, redis_port = start_redis(workdir / "redis")
        processes.append(redis)
        manager, ports = start_re_manager(workdir, redis_port=redis_port, name_prefix="qs_gateway_bench")
        processes.append(manager)
        args.metrics_port = free_port()
        env = {
            "QSERVER_ZMQ_CONTROL_ADDRESS": ports.control_address,
            "QSERVER_ZMQ_INFO_ADDRESS": ports.info_address,
            "QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY": API_KEY,
            "QS_GATEWAY_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "QS_GATEWAY_WORKERS": str(args.workers),
            "QS_GATEWAY_THREADS": str(args.threads),
            "QS_GATEWAY_METRICS_BIND": f"127.0.0.1:{args.metrics_port}",
            "QS_GATEWAY_LOG_LEVEL": "warning",
        }
        if args.only != "streams":
            floor, floor_url = start_floor(workdir, args.workers, args.threads)
            processes.append(floor)
            gateway, url = start_gateway(workdir, env)
            processes.append(gateway)
            http, direct_add = gateway_http_rows(args, url, gateway, floor_url, ports)
            rows += http
            gateway.stop()  # each server is measured alone
        if args.only != "http":
            streams.open_environment(ports.control_address)
            stream_rows += streams.gateway_rows(workdir, env, ports, redis_port, API_KEY, args)
        if args.reference:
            reference, reference_url = start_reference(workdir, Path(args.reference).resolve(), ports)
            processes.append(reference)
            if args.only != "streams":
                print("bluesky-httpserver ...", file=sys.stderr)
                reference_rss = ProcessUsage(reference.pid)
                with reference_rss:
                    rows += http_rows("bluesky-httpserver", reference_url, floor_url, ports.control_address,
                                      args.seconds, direct_add)  # fmt: skip
                peak = max(reference_rss.worker_peaks())
                rows.append(Row("bluesky-httpserver RSS, loaded peak (MB)", "-", note=f"{peak:.0f}"))
            if args.only != "http":
                stream_rows += streams.reference_rows(reference, reference_url, ports, API_KEY, args)
    finally:
        for process in reversed(processes):
            process.stop()
    return rows, stream_rows


def table(rows: list[Row]) -> str:
    lines = [
        "| measurement | concurrency | req/s | p50 ms | p99 ms | ceiling | ratio | note |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def number(value: float | None, digits: int = 0) -> str:
        return "" if value is None else f"{value:,.{digits}f}"

    for row in rows:
        lines.append(
            f"| {row.what} | {row.concurrency} | {number(row.rate)} | {number(row.p50, 2)} | {number(row.p99, 2)} "
            f"| {row.ceiling} | {number(row.ratio, 2)} | {row.note} |"
        )
    return "\n".join(lines)


def goals(rows: list[Row], stream_rows: list[streams.StreamRow]) -> str:
    """The goals of issues 6 and 11, each checked against this run."""
    checks = http_goals(rows) if rows else []
    checks += streams.goals(stream_rows)
    lines = ["| goal | met | this run |", "|---|---|---|"]
    lines += [f"| {goal} | {'yes' if met else '**no**'} | {value} |" for goal, met, value in checks]
    return "\n".join(lines)


def http_goals(rows: list[Row]) -> list[tuple[str, bool, str]]:

    def row(what: str, concurrency: int | str) -> Row | None:
        return next((r for r in rows if r.what == what and r.concurrency == concurrency), None)

    status = row("gateway `GET /api/status`", 32)
    add = row("gateway `POST /api/queue/item/add`", 8)
    queue = row("gateway `GET /api/queue/get`, 1,000 items", 8)
    loaded = row("gateway RSS per worker, loaded peak (MB)", "-")
    gc_row = row("gateway garbage-collection pauses", "-")
    peak_rss = max(float(v) for v in loaded.note.split(", ")) if loaded else float("inf")
    over_20 = int(re.search(r"(\d+) over 20 ms", gc_row.note).group(1)) if gc_row else -1
    checks = [
        ("`/api/status` @32 >= 1/2 of the framework floor", status and status.ratio >= 0.5, f"{status.ratio:.2f}"),
        ("`/api/status` @32 p99 <= 30 ms", status and status.p99 <= 30, f"{status.p99:.1f} ms"),
        ("`queue/item/add` @8 >= 1/2 of direct ZeroMQ", add and add.ratio >= 0.5, f"{add.ratio:.2f}"),
        ("`queue/get` (1,000 items) @8 >= 400 req/s", queue and queue.rate >= 400, f"{queue.rate:,.0f} req/s"),
        ("RSS per worker under load <= 90 MB", peak_rss <= 90, f"{peak_rss:.0f} MB"),
        ("no GC pause over 20 ms", over_20 == 0, gc_row.note if gc_row else "not measured"),
    ]
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each load run (default 5)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2, as in production)")
    parser.add_argument("--threads", type=int, default=16, help="threads per worker (default 16)")
    parser.add_argument(
        "--reference",
        metavar="VENV",
        help="a virtual environment with bluesky-httpserver installed: measure it too, on the same rows",
    )
    parser.add_argument("--only", choices=("http", "streams"), help="measure only the HTTP rows or the streams")
    parser.add_argument(
        "--stream-sizes",
        type=lambda text: [int(n) for n in text.split(",")],
        default=list(streams.SIZES),
        help="subscribers per stream row (default 100,500,1000)",
    )
    parser.add_argument("--stream-seconds", type=float, default=10.0, help="console output per stream row (10)")
    parser.add_argument("--console-rate", type=float, default=10.0, help="console lines per second (default 10)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    rows, stream_rows = measure(args)
    print(
        f"\n{args.workers} workers x {args.threads} threads, {args.seconds:g} s per run, "
        f"{os.cpu_count()} CPUs, took {time.monotonic() - started:.0f} s\n"
    )
    if rows:
        print(table(rows), end="\n\n")
    if stream_rows:
        print(streams.table(stream_rows), end="\n\n")
    print(goals(rows, stream_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
