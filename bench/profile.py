"""``scripts/bench --profile``: where the time of one ``GET /api/status`` goes, in µs per request.

The gateway runs as in the benchmark (2 workers × 16 threads, metrics on). While wrk loads
``/api/status`` at 32 connections, py-spy records one worker twice:

* **CPU**: only the thread that holds the GIL at each sample (``--gil``). A worker's threads
  share one GIL, so this is the Python work that bounds a worker's requests per second.
* **wall**: every request thread at each sample, running or waiting (``--idle``), while it
  serves a request (threads idle in the pool are left out). This is where a request spends its
  time in the worker, waiting for Redis or for the GIL included.

Each sample's stack is put in one group (:data:`GROUPS`), and a group's cost per request is its
samples × the sampling interval / the requests that worker answered in that recording (read
from its own metrics file).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from qs_gateway.serving.stack import ManagedProcess

from . import wrk

# Checked from the innermost frame outwards; the first group a frame belongs to takes the
# sample. The standard library and the framework are passed through (their time belongs to
# whoever called them), except the modules named here.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Redis (client and round trips)", ("/redis/", "qs_gateway/redis_", "/limits/")),
    ("ZeroMQ to RE Manager", ("/zmq/", "qs_gateway/transport/")),
    (
        "serialisation (orjson, json, marshmallow)",
        ("orjson", "/json/", "/marshmallow/", "qs_gateway/manager/reply.py", "qs_gateway/api/payload.py"),
    ),  # fmt: skip
    ("logging", ("/logging/", "qs_gateway/logs.py", "qs_gateway/redact.py")),
    ("metrics (prometheus_client)", ("/prometheus_client/", "qs_gateway/metrics.py")),
    ("authentication (credentials, scopes)", ("qs_gateway/auth/", "qs_gateway/api/access.py", "/hmac.py")),
    (
        "our hooks (ids, headers, CSRF, cookies, CORS, log line)",
        ("qs_gateway/api/hooks.py", "qs_gateway/observability.py", "qs_gateway/api/browser.py", "/flask_cors/"),
    ),
    ("views (declare, status cache, manager client)", ("qs_gateway/",)),
    ("worker's own reading (event loop, pacing)", ("qs_gateway/serving/",)),
    ("gunicorn (parsing, response, thread pool)", ("/gunicorn/",)),
)
FRAMEWORK = "framework (Flask, werkzeug)"
FRAMEWORK_PATHS = ("/flask/", "/werkzeug/")
# Our code around the framework (as a server is): what the framework does under it is the framework's.
WRAPPERS = ("_serve_paced", "MetricsListener", "__call__")
OTHER = "other (interpreter, threads, sockets)"
SERVING_FRAME = "_WorkItem.run"  # in the stack of a pool thread that serves a request
SERVER_GROUPS = ("worker's own reading (event loop, pacing)", "gunicorn (parsing, response, thread pool)")
# py-spy's collapsed stacks: "frame;frame;... count", a frame being "function (file:line)"
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _group_of_path(path: str) -> str | None:
    path = "/" + path.replace("\\", "/")  # py-spy names files from their package: "flask/app.py"
    if any(part in path for part in FRAMEWORK_PATHS):
        return FRAMEWORK
    for name, parts in GROUPS:
        if any(part in path for part in parts):
            if name.startswith("views") and "qs_gateway/serving/" in path:
                continue  # the serving package is the worker's, not a view's
            return name
    return None


def group_of(frames: list[str]) -> tuple[str, str]:
    """The group of one sampled stack (outermost frame first) and the frame that decided it."""
    under_framework = False
    for frame in reversed(frames):
        match = _FRAME.match(frame.strip())
        function, path = (match["function"], match["file"]) if match else (frame, "")
        group = _group_of_path(path)
        if group is None:
            continue
        if group == FRAMEWORK:
            under_framework = True
            continue
        if under_framework and (group in SERVER_GROUPS or function.split(".")[-1] in WRAPPERS):
            return FRAMEWORK, frame  # the framework as the server calls it
        return group, frame
    return (FRAMEWORK if under_framework else OTHER), frames[-1] if frames else ""


@dataclass
class Recording:
    requests: int
    samples: Counter[str]
    frames: dict[str, Counter[str]]
    process_cpu_seconds: float = 0.0  # what the kernel charged the worker meanwhile (user + system)

    @property
    def process_cpu_micros(self) -> float:
        return self.process_cpu_seconds * 1e6 / self.requests


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Breakdown:
    seconds: float
    interval: float
    cpu: Recording
    wall: Recording

    def micros(self, recording: Recording, samples: int) -> float:
        return samples * self.interval * 1e6 / recording.requests if recording.requests else 0.0

    def table(self) -> str:
        lines = [
            "| group | CPU µs per request (GIL held) | wall µs per request (request thread) | where most of it is |",
            "|---|---|---|---|",
        ]
        groups = sorted(set(self.cpu.samples) | set(self.wall.samples), key=lambda g: -self.cpu.samples[g])
        for name in groups:
            top = [f for rec in (self.cpu, self.wall) for f, _ in rec.frames.get(name, Counter()).most_common(2)]
            where = ", ".join(dict.fromkeys(_short(frame) for frame in top))
            cpu, wall = self.micros(self.cpu, self.cpu.samples[name]), self.micros(self.wall, self.wall.samples[name])
            lines.append(f"| {name} | {cpu:,.0f} | {wall:,.0f} | {where} |")
        cpu, wall = (self.micros(rec, sum(rec.samples.values())) for rec in (self.cpu, self.wall))
        lines.append(f"| **all** | **{cpu:,.0f}** | **{wall:,.0f}** | |")
        return "\n".join(lines)


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return f"`{frame[:60]}`"
    path = match["file"]
    for marker in ("site-packages/", "qs_gateway/", "lib/python3"):
        if marker in path:
            path = path[path.index(marker) :].removeprefix("site-packages/")
            break
    return f"`{match['function']}` ({path})"


def read_collapsed(path: Path, *, serving_only: bool) -> tuple[Counter[str], dict[str, Counter[str]]]:
    """Samples per group, and per deciding frame. ``serving_only``: only the stacks of a pool
    thread serving a request (with ``--idle``, the others wait for work or for connections)."""
    samples: Counter[str] = Counter()
    frames: dict[str, Counter[str]] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        if serving_only and SERVING_FRAME not in stack:
            continue
        names = [frame for frame in stack.split(";") if not frame.startswith(("process ", "thread "))]
        group, frame = group_of(names)
        samples[group] += int(count)
        frames.setdefault(group, Counter())[frame] += int(count)
    return samples, frames


def py_spy() -> str:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else "py-spy"


def _record(pid: int, mode: str, answered: Callable[[], int], workdir: Path, args: argparse.Namespace) -> Recording:
    output = workdir / f"profile-{pid}-{mode}.txt"
    command = [py_spy(), "record", "--pid", str(pid), "--format", "raw", "--rate", str(args.profile_rate),
               "--duration", str(round(args.seconds)), "--output", str(output), f"--{mode}"]  # fmt: skip
    if not args.profile_blocking:
        command.append("--nonblocking")  # pausing a worker 250 times a second slows it several times
    recorder = ManagedProcess("py-spy", command, workdir / "py-spy.log")
    before, cpu_before = answered(), process_cpu_seconds(pid)
    recorder.start()
    try:
        recorder.popen.wait(timeout=args.seconds + 60)
    except subprocess.TimeoutExpired:
        recorder.stop()
        raise RuntimeError(f"py-spy did not finish; see {recorder.log_path}") from None
    after, cpu_after = answered(), process_cpu_seconds(pid)
    if not output.exists():
        raise RuntimeError(f"py-spy recorded nothing: {recorder.log_path.read_text()[-500:]}")
    samples, frames = read_collapsed(output, serving_only=mode == "idle")
    return Recording(max(1, after - before), samples, frames, cpu_after - cpu_before)


def profile(
    url: str, headers: dict[str, str], worker_pid: int, answered: Callable[[], int], workdir: Path,
    args: argparse.Namespace,
) -> Breakdown:  # fmt: skip
    """Load ``url`` with wrk while py-spy records ``worker_pid`` (CPU, then wall); the breakdown.
    ``answered()`` is how many requests the worker has answered so far."""
    load = threading.Thread(
        target=lambda: wrk.run(url, connections=32, seconds=2 * args.seconds + 4, headers=headers), daemon=True
    )
    load.start()
    threading.Event().wait(1.0)  # wrk's connections are open and busy when the recording starts
    cpu = _record(worker_pid, "gil", answered, workdir, args)
    wall = _record(worker_pid, "idle", answered, workdir, args)
    load.join()
    return Breakdown(seconds=args.seconds, interval=1.0 / args.profile_rate, cpu=cpu, wall=wall)


def floor_answered(floor_url: str, pid: int) -> int:
    """Requests the floor's worker ``pid`` answered: asked on new connections until it answers."""
    for _ in range(200):
        with httpx.Client() as client:
            answer_pid, count = client.get(f"{floor_url}/served").text.split()
        if int(answer_pid) == pid:
            return int(count)
    raise RuntimeError(f"the floor's worker {pid} did not answer")


def worker_pids(master_pid: int) -> list[int]:
    return [int(pid) for pid in Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()]


def charged(gateway: Breakdown, floor: Breakdown) -> str:
    """What the kernel charged each sampled worker per request, against what py-spy saw of it."""
    ours, theirs = gateway.cpu.process_cpu_micros or 1e-9, floor.cpu.process_cpu_micros or 1e-9
    ours_sampled = gateway.micros(gateway.cpu, sum(gateway.cpu.samples.values())) / ours
    theirs_sampled = floor.micros(floor.cpu, sum(floor.cpu.samples.values())) / theirs
    return (
        "What the kernel charged the sampled worker (user + system time of all its threads, from /proc) "
        f"during the CPU recording: gateway **{ours:,.0f} µs** per request, floor **{theirs:,.0f} µs** "
        f"(the floor's over the gateway's: {theirs / ours:.2f}); the samples with the GIL held account "
        f"for {ours_sampled:.0%} and {theirs_sampled:.0%} of it."
    )


def report(path: str, gateway: Breakdown, floor: Breakdown) -> str:
    def line(what: str, breakdown: Breakdown) -> str:
        return (
            f"{what}: {breakdown.cpu.requests:,} and {breakdown.wall.requests:,} requests answered by the sampled "
            f"worker in the two recordings of {breakdown.seconds:g} s"
        )

    def total(breakdown: Breakdown, recording: Recording) -> float:
        return breakdown.micros(recording, sum(recording.samples.values()))

    floor_parts = ", ".join(f"{name} {floor.micros(floor.cpu, n):,.0f}" for name, n in floor.cpu.samples.most_common())
    return (
        f"`GET {path}` at 32 connections, one worker of 2 (16 threads) sampled by py-spy at "
        f"{1 / gateway.interval:g} Hz, {os.cpu_count()} CPUs\n"
        f"{line('gateway', gateway)}\n{line('floor (bare Flask, stock gthread)', floor)}\n\n"
        f"{gateway.table()}\n\n"
        f"The framework floor under the same load: **{total(floor, floor.cpu):,.0f} µs** CPU per request "
        f"({floor_parts}); **{total(floor, floor.wall):,.0f} µs** wall in a request thread.\n\n"
        f"{charged(gateway, floor)}"
    )
