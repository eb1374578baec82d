"""A real OpenID provider for the single sign-on tests: npm's ``oidc-provider`` (installed into
tests/oidc/node_modules by ``scripts/setup test``), run by tests/oidc/provider.mjs on a free
loopback port, waited for through its discovery document, stopped by process group.

Its clients and users are here; the gateway's configurations are those of
docs/authentication.md ("Single sign-on"), filled in with the provider's address.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from qs_gateway.serving.stack import ManagedProcess

from .auth_support import provider

OIDC_DIR = Path(__file__).parent / "oidc"
CLIENT_ID = "qs-gateway"
CLIENT_SECRET = "qs-gateway-client-secret"
DEVICE_CLIENT_ID = "qs-cli"  # public: no secret, the device flow only
AUDIENCE = "https://qs-gateway.example.org"
TENANT = "7f3c2a1e-0d4b-4c6a-9e21-5b8f3d2c1a90"  # the Entra emulation's tenant id
# two users of the provider: dana is a user of the gateway's policy, erin is not (her groups may give her roles)
USERS = {
    "dana": {"password": "dana-password", "groups": ["beamline-users"]},
    "erin": {"password": "erin-password", "groups": ["beamline-staff"]},
}
ROLE_MAPPING = {"beamline-staff": "expert"}  # a group of the provider -> a role of the gateway


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

    def device_token(self, scope: str = "openid profile groups") -> dict:
        """Start a device sign-in of the public client at the provider itself."""
        answer = httpx.post(
            f"{self.base}/device/auth", data={"client_id": DEVICE_CLIENT_ID, "scope": scope}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        return answer.json()


def _clients(redirect_uris: list[str]) -> list[dict]:
    return [
        {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": redirect_uris,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        },
        {
            "client_id": DEVICE_CLIENT_ID,
            "token_endpoint_auth_method": "none",
            "grant_types": ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
            "response_types": [],
            "redirect_uris": [],
        },
    ]


@contextmanager
def running_provider(workdir: Path, redirect_uris: list[str], *, tenant: str | None = None) -> Iterator[OpenIDProvider]:
    if shutil.which("node") is None or not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("the OpenID provider is not installed: run scripts/setup test (node and npm are needed)")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / f"oidc-{time.monotonic_ns()}.json"
    settings = {"port": 0, "tenant": tenant, "audience": AUDIENCE, "clients": _clients(redirect_uris), "users": USERS}
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


def generic_provider(oidc: OpenIDProvider, name: str = "facility") -> dict:
    """Browser and device sign-in at a generic OpenID provider, by discovery."""
    return provider(
        name,
        "OIDCAuthenticator",
        well_known_uri=oidc.well_known_uri,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        audience=CLIENT_ID,
        scopes=["openid", "profile", "email"],
        username_claim="preferred_username",
    )


def proxied_provider(oidc: OpenIDProvider, name: str = "facility-tokens") -> dict:
    """The provider's own access tokens, accepted as bearer tokens."""
    return provider(
        name,
        "ProxiedOIDCAuthenticator",
        well_known_uri=oidc.well_known_uri,
        audience=AUDIENCE,
        client_id=CLIENT_ID,
        device_flow_client_id=DEVICE_CLIENT_ID,
        scopes=["openid", "profile", "groups"],
        username_claim="preferred_username",
        roles_claim="groups",
        role_mapping=ROLE_MAPPING,
    )


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
