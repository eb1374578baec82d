"""Submissions in Redis: a proposed queue item waiting for a person to approve or deny it.

A submission is a hash ``sub:<uid>`` (its state, the item as JSON, who proposed it and when,
the validation, and the decision once there is one), listed in one sorted set per state and in
``sub:all`` (score: when it was submitted, so listings are newest first).

Every change of state is one Lua script that checks the state it expects and moves the
submission in the same step, so of two workers that approve (or approve and deny) the same
submission at once exactly one succeeds; the other learns the state the first one left. An
approval is three steps: ``pending -> approving`` (the claim: only one request gets it), the
add through RE Manager, then ``approving -> approved`` with the new ``item_uid``, or back to
``pending`` when RE Manager refused the item (nothing was added), or ``failed`` when RE Manager
did not answer (the item may or may not be in the queue: approving again could add it twice).

Pending submissions expire ``expiry`` seconds after they were made: each read and each change
first moves the due ones to ``expired``, and a change never applies to a submission past its
time. Decided submissions are kept ``retention`` seconds (Redis expires the hash; listings drop
what Redis let go).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from ..redis_store import RedisStore

STATES = ("pending", "approving", "approved", "denied", "withdrawn", "expired", "failed")
_SWEEP_BATCH = 100  # due submissions expired per sweep (a sweep runs before every read and change)

# Move one submission from ARGV[1] to ARGV[2] if it is in ARGV[1] (and, when leaving pending,
# not past its time; when ARGV[4] names a user, only if that user submitted it). ARGV[5]: the
# time to keep a decided one (empty: not decided). ARGV[6..]: fields to set.
# Answers {"ok", now_ms} or {"refused", the state, or "missing" or "owner"}.
_TRANSITION = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'refused', 'missing'} end
if state ~= ARGV[1] then return {'refused', state} end
if ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'username') ~= ARGV[4] then return {'refused', 'owner'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if state == 'pending' and tonumber(redis.call('HGET', KEYS[1], 'expires_ms')) <= now then
  return {'refused', 'expired'}
end
local uid = ARGV[3]
local score = redis.call('ZSCORE', KEYS[2], uid) or now
redis.call('ZREM', KEYS[2], uid)
redis.call('ZADD', KEYS[3], score, uid)
if ARGV[2] == 'pending' then
  redis.call('ZADD', KEYS[4], redis.call('HGET', KEYS[1], 'expires_ms'), uid)
end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'changed_ms', now)
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'decided_ms', now)
  redis.call('EXPIRE', KEYS[1], ARGV[5])
end
redis.call('INCR', KEYS[5])
return {'ok', tostring(now)}
"""

# A new pending submission. ARGV: uid, expiry ms, ttl s, then its fields.
_ADD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'state', 'pending', 'submitted_ms', now, 'expires_ms', expires, 'changed_ms', now)
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('ZADD', KEYS[4], expires, ARGV[1])
redis.call('INCR', KEYS[5])
return tostring(now)
"""

# Pending submissions past their time become expired. KEYS: expiry, pending, expired, version;
# ARGV: hash key prefix, ttl s of a decided submission, batch.
_SWEEP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local expired = 0
for _, uid in ipairs(due) do
  redis.call('ZREM', KEYS[1], uid)
  local key = ARGV[1] .. uid
  if redis.call('HGET', key, 'state') == 'pending' then
    local score = redis.call('ZSCORE', KEYS[2], uid) or now
    redis.call('ZREM', KEYS[2], uid)
    redis.call('ZADD', KEYS[3], score, uid)
    redis.call('HSET', key, 'state', 'expired', 'changed_ms', now, 'decided_ms', now)
    redis.call('EXPIRE', key, ARGV[2])
    expired = expired + 1
  end
end
if expired > 0 then redis.call('INCR', KEYS[4]) end
return expired
"""


class TransitionRefused(Exception):
    """The submission was not in the state the change needs; ``state`` is the one it is in
    (``missing``: no such submission; ``owner``: someone else submitted it)."""

    def __init__(self, uid: str, state: str) -> None:
        super().__init__(f"submission {uid} is {state}")
        self.uid = uid
        self.state = state


@dataclass(frozen=True)
class Submission:
    uid: str
    state: str
    fields: Mapping[str, bytes]

    def _text(self, name: str) -> str | None:
        value = self.fields.get(name)
        return value.decode() if value is not None else None

    def _json(self, name: str) -> Any:
        value = self.fields.get(name)
        return orjson.loads(value) if value is not None else None

    def _seconds(self, name: str) -> float | None:
        value = self.fields.get(name)
        return int(value) / 1000 if value is not None else None

    @property
    def item(self) -> Any:
        return self._json("item")

    @property
    def username(self) -> str | None:
        return self._text("username")

    def as_dict(self) -> dict[str, Any]:
        """What clients see of it (``/api/queue/submission/get``, notifications)."""
        return {
            "uid": self.uid,
            "state": self.state,
            "item": self.item,
            "note": self._text("note") or "",
            "validation": self._json("validation"),
            "user": self._text("user"),
            "user_group": self._text("user_group"),
            "username": self.username,
            "time_submitted": self._seconds("submitted_ms"),
            "time_expires": self._seconds("expires_ms"),
            "time_decided": self._seconds("decided_ms"),
            "decided_by": self._text("decided_by"),
            "decision_note": self._text("decision_note") or "",
            "item_uid": self._text("item_uid"),
            "error": self._text("error"),
        }


class SubmissionStore:
    def __init__(self, store: RedisStore, *, expiry_seconds: float, retention_seconds: float) -> None:
        self.store = store
        self.expiry_ms = int(expiry_seconds * 1000)
        self.retention_seconds = max(1, int(retention_seconds))
        self._hash_prefix = store.key("sub", "")
        self._version = store.key("sub", "version")
        self._expiry = store.key("sub", "expiry")
        self._all = store.key("sub", "all")
        self._scripts: dict[int, tuple[Any, Any, Any]] = {}

    def _state_key(self, state: str) -> str:
        return self.store.key("sub", "state", state)

    def _scripts_of(self, r: redis.Redis) -> tuple[Any, Any, Any]:
        # registered once per client (a worker's client is made after the fork)
        scripts = self._scripts.get(id(r))
        if scripts is None:
            scripts = (r.register_script(_ADD), r.register_script(_TRANSITION), r.register_script(_SWEEP))
            self._scripts = {id(r): scripts}
        return scripts

    # -- reading -----------------------------------------------------------------------------

    def version(self) -> int:
        """Changes with every change of any submission (a client polls it cheaply)."""
        return int(self.store.run(lambda r: r.get(self._version)) or 0)

    def get(self, uid: str) -> Submission | None:
        self.expire_due()
        fields = self.store.run(lambda r: r.hgetall(self._hash_prefix + uid))
        return self._submission(uid, fields)

    @staticmethod
    def _submission(uid: str, fields: Mapping[bytes, bytes]) -> Submission | None:
        if not fields:
            return None
        decoded = {key.decode(): value for key, value in fields.items()}
        return Submission(uid, decoded["state"].decode(), decoded)

    def list(self, state: str | None, offset: int, limit: int) -> tuple[list[Submission], int]:
        """A page of submissions (in ``state``, or all), newest first, and how many there are."""
        self.expire_due()
        index = self._state_key(state) if state else self._all

        def page(r: redis.Redis) -> tuple[list, int]:
            uids = r.zrevrange(index, offset, offset + limit - 1) if limit > 0 else []
            pipe = r.pipeline(transaction=False)
            for uid in uids:
                pipe.hgetall(self._hash_prefix + uid.decode())
            pipe.zcard(index)
            *records, total = pipe.execute()
            return list(zip(uids, records, strict=True)), total

        found, total = self.store.run(page)
        submissions, gone = [], []
        for uid, fields in found:
            submission = self._submission(uid.decode(), fields)
            if submission is None:
                gone.append(uid)  # its retention passed: Redis let the hash go
            else:
                submissions.append(submission)
        if gone:
            self._forget(gone)
        return submissions, total - len(gone)

    def _forget(self, uids: Sequence[bytes]) -> None:
        def drop(r: redis.Redis) -> None:
            pipe = r.pipeline(transaction=False)
            for key in (self._all, *(self._state_key(s) for s in STATES)):
                pipe.zrem(key, *uids)
            pipe.execute()

        self.store.run(drop)

    # -- changing ----------------------------------------------------------------------------

    def add(self, fields: Mapping[str, Any]) -> Submission:
        """A new pending submission with ``fields`` (JSON-encoded unless already text)."""
        uid = str(uuid.uuid4())
        args: list[Any] = [uid, self.expiry_ms, self.retention_seconds + self.expiry_ms // 1000 + 1]
        for name, value in fields.items():
            args += [name, value if isinstance(value, str) else orjson.dumps(value)]
        keys = [self._hash_prefix + uid, self._all, self._state_key("pending"), self._expiry, self._version]
        self.store.run(lambda r: self._scripts_of(r)[0](keys=keys, args=args, client=r))
        submission = self.get(uid)
        if submission is None:  # only if Redis lost it at once (a failover)
            raise TransitionRefused(uid, "missing")
        return submission

    def move(
        self,
        uid: str,
        source: str,
        target: str,
        fields: Mapping[str, Any] | None = None,
        *,
        owner: str | None = None,
    ) -> Submission:
        """Move ``uid`` from state ``source`` to ``target`` and set ``fields``, atomically;
        :class:`TransitionRefused` if it was not in ``source`` (or is not ``owner``'s)."""
        self.expire_due()
        decided = target not in ("pending", "approving")
        args: list[Any] = [source, target, uid, owner or "", self.retention_seconds if decided else ""]
        for name, value in (fields or {}).items():
            if value is not None:
                args += [name, value if isinstance(value, str) else orjson.dumps(value)]
        keys = [
            self._hash_prefix + uid,
            self._state_key(source),
            self._state_key(target),
            self._expiry,
            self._version,
        ]
        outcome, detail = self.store.run(lambda r: self._scripts_of(r)[1](keys=keys, args=args, client=r))
        if outcome != b"ok":
            raise TransitionRefused(uid, detail.decode())
        submission = self.get(uid)
        if submission is None:
            raise TransitionRefused(uid, "missing")
        return submission

    def expire_due(self) -> int:
        """Pending submissions past their time become ``expired``; how many did now."""
        keys = [self._expiry, self._state_key("pending"), self._state_key("expired"), self._version]
        args = [self._hash_prefix, self.retention_seconds, _SWEEP_BATCH]
        return int(self.store.run(lambda r: self._scripts_of(r)[2](keys=keys, args=args, client=r)))
