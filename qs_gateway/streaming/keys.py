"""The Redis keys of what RE Manager publishes, and of the newest status a worker fetched."""

from __future__ import annotations

from dataclasses import dataclass

from ..redis_store import RedisStore


@dataclass(frozen=True)
class StreamKeys:
    console: str  # stream of console messages {data: {"time", "msg"}}
    info: str  # stream of info messages {data: {"time", "msg": {"status": ...}}}
    leader: str  # the ingest lease: who subscribes to RE Manager
    published_status: str  # the latest published status (see manager.status_cache)
    # "generation|time" of the newest status a worker fetched; RE Manager's time of it tells
    # the console how far the ingest must have come (see streaming.console)
    status_floor: str

    @classmethod
    def of(cls, store: RedisStore) -> "StreamKeys":
        return cls(
            console=store.key("console", "stream"),
            info=store.key("info", "stream"),
            leader=store.key("ingest", "leader"),
            published_status=store.key("status", "published"),
            status_floor=store.key("status", "floor"),
        )


def parse_id(entry_id: str | bytes) -> tuple[int, int]:
    """A Redis stream id ``ms-seq`` as a comparable tuple; anything else sorts first."""
    if isinstance(entry_id, bytes):
        entry_id = entry_id.decode()
    ms, _, seq = entry_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return (-1, -1)


def format_id(parsed: tuple[int, int]) -> str:
    return f"{max(parsed[0], 0)}-{max(parsed[1], 0)}"
