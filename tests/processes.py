"""Processes, seen in /proc: the process table, the tree below a process, what is left alive in
process groups, and a watcher that records every group a process tree used, so that a test can
check none is left behind (and a finalizer can kill what is)."""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    pgid: int
    state: str  # "Z": exited, not yet reaped


def process_table() -> dict[int, ProcessInfo]:
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                # the command may hold spaces and parentheses: the fields start after the last ")"
                state, ppid, pgid = stat.read().rpartition(")")[2].split()[:3]
        except (OSError, ValueError):
            continue  # gone meanwhile
        table[int(entry.name)] = ProcessInfo(int(entry.name), int(ppid), int(pgid), state)
    return table


def tree_of(pid: int, table: dict[int, ProcessInfo]) -> list[ProcessInfo]:
    """The process ``pid`` and all its descendants."""
    found = [table[pid]] if pid in table else []
    for info in found:
        found += [child for child in table.values() if child.ppid == info.pid]
    return found


def living_in_groups(groups: set[int]) -> list[ProcessInfo]:
    """The processes (not zombies) of these process groups."""
    return [info for info in process_table().values() if info.pgid in groups and info.state != "Z"]


class TreeWatcher:
    """Records, until stopped, the process groups of a process and of everything it starts (also
    what it starts and stops again while watched), to check later that none of them is left."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.groups: set[int] = set()
        self.descendants_seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            tree = tree_of(self.pid, process_table())
            if not tree:
                return
            self.groups |= {info.pgid for info in tree}
            self.descendants_seen = max(self.descendants_seen, len(tree) - 1)
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def kill_all(self) -> None:
        """For a finalizer: SIGKILL to every group seen (our test's, never another's)."""
        self.stop()
        for group in self.groups - {os.getpgid(0)}:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
