"""Status, ping and RE Manager configuration."""

from __future__ import annotations

import orjson
from flask import Response

from ..extensions import services
from ..manager import Reply
from . import schemas
from .declare import Call, Resource
from .streams import last_event_id, pump_to_websocket, server_sent_events, subscribe

status = Resource("status", __name__)


@status.endpoint(
    ("/", "/ping", "/status"), scope="read:status", schema=schemas.Reload, manager_method="status", etag="status_uid"
)
def get_status(call: Call) -> Reply:
    """RE Manager status (cached briefly, shared by all workers; `reload` fetches it anew)."""
    return services().manager.status(reload=bool(call.payload.get("reload")))


status.forward("/config/get", "config_get", methods=("GET",), scope="read:config", schema=schemas.Empty)


def _status_only(data: bytes) -> bytes:
    return orjson.dumps(orjson.loads(data).get("msg", {}).get("status"))


def _carries_status(data: bytes) -> bool:
    return b'"status"' in data and isinstance(orjson.loads(data).get("msg", {}).get("status"), dict)


@status.endpoint("/status/events", scope="read:monitor", kind="stream", media_type="text/event-stream")
def status_events(call: Call) -> Response:
    """Server-Sent Events with each status RE Manager publishes; resumes after `Last-Event-ID`."""
    subscription = subscribe(services().stream_keys.info, "status_events", last_event_id())
    return server_sent_events(subscription, render=_status_only)


@status.websocket("/status/ws", scope="read:monitor")
def status_ws(ws, call: Call) -> None:  # noqa: ANN001
    """Each published status as a text frame `{"time", "msg": {"status": {...}}}`."""
    pump_to_websocket(ws, subscribe(services().stream_keys.info, "status_ws"), accept=_carries_status)


@status.websocket("/info/ws", scope="read:monitor")
def info_ws(ws, call: Call) -> None:  # noqa: ANN001
    """Every message of RE Manager's info channel as a text frame `{"time", "msg": {...}}`."""
    pump_to_websocket(ws, subscribe(services().stream_keys.info, "info_ws"))
