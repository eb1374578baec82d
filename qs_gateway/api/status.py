"""Status, ping and RE Manager configuration."""

from __future__ import annotations

import orjson
from flask import Response

from ..extensions import services
from .declare import Call, Resource
from .schemas import Empty, Reload
from .streams import server_sent_events

status = Resource("status", __name__)


status.forward(
    ("/", "/ping", "/status"),
    "status",
    methods=("GET",),
    scope="read:status",
    schema=Reload,
    summary="RE Manager status (cached briefly, shared by all workers; `reload` fetches it anew)",
)
status.forward("/config/get", "config_get", methods=("GET",), scope="read:config", schema=Empty)


def _status_only(data: bytes) -> bytes:
    return orjson.dumps(orjson.loads(data).get("msg", {}).get("status"))


def _carries_status(data: bytes) -> bool:
    return b'"status"' in data and isinstance(orjson.loads(data).get("msg", {}).get("status"), dict)


@status.endpoint("/status/events", scope="read:monitor", kind="stream", media_type="text/event-stream")
def status_events(call: Call) -> Response:
    """Server-Sent Events with each status RE Manager publishes; resumes after `Last-Event-ID`."""
    return server_sent_events(call, services().stream_keys.info, "status_events", render=_status_only)


status.websocket(
    "/status/ws",
    scope="read:monitor",
    stream="info",
    accept=_carries_status,
    summary='Each published status as a text frame `{"time", "msg": {"status": {...}}}`.',
)
status.websocket(
    "/info/ws",
    scope="read:monitor",
    stream="info",
    summary='Every message of RE Manager\'s info channel as a text frame `{"time", "msg": {...}}`.',
)
