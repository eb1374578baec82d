"""Reviewed submissions and idempotency keys (see docs/agents.md)."""

from __future__ import annotations

from dataclasses import dataclass

from .options import setting
from .parsers import number


@dataclass(frozen=True)
class SubmissionSettings:
    """Reviewed submissions and idempotency keys

    How long a submission waits for review and is kept once decided, and how long an
    `Idempotency-Key` is remembered; see [Reviewed submissions](agents.md#reviewed-submissions).
    """

    submission_expiry_seconds: float = setting(
        "submission_expiry_seconds",
        "QS_GATEWAY_SUBMISSION_EXPIRY_SECONDS",
        86_400.0,
        number(float, minimum=1.0),
        "Seconds a submission stays pending; then it is `expired` and can no longer be approved.",
        unit="s",
    )
    submission_retention_seconds: float = setting(
        "submission_retention_seconds",
        "QS_GATEWAY_SUBMISSION_RETENTION_SECONDS",
        7 * 86_400.0,
        number(float, minimum=60.0),
        "Seconds a decided (approved, denied, withdrawn, expired) submission is kept for `/api/queue/submission/get`.",
        unit="s",
    )
    idempotency_seconds: float = setting(
        "idempotency_seconds",
        "QS_GATEWAY_IDEMPOTENCY_SECONDS",
        86_400.0,
        number(float, minimum=1.0),
        "Seconds an `Idempotency-Key` and the first answer to it are remembered (per principal).",
        unit="s",
    )
