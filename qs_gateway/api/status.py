"""Status, ping and RE Manager configuration."""

from __future__ import annotations

from ..extensions import services
from ..manager import Reply
from . import schemas
from .declare import Call, Resource

status = Resource("status", __name__)


@status.endpoint(("/", "/ping", "/status"), scope="read:status", schema=schemas.Reload, manager_method="status")
def get_status(call: Call) -> Reply:
    """RE Manager status (cached briefly, shared by all workers; `reload` fetches it anew)."""
    return services().manager.status(reload=bool(call.payload.get("reload")))


status.forward("/config/get", "config_get", methods=("GET",), scope="read:config", schema=schemas.Empty)
