"""Custom blueprints, as a facility would load them with QSERVER_HTTP_CUSTOM_ROUTERS."""

from __future__ import annotations

from flask import Blueprint, jsonify

from qs_gateway.api import schemas
from qs_gateway.api.declare import Call, Resource
from qs_gateway.extensions import services

# A plain Flask blueprint: the gateway registers it as it is.
plain = Blueprint("facility_plain", __name__, url_prefix="/facility")


@plain.route("/hello")
def hello():
    return jsonify({"hello": "beamline"})


# A Resource: authentication, payload validation and the OpenAPI document come with it.
beamline = Resource("facility_beamline", __name__, url_prefix="/api/beamline")


@beamline.endpoint("/queue_size", scope="read:queue", schema=schemas.Reload, manager_method="status")
def queue_size(call: Call) -> dict:
    """How many items wait in the queue."""
    status = services().manager.status(reload=bool(call.payload.get("reload")))
    return {"success": True, "msg": "", "items_in_queue": status.get("items_in_queue")}


not_a_blueprint = object()


@plain.route("/stream/<name>")
def stream(name: str):
    """NDJSON: one line now, the next once the file ``name`` appears in $QS_TEST_RELEASE_DIR.

    A proxy that buffered the stream would hold the first line back until the end.
    """
    import json
    import os
    import time
    from pathlib import Path

    from flask import Response

    release = Path(os.environ["QS_TEST_RELEASE_DIR"]) / name

    def lines():
        yield json.dumps({"line": 1}) + "\n"
        deadline = time.monotonic() + 20
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield json.dumps({"line": 2, "released": release.exists()}) + "\n"

    return Response(lines(), mimetype="application/x-ndjson")
