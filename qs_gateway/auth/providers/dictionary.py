"""Users and passwords from the configuration (for small installations and for tests).

A password may be given as a hash, so that the configuration holds no secret: bcrypt
(``$2b$...``), Werkzeug (``pbkdf2:sha256:...``, ``scrypt:...``), or passlib's PBKDF2
(``$pbkdf2-sha256$rounds$salt$hash``). Anything else is compared as plain text.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from ...config import ConfigError

_PASSLIB_DIGESTS = {"$pbkdf2$": "sha1", "$pbkdf2-sha256$": "sha256", "$pbkdf2-sha512$": "sha512"}


def _ab64_decode(text: str) -> bytes:
    """passlib's "adapted base64": '.' instead of '+', no padding."""
    text = text.replace(".", "+")
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _check_passlib_pbkdf2(stored: str, password: str) -> bool:
    prefix = next(p for p in _PASSLIB_DIGESTS if stored.startswith(p))
    try:
        rounds, salt, digest = stored[len(prefix) :].split("$")
        expected = _ab64_decode(digest)
        computed = hashlib.pbkdf2_hmac(_PASSLIB_DIGESTS[prefix], password.encode(), _ab64_decode(salt), int(rounds))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, expected)


def check_password(stored: str, password: str) -> bool:
    """Does ``password`` match ``stored`` (a hash in one of the formats above, or plain text)?"""
    if stored.startswith(("$2a$", "$2b$", "$2y$")):
        import bcrypt

        try:
            return bcrypt.checkpw(password.encode(), stored.encode())
        except ValueError:
            return False
    if stored.startswith(tuple(_PASSLIB_DIGESTS)):
        return _check_passlib_pbkdf2(stored, password)
    if stored.startswith(("pbkdf2:", "scrypt:")):
        from werkzeug.security import check_password_hash

        return check_password_hash(stored, password)
    return hmac.compare_digest(stored.encode(), password.encode())


class DictionaryAuthenticator:
    mode = "password"

    def __init__(self, *, users_to_passwords: Mapping[str, str]) -> None:
        if not isinstance(users_to_passwords, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in users_to_passwords.items()
        ):
            raise ConfigError("users_to_passwords: expected a mapping of user name to password (or password hash)")
        self._passwords = dict(users_to_passwords)

    def authenticate(self, username: str, password: str) -> str | None:
        stored = self._passwords.get(username)
        if stored is None or not password:
            return None
        return username if check_password(stored, password) else None


class DummyAuthenticator:
    """Accepts every user name with any password. For demonstrations only."""

    mode = "password"

    def authenticate(self, username: str, password: str) -> str | None:
        return username or None
