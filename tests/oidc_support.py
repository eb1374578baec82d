"""A real OpenID provider for the single sign-on tests: npm's ``oidc-provider`` (installed into
tests/oidc/node_modules by ``scripts/setup test``), run by tests/oidc/provider.mjs on a free
loopback port, waited for through its discovery document, stopped by process group.

Its clients and users are here; the gateway's configurations are those of
docs/authentication.md ("Single sign-on"), filled in with the provider's address. So is what
tests/test_sso.py and tests/test_sso_providers.py share: the provider as a fixture, a browser's
sign-in through the in-process gateway, and tokens signed by the provider (or by a stranger).
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from qs_gateway.serving.stack import ManagedProcess

OIDC_DIR = Path(__file__).parent / "oidc"
DOCS = Path(__file__).parents[1] / "docs" / "authentication.md"
CLIENT_ID = "qs-gateway"
CLIENT_SECRET = "qs-gateway-client-secret"
DEVICE_CLIENT_ID = "qs-cli"  # public: no secret, the device flow only
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
AUDIENCE = "https://qs-gateway.example.org"
# the Entra emulation's tenant, application and a group's object id (as in docs/authentication.md)
TENANT = "7f3c2a1e-0d4b-4c6a-9e21-5b8f3d2c1a90"
ENTRA_CLIENT_ID = "0b5e7c8d-3f21-4a6b-9c4d-2e1f0a9b8c7d"
ENTRA_AUDIENCE = "api://qs-gateway"
ENTRA_STAFF_GROUP = "c5a7e0f2-6b1d-4e3a-8f9c-1d2b3a4c5e6f"
# two users of the provider: dana is a user of the gateway's policy, erin is not (her groups give her roles)
USERS = {
    "dana": {"password": "dana-password", "groups": ["beamline-users"]},
    "erin": {"password": "erin-password", "groups": ["beamline-staff", ENTRA_STAFF_GROUP]},
}


class OpenIDProvider:
    def __init__(self, process: ManagedProcess, issuer: str, base: str) -> None:
        self.process = process
        self.issuer = issuer
        self.base = base  # where the provider listens (its issuer may have a path)

    @property
    def well_known_uri(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def rotate_keys(self) -> str:
        """The provider signs with a new key from now on; answers its kid."""
        return httpx.post(f"{self.base}/test/rotate-keys", timeout=10).json()["kid"]

    def sign(self, claims: dict) -> str:
        """``claims`` signed with the provider's current key (tokens it would not issue itself)."""
        return httpx.post(f"{self.base}/test/sign", json=claims, timeout=10).json()["token"]

    def device_access_token(self, device_code: str) -> str:
        """The public client's access token, once the person approved its device sign-in."""
        grant = {"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": DEVICE_CLIENT_ID}
        return poll_device_sign_in(lambda: httpx.post(f"{self.base}/token", data=grant, timeout=10), 1)["access_token"]

    def device_token(self, scope: str = "openid profile groups") -> dict:
        """Start a device sign-in of the public client at the provider itself."""
        answer = httpx.post(
            f"{self.base}/device/auth", data={"client_id": DEVICE_CLIENT_ID, "scope": scope}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        return answer.json()


def poll_device_sign_in(request: Callable[[], Any], interval: float, timeout: float = 60) -> dict:
    """Poll a device sign-in (at the gateway or the provider) every ``interval`` seconds until it
    answers the tokens; only RFC 8628's "not yet" answers are accepted on the way. ``request``
    answers an httpx response or a Flask test client's."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = request()
        body = answer.get_json() if hasattr(answer, "get_json") else answer.json()
        if answer.status_code == 200:
            return body
        assert body["error"] in ("authorization_pending", "slow_down"), body
        time.sleep(interval)
    raise AssertionError(f"the device sign-in was not approved within {timeout} s")


def _clients(redirect_uris: list[str], client_id: str) -> list[dict]:
    return [
        {
            "client_id": client_id,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": redirect_uris,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        },
        {
            "client_id": DEVICE_CLIENT_ID,
            "token_endpoint_auth_method": "none",
            "grant_types": [DEVICE_GRANT, "refresh_token"],
            "response_types": [],
            "redirect_uris": [],
        },
    ]


@contextmanager
def running_provider(
    workdir: Path,
    redirect_uris: list[str],
    *,
    issuer_path: str = "",
    tenant: str | None = None,
    client_id: str = CLIENT_ID,
    audience: str = AUDIENCE,
) -> Iterator[OpenIDProvider]:
    """The provider, its issuer ``<base><issuer_path>``; with ``tenant`` it plays Entra."""
    if shutil.which("node") is None or not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("the OpenID provider is not installed: run scripts/setup test (node and npm are needed)")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / f"oidc-{time.monotonic_ns()}.json"
    settings = {"port": 0, "issuer_path": issuer_path, "tenant": tenant, "audience": audience, "users": USERS}
    settings["clients"] = _clients(redirect_uris, client_id)
    config.write_text(json.dumps(settings))
    log = workdir / f"{config.stem}.log"
    process = ManagedProcess("oidc-provider", ["node", str(OIDC_DIR / "provider.mjs"), str(config)], log).start()
    try:
        found: dict[str, str] = {}

        def listening() -> bool:
            match = re.search(r"^listening (\S+)$", log.read_text(), re.MULTILINE)
            if match:
                found["issuer"] = match.group(1)
            return bool(match)

        process.wait_until(listening, 60, "listening")
        issuer = found["issuer"]
        base = re.match(r"^https?://[^/]+", issuer).group(0)
        oidc = OpenIDProvider(process, issuer, base)
        discovery = f"{base}/common/v2.0/.well-known/openid-configuration" if tenant else oidc.well_known_uri
        process.wait_until(lambda: httpx.get(discovery, timeout=5).status_code == 200, 60, "serving its discovery")
        yield oidc
    finally:
        process.stop()


# -- the gateway's configurations: those of docs/authentication.md ("Single sign-on") --------------


def documented_config(provider_name: str, addresses: dict[str, str]) -> dict:
    """The configuration example of docs/authentication.md that defines ``provider_name``, with
    the documented addresses replaced (the example's provider address -> the test provider's)."""
    section = DOCS.read_text().split("\n## Single sign-on\n", 1)[1].split("\n## ", 1)[0]
    for block in re.findall(r"```yaml\n(.*?)```", section, re.DOTALL):
        for documented, actual in addresses.items():
            block = block.replace(documented, actual)
        config = yaml.safe_load(block)
        if provider_name in [p["provider"] for p in config.get("authentication", {}).get("providers", [])]:
            return config
    raise AssertionError(f"docs/authentication.md has no example with provider {provider_name!r}")


# -- a person at the provider's pages, played by an HTTP client ------------------------------------


class _Forms(HTMLParser):
    """The forms of a page: action, method and fields (hidden ones with their values)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": attributes.get("action", ""), "id": attributes.get("id"), "fields": {}})
        elif tag == "input" and self.forms and attributes.get("name"):
            self.forms[-1]["fields"][attributes["name"]] = attributes.get("value", "")


def sign_in_at_provider(start: str, user: str, password: str, stop_at: str) -> httpx.Response:
    """Go to ``start`` and through the provider's pages as a person would (sign in as ``user``,
    confirm a device), until a redirect leaves for ``stop_at``: that redirect is answered."""
    with httpx.Client(timeout=30, follow_redirects=False) as browser:
        response = browser.get(start)
        for _ in range(20):
            if response.is_redirect:
                location = str(response.url.join(response.headers["Location"]))
                if location.startswith(stop_at):
                    return response
                response = browser.get(location)
                continue
            parser = _Forms()
            parser.feed(response.text)
            if not parser.forms:
                return response  # a page without a form: the end of the way
            form = parser.forms[0]
            fields = dict(form["fields"])
            if "login" in fields or "password" in fields:
                fields.update(login=user, password=password)
            response = browser.post(str(response.url.join(form["action"] or response.url)), data=fields)
        raise AssertionError("the provider's pages did not end")


# -- what the single sign-on tests share: the provider, a sign-in through the gateway, tokens --------

GATEWAY = "http://localhost"  # the Flask test client's address
REDIRECT_URI = f"{GATEWAY}/api/auth/provider/facility/code"
POLICY = {
    "policy": "bluesky_httpserver.authorization:DictionaryAPIAccessControl",
    "args": {"users": {"dana": {"roles": "user"}}},
}


@pytest.fixture(scope="module")
def oidc(tmp_path_factory):
    """The provider, one per test module that takes this fixture (``oidc = oidc_support.oidc``)."""
    with running_provider(tmp_path_factory.mktemp("oidc"), [REDIRECT_URI]) as provider:
        yield provider


def browser_sign_in(client, user: str, state: str = "page-state", provider: str = "facility"):
    """/authorize, the provider's pages as ``user``, and the provider's redirect to the gateway."""
    start = client.get(f"/api/auth/provider/{provider}/authorize?state={state}")
    assert start.status_code == 302, start.get_data(as_text=True)
    back = sign_in_at_provider(start.headers["Location"], user, USERS[user]["password"], GATEWAY)
    return client.get(back.headers["Location"].removeprefix(GATEWAY))


def session_of(client, handover_location: str, provider: str = "facility") -> dict:
    """The page's part: the hand-over code exchanged for the refresh token, then for tokens."""
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(handover_location).query))
    refresh_token = client.post(f"/api/auth/provider/{provider}/code?code={query['code']}").get_json()
    tokens = client.post("/api/auth/session/refresh", json={"refresh_token": refresh_token}).get_json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def signed_in_identity(client, user: str, provider: str) -> dict:
    """The whole sign-in of ``user`` through ``provider``'s pages and the page's hand-over: the
    first identity ``/api/auth/whoami`` then reports."""
    returned = browser_sign_in(client, user, provider=provider)
    assert returned.status_code == 303, returned.get_data(as_text=True)
    who = client.get("/api/auth/whoami", headers=session_of(client, returned.headers["Location"], provider))
    return who.get_json()["identities"][0]


def bearer_header(token: str) -> dict:
    """The Authorization header that sends ``token``, a provider's token."""
    return {"Authorization": f"Bearer {token}"}


def token_claims(user: str, **changes) -> dict:
    """The claims of an access token of the provider for ``user``, valid for five minutes."""
    now = int(time.time())
    claims = {"iss": None, "sub": user, "preferred_username": user, "aud": AUDIENCE, "iat": now, "exp": now + 300}
    claims["groups"] = USERS.get(user, {}).get("groups", [])
    return {**claims, **changes}


def provider_token(oidc, user: str, **changes) -> str:
    """An access token for ``user`` signed by the provider ``oidc``."""
    return oidc.sign({**token_claims(user, iss=oidc.issuer), **changes})


def private_pem() -> bytes:
    """A new RSA private key (PEM), one the provider never signs with."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
