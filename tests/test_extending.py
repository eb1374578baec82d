"""Spreadsheet upload (default converter and a custom module) and custom blueprints."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from qs_gateway.api.payload import MISSING_FIELD
from qs_gateway.config import ConfigError

from .support import keyed_client, make_app

CSV = b"""plan_name,args,num,delay
'count',"['det1', 'det2']",2,
,,,
'count',"['det1']",3,0.1
"""


def upload(client, content, name, **fields):
    return client.post(
        "/api/queue/upload/spreadsheet",
        data={"spreadsheet": (io.BytesIO(content), name), **fields},
        content_type="multipart/form-data",
    )


def test_spreadsheet_with_the_default_converter(client, manager_idle):
    reply = upload(client, CSV, "plans.csv").get_json()
    assert reply["success"] is True and reply["qsize"] == 2
    assert [(i["name"], i["args"], i["kwargs"]) for i in reply["items"]] == [
        ("count", [["det1", "det2"]], {"num": 2}),
        ("count", [["det1"]], {"num": 3, "delay": 0.1}),
    ]
    assert all(i["item_type"] == "plan" and i["user"] == "UNAUTHENTICATED_SINGLE_USER" for i in reply["items"])
    assert manager_idle.status()["items_in_queue"] == 2


def test_spreadsheet_refusals(client, anonymous, manager_idle):
    wrong_type = upload(client, b"hello", "plans.txt")
    assert wrong_type.status_code == 200
    assert wrong_type.get_json() == {
        "success": False,
        "msg": wrong_type.get_json()["msg"],
        "items": [],
        "results": [],
    }
    assert "extension '.txt'" in wrong_type.get_json()["msg"]

    # RE Manager judges the plans: one unknown plan rejects the whole batch
    rejected = upload(client, b"plan_name,args\n'count',\"['det1']\"\n'no_such_plan',\n", "p.csv").get_json()
    assert rejected["success"] is False and rejected["msg"].startswith("Failed to add all items")
    assert [r["success"] for r in rejected["results"]] == [True, False]

    missing = client.post("/api/queue/upload/spreadsheet", data={"data_type": "x"}, content_type="multipart/form-data")
    assert missing.status_code == 400 and missing.get_json()["errors"] == {"spreadsheet": [MISSING_FIELD]}
    not_a_file = client.post(
        "/api/queue/upload/spreadsheet", data={"spreadsheet": "text"}, content_type="multipart/form-data"
    )
    assert not_a_file.status_code == 400 and not_a_file.get_json()["errors"] == {"spreadsheet": ["Must be a file."]}
    assert client.post("/api/queue/upload/spreadsheet", json={"spreadsheet": "x"}).status_code == 422
    assert upload(anonymous, CSV, "plans.csv").status_code == 401
    assert manager_idle.status()["items_in_queue"] == 0


def test_spreadsheet_with_a_custom_module(re_manager, manager_idle, caplog):
    caplog.set_level(logging.ERROR)
    modules = "tests.plugins.custom_spreadsheet,no_such_module_anywhere"
    client = keyed_client(make_app(re_manager, QSERVER_CUSTOM_MODULES=modules))
    # a module that does not import is logged and skipped, as in bluesky-httpserver
    assert "no_such_module_anywhere" in caplog.text

    reply = upload(client, b"4\n5\n", "numbers.dat", data_type="numbers").get_json()
    assert reply["success"] is True
    assert [i["kwargs"]["num"] for i in reply["items"]] == [4, 5]
    # the converter is given the username, the queue item the displayed name
    assert reply["items"][0]["meta"] == {"uploaded_by": "UNAUTHENTICATED_SINGLE_USER"}

    refused = upload(client, b"", "x.csv", data_type="unsupported").get_json()
    assert refused["success"] is False and refused["msg"] == "Unsupported data type: 'unsupported'"
    # the custom function returned None: the default converter reads the file
    assert upload(client, CSV, "plans.csv", data_type="other").get_json()["qsize"] == 4


def test_custom_blueprints(re_manager, manager_idle):
    entries = "tests.plugins.custom_blueprints.plain:tests.plugins.custom_blueprints.beamline"
    app = make_app(re_manager, QSERVER_HTTP_CUSTOM_ROUTERS=entries)
    client = keyed_client(app)
    assert client.get("/facility/hello").get_json() == {"hello": "beamline"}
    assert client.get("/api/beamline/queue_size").get_json() == {"success": True, "msg": "", "items_in_queue": 0}
    # a Resource gets the gateway's authentication, validation and documentation
    assert app.test_client().get("/api/beamline/queue_size").status_code == 401
    assert client.get("/api/beamline/queue_size", json={"size": 1}).status_code == 400
    paths = client.get("/openapi.json").get_json()["paths"]
    assert paths["/api/beamline/queue_size"]["get"]["x-scope"] == "read:queue"


@pytest.mark.parametrize(
    "entry, message",
    [
        ("tests.plugins.custom_blueprints.missing", "must name a flask.Blueprint, found nothing"),
        ("tests.plugins.custom_blueprints.not_a_blueprint", "found object"),
        ("no_such_package.module.router", "cannot import 'no_such_package.module'"),
        ("router", "package.module.attribute"),
    ],
)
def test_a_custom_blueprint_that_cannot_be_loaded_stops_start_up(re_manager, entry, message):
    with pytest.raises(ConfigError, match=message):
        make_app(re_manager, QSERVER_HTTP_CUSTOM_ROUTERS=entry)


def test_the_default_converter_is_imported_only_on_upload(re_manager):
    """Workers that never receive a spreadsheet do not load pandas (a fresh interpreter proves it)."""
    import subprocess

    code = (
        "import sys; from qs_gateway.config import load_settings; from qs_gateway.app import create_app; "
        "create_app(load_settings(environ={'QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY': 'k' * 32})); "
        "print('pandas' in sys.modules, 'bluesky_queueserver.manager.conversions' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
