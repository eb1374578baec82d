"""qs-gateway-mcp with the mcp SDK's own client over stdio, against a real gateway under
gunicorn and the real RE Manager: an agent key reads, validates and submits; it cannot add; a
person approves and the agent sees its item in the queue."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from .agents_support import AGENT_SCOPES, agents_config, key_of
from .auth_support import start_auth_gateway
from .support import PLAN_COUNT, plan

COMMAND = shutil.which("qs-gateway-mcp", path=str(Path(sys.executable).parent))


@pytest.fixture(scope="module")
def gateway(stack_dir, re_manager) -> Iterator[str]:
    process, url = start_auth_gateway(stack_dir, re_manager, "mcp", agents_config(), QS_GATEWAY_WORKERS="2")
    yield url
    process.stop()


def call(url: str, api_key: str, steps, command: str | None = COMMAND) -> list:  # noqa: ANN001
    """Start qs-gateway-mcp (``command``) over stdio with the SDK's client, run ``steps(client)``
    and return what it returns; the server process ends with the client."""
    assert command, "qs-gateway-mcp is not installed beside this interpreter"
    parameters = StdioServerParameters(
        command=command, env={"QSERVER_HTTP_SERVER_URI": url, "QSERVER_HTTP_SERVER_API_KEY": api_key}
    )

    async def run() -> list:
        async with Client(parameters, read_timeout_seconds=60) as client:
            return await steps(client)

    return anyio.run(run)


def test_an_agent_submits_through_mcp_and_a_person_approves(gateway, manager_idle):
    with httpx.Client(base_url=gateway, timeout=60) as http:
        agent_headers = key_of(http, "ada", [*AGENT_SCOPES, "write:queue:submit"])
        agent_key = agent_headers["Authorization"].removeprefix("ApiKey ")
        reviewer = key_of(http, "ross")

        async def propose(client: Client) -> list:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            status = await client.call_tool("get_status", {})
            schemas = await client.call_tool("list_allowed_plans", {})
            refused = await client.call_tool("validate_item", {"item": plan(num="ten")})
            proposal = {"item": PLAN_COUNT, "note": "from the agent", "idempotency_key": "agent-1"}
            submitted = await client.call_tool("submit_item", proposal)
            again = await client.call_tool("submit_item", proposal)
            changed = await client.call_tool("submit_item", {**proposal, "note": "another"})
            return [tools, status, schemas, refused, submitted, again, changed]

        tools, status, schemas, refused, submitted, again, changed = call(gateway, agent_key, propose)
        assert {"submit_item", "withdraw_submission", "get_submission", "validate_item"} <= tools
        assert not {name for name in tools if any(word in name for word in ("add", "execute", "start", "move"))}
        assert status.structured_content["manager_state"] == "idle"
        assert "count" in schemas.structured_content["schemas"]
        assert refused.structured_content["success"] is False and "num" in refused.structured_content["errors"]
        submission = submitted.structured_content["submission"]
        assert submission["state"] == "pending" and submission["note"] == "from the agent"
        # the same idempotency key again (a retry): the same submission, not a second one
        assert again.structured_content == submitted.structured_content
        assert changed.is_error and "422" in changed.content[0].text  # the key names another request

        # the agent's key cannot add by itself
        direct = http.post("/api/queue/item/add", json={"item": PLAN_COUNT}, headers=agent_headers)
        assert direct.status_code == 401
        assert manager_idle.queue_get()["items"] == []

        # a person approves
        approved = http.post("/api/queue/submission/approve", json={"uid": submission["uid"]}, headers=reviewer)
        assert approved.json()["success"] is True

        async def follow(client: Client) -> list:
            fate = await client.call_tool("get_submission", {"uid": submission["uid"]})
            missing = await client.call_tool("get_submission", {"uid": "no-such-submission"})
            return [fate, missing]

        fate, missing = call(gateway, agent_key, follow)
        record = fate.structured_content
        assert record["state"] == "approved" and record["decided_by"] == "ross"
        assert record["item_state"]["state"] == "queued"
        assert [item["item_uid"] for item in manager_idle.queue_get()["items"]] == [record["item_uid"]]
        assert missing.is_error and "No submission" in missing.content[0].text


def test_the_gateway_refusals_reach_the_agent_as_tool_errors(gateway):
    with httpx.Client(base_url=gateway, timeout=60) as http:
        reader = key_of(http, "ada", ["read:status"])["Authorization"].removeprefix("ApiKey ")

    async def submit(client: Client) -> list:
        return [await client.call_tool("submit_item", {"item": PLAN_COUNT})]

    (answer,) = call(gateway, reader, submit)
    assert answer.is_error and "401" in answer.content[0].text
