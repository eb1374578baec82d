"""Helpers of the submission, idempotency and MCP tests: a configuration with an agent and a
reviewer, and API keys made for them as a deployment would make them."""

from __future__ import annotations

from typing import Any

from .auth_support import PASSWORDS, api_key_header, bearer, toy_config

AGENT_SCOPES = ["read:status", "read:queue", "read:history", "read:resources", "read:monitor", "read:console"]


def agents_config() -> dict:
    """The toy users, plus ``ada`` and ``ari`` (the default role ``agent``, and ``observer`` to
    make their own keys), ``ross`` (a ``user`` who also reviews: a role made in the configuration, since no
    default role may approve) and ``rita`` (a second reviewer)."""
    config = toy_config(
        users={
            "ada": {"roles": ["agent", "observer"]},
            "ari": {"roles": ["agent", "observer"]},
            "ross": {"roles": ["user", "reviewer"]},
            "rita": {"roles": ["observer", "reviewer"]},
            "tom": {"roles": "user"},
            "adam": {"roles": "admin"},
        },
        roles={"reviewer": {"scopes_set": ["read:queue", "write:queue:approve"]}},
    )
    config["authentication"]["providers"][0]["args"]["users_to_passwords"].update(
        {"ada": "ada_password", "ari": "ari_password", "ross": "ross_password", "rita": "rita_password"}
    )
    PASSWORDS.setdefault("ada", "ada_password")
    PASSWORDS.setdefault("ari", "ari_password")
    PASSWORDS.setdefault("ross", "ross_password")
    PASSWORDS.setdefault("rita", "rita_password")
    return config


def key_of(client: Any, username: str, scopes: list[str] | None = None) -> dict[str, str]:
    """Headers with a new API key of ``username`` (of ``scopes``, or all the user's)."""
    answer = client.post("/api/auth/provider/toy/token", data={"username": username, "password": PASSWORDS[username]})
    assert answer.status_code == 200, response_json(answer)
    tokens = response_json(answer)
    body: dict[str, Any] = {"expires_in": 3600}
    if scopes is not None:
        body["scopes"] = scopes
    response = client.post("/api/auth/apikey", json=body, headers=bearer(tokens))
    assert response.status_code == 200, response_json(response)
    return api_key_header(response_json(response)["secret"])


def response_json(response: Any) -> Any:
    """The JSON of a Flask test response or an httpx one."""
    data = getattr(response, "get_json", None)
    return data() if callable(data) else response.json()
