"""Access and refresh tokens: HS256 JWTs with bluesky-httpserver's claims, plus the ones that make
them checkable: ``sid`` (the login session), ``jti`` (unique per token), ``iat``, ``iss``, ``aud``.

Tokens are signed with the first secret key and verified with each in turn, so a key can be
rotated by putting the new one first. Without configured keys every worker signs with one key
generated once and shared through Redis (see :meth:`AuthState.shared_signing_key`).

A token is only the signed claims: whether its session still lives is asked of Redis on every
request (:mod:`.sessions`), and a refresh token is spent once used (:mod:`.refresh`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jwt

ALGORITHM = "HS256"
ISSUER = "qs-gateway"
AUDIENCE = "qs-gateway"
# A token without any of these was not made by this gateway (or by an older version of it).
REQUIRED_CLAIMS = ("exp", "iat", "jti", "iss", "aud", "sid", "type")


class TokenExpired(Exception):
    pass


class TokenInvalid(Exception):
    pass


def new_token_id() -> str:
    return uuid.uuid4().hex


class SigningKeys:
    """The configured keys, or the shared generated one (fetched once per process)."""

    def __init__(self, configured: Sequence[str], shared: Callable[[], str]) -> None:
        self._configured = tuple(configured)
        self._shared = shared
        self._fetched: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def all(self) -> tuple[str, ...]:
        if self._configured:
            return self._configured
        if not self._fetched:
            with self._lock:
                if not self._fetched:
                    self._fetched = (self._shared(),)
        return self._fetched


class Tokens:
    def __init__(self, keys: SigningKeys, access_max_age: float, refresh_max_age: float) -> None:
        self.keys = keys
        self.access_max_age = access_max_age
        self.refresh_max_age = refresh_max_age

    def _encode(self, claims: dict[str, Any], max_age: float, token_id: str | None = None) -> str:
        now = int(time.time())
        claims = {
            **claims,
            "iat": now,
            "exp": int(now + max_age),
            "jti": token_id or new_token_id(),
            "iss": ISSUER,
            "aud": AUDIENCE,
        }
        return jwt.encode(claims, self.keys.all()[0], algorithm=ALGORITHM)

    def access_token(
        self, principal: str, scopes: Iterable[str], identities: Iterable[tuple[str, str]], session: str
    ) -> str:
        claims = {
            "sub": principal,
            "sub_typ": "user",
            "scp": sorted(scopes),
            "ids": [{"id": identity, "idp": provider} for provider, identity in identities],
            "sid": session,
            "type": "access",
        }
        return self._encode(claims, self.access_max_age)

    def refresh_token(self, session: str, token_id: str) -> str:
        """``token_id`` is kept with the session: the one refresh token that may be spent next."""
        return self._encode({"sid": session, "type": "refresh"}, self.refresh_max_age, token_id)

    def decode(self, token: str, expected_type: str) -> dict[str, Any]:
        """The claims; TokenExpired or TokenInvalid (bad signature, garbage, wrong type, issuer or
        audience, a claim missing)."""
        expired = False
        for key in self.keys.all():
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[ALGORITHM],
                    issuer=ISSUER,
                    audience=AUDIENCE,
                    # iat is for the record: another host's clock may be a little ahead
                    options={"require": list(REQUIRED_CLAIMS), "verify_iat": False},
                )
            except jwt.ExpiredSignatureError:
                expired = True  # signed by this key, but too old
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:  # signed by this key, but not one of ours
                raise TokenInvalid(str(exc)) from None
            if claims.get("type") != expected_type:
                raise TokenInvalid(f"not a {expected_type} token")
            return claims
        if expired:
            raise TokenExpired()
        raise TokenInvalid("no key verifies the signature")
