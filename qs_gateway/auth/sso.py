"""Single sign-on at an OpenID provider: the browser sign-in and the device-code sign-in.

Browser (authorization code with PKCE): the gateway makes a ``state``, a ``nonce`` and a PKCE
verifier, keeps them in Redis under the state (any worker or host may receive the provider's
redirect) and in a cookie of the browser (so the redirect counts only in the browser that started
the sign-in), and sends the browser to the provider. The provider's redirect brings a code back;
the pending sign-in is taken from Redis (once: it is deleted as it is read), the code exchanged
with the verifier, and the id_token's nonce checked. The gateway's page then receives a one-time
hand-over code (in its address: never the tokens themselves), which it exchanges for the
session's refresh token at the code endpoint.

Device code (Tiled's and bluesky-httpserver's development line): a script asks for a device code
and a user code; the person opens the verification page, enters the user code and signs in at the
provider in any browser; the script polls with the device code until the sign-in is done, then
receives the gateway's tokens, once. Device codes live in Redis (under their SHA-256: a read of
Redis does not give one away), expire, and are spent by the first poll that finds them approved.
A wrong user code counts as a failed login of the address, a wrong device code as a failed
credential check (:mod:`.throttle`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from ..exceptions import BadRequest, NotFound
from .accounts import EXTERNAL_FAILURE, NOT_AUTHORIZED, Accounts
from .authenticator import unauthorized
from .providers import Provider

SIGN_IN_SECONDS = 600  # a sign-in at the provider must come back within ten minutes
HANDOVER_SECONDS = 120  # the page exchanges its hand-over code at once
DEVICE_CODE_SECONDS = 600
POLL_INTERVAL_SECONDS = 5
USER_CODE_LETTERS = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels (no words), no digits (no 0/O, 1/I mix-ups)
USER_CODE_LENGTH = 8
NOT_STARTED_HERE = "This sign-in was not started in this browser, or it has expired; please sign in again."
UNKNOWN_USER_CODE = "Unknown or expired code; check the code your terminal shows."


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def normalize_user_code(text: str) -> str:
    """``bcdf-ghjk``, ``BCDF GHJK`` and ``BCDFGHJK`` are the same user code."""
    return "".join(c for c in text.upper() if c.isalpha())


def _formatted(user_code: str) -> str:
    half = len(user_code) // 2
    return f"{user_code[:half]}-{user_code[half:]}"


class DeviceFlowError(BadRequest):
    """RFC 8628's answers to a poll, in the body as Tiled's clients and RFC clients read them."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__({"error": error, "error_description": description}, error=error)


@dataclass(frozen=True)
class SignedIn:
    """The outcome of a provider's redirect: a browser sign-in (``handover`` for the page, or
    the refresh token for other callers) or an approved device code."""

    provider: Provider
    device: bool
    handover: str | None = None
    client_state: str | None = None


class SingleSignOn:
    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts
        self.auth = accounts.auth
        self.store = accounts.auth.state.store

    def _key(self, *parts: str) -> str:
        return self.store.key("auth", "sso", *parts)

    def provider(self, name: str) -> Provider:
        """An external provider the gateway itself sends browsers to (not a proxied one)."""
        provider = self.accounts.external_provider(name)
        if not callable(getattr(provider.authenticator, "authorization_request", None)):
            raise NotFound("Not Found")
        return provider

    # -- the browser ---------------------------------------------------------------------------

    def start(
        self, name: str, redirect_uri: str, *, client_state: str | None = None, device: str | None = None
    ) -> tuple[str, str]:
        """Where to send the browser, and the state to keep in its cookie."""
        provider = self.provider(name)
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        pending = {"provider": name, "nonce": nonce, "verifier": verifier, "redirect_uri": redirect_uri}
        pending |= {"client_state": client_state, "device": device}
        url = provider.authenticator.authorization_request(
            redirect_uri, state=state, nonce=nonce, code_verifier=verifier
        )
        self.store.run(lambda r: r.set(self._key("signin", _digest(state)), json.dumps(pending), ex=SIGN_IN_SECONDS))
        return url, state

    def is_pending(self, state: str) -> bool:
        return bool(state) and bool(self.store.run(lambda r: r.exists(self._key("signin", _digest(state)))))

    def finish(self, name: str, code: str, state: str, browser_state: str | None, address: str | None) -> SignedIn:
        """The provider's redirect with ``code`` and ``state``; ``browser_state`` is the
        browser's cookie. Once per state: a replayed redirect finds nothing."""
        provider = self.provider(name)
        raw = self.store.run(lambda r: r.getdel(self._key("signin", _digest(state))))
        pending = json.loads(raw) if raw else None
        if pending is None or pending["provider"] != name or not secrets.compare_digest(browser_state or "", state):
            raise BadRequest(NOT_STARTED_HERE)
        throttle = self.auth.throttle
        throttle.before_login(None, address)
        authenticator = provider.authenticator
        claims = authenticator.exchange(
            code, pending["redirect_uri"], code_verifier=pending["verifier"], nonce=pending["nonce"]
        )
        user = authenticator.user_name(claims)
        if user is None:
            throttle.login_failed(None, address)
            raise unauthorized(EXTERNAL_FAILURE)
        if pending["device"]:
            self._approve(pending["device"], name, user)
            return SignedIn(provider, device=True)
        refresh_token = self.accounts.external_sign_in(name, user)
        handover = secrets.token_urlsafe(32)
        key = self._key("handover", _digest(handover))
        self.store.run(lambda r: r.set(key, refresh_token, ex=HANDOVER_SECONDS))
        return SignedIn(provider, device=False, handover=handover, client_state=pending["client_state"])

    def redeem(self, handover: str) -> str | None:
        """The refresh token of a hand-over code (once), or None if it is not one."""
        raw = self.store.run(lambda r: r.getdel(self._key("handover", _digest(handover))))
        return raw.decode() if isinstance(raw, bytes) else raw

    # -- device codes --------------------------------------------------------------------------

    def device_authorize(self, name: str) -> dict[str, Any]:
        self.provider(name)
        device_code = secrets.token_urlsafe(32)
        digest = _digest(device_code)
        for _ in range(10):  # a user code already in use is drawn again
            user_code = "".join(secrets.choice(USER_CODE_LETTERS) for _ in range(USER_CODE_LENGTH))
            if self._claim_user_code(user_code, digest):
                break
        record = {"provider": name, "user_code": user_code, "status": "pending"}

        def store(r: Any) -> None:
            r.pipeline().hset(self._key("device", digest), mapping=record).expire(
                self._key("device", digest), DEVICE_CODE_SECONDS
            ).execute()

        self.store.run(store)
        return {
            "device_code": device_code,
            "user_code": _formatted(user_code),
            "expires_in": DEVICE_CODE_SECONDS,
            "interval": POLL_INTERVAL_SECONDS,
        }

    def _claim_user_code(self, user_code: str, digest: str) -> bool:
        key = self._key("user_code", user_code)
        return bool(self.store.run(lambda r: r.set(key, digest, nx=True, ex=DEVICE_CODE_SECONDS)))

    def _device(self, digest: str) -> dict[str, str]:
        fields = self.store.run(lambda r: r.hgetall(self._key("device", digest)))
        return {k.decode(): v.decode() for k, v in fields.items()}

    def device_for_user_code(self, name: str, user_code: str, address: str | None) -> str:
        """The device (its code's digest) waiting for this user code; BadRequest if none."""
        throttle = self.auth.throttle
        throttle.before_login(None, address)
        code = normalize_user_code(user_code)
        raw = self.store.run(lambda r: r.get(self._key("user_code", code))) if code else None
        digest = raw.decode() if raw else None
        device = self._device(digest) if digest else {}
        if device.get("provider") != name or device.get("status") != "pending":
            throttle.login_failed(None, address)
            raise BadRequest(UNKNOWN_USER_CODE)
        return digest

    def _approve(self, digest: str, name: str, user: str) -> None:
        device = self._device(digest)
        if device.get("provider") != name:
            raise BadRequest(UNKNOWN_USER_CODE)
        known = self.auth.api_access.is_user_known(user)
        status = {"status": "approved" if known else "denied", "user": user}
        key = self._key("device", digest)

        def approve(r: Any) -> None:
            pipe = r.pipeline()  # MULTI: an expiry with the write, so a record that expired meanwhile
            pipe.hset(key, mapping=status).expire(key, DEVICE_CODE_SECONDS)  # does not come back for good
            pipe.delete(self._key("user_code", device["user_code"])).execute()

        self.store.run(approve)
        if not known:
            raise unauthorized(NOT_AUTHORIZED)

    def device_token(self, name: str, device_code: str, address: str | None) -> dict[str, Any]:
        """The gateway's tokens once the person signed in; DeviceFlowError until then."""
        self.provider(name)
        throttle = self.auth.throttle
        throttle.before_credentials(address)
        digest = _digest(device_code)
        device = self._device(digest)
        if device.get("provider") != name:
            throttle.credentials_failed(address)
            raise DeviceFlowError("expired_token", "The device code is unknown, expired or already used.")
        status = device["status"]
        if status == "pending":
            # one poll per interval: the first one opens the interval's key, later ones find it
            polled = self._key("polled", digest)
            if not self.store.run(lambda r: r.set(polled, 1, nx=True, ex=POLL_INTERVAL_SECONDS)):
                raise DeviceFlowError("slow_down", f"Poll at most every {POLL_INTERVAL_SECONDS} s.")
            raise DeviceFlowError("authorization_pending", "The sign-in is not done yet.")
        spent = self.store.run(lambda r: r.delete(self._key("device", digest)))
        if status != "approved" or not spent:  # denied, or another poll took it first
            raise DeviceFlowError("access_denied", "The sign-in was refused.")
        return self.accounts.sign_in(name, device["user"])
