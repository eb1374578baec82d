"""Reviewed queue submissions and idempotency keys, kept in Redis (no HTTP, no Flask).

``store`` holds submissions and moves them between states atomically (Lua scripts), so that
any number of workers on any number of hosts decide on a submission exactly once;
``idempotency`` remembers the first answer to a request that carried an ``Idempotency-Key``.
"""

from .idempotency import IdempotencyStore, Remembered
from .store import STATES, Submission, SubmissionStore, TransitionRefused

__all__ = ["STATES", "IdempotencyStore", "Remembered", "Submission", "SubmissionStore", "TransitionRefused"]
