"""``ServerBasedAPIAccessControl``: users and roles downloaded from a facility's access server.

The access server answers ``GET {base_url}/instrument/{instrument}/qserver/access`` with
``{role: {username: {"email": ..., "first_name": ..., "last_name": ...}}}``.

The list is shared through Redis: once per ``update_period`` one worker of all (on any host)
downloads it, holding a short lock, and publishes it; every worker checks Redis about once a
second and takes the newer list, so all of them change their minds together and the access
server sees one request per period, not one per worker. Without Redis each worker downloads
the list itself. The polling runs in a background thread that starts on first use, i.e. in the
worker after gunicorn forked, never in the master. A failed download keeps the last list until
it expires; after that only the built-in users are known.
"""

from __future__ import annotations

import hashlib
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
from ..redis_store import RedisStore, StoreUnavailable
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


SHARED_CHECK_SECONDS = 1.0  # how often a worker looks for a list another worker downloaded


class SharedAccessList:
    """The downloaded list in Redis: the users, when they were downloaded, and who downloads next."""

    def __init__(self, store: RedisStore, source_url: str) -> None:
        self.store = store
        name = hashlib.sha256(source_url.encode()).hexdigest()[:16]  # one list per access server
        self.users_key = store.key("auth", "access_list", name)
        self.fetched_at_key = store.key("auth", "access_list", name, "fetched_at")
        self.lock_key = store.key("auth", "access_list", name, "downloading")

    def fetched_at(self) -> float | None:
        value = self.store.run(lambda r: r.get(self.fetched_at_key))
        return float(value) if value is not None else None

    def users(self) -> dict[str, dict[str, Any]] | None:
        value = self.store.run(lambda r: r.get(self.users_key))
        if value is None:
            return None
        return {name: {**user, "roles": frozenset(user["roles"])} for name, user in json.loads(value).items()}

    def take_turn(self, seconds: float) -> bool:
        """Whether this worker downloads now; nobody else does for ``seconds``, success or not."""
        return bool(self.store.run(lambda r: r.set(self.lock_key, os.getpid(), nx=True, px=int(seconds * 1000))))

    def publish(self, users: Mapping[str, Mapping[str, Any]], fetched_at: float, keep_for: float) -> None:
        data = json.dumps({name: {**user, "roles": sorted(user["roles"])} for name, user in users.items()})
        ttl = int(keep_for * 1000)
        # one transaction: a reader never sees the new time with the old users
        self.store.run(
            lambda r: (
                r.pipeline().set(self.users_key, data, px=ttl).set(self.fetched_at_key, fetched_at, px=ttl).execute()
            )
        )


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
        self._fetched_at: float | None = None  # wall-clock time of the download, comparable across hosts
        self._attempted_at = 0.0  # of this process's own last download
        self._shared: SharedAccessList | None = None
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

    def share_through(self, store: RedisStore) -> None:
        """Share the downloaded list with every worker using ``store`` (opens nothing)."""
        self._shared = SharedAccessList(store, self.url)

    def _poll_forever(self) -> None:
        while True:
            self.refresh()
            self._first_poll_done.set()
            period = self.update_period if self._shared is None else min(self.update_period, SHARED_CHECK_SECONDS)
            if self._stop.wait(period * random.uniform(0.8, 1.2)):
                return

    def refresh(self) -> None:
        """Bring this process's list up to date, downloading it only when it is due."""
        if self._shared is not None:
            try:
                self._refresh_shared()
                return
            except StoreUnavailable:
                pass  # each worker on its own until Redis is back
        if time.time() - self._attempted_at >= self.update_period:
            self.poll_once()

    def _refresh_shared(self) -> None:
        shared = self._shared
        fetched_at = self._adopt(shared)
        if fetched_at is not None and time.time() - fetched_at < self.update_period:
            return
        if shared.take_turn(self.update_period):
            if self.poll_once():
                shared.publish(self._fetched, self._fetched_at, self.expiration_period)
        elif self._fetched_at is None:
            # another worker is downloading the first list: wait for it rather than refuse everyone
            deadline = time.monotonic() + self.http_timeout + 1
            while self._adopt(shared) is None and time.monotonic() < deadline and not self._stop.wait(0.05):
                pass

    def _adopt(self, shared: SharedAccessList) -> float | None:
        """Take the shared list if it is newer than this process's; the shared download time."""
        fetched_at = shared.fetched_at()
        if fetched_at is not None and (self._fetched_at is None or fetched_at > self._fetched_at):
            users = shared.users()
            if users is not None:
                self._fetched, self._fetched_at = users, fetched_at
        return fetched_at

    def poll_once(self) -> bool:
        """Download the list from the access server now."""
        self._attempted_at = time.time()
        try:
            with urllib.request.urlopen(self.url, timeout=self.http_timeout) as response:
                users = users_from_access_list(json.loads(response.read()), self.roles)
        except Exception as exc:
            logger.warning("Access server %s: %s", self.url, exc)
            return False
        self._fetched, self._fetched_at = users, time.time()
        return True

    def stop(self) -> None:
        self._stop.set()

    def _user(self, username: str) -> dict[str, Any] | None:
        if username in self._built_in:
            return self._built_in[username]
        self._ensure_polling()
        fetched_at = self._fetched_at
        if fetched_at is None or time.time() - fetched_at > self.expiration_period:
            return None
        return self._fetched.get(username)
