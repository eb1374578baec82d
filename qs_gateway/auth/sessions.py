"""Login sessions as tokens see them: whether one still lives, and its single-use refresh tokens.

* Every request with an access token asks whether the token's session lives (exists, is not
  revoked, has not expired). The answer comes from Redis and is remembered by the worker for at
  most :data:`SESSION_CHECK_SECONDS`: a session revoked on one worker (or host) stops its access
  tokens everywhere within that bound, and at once on the worker that revoked it.
* A session names the one refresh token that may be spent next (its ``jti``). Spending it names
  the next one, in one Redis script, so of two uses of the same token only one succeeds. Using a
  spent refresh token again is taken as theft: the session is revoked, and with it the tokens of
  whoever refreshed it. The exception: the token spent just before, used again from the same
  client address within the grace period, is only refused (a client's own threads that saw their
  access token expire together and raced to refresh it).
"""

from __future__ import annotations

import time
from enum import Enum
from typing import Any

from ..redis_store import script
from .state import AuthState

SESSION_CHECK_SECONDS = 1.0
REMEMBERED_SESSIONS_MAX = 100_000  # past this a worker forgets what it knew (and asks again)

# KEYS[1]: the session; ARGV: the token id spent, the next one, now, grace seconds, client address
_SPEND = script("""
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
local s = redis.call('HMGET', KEYS[1], 'refresh_jti', 'previous_jti', 'rotated_at', 'rotated_by', 'revoked')
if s[5] == '1' then return 'gone' end
if s[1] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'refresh_jti', ARGV[2], 'previous_jti', ARGV[1], 'rotated_at', ARGV[3],
             'rotated_by', ARGV[5])
  redis.call('HINCRBY', KEYS[1], 'refresh_count', 1)
  return 'spent'
end
if s[2] == ARGV[1] and s[4] == ARGV[5] and tonumber(ARGV[3]) - tonumber(s[3]) < tonumber(ARGV[4]) then
  return 'raced'
end
redis.call('HSET', KEYS[1], 'revoked', 1)
return 'reused'
""")


class Spent(Enum):
    SPENT = "spent"  # the token was the session's current one: the next one is named
    RACED = "raced"  # the token spent just before, again, by the same client within the grace
    REUSED = "reused"  # a spent token: the session is revoked now
    GONE = "gone"  # no such session, or revoked before


class Sessions:
    def __init__(self, state: AuthState, *, reuse_grace: float, check_seconds: float = SESSION_CHECK_SECONDS) -> None:
        self.state = state
        self.reuse_grace = reuse_grace
        self.check_seconds = check_seconds
        self._known: dict[str, tuple[float, str | None]] = {}  # session -> (checked at, principal if alive)

    def alive(self, session_uuid: str, principal: str) -> bool:
        """Whether the session lives and belongs to ``principal`` (remembered for a moment)."""
        now = time.monotonic()
        known = self._known.get(session_uuid)
        if known is None or now - known[0] >= self.check_seconds:
            record = self.state.session(session_uuid)
            known = (now, record.principal if record is not None and record.valid else None)
            if len(self._known) >= REMEMBERED_SESSIONS_MAX:
                self._known = {}
            self._known[session_uuid] = known
        return known[1] == principal

    def revoke(self, session_uuid: str) -> None:
        self.state.revoke_session(session_uuid)
        self._known.pop(session_uuid, None)

    def spend_refresh_token(self, session_uuid: str, token_id: str, next_id: str, address: str | None) -> Spent:
        key = self.state.session_key(session_uuid)
        args = [token_id, next_id, repr(time.time()), repr(self.reuse_grace), address or ""]

        def spend(r: Any) -> str:
            outcome = _SPEND(keys=[key], args=args, client=r)
            return outcome.decode() if isinstance(outcome, bytes) else outcome

        # durable: a spend lost in a failover would make the spent token good again
        outcome = Spent(self.state.store.durable(spend))
        if outcome is Spent.REUSED:
            self._known.pop(session_uuid, None)
        return outcome
