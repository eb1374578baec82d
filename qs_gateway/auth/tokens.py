"""Access and refresh tokens: HS256 JWTs, as bluesky-httpserver (after Tiled) issues them.

Tokens are signed with the first secret key and verified with each in turn, so a key can be
rotated by putting the new one first. Without configured keys every worker signs with one key
generated once and shared through Redis (see :meth:`AuthState.shared_signing_key`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jwt

ALGORITHM = "HS256"


class TokenExpired(Exception):
    pass


class TokenInvalid(Exception):
    pass


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

    def _encode(self, claims: dict[str, Any], max_age: float) -> str:
        return jwt.encode({**claims, "exp": int(time.time() + max_age)}, self.keys.all()[0], algorithm=ALGORITHM)

    def access_token(self, principal: str, scopes: Iterable[str], identities: Iterable[tuple[str, str]]) -> str:
        claims = {
            "sub": principal,
            "sub_typ": "user",
            "scp": sorted(scopes),
            "ids": [{"id": identity, "idp": provider} for provider, identity in identities],
            "type": "access",
        }
        return self._encode(claims, self.access_max_age)

    def refresh_token(self, session: str) -> str:
        return self._encode({"sid": session, "type": "refresh"}, self.refresh_max_age)

    def decode(self, token: str, expected_type: str) -> dict[str, Any]:
        """The claims; TokenExpired or TokenInvalid (bad signature, garbage, wrong type)."""
        expired = False
        for key in self.keys.all():
            try:
                claims = jwt.decode(token, key, algorithms=[ALGORITHM], options={"require": ["exp"]})
            except jwt.ExpiredSignatureError:
                expired = True  # signed by this key, but too old
                break
            except jwt.PyJWTError:
                continue
            if claims.get("type") != expected_type:
                raise TokenInvalid(f"not a {expected_type} token")
            return claims
        if expired:
            raise TokenExpired()
        raise TokenInvalid("no key verifies the signature")
