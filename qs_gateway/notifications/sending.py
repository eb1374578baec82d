"""One HTTP POST of one event to one target: the body, its signature, the answer.

Only the configured URL is called: redirects are not followed (a 3xx is the answer, and a
failure), and proxies from the environment are not used.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from .. import __version__
from ..config.notifications import Target

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
    else:
        text = str(kind)
    return f"[qs-gateway] {text} at {when}"


def body_of(target: Target, event: Mapping[str, Any], attempt: int, sent_at: float) -> bytes:
    """The JSON body: the event, when it is sent (signed with it, against replays) and which
    attempt this is; or for ``format: slack`` a ``text`` message."""
    if target.format == "slack":
        return orjson.dumps({"text": slack_text(event)})
    return orjson.dumps({**event, "timestamp": round(sent_at, 3), "attempt": attempt})


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx comes back as an HTTPError: never another URL


_OPENER = urllib.request.build_opener(_NoRedirects(), urllib.request.ProxyHandler({}))


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
    request = urllib.request.Request(target.url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=target.timeout) as response:
            text = response.read(ANSWER_SHOWN * 4).decode(errors="replace")
            return Answer(response.status, text[:ANSWER_SHOWN])
    except urllib.error.HTTPError as exc:
        try:
            text = exc.read(ANSWER_SHOWN * 4).decode(errors="replace")
        except Exception:
            text = ""
        error = "redirects are not followed" if 300 <= exc.code < 400 else None
        return Answer(exc.code, text[:ANSWER_SHOWN], error)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Answer(None, error=f"{type(reason).__name__}: {reason}"[:ANSWER_SHOWN])
