"""Prometheus metrics, correct across gunicorn's worker processes.

Under gunicorn every worker writes its values to files in ``PROMETHEUS_MULTIPROC_DIR`` (the
gunicorn configuration creates it, empties it at start and marks exited workers dead), and
whichever worker answers ``/metrics`` reads all of them. Without that directory (the app
in-process, tests) the values live in this process's own registry.

Pool and breaker gauges are sampled after each request of the worker, under a lock, so the last
request to finish leaves the worker's true state: these only change while requests run. The
breaker gauge is 1 while the breaker is not closed (open, or half-open waiting for its probe),
which is also something only a request can end.
"""

from __future__ import annotations

import gc
import os
import struct
import threading
import time

from .config.environment import MULTIPROCESS_DIR_ENV
from .transport import SocketPool

# A starting worker's file may be read before it was written: read again a few times.
MULTIPROCESS_READ_ATTEMPTS = 5

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class GatewayMetrics:
    def __init__(self) -> None:
        # Imported here, not with this module: prometheus_client chooses between per-process and
        # shared (file-backed) values when it is first imported, from PROMETHEUS_MULTIPROC_DIR,
        # which gunicorn's master sets only at start-up (and only workers that collect metrics
        # need the library at all).
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess_dir = os.environ.get(MULTIPROCESS_DIR_ENV) or None
        self.registry = None if self.multiprocess_dir else CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "qs_gateway_requests",
            "HTTP requests answered, by endpoint (URL rule), method and status",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "qs_gateway_request_duration_seconds",
            "Time to answer a request (until the response starts, for streams)",
            ["endpoint", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

        def live_sum(name: str, description: str) -> Gauge:
            # summed over the workers alive now: an exited worker's sockets are gone
            return Gauge(name, description, registry=registry, multiprocess_mode="livesum")

        self.pool_size = live_sum("qs_gateway_pool_size", "ZeroMQ sockets allowed to RE Manager")
        self.sockets_open = live_sum("qs_gateway_pool_sockets_open", "ZeroMQ sockets open")
        self.sockets_in_use = live_sum("qs_gateway_pool_sockets_in_use", "ZeroMQ sockets checked out by requests")
        self.breaker_open = Gauge(
            "qs_gateway_breaker_open",
            "1 while a worker fails requests at once because RE Manager stopped answering",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.manager_timeouts = Counter(
            "qs_gateway_manager_timeouts", "Requests RE Manager did not take or answer in time", registry=registry
        )
        self.open_streams = Gauge(
            "qs_gateway_open_streams",
            "Streaming responses and websockets being served, by kind",
            ["kind"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.gc_pause = Histogram(
            "qs_gateway_gc_pause_seconds",
            "Garbage collections of the worker processes: the CPU time each one held the worker",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25),
            registry=registry,
        )
        self.gc_pause_max = Gauge(
            "qs_gateway_gc_pause_max_seconds",
            "The longest garbage-collection pause of a live worker",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._lock = threading.Lock()
        # The labelled series of each (endpoint, method, status) seen, so that a request costs
        # two dictionary lookups fewer (and no label validation) than labels() each time.
        self._series: dict[tuple[str, str, int], tuple] = {}
        self._pool_gauges = (self.pool_size, self.sockets_open, self.sockets_in_use, self.breaker_open)
        self._pool_values: list[float | None] = [None] * len(self._pool_gauges)  # as last written
        self._timeouts_seen = 0
        self._gc_started = 0.0
        self._gc_longest = 0.0

    def watch_gc(self) -> None:
        """Time every garbage collection of this process (a pause of every thread in it)."""
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def stop_watching_gc(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        # Called with the GIL held while the collection runs: start and stop pair up. CPU time
        # of this thread, so that being descheduled by a busy machine is not counted as GC.
        if phase == "start":
            self._gc_started = time.thread_time()
            return
        pause = time.thread_time() - self._gc_started
        self.gc_pause.observe(pause)
        if pause > self._gc_longest:
            self._gc_longest = pause
            self.gc_pause_max.set(pause)

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        key = (endpoint, method, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                self.requests.labels(endpoint, method, str(status)),
                self.latency.labels(endpoint, method),
            )
        series[0].inc()
        series[1].observe(seconds)

    def sample_pool(self, pool: SocketPool) -> None:
        # Nearly every request finds nothing changed: no lock is taken for that.
        if _pool_values(pool) == self._pool_values and pool.timeouts == self._timeouts_seen:
            return
        with self._lock:
            # Only what changed is written: each write is a locked write to the metrics file.
            for index, value in enumerate(_pool_values(pool)):
                if value != self._pool_values[index]:
                    self._pool_gauges[index].set(value)
                    self._pool_values[index] = value
            timeouts = pool.timeouts
            if timeouts > self._timeouts_seen:
                self.manager_timeouts.inc(timeouts - self._timeouts_seen)
                self._timeouts_seen = timeouts

    def exposition(self) -> tuple[bytes, str]:
        """The text format of every worker's metrics, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        for _ in range(MULTIPROCESS_READ_ATTEMPTS - 1):
            try:
                return generate_latest(registry), CONTENT_TYPE_LATEST
            except struct.error:
                # a worker that has just started created its file and has not written it yet
                time.sleep(0.01)
        return generate_latest(registry), CONTENT_TYPE_LATEST


def prepare_multiprocess_dir(path: str) -> None:
    """Create the directory and remove values left by a previous run (gunicorn master, at start)."""
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))


def mark_worker_dead(pid: int) -> None:
    """Drop an exited worker's live gauges (gunicorn master, ``child_exit``); counters stay."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, os.environ.get(MULTIPROCESS_DIR_ENV))


def _pool_values(pool: SocketPool) -> list[float | None]:
    """The pool gauges' values, in the order of ``GatewayMetrics._pool_gauges``."""
    return [pool.size, pool.sockets_open, pool.sockets_in_use, 0 if pool.breaker.closed else 1]
