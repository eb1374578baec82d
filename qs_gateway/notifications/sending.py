"""One HTTP POST of one event to one target: the body, its signature, the answer.

Only the configured URL is called: redirects are not followed (a 3xx is the answer, and a
failure), and proxies from the environment are not used. The whole exchange, connecting
included, has one deadline, the target's ``timeout``: a socket timeout alone bounds each read,
so a receiver trickling its answer could hold a delivery past the time after which another
leader takes the entry over (the target's timeout plus a margin) and sends it again.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from .. import __version__
from .settings import SUBMISSION_EVENTS, Target

SIGNATURE_HEADER = "X-QS-Gateway-Signature"
ANSWER_SHOWN = 200  # characters of a receiver's answer kept in the delivery log


@dataclass(frozen=True)
class Answer:
    status: int | None  # HTTP status; None when no answer came (refused, timed out)
    text: str = ""
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def worth_retrying(self) -> bool:
        """No answer, or one that says "later": 408, 425, 429 and 5xx."""
        return self.status is None or self.status in (408, 425, 429) or self.status >= 500


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _short(uid: Any) -> str:
    return str(uid)[:8] if uid else "?"


def _item_name(data: Mapping[str, Any]) -> str:
    item = data.get("item") or {}
    return f"{item.get('name') or item.get('item_type') or 'item'} (item {_short(item.get('item_uid'))})"


def slack_text(event: Mapping[str, Any]) -> str:
    """A one-line message for a Slack or Mattermost incoming webhook."""
    data = event.get("data") or {}
    status = data.get("status") or {}
    kind = event.get("type")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(event.get("time") or 0))
    if kind == "queue_started":
        text = f"Queue started ({status.get('items_in_queue')} items in the queue)"
    elif kind == "item_started":
        text = f"Started {_item_name(data)}"
    elif kind == "item_finished":
        text = f"Finished {_item_name(data)}: {data.get('exit_status')}"
        if data.get("msg"):
            text += f" ({str(data['msg'])[:200]})"
    elif kind == "queue_stopped":
        text = f"Queue stopped: {str(data.get('reason', '')).replace('_', ' ')}"
    elif kind == "re_paused":
        text = f"Run Engine paused (item {_short(data.get('item_uid'))})"
    elif kind == "environment_closed":
        text = "Worker environment closed"
    elif kind == "environment_destroyed":
        text = "Worker environment destroyed"
    elif kind == "manager_unreachable":
        text = f"RE Manager unreachable: no status for {data.get('silent_seconds')} s"
    elif kind == "manager_back":
        text = "RE Manager publishes its status again"
    elif kind in SUBMISSION_EVENTS:
        submission = data.get("submission") or {}
        plan = (submission.get("item") or {}).get("name") if isinstance(submission.get("item"), dict) else None
        what = f"{plan or 'item'} (submission {_short(submission.get('uid'))}) by {submission.get('username')}"
        text = {
            "submission_added": f"Proposed: {what}",
            "submission_approved": f"Approved by {submission.get('decided_by')}: {what}",
            "submission_denied": f"Denied by {submission.get('decided_by')}: {what}",
        }[kind]
    else:
        text = str(kind)
    return f"[qs-gateway] {text} at {when}"


def body_of(target: Target, event: Mapping[str, Any], attempt: int, sent_at: float) -> bytes:
    """The JSON body: the event, when it is sent (signed with it, against replays) and which
    attempt this is; or for ``format: slack`` a ``text`` message."""
    if target.format == "slack":
        return orjson.dumps({"text": slack_text(event)})
    return orjson.dumps({**event, "timestamp": round(sent_at, 3), "attempt": attempt})


class _Deadline:
    """Cuts the connection's socket when the time is up, whatever it is waiting for."""

    def __init__(self, connection: http.client.HTTPConnection, seconds: float) -> None:
        self.connection = connection
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def _expire(self) -> None:
        self.expired = True
        sock = self.connection.sock
        if sock is not None:
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the descriptor's, TLS or not
            except OSError:
                pass

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


def _connection_to(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urllib.parse.urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.scheme == "https":
        context = ssl.create_default_context()
        return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=context), path
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout), path


def _exchange(connection: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]) -> Answer:
    connection.request("POST", path, body=body, headers=headers)
    response = connection.getresponse()
    try:
        text = response.read(ANSWER_SHOWN * 4).decode(errors="replace")
    except (http.client.IncompleteRead, OSError):
        text = ""  # the status is the answer; what is shown of it, only a courtesy
    error = "redirects are not followed" if 300 <= response.status < 400 else None
    return Answer(response.status, text[:ANSWER_SHOWN], error)


def post(target: Target, event: Mapping[str, Any], attempt: int) -> Answer:
    body = body_of(target, event, attempt, time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"qs-gateway/{__version__}",
        "X-QS-Gateway-Event": str(event.get("type")),
        "X-QS-Gateway-Event-Id": str(event.get("id")),
    }
    if target.secret:
        headers[SIGNATURE_HEADER] = sign(target.secret, body)
    deadline = time.monotonic() + target.timeout
    connection, path = _connection_to(target.url, target.timeout)
    try:
        connection.connect()  # bounded by the timeout, as a whole
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("connecting took the whole time")
        connection.sock.settimeout(left)
        with _Deadline(connection, left) as cut:
            try:
                return _exchange(connection, path, body, headers)
            except (http.client.HTTPException, OSError):
                if cut.expired:
                    raise TimeoutError(f"no whole answer within {target.timeout} s") from None
                raise
    except (http.client.HTTPException, OSError, ValueError) as exc:
        return Answer(None, error=f"{type(exc).__name__}: {exc}"[:ANSWER_SHOWN])
    finally:
        connection.close()
