"""``ServerBasedAPIAccessControl``: users and roles downloaded from a facility's access server.

The access server answers ``GET {base_url}/instrument/{instrument}/qserver/access`` with
``{role: {username: {"email": ..., "first_name": ..., "last_name": ...}}}``. Each worker process
polls it from a background thread that starts on first use, i.e. in the worker after gunicorn
forked, never in the master. A failed poll keeps the last list until it expires; after that
only the built-in users are known.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import urllib.request
from collections.abc import Mapping
from typing import Any

from ..config import ConfigError
from .policies import BasicAPIAccessControl

logger = logging.getLogger(__name__)


def _number(value: Any, name: str, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ConfigError(f"api_access.args.{name}: expected a number >= {minimum}, got {value!r}")
    return float(value)


def users_from_access_list(data: Any, known_roles: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The access server's answer as ``{username: {"roles", "displayed_name", "email"}}``."""
    if not isinstance(data, Mapping):
        raise ValueError(f"expected a mapping of roles, got {type(data).__name__}")
    users: dict[str, dict[str, Any]] = {}
    for role, members in data.items():
        role = str(role).lower()
        if role not in known_roles:
            logger.warning("Access server: unknown role %r ignored", role)
            continue
        if not isinstance(members, Mapping):
            raise ValueError(f"role {role!r}: expected a mapping of user names")
        for username, info in members.items():
            info = info if isinstance(info, Mapping) else {}
            names = [info.get(k) for k in ("first_name", "last_name")]
            displayed = " ".join(n.strip() for n in names if isinstance(n, str) and n.strip()) or None
            email = info.get("email") if isinstance(info.get("email"), str) else None
            user = users.setdefault(str(username), {"roles": frozenset(), "displayed_name": None, "email": None})
            user["roles"] = user["roles"] | {role}
            user["displayed_name"] = user["displayed_name"] or displayed
            user["email"] = user["email"] or email or None
    return users


class ServerBasedAPIAccessControl(BasicAPIAccessControl):
    def __init__(
        self,
        *,
        instrument: str,
        roles: Mapping[str, Any] | None = None,
        base_url: str | None = None,
        server: str = "localhost",
        port: int = 8000,
        update_period: float = 600,
        expiration_period: float | None = None,
        http_timeout: float = 5,
    ) -> None:
        super().__init__(roles=roles)
        if not isinstance(instrument, str) or not instrument:
            raise ConfigError(f"api_access.args.instrument: expected a non-empty string, got {instrument!r}")
        self.update_period = _number(update_period, "update_period", 0.1)
        self.expiration_period = (
            _number(expiration_period, "expiration_period", 0.1)
            if expiration_period is not None
            else 1.5 * self.update_period
        )
        self.http_timeout = _number(http_timeout, "http_timeout", 0.1)
        root = (base_url or f"http://{server}:{int(port)}").rstrip("/")
        self.url = f"{root}/instrument/{instrument.lower()}/qserver/access"
        self._built_in = dict(self._users)
        self._fetched: dict[str, dict[str, Any]] = {}
        self._fetched_at: float | None = None
        self._first_poll_done = threading.Event()
        self._start_lock = threading.Lock()
        self._poller_pid: int | None = None
        self._stop = threading.Event()

    # -- the background poller, started lazily in the process that uses it ------------------

    def _ensure_polling(self) -> None:
        if self._poller_pid == os.getpid():
            return
        with self._start_lock:
            if self._poller_pid == os.getpid():
                return
            self._first_poll_done.clear()
            self._stop.clear()
            thread = threading.Thread(target=self._poll_forever, name="access-server-poller", daemon=True)
            thread.start()
            self._poller_pid = os.getpid()
        # The first requests of a worker wait (briefly) for the first list instead of refusing everyone.
        self._first_poll_done.wait(self.http_timeout + 1)

    def _poll_forever(self) -> None:
        while True:
            self.poll_once()
            self._first_poll_done.set()
            if self._stop.wait(self.update_period * random.uniform(0.8, 1.2)):
                return

    def poll_once(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=self.http_timeout) as response:
                users = users_from_access_list(json.loads(response.read()), self.roles)
        except Exception as exc:
            logger.warning("Access server %s: %s", self.url, exc)
            return False
        self._fetched, self._fetched_at = users, time.monotonic()
        return True

    def stop(self) -> None:
        self._stop.set()

    def _user(self, username: str) -> dict[str, Any] | None:
        if username in self._built_in:
            return self._built_in[username]
        self._ensure_polling()
        fetched_at = self._fetched_at
        if fetched_at is None or time.monotonic() - fetched_at > self.expiration_period:
            return None
        return self._fetched.get(username)
