"""Adding the plans of an uploaded spreadsheet to the queue (bluesky-httpserver's upload)."""

from __future__ import annotations

from ..extensions import services
from ..manager import Reply
from ..manager.methods import method
from ..spreadsheets import spreadsheet_items
from .declare import Call, Resource
from .schemas import CHECKED, Payload, Upload, identifier


class SpreadsheetUpload(Payload):
    # the form is read by the gateway (as by bluesky-httpserver), never sent as it is
    spreadsheet = Upload(required=True, metadata=CHECKED)
    data_type = identifier(allow_none=True, metadata=CHECKED)


spreadsheet = Resource("spreadsheet", __name__)
ADD_BATCH = "queue_item_add_batch"  # what a spreadsheet's items are sent with


@spreadsheet.endpoint(
    "/queue/upload/spreadsheet",
    methods=("POST",),
    scope="write:queue:edit",
    schema=SpreadsheetUpload,
    location="form",
    manager_method=ADD_BATCH,
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
    params = Call({"items": items}, call.principal).params(method(ADD_BATCH).identity)
    return services().manager.call(ADD_BATCH, params)
