"""Helpers of the authentication tests: configuration files, users, logging in."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from qs_gateway.extensions import EXTENSION_KEY
from qs_gateway.serving.stack import start_gateway

from .support import make_app

# bluesky-httpserver's test users (provider "toy"), with one user per default role
PASSWORDS = {
    "bob": "bob_password",
    "alice": "alice_password",
    "tom": "tom_password",
    "cara": "cara_password",
    "eve": "eve_password",
    "olga": "olga_password",
    "adam": "adam_password",
}
ROLES = {
    "bob": ["admin", "expert"],
    "alice": "advanced",
    "tom": "user",
    "eve": "expert",
    "olga": "observer",
    "adam": "admin",
}  # cara is not known to the policy

TOY_PROVIDER = {
    "provider": "toy",
    "authenticator": "bluesky_httpserver.authenticators:DictionaryAuthenticator",
    "args": {"users_to_passwords": PASSWORDS},
}  # spelled out: it is also an example of a configuration entry

NOT_ENOUGH = "Not enough permissions"  # how a refusal for lack of scopes begins


def provider(name: str, authenticator: str, **args: Any) -> dict:
    """One entry of ``authentication.providers``, with bluesky-httpserver's import path."""
    return {"provider": name, "authenticator": f"bluesky_httpserver.authenticators:{authenticator}", "args": args}


def auth_config(
    providers: list[dict],
    *,
    users: dict | None = None,
    roles: dict | None = None,
    anonymous: bool = False,
    api_access: dict | None = None,
    **auth: Any,
) -> dict:
    """A bluesky-httpserver configuration: these providers and (unless ``api_access`` is given)
    the Dictionary policy with ``users`` (by default one user per default role)."""
    if api_access is None:
        args: dict[str, Any] = {"users": users if users is not None else {u: {"roles": r} for u, r in ROLES.items()}}
        if roles is not None:
            args["roles"] = roles
        api_access = {"policy": "bluesky_httpserver.authorization:DictionaryAPIAccessControl", "args": args}
    return {
        # a copy: a test that edits its configuration must not edit TOY_PROVIDER for the tests after it
        "authentication": {"allow_anonymous_access": anonymous, "providers": copy.deepcopy(providers), **auth},
        "api_access": api_access,
    }


def toy_config(**options: Any) -> dict:
    """The toy provider (bluesky-httpserver's test users) and the Dictionary policy; a copy, which
    a test may change."""
    return auth_config([copy.deepcopy(TOY_PROVIDER)], **options)


def write_config(directory: Path, config: dict) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"config-{uuid.uuid4().hex[:8]}.yml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def private_prefix() -> str:
    """A Redis prefix of its own, so principals and keys of one test never meet another's."""
    return f"qs_gateway_auth_{uuid.uuid4().hex[:12]}"


@contextmanager
def configured_app(manager: Any, directory: Path, config: dict, **env: str) -> Iterator[Any]:
    """The gateway in-process with ``config`` as its YAML file and a Redis prefix of its own."""
    from qs_gateway.extensions import EXTENSION_KEY

    env.setdefault("QS_GATEWAY_REDIS_PREFIX", private_prefix())
    app = make_app(manager, QSERVER_HTTP_SERVER_CONFIG=write_config(directory, config), **env)
    try:
        yield app
    finally:
        app.extensions[EXTENSION_KEY].close()


@contextmanager
def app_builder(directory: Path, manager: Any) -> Iterator[Any]:
    """``build(config=None, **env)``: gateways in-process, each with a Redis prefix of its own
    unless given one; all closed at the end."""
    apps = []

    def build(config: dict | None = None, **env: str) -> Any:
        if config is not None:
            env["QSERVER_HTTP_SERVER_CONFIG"] = write_config(directory, config)
        env.setdefault("QS_GATEWAY_REDIS_PREFIX", private_prefix())
        app = make_app(manager, **env)
        apps.append(app)
        return app

    try:
        yield build
    finally:
        for app in apps:
            app.extensions[EXTENSION_KEY].close()


def login(client: Any, username: str, password: str | None = None, provider: str = "toy") -> dict:
    response = client.post(
        f"/api/auth/provider/{provider}/token",
        data={"username": username, "password": password or PASSWORDS[username]},
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def bearer(tokens: dict) -> dict:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def api_key_header(secret: str) -> dict:
    return {"Authorization": f"ApiKey {secret}"}


def sample_path(app: Any, rule: Any) -> str:
    """A concrete path for a URL rule: each variable gets an allowed value (``x`` if any goes)."""
    values = {}
    for name, converter in rule._converters.items():
        choices = getattr(converter, "items", None)  # any(...) converters
        values[name] = sorted(choices)[0] if choices else "x"
    return app.url_map.bind("localhost").build(rule.endpoint, values)


class JsonServer:
    """A small HTTP server in a thread of the test: ``handle(method, path, body)`` returns
    (status, JSON-able answer[, headers]). Stands in for an access server or an identity provider."""

    def __init__(self, handle: Any) -> None:
        import http.server
        import json
        import threading

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                outer.requests.append((self.command, self.path, body))
                status, answer, *headers = outer.handle(self.command, self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                for name, value in (headers[0] if headers else {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.handle = handle
        self.requests: list[tuple[str, str, str]] = []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def start_auth_gateway(stack_dir: Path, manager: Any, name: str, config: dict, **env: str) -> tuple[Any, str]:
    """A gateway under gunicorn with ``config`` (three workers, a Redis prefix of its own, the
    worker named on every answer); ``env`` adds or overrides settings."""
    defaults = {
        "QS_GATEWAY_WORKERS": "3",
        "QS_GATEWAY_THREADS": "4",
        "QS_GATEWAY_WORKER_HEADER": "1",
        "QS_GATEWAY_REDIS_PREFIX": private_prefix(),
    }
    settings = manager.gateway_env(
        QSERVER_HTTP_SERVER_CONFIG=write_config(stack_dir / name, config), **{**defaults, **env}
    )
    return start_gateway(stack_dir, settings, log_name=f"gunicorn-{name}.log")
