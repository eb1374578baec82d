"""What RE Manager publishes (console output, status) and the streams that serve it."""

from __future__ import annotations

from dataclasses import dataclass

from .options import setting
from .parsers import number


@dataclass(frozen=True)
class StreamSettings:
    """Console output, status and streams

    What RE Manager publishes (its console output and its status), kept in Redis, and the streams
    (Server-Sent Events, byte streams, websockets) that serve it.
    """

    published_status_max_age: float = setting(
        "published_status_max_age",
        "QS_GATEWAY_PUBLISHED_STATUS_MAX_AGE",
        1.5,
        number(float, minimum=0.0),
        "Seconds the status RE Manager published is served without asking RE Manager (it publishes on every "
        "change and at least once a second); `0` turns this off.",
        unit="s",
    )
    console_stream_length: int = setting(
        "console_stream_length",
        "QS_GATEWAY_CONSOLE_STREAM_LENGTH",
        10_000,
        number(int, minimum=100),
        "Console messages kept in Redis (what `console_output_update` with `ALL` and resuming streams can reach).",
    )
    info_stream_length: int = setting(
        "info_stream_length",
        "QS_GATEWAY_INFO_STREAM_LENGTH",
        1_000,
        number(int, minimum=10),
        "Published status messages kept in Redis for status streams to resume from.",
    )
    ingest_lease_seconds: float = setting(
        "ingest_lease_seconds",
        "QS_GATEWAY_INGEST_LEASE_SECONDS",
        2.0,
        number(float, minimum=0.2),
        "Lease of the one worker that subscribes to RE Manager; if it dies another takes over within about this long.",
        unit="s",
    )
    stream_limit: int = setting(
        "stream_limit",
        "QS_GATEWAY_STREAM_LIMIT",
        2_000,
        number(int, minimum=0),
        "Open streams (Server-Sent Events, byte streams, websockets) per worker; each costs about 10 KB and a "
        "file descriptor, no thread. Over it: 503 before the stream starts.",
    )
    stream_queue_length: int = setting(
        "stream_queue_length",
        "QS_GATEWAY_STREAM_QUEUE_LENGTH",
        1_000,
        number(int, minimum=1),
        "Messages buffered for one slow stream consumer before its oldest are dropped.",
    )
    sse_heartbeat_seconds: float = setting(
        "sse_heartbeat_seconds",
        "QS_GATEWAY_SSE_HEARTBEAT_SECONDS",
        15.0,
        number(float, minimum=0.1),
        "Seconds between heartbeat comments on quiet Server-Sent Event streams.",
        unit="s",
    )
