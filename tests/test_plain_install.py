"""The plain install carries every feature: ``pip install .`` into a virtual environment of its own,
without any extra, serving against the suite's RE Manager and Redis.

The environment is ``.venv-plain``, the one ``scripts/conformance`` runs the reference's suites
against (:mod:`conformance.environments`). The gateway runs from a directory outside the checkout, so nothing is
imported from the source tree.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import httpx
import openpyxl
import pytest
from websockets.sync.client import connect

from conformance import environments
from qs_gateway.serving.stack import start_gateway

from .support import API_KEY, PLAN_COUNT
from .test_mcp import call

HEADERS = {"Authorization": f"ApiKey {API_KEY}"}

# A facility's converter: reads the file with pandas itself, as facilities' converters do.
FACILITY_MODULE = """
import pandas as pd


def spreadsheet_to_plan_list(*, spreadsheet_file, file_name, data_type, user, **kwargs):
    if data_type != "facility":
        return None
    table = pd.read_csv(spreadsheet_file)
    plan = {"name": "count", "args": [["det1"]], "meta": {"by": user}}
    return [{**plan, "kwargs": {"num": int(n)}} for n in table["num"]]
"""


@pytest.fixture(scope="module")
def plain_python() -> str:
    python = str(environments.plain_gateway())
    probe = subprocess.run(
        [python, "-c", "import qs_gateway, importlib.util as u; print(qs_gateway.__file__, u.find_spec('pytest'))"],
        check=True, capture_output=True, text=True, cwd="/",
    )  # fmt: skip
    installed, pytest_spec = probe.stdout.split()
    # the package itself, and no test extras
    assert installed.startswith(str(environments.PLAIN)) and pytest_spec == "None"
    return python


@pytest.fixture(scope="module")
def plain_gateway(plain_python, stack_dir, re_manager, tmp_path_factory):
    home = tmp_path_factory.mktemp("plain-install")
    (home / "facility_sheets.py").write_text(FACILITY_MODULE)
    env = re_manager.gateway_env(
        QS_GATEWAY_WORKERS="1",
        QS_GATEWAY_REDIS_PREFIX=f"qs_gateway_plain_{re_manager.ports.control}",
        QSERVER_CUSTOM_MODULES="facility_sheets",
        PYTHONPATH=str(home),
    )
    process, url = start_gateway(stack_dir, env, log_name="gateway-plain.log", python=plain_python, cwd=home)
    yield url
    process.stop()


def test_reduced_plan_lists_and_devices(plain_gateway, manager_idle):
    for path, key in (("/api/plans/allowed", "plans_allowed"), ("/api/plans/existing", "plans_existing")):
        reply = httpx.request("GET", plain_gateway + path, json={"reduced": True}, headers=HEADERS)
        assert reply.status_code == 200, reply.text
        count = reply.json()[key]["count"]
        assert count["parameters"][1] == {**count["parameters"][1], "name": "num", "type": "int", "default": 1}
    devices = httpx.get(f"{plain_gateway}/api/devices/allowed", headers=HEADERS).json()["devices_allowed"]
    assert "det1" in devices


def xlsx(rows: list[list[object]]) -> bytes:
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    content = io.BytesIO()
    book.save(content)
    return content.getvalue()


def upload(url: str, name: str, content: bytes, data_type: str | None = None) -> dict:
    data = {"data_type": data_type} if data_type else {}
    reply = httpx.post(
        f"{url}/api/queue/upload/spreadsheet", files={"spreadsheet": (name, content)}, data=data, headers=HEADERS
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def queued_nums(url: str) -> list[int]:
    items = httpx.get(f"{url}/api/queue/get", headers=HEADERS).json()["items"]
    return [item["kwargs"]["num"] for item in items]


def test_spreadsheets_through_the_default_converter_and_a_facility_module(plain_gateway, manager_idle):
    # bluesky-queueserver's format: the plan's name, then its parameters as Python literals
    table = [["plan_name", "detectors", "num"], ["count", "['det1']", 2], ["count", "['det1', 'det2']", 3]]
    added = upload(plain_gateway, "plans.xlsx", xlsx(table))
    assert added["success"] is True, added
    csv = "\n".join(",".join(f'"{cell}"' for cell in row) for row in table).encode()
    assert upload(plain_gateway, "plans.csv", csv)["success"] is True
    facility = upload(plain_gateway, "numbers.csv", b"num\n5\n6\n", data_type="facility")
    assert facility["success"] is True, facility
    assert facility["items"][0]["meta"] == {"by": "UNAUTHENTICATED_SINGLE_USER"}
    assert queued_nums(plain_gateway) == [2, 3, 2, 3, 5, 6]


# Stopping or killing RE Manager would end it for the rest of the suite; both are forwarded as
# they come, by the same code as every other write.
NOT_SENT = {("POST", "/api/manager/stop"), ("POST", "/api/test/manager/kill")}
LOCK_KEY = "plain-install-probe"


def test_every_route_answers_without_an_import_error(plain_gateway, manager_idle):
    document = httpx.get(f"{plain_gateway}/openapi.json").json()
    # Locked, RE Manager refuses every write the probes could send: they change nothing.
    locked = httpx.post(
        f"{plain_gateway}/api/lock", json={"lock_key": LOCK_KEY, "environment": True, "queue": True}, headers=HEADERS
    )
    assert locked.json()["success"] is True, locked.text
    answered = {}
    try:
        for path, operations in document["paths"].items():
            concrete = path.replace("{option}", "active").replace("{", "").replace("}", "")
            for method, operation in operations.items():
                if (method.upper(), path) in NOT_SENT:
                    continue
                success = operation["responses"].get("200", {}).get("content", {})
                streams = "text/event-stream" in success or "text/plain" in success  # they never end
                with httpx.stream(method.upper(), plain_gateway + concrete, json={}, headers=HEADERS) as reply:
                    body = b"" if streams and reply.status_code == 200 else reply.read()
                answered[(method, path)] = reply.status_code
                assert reply.status_code < 500, (method, path, reply.status_code, body[:300])
                assert b"No module named" not in body and b"ImportError" not in body, (method, path, body[:300])
    finally:
        httpx.post(f"{plain_gateway}/api/unlock", json={"lock_key": LOCK_KEY}, headers=HEADERS)
    assert len(answered) > 60


def test_live_streams_and_websockets(plain_gateway, manager_idle):
    """The streams (taken over from gunicorn, framed with wsproto) from the plain install."""
    with httpx.stream("GET", f"{plain_gateway}/api/status/events", headers=HEADERS, timeout=10) as events:
        assert events.status_code == 200 and events.headers["content-type"].startswith("text/event-stream")
        lines = events.iter_lines()
        assert next(lines).startswith(": connected")
        first = [line for _, line in zip(range(20), lines, strict=False)]  # a published status within 20 lines
        assert any(line.startswith("data: ") and "manager_state" in line for line in first)
    uri = plain_gateway.replace("http://", "ws://") + "/api/status/ws"
    with connect(uri, additional_headers=HEADERS) as websocket:
        assert "status" in json.loads(websocket.recv(timeout=10))["msg"]


def test_plan_schemas_and_the_mcp_server(plain_python, plain_gateway, manager_idle):
    """The plan schemas and qs-gateway-mcp (the mcp SDK is a requirement, not an extra)."""
    schemas = httpx.get(f"{plain_gateway}/api/plans/allowed/json_schema", headers=HEADERS).json()["schemas"]
    assert schemas["count"]["properties"]["name"] == {"const": "count"}

    async def steps(client) -> list:  # noqa: ANN001
        return [await client.call_tool("get_status", {}), await client.call_tool("validate_item", {"item": PLAN_COUNT})]

    status, verdict = call(plain_gateway, API_KEY, steps, command=str(Path(plain_python).parent / "qs-gateway-mcp"))
    assert status.structured_content["manager_state"] == "idle"
    assert verdict.structured_content["success"] is True
