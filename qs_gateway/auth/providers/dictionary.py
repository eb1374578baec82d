"""Users and passwords from the configuration (for small installations and for tests).

A password may be given as a hash, so that the configuration holds no secret: bcrypt
(``$2b$...``), Werkzeug (``pbkdf2:sha256:...``, ``scrypt:...``), or passlib's PBKDF2
(``$pbkdf2-sha256$rounds$salt$hash``). Anything else is compared as plain text.

The password of an unknown user is checked too, against a dummy hash made like the configured
ones, so that a login answers as slowly for a user who does not exist as for one who does (the
time must not tell which user names are real).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping

from ...config import ConfigError

_PASSLIB_DIGESTS = {"$pbkdf2$": "sha1", "$pbkdf2-sha256$": "sha256", "$pbkdf2-sha512$": "sha512"}


def _ab64_decode(text: str) -> bytes:
    """passlib's "adapted base64": '.' instead of '+', no padding."""
    text = text.replace(".", "+")
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _ab64_encode(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=").replace("+", ".")


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


def dummy_hash_like(stored: str) -> str:
    """A hash of a random password, in the format and at the cost of ``stored``."""
    secret = secrets.token_hex(16)
    if stored.startswith(("$2a$", "$2b$", "$2y$")):
        import bcrypt

        rounds = int(stored.split("$")[2]) if stored.split("$")[2].isdigit() else 12
        return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds=rounds)).decode()
    if stored.startswith(tuple(_PASSLIB_DIGESTS)):
        prefix = next(p for p in _PASSLIB_DIGESTS if stored.startswith(p))
        rounds = stored[len(prefix) :].split("$")[0]
        rounds = int(rounds) if rounds.isdigit() else 29000
        salt = secrets.token_bytes(16)
        digest = hashlib.pbkdf2_hmac(_PASSLIB_DIGESTS[prefix], secret.encode(), salt, rounds)
        return f"{prefix}{rounds}${_ab64_encode(salt)}${_ab64_encode(digest)}"
    if stored.startswith(("pbkdf2:", "scrypt:")):
        from werkzeug.security import generate_password_hash

        return generate_password_hash(secret, method=stored.split("$")[0])
    return secret


def _model_of_dummy(stored: list[str]) -> str | None:
    """The configured value the dummy is made like: the first hash (checking a hash takes time,
    plain text none; a configuration usually has hashes of one kind and cost)."""
    hashed = [value for value in stored if value.startswith(("$", "pbkdf2:", "scrypt:"))]
    return (hashed or stored or [None])[0]


class DictionaryAuthenticator:
    mode = "password"

    def __init__(self, *, users_to_passwords: Mapping[str, str]) -> None:
        if not isinstance(users_to_passwords, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in users_to_passwords.items()
        ):
            raise ConfigError("users_to_passwords: expected a mapping of user name to password (or password hash)")
        self._passwords = dict(users_to_passwords)
        model = _model_of_dummy(list(self._passwords.values()))
        self._dummy = dummy_hash_like(model) if model is not None else secrets.token_hex(16)

    def authenticate(self, username: str, password: str) -> str | None:
        stored = self._passwords.get(username)
        if stored is None:
            check_password(self._dummy, password)  # as long as for a real user; never a match
            return None
        if not password:
            return None
        return username if check_password(stored, password) else None


class DummyAuthenticator:
    """Accepts every user name with any password. For demonstrations only."""

    mode = "password"

    def authenticate(self, username: str, password: str) -> str | None:
        return username or None
