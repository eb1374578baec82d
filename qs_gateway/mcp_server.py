"""``qs-gateway-mcp``: a Model Context Protocol server (stdio) that lets an AI agent read the
beamline's state and propose queue items, never queue them itself.

An agent harness starts it with the gateway's URL and an API key in the environment (the
variables bluesky-queueserver-api reads: ``QSERVER_HTTP_SERVER_URI``,
``QSERVER_HTTP_SERVER_API_KEY``). Every tool is one HTTP request to the gateway with that key,
so the gateway's scopes are the only authority: a key of the ``agent`` role can read and submit,
and a person approves. There is no tool that adds, moves, executes or starts anything.

Built on the official ``mcp`` SDK (``MCPServer``); no Flask, nothing of the gateway's process.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from . import __version__

URL_ENV = "QSERVER_HTTP_SERVER_URI"
KEY_ENV = "QSERVER_HTTP_SERVER_API_KEY"
DEFAULT_URL = "http://localhost:60610"
TIMEOUT = 30.0  # seconds for one request to the gateway

INSTRUCTIONS = """\
Tools of a Bluesky Queue Server behind qs-gateway. Read the status, the queue and the history;
list the plans you may use with their JSON Schemas; validate an item; then submit it for a person
to approve (submit_item). You cannot add items to the queue yourself. Follow a submission with
get_submission: once approved it names the queue item, whose fate get_item_state tells."""


class Gateway:
    """The gateway's HTTP API with one API key (standard library only: one request at a time)."""

    def __init__(self, url: str, api_key: str, timeout: float = TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        url = f"{self.url}/api{path}"
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        sent = {"Authorization": f"ApiKey {self.api_key}", "Accept": "application/json", **(headers or {})}
        if data is not None:
            sent["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            try:
                detail = json.loads(error.read() or b"null")
            except ValueError:
                detail = None
            text = detail.get("detail") if isinstance(detail, dict) else error.reason
            raise ToolError(f"The gateway answered {error.code}: {text}") from None
        except (urllib.error.URLError, OSError) as error:
            raise ToolError(f"The gateway at {self.url} could not be reached: {error}") from None


def build_server(gateway: Gateway) -> MCPServer:
    server = MCPServer("qs-gateway", instructions=INSTRUCTIONS, version=__version__)

    @server.tool()
    def get_status() -> dict[str, Any]:
        """RE Manager's status: manager and Run Engine state, items in queue and history, the
        running item's uid, whether the worker environment is open."""
        return gateway.request("GET", "/status")

    @server.tool()
    def get_queue() -> dict[str, Any]:
        """The plan queue: its items in order and the running item."""
        return gateway.request("GET", "/queue/get")

    @server.tool()
    def get_history() -> dict[str, Any]:
        """The plan history: finished items with their results (exit status, messages)."""
        return gateway.request("GET", "/history/get")

    @server.tool()
    def list_allowed_plans() -> dict[str, Any]:
        """The plans this key's user group may use, each with the JSON Schema (draft 2020-12) of
        a queue item of that plan (item_type, name, args, kwargs)."""
        return gateway.request("GET", "/plans/allowed/json_schema")

    @server.tool()
    def list_allowed_devices() -> dict[str, Any]:
        """The devices this key's user group may use."""
        return gateway.request("GET", "/devices/allowed")

    @server.tool()
    def validate_item(item: dict[str, Any]) -> dict[str, Any]:
        """Would the queue accept this item? Answers success, msg and errors (parameter -> problem).
        Nothing is submitted or queued."""
        return gateway.request("POST", "/queue/item/validate", {"item": item})

    @server.tool()
    def submit_item(item: dict[str, Any], note: str = "", idempotency_key: str | None = None) -> dict[str, Any]:
        """Propose an item for a person to approve. The item is validated at once: if refused,
        nothing is submitted (see msg and errors). Give the same idempotency_key when you retry
        a submit whose answer you did not get, so that it is submitted once."""
        key = idempotency_key or f"mcp-{uuid.uuid4()}"
        return gateway.request(
            "POST", "/queue/submission/add", {"item": item, "note": note}, headers={"Idempotency-Key": key}
        )

    @server.tool()
    def withdraw_submission(uid: str) -> dict[str, Any]:
        """Withdraw one of your pending submissions."""
        return gateway.request("POST", "/queue/submission/withdraw", {"uid": uid})

    @server.tool()
    def get_submission(uid: str) -> dict[str, Any]:
        """A submission's state (pending, approving, approved, denied, withdrawn, expired, failed),
        the decision's note, and once approved the queue item's uid and its fate."""
        found = gateway.request("GET", "/queue/submission/get", query={"uid": uid}).get("submissions") or []
        if not found:
            raise ToolError(f"No submission with uid {uid!r}")
        submission = found[0]
        if submission.get("item_uid"):
            submission["item_state"] = gateway.request(
                "GET", "/queue/item/state", query={"uid": submission["item_uid"]}
            )
        return submission

    @server.tool()
    def list_submissions(state: str | None = None, limit: int = 20) -> dict[str, Any]:
        """Submissions, newest first, optionally only those in one state."""
        return gateway.request("GET", "/queue/submission/get", query={"state": state, "limit": limit})

    @server.tool()
    def get_item_state(uid: str) -> dict[str, Any]:
        """What became of a queue item: queued (and where), running, completed, failed, stopped..."""
        return gateway.request("GET", "/queue/item/state", query={"uid": uid})

    return server


def _stop(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="qs-gateway-mcp",
        description=f"MCP server (stdio) for AI agents: reads and submissions through qs-gateway. The key is read "
        f"from {KEY_ENV}.",
    )
    parser.add_argument(
        "--url", default=os.environ.get(URL_ENV, DEFAULT_URL), help=f"the gateway (default: ${URL_ENV})"
    )
    args = parser.parse_args(argv)
    api_key = os.environ.get(KEY_ENV, "")
    if not api_key:
        parser.exit(2, f"qs-gateway-mcp: set {KEY_ENV} to the agent's API key\n")
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop)
    try:
        build_server(Gateway(args.url, api_key)).run("stdio")
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
