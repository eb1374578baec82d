"""A TCP relay on loopback that hands what the far side sends on after a delay, in order.

Put between a client and a server, it makes the server's answers (or publications) arrive late
without touching either: e.g. RE Manager's info channel, as a busy ingest would see it. What the
client sends goes on at once. :meth:`DelayLine.close` (also on leaving the ``with`` block) closes
every socket and joins every thread.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque


class DelayLine:
    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target = target
        self.delay = delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()
        self._start(self._accept)

    def __enter__(self) -> DelayLine:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _start(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            self._sockets += [client, server]
            self._start(self._pass, client, server, 0.0)
            self._start(self._pass, server, client, self.delay)

    def _pass(self, source: socket.socket, sink: socket.socket, delay: float) -> None:
        """Copies ``source`` to ``sink``, each chunk ``delay`` after it arrived."""
        due: deque[tuple[float, bytes]] = deque()  # (when, chunk), in arrival order
        ready = threading.Condition()

        def send_when_due() -> None:
            while True:
                with ready:
                    while not due and not self._closed.is_set():
                        ready.wait()
                    if not due:
                        return
                    when, chunk = due[0]
                    if when > time.monotonic():
                        ready.wait(when - time.monotonic())  # the injected delay, not a test's wait
                        continue
                    due.popleft()
                try:
                    sink.sendall(chunk)
                except OSError:
                    return

        sender = threading.Thread(target=send_when_due, daemon=True)
        self._threads.append(sender)
        sender.start()
        while True:
            try:
                chunk = source.recv(65536)
            except OSError:
                chunk = b""
            with ready:
                if chunk:
                    due.append((time.monotonic() + delay, chunk))
                ready.notify()
            if not chunk:
                return

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in self._threads:
            thread.join(10)
