"""Two measurements of the gateway beyond its rows: its own gunicorn worker against gunicorn's
stock gthread worker (the same application, side by side in alternating rounds), and its
workers' memory after 1,000 and after 100,000 requests each."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qs_gateway.metrics import MULTIPROCESS_DIR_ENV
from qs_gateway.serving.cli import GUNICORN_CONFIG
from qs_gateway.serving.stack import ManagedProcess, free_port, http_status

from . import wrk
from .rows import CUSTOM_WORKER, FLOOR_ROUND, RSS_GROWTH, STOCK_WORKER, Row, compare, from_wrk
from .usage import ProcessUsage, requests_answered

ROUNDS = 5  # of each worker, alternating: the machine changes under a run; p99 varies by several ms round to round
GROWTH_EARLY = 1_000
GROWTH_LATE = 100_000


def start_stock_gthread(workdir: Path, env: dict[str, str]) -> tuple[ManagedProcess, str]:
    """The gateway with gunicorn's own gthread worker (``-k gthread`` beats the configuration
    file), its metrics on a bind and in a directory of its own."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = ManagedProcess(
        "qs-gateway (stock gthread)",
        [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONFIG, "-k", "gthread"],
        workdir / "gateway-gthread.log",
        env={
            **os.environ,
            **env,
            "QS_GATEWAY_BIND": f"127.0.0.1:{port}",
            "QS_GATEWAY_METRICS_BIND": f"127.0.0.1:{free_port()}",
            MULTIPROCESS_DIR_ENV: str(workdir / "metrics-gthread"),
        },
    ).start()
    process.wait_until(lambda: http_status(url, "/api/nonexistent-readiness-probe") == 404, 30, "answering HTTP")
    return process, url


def worker_rows(
    workdir: Path,
    env: dict[str, str],
    gateway: tuple[int, Path, str],
    headers: dict[str, str],
    seconds: float,
    floor_url: str,
) -> list[Row]:
    """``/api/status`` at 32 connections through the gateway's worker and through stock gthread,
    each round right after the framework floor's constant body at 32 connections (each worker's
    row is compared with it), ROUNDS rounds. ``gateway``: its master's pid, metrics directory and
    URL. Each row notes the requests each worker answered: stock gthread leaves the kernel to share
    connections out, and a round in which one worker got most of them is slower for that alone
    (the floor's round is the better of two for that reason)."""
    stock, stock_url = start_stock_gthread(workdir, env)
    try:
        gateway_pid, metrics_dir, url = gateway
        targets = [
            (CUSTOM_WORKER, url, ProcessUsage(gateway_pid).pids()[1:], metrics_dir),
            (STOCK_WORKER, stock_url, ProcessUsage(stock.pid).pids()[1:], workdir / "metrics-gthread"),
        ]
        for _, target, _, _ in targets:
            wrk.run(f"{target}/api/status", connections=8, seconds=1, headers=headers)  # warm both alike
        rows = []
        for _ in range(ROUNDS):
            floor = from_wrk(FLOOR_ROUND, 32, wrk.ceiling(f"{floor_url}/small", connections=32, seconds=seconds))
            rows.append(floor)
            for what, target, pids, metrics in targets:
                before = [requests_answered(metrics, pid) for pid in pids]
                result = wrk.run(f"{target}/api/status", connections=32, seconds=seconds, headers=headers)
                split = [requests_answered(metrics, pid) - b for pid, b in zip(pids, before, strict=True)]
                row = compare(from_wrk(what, 32, result), floor)
                row.note = "per worker " + " / ".join(f"{n:,}" for n in split)
                rows.append(row)
        return rows
    finally:
        stock.stop()


def load_until(
    url: str, pids: list[int], metrics_dir: Path, count: int, endpoint: str | None = None, **request: Any
) -> None:
    """``url`` (wrk's ``request`` options) at 32 connections until every worker has answered
    ``count`` requests (to ``endpoint``, if given): the kernel does not share connections out
    evenly between workers, so a fixed time is not enough."""
    deadline = time.monotonic() + 900
    while min(requests_answered(metrics_dir, pid, endpoint) for pid in pids) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the workers did not answer {count:,} requests each in 15 minutes")
        wrk.run(url, connections=32, seconds=1, **request)


class Growth:
    """RSS per worker once each has answered GROWTH_EARLY requests (:meth:`early`, at the start
    of the run, after a warm-up in which each worker answered every kind of request the rows
    send: its caches are filled then, which is not growth) and GROWTH_LATE (:meth:`late`, after
    every row: the rows' mixed load counts)."""

    def __init__(self, gateway_pid: int, metrics_dir: Path) -> None:
        self.usage = ProcessUsage(gateway_pid)
        self.metrics_dir = metrics_dir
        self.pids = self.usage.pids()[1:]
        self.before: list[float] = []

    def early(self, url: str, headers: dict[str, str], warm_up: Callable[[list[int]], None]) -> None:
        warm_up(self.pids)
        load_until(f"{url}/api/status", self.pids, self.metrics_dir, GROWTH_EARLY, headers=headers)
        time.sleep(1)
        self.before = [ProcessUsage.rss_mb(pid) for pid in self.pids]

    def late(self, url: str, headers: dict[str, str]) -> Row:
        load_until(f"{url}/api/status", self.pids, self.metrics_dir, GROWTH_LATE, headers=headers)
        time.sleep(1)
        after = [ProcessUsage.rss_mb(pid) for pid in self.pids]
        served = ", ".join(f"{requests_answered(self.metrics_dir, pid):,}" for pid in self.pids)
        note = ", ".join(f"{b:.1f} → {a:.1f}" for b, a in zip(self.before, after, strict=True))
        return Row(RSS_GROWTH, "-", note=note + f" ({served} requests answered)")
