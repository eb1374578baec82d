"""``python -m bench.run``: the benchmark table of qs-gateway, measured in one run.

Starts a private stack (Redis, RE Manager with the simulated profile, the gateway under gunicorn
with its production settings), a bare Flask app under the same gunicorn settings, and loads
them from separate processes (wrk; Python processes for direct ZeroMQ). Each row is compared
with its ceiling measured in the same run: machines are noisy, ratios are what count.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from qs_gateway.metrics import MULTIPROCESS_DIR_ENV
from qs_gateway.serving.stack import (
    ManagedProcess,
    ManagerPorts,
    free_port,
    start_gateway,
    start_re_manager,
    start_redis,
)

from . import REPO, direct, floor_app, gateway_checks, inprocess, profile, streams, wrk
from .rows import GC, RSS_LOADED, Row, compare, from_latencies, from_wrk, http_goals, table
from .usage import ProcessUsage, gc_pauses, read_cpu_ticks, requests_answered, stolen_share

API_KEY = "BenchmarkKeyOfTheGateway20261202xyz"  # 32+ letters and digits: shorter keys are refused
HEADERS = {"Authorization": f"ApiKey {API_KEY}"}
ITEM = {"item_type": "plan", "name": "count", "args": [["det1", "det2"]]}
ADD_BODY = orjson.dumps({"item": ITEM})


def start_floor(workdir: Path, workers: int, threads: int, large_bytes: int) -> tuple[ManagedProcess, str]:
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
        env={**os.environ, "PYTHONPATH": str(REPO), floor_app.LARGE_BYTES_ENV: str(large_bytes)},
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


# Item add is RE Manager-bound, and RE Manager's own rate moves by 15 % between windows:
# alternating rounds, each compared with the direct ZeroMQ window just before it; the goal reads
# the median.
ADD_ROUNDS = 3


def direct_add_row(control_address: str, seconds: float) -> Row:
    params = {"item": ITEM, "user": "bench", "user_group": "primary"}
    latencies = direct.run(control_address, "queue_item_add", params, 8, seconds)
    return from_latencies("direct ZeroMQ `queue_item_add`", 8, latencies, seconds)


def http_rows(name: str, url: str, floor_url: str, control_address: str, seconds: float) -> list[Row]:
    """The HTTP rows, the same for the gateway and for bluesky-httpserver. Each row is measured
    right after its ceiling (the framework floor, or RE Manager over ZeroMQ), so that both see
    the same machine."""
    rows = []

    def floor(path: str, c: int) -> Row:
        body = "constant body" if path == "/small" else "constant body of the queue's size"
        best = wrk.ceiling(f"{floor_url}{path}", connections=c, seconds=seconds)
        row = from_wrk(f"Flask + gunicorn, {body}", c, best)
        rows.append(row)
        return row

    for c in (1, 8, 32, 64):
        ceiling = floor("/small", c)
        result = wrk.run(f"{url}/api/status", connections=c, seconds=seconds, headers=HEADERS)
        rows.append(compare(from_wrk(f"{name} `GET /api/status`", c, result), ceiling))
    for _ in range(ADD_ROUNDS):
        fill_queue(control_address, 0)  # each round starts from the same queue
        direct_add = direct_add_row(control_address, seconds)
        rows.append(direct_add)
        fill_queue(control_address, 0)
        result = wrk.run(
            f"{url}/api/queue/item/add", connections=8, seconds=seconds, headers=HEADERS, method="POST", body=ADD_BODY
        )
        rows.append(compare(from_wrk(f"{name} `POST /api/queue/item/add`", 8, result), direct_add))
    fill_queue(control_address, 1000)
    for c in (1, 8):
        ceiling = floor("/large", c)
        result = wrk.run(f"{url}/api/queue/get", connections=c, seconds=seconds, headers=HEADERS)
        rows.append(compare(from_wrk(f"{name} `GET /api/queue/get`, 1,000 items", c, result), ceiling))
    fill_queue(control_address, 0)
    return rows


WARM_UP_REQUESTS = 300  # of each kind, per worker


def warm_up(url: str, control_address: str, pids: list[int], metrics_dir: Path) -> None:
    """Every kind of request the rows send, until each worker has answered WARM_UP_REQUESTS."""
    add = "/api/queue/item/add"
    gateway_checks.load_until(f"{url}{add}", pids, metrics_dir, WARM_UP_REQUESTS, add, headers=HEADERS,
                              method="POST", body=ADD_BODY)  # fmt: skip
    fill_queue(control_address, 1000)
    get = "/api/queue/get"
    gateway_checks.load_until(f"{url}{get}", pids, metrics_dir, WARM_UP_REQUESTS, get, headers=HEADERS)
    fill_queue(control_address, 0)


def queue_body_size(control_address: str) -> int:
    """The size of a 1,000-item ``queue_get`` answer as the gateway sends it (compact JSON)."""
    fill_queue(control_address, 1000)
    size = len(orjson.dumps(direct.request(control_address, "queue_get")))
    fill_queue(control_address, 0)
    return size


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
    args: argparse.Namespace, env: dict[str, str], workdir: Path, url: str, gateway: ManagedProcess, floor_url: str,
    ports: ManagerPorts,
) -> list[Row]:  # fmt: skip
    """The direct ZeroMQ rows, then the gateway's HTTP rows against their ceilings, its own worker
    against stock gthread, and its memory."""
    seconds = args.seconds
    rss = ProcessUsage(gateway.pid)
    growth = gateway_checks.Growth(gateway.pid, args.metrics_dir)
    growth.early(url, HEADERS, lambda pids: warm_up(url, ports.control_address, pids, args.metrics_dir))
    idle = rss.workers_now()

    print("direct ZeroMQ ...", file=sys.stderr)
    rows = []
    for c in (1, 8):
        latencies = direct.run(ports.control_address, "status", {}, c, seconds)
        rows.append(from_latencies("direct ZeroMQ `status`", c, latencies, seconds))
    fill_queue(ports.control_address, 1000)
    for c in (1, 8):
        latencies = direct.run(ports.control_address, "queue_get", {}, c, seconds)
        rows.append(from_latencies("direct ZeroMQ `queue_get`, 1,000 items", c, latencies, seconds))
    fill_queue(ports.control_address, 0)

    print("gateway ...", file=sys.stderr)
    with rss:
        rows += http_rows("gateway", url, floor_url, ports.control_address, seconds)
    print("gateway's worker and stock gthread ...", file=sys.stderr)
    rows += gateway_checks.worker_rows(workdir, env, (gateway.pid, args.metrics_dir, url), HEADERS, seconds, floor_url)
    print("gateway's memory after 100,000 requests per worker ...", file=sys.stderr)
    rows.append(growth.late(url, HEADERS))
    loaded = rss.worker_peaks()
    rows.append(Row("gateway RSS per worker, idle (MB)", "-", note=", ".join(f"{v:.0f}" for v in idle)))
    rows.append(Row(RSS_LOADED, "-", note=", ".join(f"{v:.0f}" for v in loaded)))
    longest, over = gc_pauses(f"http://127.0.0.1:{args.metrics_port}/metrics")
    rows.append(Row(GC, "-", note=f"longest {longest:.1f} ms; {over} over 20 ms"))
    print("the applications alone, in one process ...", file=sys.stderr)
    rows += inprocess.rows(env, workdir)
    return rows


def redis_socket(workdir: Path) -> Path:
    return workdir / "redis" / "redis.sock"


def start_bench_redis(workdir: Path) -> tuple[ManagedProcess, int]:
    """Redis on a free loopback port (RE Manager's) and on a unix socket (the gateway's, with
    ``--redis-over unix``)."""
    socket_args = ["--unixsocket", str(redis_socket(workdir)), "--unixsocketperm", "700"]
    return start_redis(workdir / "redis", extra_args=socket_args)


def gateway_env(args: argparse.Namespace, workdir: Path, ports: ManagerPorts, redis_port: int) -> dict[str, str]:
    """The gateway's production settings, with metrics on a bind of their own and their files
    where the benchmark can read each worker's request count."""
    args.metrics_port = free_port()
    args.metrics_dir = workdir / "metrics"
    return {
        "QSERVER_ZMQ_CONTROL_ADDRESS": ports.control_address,
        "QSERVER_ZMQ_INFO_ADDRESS": ports.info_address,
        "QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY": API_KEY,
        "QS_GATEWAY_REDIS_URL": (
            f"unix://{redis_socket(workdir)}?db=0" if args.redis_over == "unix" else f"redis://127.0.0.1:{redis_port}/0"
        ),
        "QS_GATEWAY_WORKERS": str(args.workers),
        "QS_GATEWAY_THREADS": str(args.threads),
        "QS_GATEWAY_METRICS_BIND": f"127.0.0.1:{args.metrics_port}",
        "QS_GATEWAY_LOG_LEVEL": "warning",
        MULTIPROCESS_DIR_ENV: str(args.metrics_dir),
    }


def measure_profile(args: argparse.Namespace) -> str:
    """``--profile``: the gateway, then the framework floor, one worker of each sampled under the
    same load."""
    workdir = Path(tempfile.mkdtemp(prefix="qs-gateway-profile-"))
    processes: list[ManagedProcess] = []
    try:
        redis, redis_port = start_bench_redis(workdir)
        processes.append(redis)
        manager, ports = start_re_manager(workdir, redis_port=redis_port, name_prefix="qs_gateway_bench")
        processes.append(manager)
        floor, floor_url = start_floor(workdir, args.workers, args.threads, queue_body_size(ports.control_address))
        processes.append(floor)
        gateway, url = start_gateway(workdir, gateway_env(args, workdir, ports, redis_port))
        processes.append(gateway)
        path, floor_path = "/api/status", "/small"
        if args.profile == "queue":
            fill_queue(ports.control_address, 1000)
            path, floor_path = "/api/queue/get", "/large"
        for target in (f"{url}{path}", f"{floor_url}{floor_path}"):
            wrk.run(target, connections=8, seconds=1, headers=HEADERS)
        worker = profile.worker_pids(gateway.pid)[0]
        sampled = profile.profile(
            f"{url}{path}", HEADERS, worker, lambda: requests_answered(args.metrics_dir, worker), workdir, args
        )
        floor_worker = profile.worker_pids(floor.pid)[0]
        floor_sampled = profile.profile(
            f"{floor_url}{floor_path}", {}, floor_worker, lambda: profile.floor_answered(floor_url, floor_worker),
            workdir, args,
        )  # fmt: skip
        return profile.report(path, sampled, floor_sampled)
    finally:
        for process in reversed(processes):
            process.stop()


def measure(args: argparse.Namespace) -> tuple[list[Row], list[streams.StreamRow]]:
    workdir = Path(tempfile.mkdtemp(prefix="qs-gateway-bench-"))
    processes: list[ManagedProcess] = []
    rows: list[Row] = []
    stream_rows: list[streams.StreamRow] = []
    try:
        redis, redis_port = start_bench_redis(workdir)
        processes.append(redis)
        manager, ports = start_re_manager(workdir, redis_port=redis_port, name_prefix="qs_gateway_bench")
        processes.append(manager)
        env = gateway_env(args, workdir, ports, redis_port)
        if args.only != "streams":
            floor, floor_url = start_floor(workdir, args.workers, args.threads, queue_body_size(ports.control_address))
            processes.append(floor)
            gateway, url = start_gateway(workdir, env)
            processes.append(gateway)
            rows += gateway_http_rows(args, env, workdir, url, gateway, floor_url, ports)
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
                                      args.seconds)  # fmt: skip
                peak = max(reference_rss.worker_peaks())
                rows.append(Row("bluesky-httpserver RSS, loaded peak (MB)", "-", note=f"{peak:.0f}"))
            if args.only != "http":
                stream_rows += streams.reference_rows(reference, reference_url, ports, API_KEY, args)
    finally:
        for process in reversed(processes):
            process.stop()
    return rows, stream_rows


def goals(rows: list[Row], stream_rows: list[streams.StreamRow]) -> str:
    checks = http_goals(rows) if rows else []
    checks += streams.goals(stream_rows)
    lines = ["| goal | met | this run |", "|---|---|---|"]
    lines += [f"| {goal} | {'yes' if met else '**no**'} | {value} |" for goal, met, value in checks]
    return "\n".join(lines)


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
    parser.add_argument(
        "--redis-over",
        choices=("tcp", "unix"),
        default="tcp",
        help="how the gateway reaches its Redis on the same host: loopback TCP (default) or a unix socket",
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
    parser.add_argument(
        "--profile",
        nargs="?",
        const="status",
        choices=("status", "queue"),
        help="instead of the table: where a request's time goes, by py-spy on one worker "
        "(status: GET /api/status; queue: GET /api/queue/get with 1,000 items)",
    )
    parser.add_argument("--profile-rate", type=int, default=250, help="py-spy samples per second (default 250)")
    parser.add_argument(
        "--profile-blocking",
        action="store_true",
        help="py-spy pauses the worker for each sample (exact stacks, but the worker serves far fewer requests)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.profile:
        print(measure_profile(args))
        return 0
    ticks = read_cpu_ticks()
    rows, stream_rows = measure(args)
    stolen = stolen_share(ticks, read_cpu_ticks())
    print(
        f"\n{args.workers} workers x {args.threads} threads, {args.seconds:g} s per run, "
        f"{os.cpu_count()} CPUs, took {time.monotonic() - started:.0f} s, "
        f"CPU time taken by the hypervisor (steal) {stolen:.1%}\n"
    )
    if rows:
        print(table(rows), end="\n\n")
    if stream_rows:
        print(streams.table(stream_rows), end="\n\n")
    print(goals(rows, stream_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
