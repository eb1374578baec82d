"""Principals, identities, sessions and API keys, kept in Redis so every worker and host shares them.

Keys (under the store's prefix, e.g. ``qs_gateway:auth:...``):

* ``auth:identity:<provider>:<id>`` → the principal's uuid (claimed with SET NX on first login)
* ``auth:principals`` → set of principal uuids
* ``auth:principal:<uuid>`` → hash ``created``, ``latest_activity``
* ``auth:principal:<uuid>:identities`` → hash ``<provider>:<id>`` → time of the latest login
* ``auth:principal:<uuid>:sessions`` / ``:apikeys`` → sets of session uuids / API key digests
* ``auth:session:<uuid>`` → hash ``principal``, ``expiration_time``, ``refresh_count``, ``revoked``,
  ``refresh_jti`` (the refresh token that may be spent next), ``previous_jti``, ``rotated_at``,
  ``rotated_by`` (see :mod:`.sessions`); Redis expires it at the session's expiration time
* ``auth:apikey:<sha256 of the secret>`` → hash ``principal``, ``first_eight``, ``expiration_time``,
  ``note``, ``scopes`` (JSON), ``latest_activity``; Redis expires it with the key
* ``auth:signing_key`` → the token signing key generated when none is configured (SET NX)
* ``auth:purge`` → held for the purge period by the worker that last purged

Redis removes expired sessions and keys by itself; :meth:`AuthState.purge` drops what the
principals' sets still name. The secret of an API key is never stored, only its SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..redis_store import RedisStore, script

PURGE_PERIOD = 600

# Read an API key and note its use in one step: a key deleted or expired meanwhile is not
# recreated, and a partial hash (an older version's touch of a deleted key, no TTL) is dropped.
_USE_API_KEY = script("""
local fields = redis.call('HGETALL', KEYS[1])
local present = {}
for i = 1, #fields, 2 do present[fields[i]] = true end
if not (present['principal'] and present['first_eight']) then
  if #fields > 0 then redis.call('DEL', KEYS[1]) end
  return {}
end
redis.call('HSET', KEYS[1], 'latest_activity', ARGV[1])
return fields
""")

# Sets fields of a hash only while it exists, in one step: HSET on a key that expired or was
# deleted since it was read would create a hash with only these fields and no expiry.
_SET_IF_EXISTS = script("""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
""")


def iso(timestamp: float | None) -> str | None:
    """Naive UTC ISO text, as bluesky-httpserver writes datetimes."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).replace(tzinfo=None).isoformat()


def normalize_uuid(text: str) -> str | None:
    """The hex form of a uuid given with or without dashes; None if it is not one."""
    try:
        return uuid.UUID(hex=text).hex
    except (ValueError, TypeError, AttributeError):
        return None


def dashed(uuid_hex: str) -> str:
    return str(uuid.UUID(hex=uuid_hex))


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _float(value: Any) -> float | None:
    value = _text(value)
    return float(value) if value not in (None, "") else None


@dataclass(frozen=True)
class ApiKeyRecord:
    digest: str
    principal: str
    first_eight: str
    scopes: tuple[str, ...]
    expiration_time: float | None = None
    note: str | None = None
    latest_activity: float | None = None

    def info(self) -> dict[str, Any]:
        return {
            "first_eight": self.first_eight,
            "expiration_time": iso(self.expiration_time),
            "note": self.note,
            "scopes": list(self.scopes),
            "latest_activity": iso(self.latest_activity),
        }


@dataclass(frozen=True)
class SessionRecord:
    uuid: str
    principal: str
    expiration_time: float
    refresh_count: int = 0
    revoked: bool = False

    @property
    def valid(self) -> bool:
        return not self.revoked and self.expiration_time > time.time()

    def info(self) -> dict[str, Any]:
        return {"uuid": dashed(self.uuid), "expiration_time": iso(self.expiration_time), "revoked": self.revoked}


def _api_key_from(digest: str, fields: dict) -> ApiKeyRecord | None:
    fields = {_text(k): _text(v) for k, v in fields.items()}
    if not fields.get("principal") or not fields.get("first_eight"):
        return None  # none, or a partial hash (see _SET_IF_EXISTS): not a key
    return ApiKeyRecord(
        digest=digest,
        principal=fields["principal"],
        first_eight=fields["first_eight"],
        scopes=tuple(json.loads(fields.get("scopes") or "[]")),
        expiration_time=_float(fields.get("expiration_time")),
        note=fields.get("note") or None,
        latest_activity=_float(fields.get("latest_activity")),
    )


def _session_from(session_uuid: str, fields: dict) -> SessionRecord | None:
    fields = {_text(k): _text(v) for k, v in fields.items()}
    if not fields.get("principal") or not fields.get("expiration_time"):
        return None  # none, or a partial hash (see _SET_IF_EXISTS): not a session
    return SessionRecord(
        uuid=session_uuid,
        principal=fields["principal"],
        expiration_time=float(fields["expiration_time"]),
        refresh_count=int(fields.get("refresh_count") or 0),
        revoked=fields.get("revoked") == "1",
    )


def _identity_of(field: bytes | str) -> tuple[str, str]:
    """(provider, id) of a field of a principal's identities hash (``provider:id``)."""
    provider, _, identity = _text(field).partition(":")
    return provider, identity


def digest_of(secret: str) -> str | None:
    """SHA-256 of the key's raw bytes; None if the secret is not hex."""
    try:
        raw = bytes.fromhex(secret)
    except ValueError:
        return None
    return hashlib.sha256(raw).hexdigest() if raw else None


class AuthState:
    def __init__(self, store: RedisStore) -> None:
        self.store = store

    def _key(self, *parts: str) -> str:
        return self.store.key("auth", *parts)

    # -- signing key ---------------------------------------------------------------------------

    def shared_signing_key(self) -> str:
        """The key all workers sign tokens with when none is configured: the first one to ask
        creates it, everyone reads the same."""
        key = self._key("signing_key")

        def get_or_create(r: Any) -> str:
            r.set(key, secrets.token_hex(32), nx=True)
            return _text(r.get(key))

        return self.store.durable(get_or_create)

    # -- principals and identities -------------------------------------------------------------

    def principal_for_identity(self, provider: str, identity: str) -> str:
        """The uuid of the principal with this identity; created on the first login."""
        identity_key = self._key("identity", provider, identity)
        candidate = uuid.uuid4().hex
        now = time.time()

        def claim(r: Any) -> str:
            if r.set(identity_key, candidate, nx=True):
                pipe = r.pipeline()
                pipe.sadd(self._key("principals"), candidate)
                pipe.hset(self._key("principal", candidate), mapping={"created": now, "latest_activity": now})
                pipe.execute()
                return candidate
            return _text(r.get(identity_key))

        return self.store.durable(claim)

    def record_login(self, principal: str, provider: str, identity: str) -> None:
        now = time.time()

        def record(r: Any) -> None:
            pipe = r.pipeline()
            pipe.hset(self._key("principal", principal, "identities"), f"{provider}:{identity}", now)
            pipe.hset(self._key("principal", principal), "latest_activity", now)
            pipe.execute()

        self.store.run(record)

    def principal_exists(self, principal: str) -> bool:
        return bool(self.store.run(lambda r: r.sismember(self._key("principals"), principal)))

    def principal_uuids(self) -> list[str]:
        return sorted(_text(m) for m in self.store.run(lambda r: r.smembers(self._key("principals"))))

    def identities(self, principal: str) -> list[tuple[str, str, float]]:
        """(provider, id, latest login) of each identity of the principal."""
        raw = self.store.run(lambda r: r.hgetall(self._key("principal", principal, "identities")))
        return sorted((*_identity_of(field), float(_text(latest))) for field, latest in raw.items())

    def principal_record(self, principal: str) -> dict[str, Any]:
        """The principal's identities, sessions and API keys (expired ones are left out)."""

        def read(r: Any) -> tuple:
            pipe = r.pipeline()
            pipe.hgetall(self._key("principal", principal))
            pipe.smembers(self._key("principal", principal, "sessions"))
            pipe.smembers(self._key("principal", principal, "apikeys"))
            return tuple(pipe.execute())

        fields, session_ids, digests = self.store.run(read)
        fields = {_text(k): _text(v) for k, v in fields.items()}
        sessions = [s for s in (self.session(_text(i)) for i in sorted(session_ids)) if s is not None]
        keys = [k for k in (self.api_key(_text(d)) for d in sorted(digests)) if k is not None]
        return {
            "uuid": principal,
            "identities": self.identities(principal),
            "sessions": sessions,
            "api_keys": keys,
            "latest_activity": _float(fields.get("latest_activity")),
        }

    def _store_owned(
        self, principal: str, kind: str, key_parts: tuple[str, str], fields: dict, expires_at: float | None
    ) -> None:
        """Store a session or key as a hash that Redis expires, named in the principal's set."""
        key = self._key(*key_parts)

        def store(r: Any) -> None:
            pipe = r.pipeline()
            pipe.hset(key, mapping=fields)
            if expires_at is not None:
                pipe.expireat(key, int(expires_at) + 1)
            pipe.sadd(self._key("principal", principal, kind), key_parts[1])
            pipe.execute()

        self.store.durable(store)

    # -- sessions ------------------------------------------------------------------------------

    def create_session(self, principal: str, max_age: float, refresh_token_id: str) -> SessionRecord:
        """A new session whose first refresh token is the one with ``refresh_token_id``."""
        session = SessionRecord(uuid=uuid.uuid4().hex, principal=principal, expiration_time=time.time() + max_age)
        fields = {
            "principal": principal,
            "expiration_time": session.expiration_time,
            "refresh_count": 0,
            "revoked": 0,
            "refresh_jti": refresh_token_id,
        }
        self._store_owned(principal, "sessions", ("session", session.uuid), fields, session.expiration_time)
        return session

    def session_key(self, session_uuid: str) -> str:
        return self._key("session", session_uuid)

    def session(self, session_uuid: str) -> SessionRecord | None:
        return _session_from(session_uuid, self.store.run(lambda r: r.hgetall(self.session_key(session_uuid))))

    def revoke_session(self, session_uuid: str) -> None:
        key = self.session_key(session_uuid)
        self.store.durable(lambda r: _SET_IF_EXISTS(keys=[key], args=["revoked", 1], client=r))

    # -- API keys ------------------------------------------------------------------------------

    def create_api_key(
        self, principal: str, scopes: Iterable[str], expires_in: float | None, note: str | None
    ) -> tuple[str, ApiKeyRecord]:
        secret = secrets.token_hex(36)
        now = time.time()
        record = ApiKeyRecord(
            digest=digest_of(secret),
            principal=principal,
            first_eight=secret[:8],
            scopes=tuple(scopes),
            expiration_time=now + expires_in if expires_in is not None else None,
            note=note,
        )
        fields = {
            "principal": principal,
            "first_eight": record.first_eight,
            "scopes": json.dumps(list(record.scopes)),
            "expiration_time": record.expiration_time if record.expiration_time is not None else "",
            "note": note or "",
            "latest_activity": "",
            "created": now,
        }
        self._store_owned(principal, "apikeys", ("apikey", record.digest), fields, record.expiration_time)
        return secret, record

    def api_key(self, digest: str) -> ApiKeyRecord | None:
        key = self._key("apikey", digest)
        fields = self.store.run(lambda r: r.hgetall(key))
        record = _api_key_from(digest, fields)
        if record is None and fields:
            self.store.run(lambda r: r.delete(key))  # a partial hash left by an older version: no TTL
        if record is not None and record.expiration_time is not None and record.expiration_time <= time.time():
            self._delete_api_key(record)
            return None
        return record

    def use_api_key(self, secret: str) -> tuple[ApiKeyRecord, list[tuple[str, str]]] | None:
        """The key with this secret, unless gone or expired, and its principal's identities
        (provider, id); notes the use. Two round trips: the key read and touched in one step."""
        digest = digest_of(secret)
        if digest is None:
            return None
        now = time.time()
        key = self._key("apikey", digest)
        flat = self.store.run(lambda r: _USE_API_KEY(keys=[key], args=[now], client=r))
        record = _api_key_from(digest, dict(zip(flat[::2], flat[1::2], strict=True)))
        if record is None:
            return None
        if record.expiration_time is not None and record.expiration_time <= now:
            self._delete_api_key(record)
            return None

        def touch_principal(r: Any) -> dict:
            pipe = r.pipeline(transaction=False)
            pipe.hset(self._key("principal", record.principal), "latest_activity", now)
            pipe.hgetall(self._key("principal", record.principal, "identities"))
            return pipe.execute()[1]

        identities = sorted(_identity_of(field) for field in self.store.run(touch_principal))
        return ApiKeyRecord(**{**record.__dict__, "latest_activity": now}), identities

    def delete_api_key(self, principal: str, first_eight: str) -> bool:
        """Delete the principal's key(s) starting with ``first_eight``; False if it has none."""
        digests = self.store.run(lambda r: r.smembers(self._key("principal", principal, "apikeys")))
        deleted = False
        for digest in digests:
            record = self.api_key(_text(digest))
            if record is not None and record.first_eight == first_eight:
                self._delete_api_key(record)
                deleted = True
        return deleted

    def _delete_api_key(self, record: ApiKeyRecord) -> None:
        def delete(r: Any) -> None:
            pipe = r.pipeline()
            pipe.delete(self._key("apikey", record.digest))
            pipe.srem(self._key("principal", record.principal, "apikeys"), record.digest)
            pipe.execute()

        self.store.durable(delete)

    # -- purge ---------------------------------------------------------------------------------

    def purge_if_due(self) -> bool:
        """Purge at most once per period across all workers (whoever takes the lock does it)."""
        if not self.store.run(lambda r: r.set(self._key("purge"), "1", nx=True, ex=PURGE_PERIOD)):
            return False
        self.purge()
        return True

    def purge(self) -> None:
        """Drop expired sessions and API keys, and the principals' references to them."""
        for principal in self.principal_uuids():
            self._purge_set(
                principal,
                "sessions",
                lambda member: self.session(member) is not None and self.session(member).expiration_time > time.time(),
            )
            self._purge_set(principal, "apikeys", lambda member: self.api_key(member) is not None)

    def _purge_set(self, principal: str, kind: str, alive: Callable[[str], bool]) -> None:
        set_key = self._key("principal", principal, kind)
        members = [_text(m) for m in self.store.run(lambda r: r.smembers(set_key))]
        gone = [m for m in members if not alive(m)]
        if gone:
            self.store.run(lambda r: r.srem(set_key, *gone))
