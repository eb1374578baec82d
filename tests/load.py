"""Load for the failure tests: threads that each send one kind of request, again and again, and
note every answer (or the error instead of one) with when it was asked and answered."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Answer:
    kind: str
    request_id: str  # sent as X-Request-ID
    started: float  # monotonic
    ended: float
    status: int | None  # None: no answer (error says why)
    body: Any = None  # the JSON body, if it was JSON
    retry_after: str | None = None
    error: str = ""

    @property
    def detail(self) -> str:
        return self.body.get("detail", "") if isinstance(self.body, dict) else ""


@dataclass
class Load:
    client: Callable[[], httpx.Client]  # one per thread
    answers: list[Answer] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    join_seconds: float = 15.0

    def add(
        self,
        kind: str,
        send: Callable[[httpx.Client, dict[str, str]], httpx.Response],
        *,
        copies: int = 1,
        pause: float = 0.02,
    ) -> None:
        """``copies`` threads calling ``send(client, headers)`` (headers: a fresh X-Request-ID)."""

        def loop() -> None:
            with self.client() as client:
                while not self.stop.is_set():
                    request_id = uuid.uuid4().hex
                    started = time.monotonic()
                    try:
                        response = send(client, {"X-Request-ID": request_id})
                    except httpx.HTTPError as exc:
                        self.answers.append(Answer(kind, request_id, started, time.monotonic(), None, error=repr(exc)))
                        continue
                    json = response.headers.get("content-type", "").startswith("application/json")
                    self.answers.append(
                        Answer(
                            kind,
                            request_id,
                            started,
                            time.monotonic(),
                            response.status_code,
                            response.json() if json else None,
                            response.headers.get("Retry-After"),
                        )
                    )
                    self.stop.wait(pause)

        for _ in range(copies):
            self.threads.append(threading.Thread(target=loop, name=f"load-{kind}", daemon=True))

    @property
    def kinds(self) -> set[str]:
        return {thread.name.removeprefix("load-") for thread in self.threads}

    def succeeded(self, kind: str) -> list[Answer]:
        return [answer for answer in list(self.answers) if answer.kind == kind and answer.status == 200]

    def wait_until_each_kind_succeeds(self, after: float, timeout: float = 60.0, times: int = 1) -> None:
        """Wait until every kind has ``times`` answers 200 to requests started after ``after``
        (monotonic; it may lie ahead)."""
        deadline = max(time.monotonic(), after) + timeout
        while True:
            counts = Counter(a.kind for a in list(self.answers) if a.status == 200 and a.started > after)
            answered = {kind for kind, count in counts.items() if count >= times}
            if answered >= self.kinds:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"after {timeout} s only {sorted(answered)} of {sorted(self.kinds)} succeeded")
            self.stop.wait(0.05)

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(self.join_seconds)
