"""Turns at accepting connections: a worker takes a new connection only if no other worker holds
fewer, so that connections are spread over the workers instead of piling onto one.

Every worker waits on the same listening socket and the kernel wakes them all for a new
connection; whichever runs first takes it, and takes every connection of a burst before the
others are scheduled (wrk's connections, nginx's pool of kept-alive upstream connections, a
crowd of viewers reconnecting after a restart). Kept-alive connections stay where they landed:
one worker then serves the load on one core while the other idles (the benchmark's "rounds that
collapse", half the throughput).

Here the master keeps a small table in memory it shares with its workers (an anonymous shared
mapping, made before the first fork): a slot per worker with its pid and the number of
connections it holds, written by the worker as the number changes. A worker whose listener
becomes readable while another holds fewer connections lets it take the connection, and looks
again after ``RECHECK_SECONDS``; after ``YIELD_AT_MOST_SECONDS`` of yielding (the other worker is
stopped, or starved of CPU) it takes the connection itself. A new connection thus waits at most
that long, only when the workers are unevenly loaded; when they are even, none waits.

Without the table (the worker run with another gunicorn configuration) a worker accepts as
gthread does.
"""

from __future__ import annotations

import mmap

RECHECK_SECONDS = 0.001
YIELD_AT_MOST_SECONDS = 0.010
_FREE, _RESERVED = 0, -1  # a slot's pid before its worker claimed it (reserved by the master)


class ConnectionCounts:
    """Per-worker connection counts in memory shared over fork (no lock: each slot has one
    writer, and a stale read only makes a turn less fair for a moment)."""

    def __init__(self, slots: int) -> None:
        self._memory = mmap.mmap(-1, slots * 16)  # anonymous and MAP_SHARED: children see our pages
        self._pids = memoryview(self._memory)[: slots * 8].cast("q")
        self._counts = memoryview(self._memory)[slots * 8 :].cast("q")

    @property
    def slots(self) -> int:
        return len(self._pids)

    # -- in the master ---------------------------------------------------------------------------

    def reserve(self) -> int | None:
        """A free slot for the worker about to be forked (None if all are taken: that worker
        then accepts as gthread does and the others do not wait for it)."""
        for slot, pid in enumerate(self._pids):
            if pid == _FREE:
                self._pids[slot], self._counts[slot] = _RESERVED, 0
                return slot
        return None

    def release(self, slot: int) -> None:
        """The worker has exited."""
        self._pids[slot], self._counts[slot] = _FREE, 0

    # -- in a worker -----------------------------------------------------------------------------

    def claim(self, slot: int, pid: int) -> None:
        self._counts[slot] = 0
        self._pids[slot] = pid

    def withdraw(self, slot: int) -> None:
        """The worker no longer accepts (it stops): the others must not wait for it."""
        self._pids[slot] = _RESERVED

    def hold(self, slot: int, count: int) -> None:
        self._counts[slot] = count

    def another_holds_fewer(self, slot: int, count: int) -> bool:
        pids, counts = self._pids, self._counts
        return any(counts[i] < count and pids[i] > 0 and i != slot for i in range(len(pids)))


_table: ConnectionCounts | None = None


def share_counts(workers: int) -> ConnectionCounts:
    """In the master, before any worker is forked (gunicorn's ``on_starting``). Room for the
    workers that replace others and for more added with TTIN."""
    global _table
    if _table is None:
        _table = ConnectionCounts(max(16, 4 * workers))
    return _table


def shared_counts() -> ConnectionCounts | None:
    return _table


def reserve_slot(worker: object) -> None:
    """gunicorn's ``pre_fork`` (in the master): the worker takes its slot number along."""
    worker.accept_slot = _table.reserve() if _table is not None else None  # type: ignore[attr-defined]


def release_slot(worker: object) -> None:
    """gunicorn's ``child_exit`` (in the master)."""
    slot = getattr(worker, "accept_slot", None)
    if _table is not None and slot is not None:
        _table.release(slot)
