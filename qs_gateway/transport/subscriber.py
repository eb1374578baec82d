"""A ZeroMQ SUB socket on RE Manager's info channel (console output and status).

Used by exactly one process at a time (the ingest leader); it opens its own context when it is
opened, never at import.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import zmq

from .codec import Codec

logger = logging.getLogger(__name__)

CONSOLE_TOPIC = "QS_Console"
INFO_TOPIC = "QS_Info"


class Subscriber:
    def __init__(self, address: str, codec: Codec, topics: Iterable[str] = (CONSOLE_TOPIC, INFO_TOPIC)) -> None:
        self.address = address
        self.codec = codec
        self.topics = tuple(topics)
        self._context: zmq.Context | None = None
        self._socket: zmq.Socket | None = None

    def open(self) -> None:
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVHWM, 100_000)
        self._socket.setsockopt(zmq.RECONNECT_IVL, 100)
        for topic in self.topics:
            self._socket.setsockopt_string(zmq.SUBSCRIBE, topic)
        self._socket.connect(self.address)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        if self._context is not None:
            self._context.term()
            self._context = None

    def receive(self, timeout: float, limit: int = 1000) -> list[tuple[str, Any]]:
        """Wait up to ``timeout`` seconds for messages; return those that arrived (at most ``limit``)."""
        messages: list[tuple[str, Any]] = []
        if not self._socket.poll(int(timeout * 1000), zmq.POLLIN):
            return messages
        while len(messages) < limit:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(frames) != 2:
                logger.warning("Ignoring a published message of %d frames", len(frames))
                continue
            try:
                messages.append((frames[0].decode("ascii"), self.codec.decode(frames[1])))
            except Exception as exc:
                logger.warning("Ignoring an undecodable published message: %s", exc)
        return messages
