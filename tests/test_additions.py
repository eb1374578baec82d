"""The README names every endpoint that bluesky-httpserver does not have, with the scope it needs,
so that a client author sees at a glance what is standard and what is the gateway's own.

The standard is ``conformance/reference_routes.txt``: bluesky-httpserver 0.0.14's routes, read from
its source. Paths are compared with their parameters unnamed (``{uuid}`` and ``<uuid>`` alike); the
reference's websockets (``WS``) are the gateway's ``GET`` upgrades.
"""

from __future__ import annotations

import re
from pathlib import Path

from qs_gateway.app import create_app
from qs_gateway.config import load_settings

from .support import API_KEY

ROOT = Path(__file__).parents[1]
SECTION = "## Endpoints that bluesky-httpserver does not have"
PUBLIC = "none"  # what the README's scope column says of an endpoint that needs no scope


def _unnamed(path: str) -> str:
    return re.sub(r"<[^>]+>|\{[^}]+\}", "{}", path)


def _reference_routes() -> set[tuple[str, str]]:
    routes = set()
    for line in (ROOT / "conformance" / "reference_routes.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            method, path = line.split()
            routes.add(("GET" if method == "WS" else method, _unnamed(path)))
    return routes


def _readme_rows() -> dict[tuple[str, str], str]:
    text = (ROOT / "README.md").read_text()
    assert SECTION in text, f"README.md has no section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for method, path, scope in re.findall(r"^\| `(\w+) ([^`]+)` \| `?([^`|]+?)`? \|", section, re.MULTILINE):
        rows[(method, _unnamed(path))] = scope.strip()
    return rows


def test_every_addition_is_listed_with_its_scope():
    app = create_app(load_settings(environ={"QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY": API_KEY}))
    documented = app.test_client().get("/openapi.json").get_json()["paths"]
    scopes = {
        (method.upper(), _unnamed(path)): operation.get("x-scope") or PUBLIC
        for path, operations in documented.items()
        for method, operation in operations.items()
    }
    reference = _reference_routes()
    additions = {
        (method, _unnamed(rule.rule))
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
        # /api/re/runs/<option> is the reference's /api/re/runs/active, /open and /closed
        if (method, _unnamed(rule.rule)) not in reference and not rule.rule.startswith("/api/re/runs/<")
    }
    listed = _readme_rows()
    assert set(listed) == additions, {"not listed": additions - set(listed), "not an addition": set(listed) - additions}
    for route in additions:
        assert listed[route] == scopes.get(route, PUBLIC), route
