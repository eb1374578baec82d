"""The suite's own promise: a test that fails, or a run that is stopped by a signal, leaves no
process of its fixtures behind. A small test file is run by pytest in a child process, with this
suite's fixtures (RE Manager with its Redis, or Redis alone); everything that child starts is
watched."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .processes import TreeWatcher, living_in_groups
from .support import wait_for

REPOSITORY = Path(__file__).parents[1]

INNER_TESTS = textwrap.dedent(
    """
    import threading

    def test_fails_while_the_services_run(re_manager):
        print("SERVICES UP", flush=True)
        assert False, "fails on purpose"

    def test_waits_for_a_signal(redis_port):
        print("SERVICES UP", flush=True)
        threading.Event().wait()  # until the run is stopped
    """
)


def run_inner(tmp_path: Path, test: str) -> tuple[subprocess.Popen, TreeWatcher]:
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    command = [
        sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q", "-s",
        f"--basetemp={tmp_path / 'inner'}", f"{tmp_path / 'test_inner.py'}::{test}",
    ]  # fmt: skip
    inner = subprocess.Popen(
        command, cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    return inner, TreeWatcher(inner.pid)


@pytest.fixture
def inner_runs():
    """Whatever happens here, nothing of the inner runs is left afterwards."""
    runs: list[tuple[subprocess.Popen, TreeWatcher]] = []
    yield runs
    for inner, watcher in runs:
        watcher.kill_all()
        inner.kill()
        inner.wait()


def test_a_failing_test_leaves_no_process_behind(tmp_path, inner_runs):
    inner, watcher = run_inner(tmp_path, "test_fails_while_the_services_run")
    inner_runs.append((inner, watcher))
    output, _ = inner.communicate(timeout=300)
    assert inner.returncode == 1 and "fails on purpose" in output, output
    assert len(watcher.groups - {inner.pid}) >= 2, "Redis and RE Manager were not seen running"
    wait_for(lambda: not living_in_groups(watcher.groups), 30, "every process of the run to end")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda sig: signal.Signals(sig).name)
def test_a_run_stopped_by_a_signal_leaves_no_process_behind(tmp_path, inner_runs, sig):
    inner, watcher = run_inner(tmp_path, "test_waits_for_a_signal")
    inner_runs.append((inner, watcher))
    lines = []
    for line in inner.stdout:  # the run's own deadlines bound this: Redis starts within 10 s
        lines.append(line)
        if "SERVICES UP" in line:
            break
    assert "SERVICES UP" in "".join(lines), "".join(lines)
    inner.send_signal(sig)
    output, _ = inner.communicate(timeout=120)
    assert inner.returncode == pytest.ExitCode.INTERRUPTED, "".join(lines) + output
    wait_for(lambda: not living_in_groups(watcher.groups), 30, "every process of the run to end")


# scripts/conformance runs the reference's suites, whose own fixtures start RE Manager and whose
# server fixtures (ours) start gateways in sessions of their own: stopping the run stops them all.

SIGINT_ENDS_THE_LEADER_ONLY = textwrap.dedent(
    """
    import signal, subprocess, sys, threading
    subprocess.Popen(["sleep", "600"])  # stays behind when the leader ends, as RE Manager would
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    print("UP", flush=True)
    threading.Event().wait()
    """
)


def test_the_conformance_runner_interrupts_pytest_then_stops_the_rest_of_its_group():
    from conformance.run import _stop_group

    leader = subprocess.Popen([sys.executable, "-c", SIGINT_ENDS_THE_LEADER_ONLY], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)  # fmt: skip
    try:
        assert leader.stdout.readline().strip() == "UP"
        assert len(living_in_groups({leader.pid})) == 2
        _stop_group(leader.pid, leader, interrupt_first=True)
        assert leader.returncode == 0, "the leader was not asked with SIGINT first"
        assert not living_in_groups({leader.pid})
    finally:
        subprocess.run(["pkill", "-KILL", "-g", str(leader.pid)])
        leader.wait()


def test_the_conformance_runner_stops_the_gateways_that_pytest_left_behind(tmp_path):
    from conformance.run import _stop_recorded_groups

    orphan = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        (tmp_path / "gateway-1-1").write_text(str(orphan.pid))
        _stop_recorded_groups(tmp_path)
        assert orphan.wait(30) == -signal.SIGTERM
        assert not list(tmp_path.iterdir())
    finally:
        orphan.kill()
        orphan.wait()


STOPPED_RUN = textwrap.dedent(
    """
    import threading
    from conformance.run import Stopped, _stop_on_signals
    _stop_on_signals()
    try:
        print("UP", flush=True)
        threading.Event().wait()
    except Stopped as stop:
        print("STOPPED BY", stop, flush=True)
    finally:
        print("CLEANED UP", flush=True)
    """
)


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda sig: signal.Signals(sig).name
)
def test_a_stop_signal_runs_the_conformance_runners_clean_up(sig):
    run = subprocess.Popen([sys.executable, "-c", STOPPED_RUN], cwd=REPOSITORY, stdout=subprocess.PIPE, text=True,
                           start_new_session=True)  # fmt: skip
    try:
        assert run.stdout.readline().strip() == "UP"
        run.send_signal(sig)
        output, _ = run.communicate(timeout=60)
        assert output.split("\n")[:2] == [f"STOPPED BY {signal.Signals(sig).name}", "CLEANED UP"], output
    finally:
        run.kill()
        run.wait()
