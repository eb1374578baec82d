"""``scripts/conformance [core|access|console|fs|client|core4|all ...]``: the reference's suites.

Copies the test modules that bluesky-httpserver and bluesky-queueserver-api ship inside their
packages, unchanged, into a temporary folder and runs them with the reference's pinned
packages, with only their server fixtures replaced (:mod:`conformance.gateway_server`): the
server under test is qs-gateway from the plain install, under gunicorn. Prints a table (suite,
passed, failed, time) and every failing test with its message; exits 1 if anything failed.

The suites' RE Manager fixtures run ``start-re-manager`` on ports 60615/60625 with Redis on
127.0.0.1:6379, and the server is expected on 60610: those ports must be free (a Redis already on
6379 is used; if none answers there, a private one is started for the run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conformance.environments import plain_gateway, reference_packages

HERE = Path(__file__).resolve().parent
HTTPSERVER_TESTS = "bluesky_httpserver/tests"
API_TESTS = "bluesky_queueserver_api/tests"

# Our conftest beside the copied bluesky-httpserver modules (some import ``from .conftest``): the
# reference's conftest as it is, with the server fixtures the plugin has already patched into it.
HTTPSERVER_CONFTEST = '''"""bluesky-httpserver's conftest; its server fixtures: conformance/gateway_server.py."""
import bluesky_httpserver.tests.conftest as _reference

globals().update({name: value for name, value in vars(_reference).items() if not name.startswith("__")})
'''


@dataclass(frozen=True)
class Suite:
    name: str
    package_tests: str  # where the modules are, inside site-packages
    modules: tuple[str, ...]
    workers: int = 1
    select: str = ""  # pytest -k
    support: tuple[str, ...] = ()  # files copied beside the modules, unchanged
    description: str = ""


SUITES = {
    suite.name: suite
    for suite in (
        Suite("core", HTTPSERVER_TESTS, ("test_core_api_main.py",), description="bluesky-httpserver core API"),
        Suite("access", HTTPSERVER_TESTS, ("test_access_control.py", "test_auth_api.py"),
              description="bluesky-httpserver authentication and access control"),
        Suite("console", HTTPSERVER_TESTS, ("test_console_output.py", "test_system_info_socket.py"), workers=4,
              description="bluesky-httpserver console and status streams, 4 gunicorn workers"),
        Suite("fs", HTTPSERVER_TESTS, ("test_core_api_fs.py",), description="bluesky-httpserver spreadsheets"),
        Suite("client", API_TESTS, ("test_api.py",), select="HTTP", support=("conftest.py", "common.py"),
              description="bluesky-queueserver-api, every HTTP case"),
        Suite("core4", HTTPSERVER_TESTS, ("test_core_api_main.py",), workers=4,
              description="bluesky-httpserver core API, 4 gunicorn workers"),
    )
}  # fmt: skip
CI_SUBSET = ("core", "access", "console", "fs")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Result:
    suite: Suite
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _private_redis() -> subprocess.Popen | None:
    """A Redis on 6379 for the run, unless one answers there already."""
    if _listening(6379):
        return None
    redis = subprocess.Popen(
        ["redis-server", "--port", "6379", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not _listening(6379):
        if redis.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("conformance: could not start redis-server on 127.0.0.1:6379")
        time.sleep(0.05)
    return redis


class Stopped(Exception):
    """A stop signal arrived: the ``finally`` clauses stop everything this run started."""


def _stop_on_signals() -> None:
    """SIGINT, SIGTERM and SIGHUP end the run through its ``finally`` clauses, once."""

    def stop(signum: int, _frame: object) -> None:
        for name in STOP_SIGNALS:  # a second signal must not cut the clean-up short
            signal.signal(name, signal.SIG_IGN)
        raise Stopped(signal.Signals(signum).name)

    for name in STOP_SIGNALS:
        signal.signal(name, stop)


def _stop_group(pgid: int, process: subprocess.Popen | None = None, interrupt_first: bool = False) -> None:
    """Stops a process group: SIGTERM, then SIGKILL, and waits for all of it to go.

    With ``interrupt_first`` the group's first process (``process``) gets a SIGINT before, as a
    person's Ctrl-C, and a minute to end (pytest runs its finalizers then, which stop the gateways).
    """
    if interrupt_first and process is not None and process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            pass
    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return  # nothing of the group is left
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if process is not None:
                process.poll()  # reaps our own child: a zombie still counts as a member of the group
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def _stop_recorded_groups(groups: Path) -> None:
    """The gateways whose pytest could not stop them (it was killed before its finalizers ran)."""
    for record in groups.iterdir():
        _stop_group(int(record.read_text()))
        record.unlink()


def _site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                         check=True, capture_output=True, text=True)  # fmt: skip
    return Path(out.stdout.strip())


def _lay_out(suite: Suite, site: Path, workdir: Path) -> Path:
    """The suite's modules, unchanged, in a package of their own under ``workdir``."""
    folder = workdir / suite.name
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for name in suite.modules + suite.support:
        shutil.copyfile(site / suite.package_tests / name, folder / name)
    if suite.package_tests == HTTPSERVER_TESTS:
        (folder / "conftest.py").write_text(HTTPSERVER_CONFTEST)
    return folder


def _read_junit(path: Path, result: Result) -> None:
    """Counts tests, not reports: a test that fails and then errors in its teardown is one failure."""
    if not path.exists():
        result.failures.append(("(the whole suite)", "pytest wrote no report: it did not run"))
        result.failed += 1
        return
    outcomes: dict[str, str] = {}
    for case in ElementTree.parse(path).iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            if outcomes.get(test_id) != "failed":
                message = (problem.get("message") or problem.text or "").strip().splitlines()
                result.failures.append((test_id, message[0][:300] if message else ""))
            outcomes[test_id] = "failed"
        elif case.find("skipped") is not None:
            outcomes.setdefault(test_id, "skipped")
        else:
            outcomes.setdefault(test_id, "passed")
    outcomes_list = list(outcomes.values())
    result.passed, result.failed = outcomes_list.count("passed"), outcomes_list.count("failed")
    result.skipped = outcomes_list.count("skipped")


def run_suite(suite: Suite, python: Path, gateway_python: Path, site: Path, workdir: Path, extra: list[str]) -> Result:
    folder = _lay_out(suite, site, workdir)
    logs = workdir / f"{suite.name}-logs"
    logs.mkdir()
    groups = workdir / f"{suite.name}-process-groups"
    groups.mkdir()
    report = workdir / f"{suite.name}.xml"
    env = {
        **os.environ,
        "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}",  # start-re-manager of the reference
        "PYTHONPATH": str(HERE),
        "QS_CONFORMANCE_GATEWAY_PYTHON": str(gateway_python),
        "QS_CONFORMANCE_WORKERS": str(suite.workers),
        "QS_CONFORMANCE_LOGS": str(logs),
        "QS_CONFORMANCE_GROUPS": str(groups),
    }
    command = [str(python), "-m", "pytest", str(folder), "-p", "gateway_server", "-p", "no:cacheprovider",
               "-o", "addopts=", "--timeout=600", "-q", "-rN", "--tb=short", "--show-capture=no",
               f"--junitxml={report}", *extra]  # fmt: skip
    if suite.select:
        command += ["-k", suite.select]
    print(f"\n== {suite.name}: {suite.description}", flush=True)
    started = time.monotonic()
    # pytest in a session of its own: the reference's fixtures start RE Manager in its group, and
    # all of that group is stopped when the suite ends or this run is stopped. SIGINT first, as a
    # person's Ctrl-C, so that pytest runs its finalizers (which stop the gateways).
    pytest = subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        pytest.wait()
    finally:
        _stop_group(pytest.pid, pytest, interrupt_first=True)
        _stop_recorded_groups(groups)
    result = Result(suite, seconds=time.monotonic() - started)
    _read_junit(report, result)
    return result


def print_table(results: list[Result]) -> None:
    print("\n| suite | passed | failed | time |\n|---|---|---|---|")
    for r in results:
        print(f"| {r.suite.name} ({r.suite.description}) | {r.passed} | {r.failed} | {r.seconds / 60:.1f} min |")
    for r in results:
        for test_id, message in r.failures:
            print(f"FAILED [{r.suite.name}] {test_id}: {message}")
    total_passed, total_failed = sum(r.passed for r in results), sum(r.failed for r in results)
    print(f"conformance: {total_passed} passed, {total_failed} failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/conformance", description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"{', '.join(SUITES)} or all (default: "
                        f"{' '.join(CI_SUBSET)})")  # fmt: skip
    parser.add_argument("--pytest", action="append", default=[], help="an extra pytest argument (repeatable)")
    parser.add_argument("--keep", metavar="DIR", help="lay the suites out in DIR and keep them and the gateways' logs")
    args = parser.parse_args(argv)
    names = args.suites or list(CI_SUBSET)
    if "all" in names:
        names = list(SUITES)
    unknown = [name for name in names if name not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s): {', '.join(unknown)}")
    _stop_on_signals()
    busy = [port for port in (60610, 60615, 60625) if _listening(port)]
    if busy:
        raise SystemExit(f"conformance: ports {busy} are in use; the reference's suites need 60610, 60615 and 60625")
    print("Preparing .venv-plain (pip install .) and .venv-conformance (the reference's packages) ...", flush=True)
    gateway_python, python = plain_gateway(), reference_packages()
    site = _site_packages(python)
    redis, results = None, []
    try:
        redis = _private_redis()
        with tempfile.TemporaryDirectory(prefix="qs-conformance-") as temporary:
            workdir = Path(args.keep or temporary)
            workdir.mkdir(parents=True, exist_ok=True)
            for name in names:
                results.append(run_suite(SUITES[name], python, gateway_python, site, workdir, args.pytest))
    finally:
        if redis is not None:
            _stop_group(redis.pid, redis)
    print_table(results)
    return 1 if any(r.failed for r in results) or not results else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Stopped as stop:
        sys.exit(f"conformance: stopped by {stop}; everything it started has been stopped")
