"""Running wrk (Debian's package) and reading its figures."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


@dataclass
class Result:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers plus socket errors


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * _UNITS[unit]


def run(
    url: str,
    *,
    connections: int,
    seconds: float,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: bytes | None = None,
) -> Result:
    if shutil.which("wrk") is None:
        raise FileNotFoundError("wrk is not installed (apt-get install wrk)")
    script_lines = [f'wrk.method = "{method}"']
    for name, value in (headers or {}).items():
        script_lines.append(f'wrk.headers["{name}"] = "{value}"')
    if body is not None:
        script_lines.append('wrk.headers["Content-Type"] = "application/json"')
        script_lines.append(f"wrk.body = [==[{body.decode()}]==]")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(script_lines) + "\n")
    try:
        threads = min(2, connections)
        output = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        Path(script.name).unlink()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = _ms(re.search(r"\s50%\s+(\S+)", output).group(1))
    p99 = _ms(re.search(r"\s99%\s+(\S+)", output).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return Result(rate, p50, p99, errors)


def ceiling(url: str, *, connections: int, seconds: float, runs: int = 2) -> Result:
    """The better of ``runs`` runs, for a ceiling (the framework floor): stock gthread may give all
    of wrk's connections to one of its workers (the gateway's worker takes turns,
    qs_gateway/serving/turns.py), which would halve the ceiling and flatter what is compared with it."""
    results = [run(url, connections=connections, seconds=seconds) for _ in range(runs)]
    return max(results, key=lambda result: result.requests_per_second)
