"""What a server costs while load runs: CPU time and resident memory of its processes, and the
latency clients polling its status see."""

from __future__ import annotations

import os
import re
import ssl
import threading
import time
from pathlib import Path

import httpx

STATUS_POLLERS = 8  # clients polling GET /api/status meanwhile, each ...
STATUS_PERIOD = 0.1  # ... every 0.1 s: 80 requests a second, the load of 80 GUIs polling once a second


def cpu_ticks(stat_text: str) -> tuple[int, int]:
    """(all, stolen) CPU ticks since boot from /proc/stat's first line: *steal* is time a
    virtual machine's CPUs were ready to run but the hypervisor ran something else."""
    fields = [int(v) for v in stat_text.splitlines()[0].split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


def stolen_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of CPU time the hypervisor took between two ``cpu_ticks`` readings."""
    elapsed = after[0] - before[0]
    return (after[1] - before[1]) / elapsed if elapsed > 0 else 0.0


def read_cpu_ticks() -> tuple[int, int]:
    return cpu_ticks(Path("/proc/stat").read_text())


def gc_pauses(metrics_url: str) -> tuple[float, int]:
    """The longest garbage-collection pause in any worker (ms) and how many exceeded 20 ms."""
    text = httpx.get(metrics_url).text
    longest = max(
        (float(v) for v in re.findall(r"^qs_gateway_gc_pause_max_seconds\S* (\S+)$", text, re.M)), default=0.0
    )
    total = sum(float(v) for v in re.findall(r"^qs_gateway_gc_pause_seconds_count\S* (\S+)$", text, re.M))
    under = sum(float(v) for v in re.findall(r'^qs_gateway_gc_pause_seconds_bucket\{le="0.02"\S* (\S+)$', text, re.M))
    return longest * 1000, int(total - under)


def requests_answered(metrics_dir: Path, pid: int, endpoint: str | None = None) -> int:
    """The requests (to ``endpoint``, a URL rule, if given) worker ``pid`` counted in its own
    metrics file (prometheus_client's multiprocess mode keeps one file per process)."""
    from prometheus_client.multiprocess import MultiProcessCollector

    path = metrics_dir / f"counter_{pid}.db"
    if not path.exists():
        return 0
    total = 0
    for metric in MultiProcessCollector.merge([str(path)], accumulate=True):
        if metric.name == "qs_gateway_requests":
            total += sum(
                int(s.value)
                for s in metric.samples
                if s.name.endswith("_total") and endpoint in (None, s.labels.get("endpoint"))
            )
    return int(total)


class ProcessUsage:
    """CPU time and peak resident memory of a process and its children (gunicorn's workers)."""

    TICKS = os.sysconf("SC_CLK_TCK")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak: dict[int, float] = {}
        self._stop = threading.Event()

    def pids(self) -> list[int]:
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        return [self.pid, *map(int, children)]

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / self.TICKS

    @staticmethod
    def rss_mb(pid: int) -> float:
        status = Path(f"/proc/{pid}/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0]) / 1024

    def workers_now(self) -> list[float]:
        """Resident memory of the workers now (of the process itself when it has none)."""
        pids = self.pids()
        return [self.rss_mb(pid) for pid in (pids[1:] or pids)]

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            for pid in self.pids():
                try:
                    self.peak[pid] = max(self.peak.get(pid, 0.0), self.rss_mb(pid))
                except OSError:
                    pass  # a worker that just exited

    def __enter__(self) -> ProcessUsage:
        self._stop = threading.Event()
        self._cpu, self._began = self.cpu_seconds(), time.monotonic()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu_percent = 100 * (self.cpu_seconds() - self._cpu) / (time.monotonic() - self._began)
        self._stop.set()
        self._thread.join()

    def worker_peaks(self) -> list[float]:
        """Peak RSS of the workers (of the process itself when it has none)."""
        workers = [mb for pid, mb in self.peak.items() if pid != self.pid]
        return workers or [self.peak.get(self.pid, 0.0)]


class StatusPoller(threading.Thread):
    """Clients that poll ``GET /api/status`` at a steady rate, as GUIs do, each on its own
    kept-alive connection: the latency a user sees while the streams run (how many requests
    the gateway can answer is the HTTP table's business)."""

    def __init__(self, url: str, api_key: str, cafile: str | None, seconds: float) -> None:
        super().__init__(daemon=True)
        self.url, self.seconds = url, seconds
        self.headers = {"Authorization": f"ApiKey {api_key}"}
        self.verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=cafile) if cafile else True
        self.latencies: list[float] = []
        self.failures = 0

    def run(self) -> None:
        pollers = [threading.Thread(target=self._poll, args=(i * STATUS_PERIOD / STATUS_POLLERS,))
                   for i in range(STATUS_POLLERS)]  # fmt: skip
        for poller in pollers:
            poller.start()
        for poller in pollers:
            poller.join()

    def _poll(self, offset: float) -> None:
        time.sleep(offset)
        end = time.monotonic() + self.seconds
        with httpx.Client(verify=self.verify, headers=self.headers, timeout=10) as client:
            next_at = time.monotonic()
            while next_at < end:
                began = time.perf_counter()
                try:
                    ok = client.get(self.url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.latencies.append((time.perf_counter() - began) * 1000)
                self.failures += not ok
                next_at += STATUS_PERIOD
                time.sleep(max(0.0, next_at - time.monotonic()))

    def p99(self) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[max(0, int(len(ordered) * 0.99) - 1)]


class Watch:
    """While the window lasts: the server's CPU and memory, nginx's and the clients' CPU, and
    the latency of clients polling the status."""

    def __init__(self, server_pid: int, others: dict[str, int], poller: StatusPoller) -> None:
        self.server = ProcessUsage(server_pid)
        self.others = {name: ProcessUsage(pid) for name, pid in others.items()}
        self.poller = poller

    def __enter__(self) -> Watch:
        self._before = {name: usage.cpu_seconds() for name, usage in self.others.items()}
        self._began = time.monotonic()
        self.server.__enter__()
        self.poller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.poller.join()
        self.server.__exit__(*exc)
        elapsed = time.monotonic() - self._began
        self.other_cpu = {
            name: 100 * (usage.cpu_seconds() - self._before[name]) / elapsed for name, usage in self.others.items()
        }
