"""Idempotency keys: the first answer to a request, remembered per principal and key.

A request with an ``Idempotency-Key`` first claims the key (``SET NX``) with the fingerprint
of its body and a token of its own; only the claimant goes on to RE Manager. Its answer then
replaces the claim (if the claim is still its own), kept ``retention`` seconds. A request that
finds the key:

* claimed with another fingerprint: a different request under the same key (the caller's 422);
* answered: the answer, again (nothing is sent to RE Manager);
* still claimed: the first request is under way (the caller's 409: retry shortly).

A claimant that fails before anything reached RE Manager lets the key go (``release``), so a
retry is carried out. A worker that dies with a claim leaves it until ``claim_seconds`` pass.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from ..redis_store import RedisStore

# Replace (answer) or drop (release) the claim only while it is this request's own.
_IF_CLAIMED = """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
if cjson.decode(value)['token'] ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
return 1
"""


@dataclass(frozen=True)
class Remembered:
    """What a key holds: ``token`` set while the first request is under way, ``answer`` after."""

    fingerprint: str
    token: str | None = None
    answer: dict[str, Any] | None = None


def fingerprint(method: str, path: str, payload: Any) -> str:
    """The request as sent, with JSON key order and spacing ignored."""
    body = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(f"{method} {path}\n".encode() + body).hexdigest()


class IdempotencyStore:
    def __init__(self, store: RedisStore, *, retention_seconds: float, claim_seconds: float = 300.0) -> None:
        self.store = store
        self.retention_seconds = max(1, int(retention_seconds))
        self.claim_seconds = max(1, int(claim_seconds))
        self._script: tuple[int, Any] | None = None

    def _key(self, principal: str, key: str) -> str:
        digest = hashlib.sha256(f"{principal}\n{key}".encode()).hexdigest()
        return self.store.key("idempotency", digest)

    def _if_claimed(self, r: redis.Redis) -> Any:
        if self._script is None or self._script[0] != id(r):
            self._script = (id(r), r.register_script(_IF_CLAIMED))
        return self._script[1]

    def claim(self, principal: str, key: str, fingerprint: str) -> tuple[str | None, Remembered | None]:
        """(token, None) if this request now holds the key; (None, what it holds) otherwise."""
        token = uuid.uuid4().hex
        value = orjson.dumps({"fingerprint": fingerprint, "token": token})
        name = self._key(principal, key)

        def attempt(r: redis.Redis) -> tuple[bool, bytes | None]:
            if r.set(name, value, nx=True, ex=self.claim_seconds):
                return True, None
            return False, r.get(name)

        while True:
            claimed, held = self.store.run(attempt)
            if claimed:
                return token, None
            if held is not None:  # (None: the key went between SET and GET; try again)
                data = orjson.loads(held)
                return None, Remembered(data["fingerprint"], data.get("token"), data.get("answer"))

    def answer(self, principal: str, key: str, fingerprint: str, token: str, answer: dict[str, Any]) -> None:
        """Remember ``answer`` (JSON-able: status and body) as the key's, for the retention time."""
        value = orjson.dumps({"fingerprint": fingerprint, "answer": answer})
        name = self._key(principal, key)
        self.store.run(
            lambda r: self._if_claimed(r)(keys=[name], args=[token, value, self.retention_seconds], client=r)
        )

    def release(self, principal: str, key: str, token: str) -> None:
        """Let the key go: nothing reached RE Manager, a retry must be carried out."""
        name = self._key(principal, key)
        self.store.run(lambda r: self._if_claimed(r)(keys=[name], args=[token, "", 0], client=r))
