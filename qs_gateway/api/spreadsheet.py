"""Adding the plans of an uploaded spreadsheet to the queue (bluesky-httpserver's upload)."""

from __future__ import annotations

from ..extensions import services
from ..manager import Reply
from ..spreadsheets import spreadsheet_items
from . import schemas
from .declare import Call, Resource

spreadsheet = Resource("spreadsheet", __name__)


@spreadsheet.endpoint(
    "/queue/upload/spreadsheet",
    methods=("POST",),
    scope="write:queue:edit",
    schema=schemas.SpreadsheetUpload,
    location="form",
    manager_method="queue_item_add_batch",
    injects=("user", "user_group"),
)
def upload_spreadsheet(call: Call) -> Reply | dict:
    """Add the plans of a spreadsheet (`.xlsx`, `.xls`, `.csv`, or a facility's own format)."""
    upload = call.payload["spreadsheet"]
    try:
        items = spreadsheet_items(
            services().custom_modules,
            upload.read(),
            file_name=upload.filename or "",
            data_type=call.payload.get("data_type"),
            user=call.principal.username,
        )
    except Exception as exc:
        # As bluesky-httpserver: a spreadsheet that cannot be read is RE Manager-style refusal.
        return {"success": False, "msg": str(exc), "items": [], "results": []}
    params = Call({"items": items}, call.principal).params(("user", "user_group"))
    return services().manager.call("queue_item_add_batch", params)
