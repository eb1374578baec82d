"""The fan-out: one thread per worker writes every message to every stream the worker serves.

A stream does not hold a request thread. Once its response has started, its connection is
handed to this thread (see :mod:`.takeover`), which keeps all of them in one selector (epoll):

* a message is encoded once per kind of stream (an :data:`Encoder` shared by all streams of the
  kind) and written without blocking to each connection; what a connection cannot take yet
  waits in that stream's own queue, bounded by ``queue_length``: a slow client loses its oldest
  messages and never slows the others;
* a client that leaves makes its connection readable at end of file: the stream ends at once
  and its slot is free for the next client;
* the server ends a stream politely (the last chunk, a websocket close frame), then waits
  briefly for the client to close its side: ``linger_seconds`` in all, whatever the client sends;
* a stream may be handed over before its client is admitted (a websocket whose first message
  carries its credentials): its entries are held meanwhile (bounded like its queue), and it ends
  if no admission comes in time. So no request thread ever waits for a client's bytes.

Every method but the ones starting with ``_`` may be called from any thread: it posts a command
that the fan-out thread carries out in order. Stream state is touched by the fan-out thread only.
"""

from __future__ import annotations

import collections
import logging
import resource
import selectors
import socket
import threading
import time
from collections.abc import Callable

from .keys import parse_id
from .stream import Admission, Encoder, Entry, Sink, Stream, WireProtocol

logger = logging.getLogger(__name__)

TICK_SECONDS = 1.0  # heartbeats and deadlines are looked at this often (more often for short heartbeats)


def _allow_many_connections() -> None:
    """Every stream holds a file descriptor: lift the soft limit (often 1024) to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 16
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            logger.warning("Could not raise the open-files limit from %d: %s", soft, exc)


class Fanout:
    def __init__(
        self,
        *,
        queue_length: int,
        heartbeat_seconds: float,
        on_finished: Callable[[Stream], None],
        attach_seconds: float = 30.0,
        linger_seconds: float = 2.0,
    ) -> None:
        self.queue_length = max(queue_length, 2)  # room for a partly written piece and the next
        self.heartbeat_seconds = heartbeat_seconds
        self.tick_seconds = min(TICK_SECONDS, max(0.05, heartbeat_seconds / 10))
        self.attach_seconds = attach_seconds
        self.linger_seconds = linger_seconds
        self._on_finished = on_finished
        self._commands: collections.deque = collections.deque()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wake_in: socket.socket | None = None
        self._wake_out: socket.socket | None = None
        self._by_key: dict[str, set[Stream]] = {}
        self._streams: set[Stream] = set()
        self._now = time.monotonic()
        self._stopped = False

    # -- commands (any thread) -----------------------------------------------------------------

    def add(self, stream: Stream) -> None:
        """Start holding live entries for ``stream`` until its backlog comes."""
        self._post(self._on_add, stream)

    def backlog(self, stream: Stream, entries: list[Entry]) -> None:
        self._post(self._on_backlog, stream, entries)

    def entries(self, key: str, entries: list[Entry]) -> None:
        self._post(self._on_entries, key, entries)

    def attach(self, stream: Stream, target: socket.socket | Sink, protocol: WireProtocol, head: bytes,
               admission: Admission | None = None) -> None:  # fmt: skip
        """Serve ``stream`` on ``target`` (a taken connection, or a sink), ``head`` first; with an
        ``admission``, its entries wait for :meth:`admit` (a connection only)."""
        self._post(self._on_attach, stream, target, protocol, head, admission)

    def admit(self, stream: Stream) -> None:
        """The client is admitted: what was held for it, and what comes, is sent."""
        self._post(self._on_admit, stream)

    def end(self, stream: Stream, code: int, reason: str) -> None:
        """End the stream as the server: the last chunk, or a websocket close with ``code``."""
        self._post(self._on_end, stream, code, reason)

    def drop(self, stream: Stream) -> None:
        """Forget the stream now (its request failed, or its thread-held client left)."""
        self._post(self._finish, stream)

    def shutdown(self, code: int, reason: str) -> threading.Event:
        """End every stream with its goodbye; the event is set once they are written."""
        done = threading.Event()
        self._post(self._on_shutdown, code, reason, done)
        return done

    def _post(self, action: Callable, *args: object) -> None:
        self._start()
        self._commands.append((action, args))
        try:
            self._wake_out.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # the wake-up socket is full: the thread is awake anyway (or gone)

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is not None:
                return
            _allow_many_connections()
            self._selector = selectors.DefaultSelector()
            self._wake_in, self._wake_out = socket.socketpair()
            self._wake_in.setblocking(False)
            self._wake_out.setblocking(False)
            self._selector.register(self._wake_in, selectors.EVENT_READ, None)
            thread = threading.Thread(target=self._run, name="qs-gateway-fanout", daemon=True)
            thread.start()
            self._thread = thread

    # -- the fan-out thread --------------------------------------------------------------------

    def _run(self) -> None:
        next_tick = time.monotonic() + self.tick_seconds
        while not self._stopped:
            try:
                ready = self._selector.select(max(0.0, next_tick - time.monotonic()))
                self._now = time.monotonic()
                for key, mask in ready:
                    stream = key.data
                    if stream is None:
                        self._drain_wake_ups()
                        continue
                    if stream.finished:  # by an earlier event of this round
                        continue
                    if mask & selectors.EVENT_WRITE:
                        self._flush(stream)
                    if mask & selectors.EVENT_READ and not stream.finished:
                        self._readable(stream)
                while self._commands:
                    action, args = self._commands.popleft()
                    action(*args)
                if self._now >= next_tick:
                    self._tick()
                    next_tick = self._now + self.tick_seconds
            except Exception:
                logger.exception("The stream fan-out failed; it goes on")

    def _drain_wake_ups(self) -> None:
        try:
            while self._wake_in.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _on_add(self, stream: Stream) -> None:
        stream.since = self._now
        self._streams.add(stream)
        self._by_key.setdefault(stream.key, set()).add(stream)

    def _on_backlog(self, stream: Stream, entries: list[Entry]) -> None:
        if stream.finished:
            return
        held, stream.held = stream.held or [], None
        for batch in (entries, held):
            fresh = [entry for entry in batch if parse_id(entry[0]) > stream.last_id]
            if fresh:
                stream.last_id = parse_id(fresh[-1][0])
                self._deliver(stream, stream.encode(fresh))

    def _on_entries(self, key: str, entries: list[Entry]) -> None:
        ids = [parse_id(entry_id) for entry_id, _ in entries]
        encoded: dict[Encoder, bytes] = {}
        for stream in tuple(self._by_key.get(key, ())):
            if stream.held is not None:
                stream.held.extend(entries)
                continue
            if stream.last_id < ids[0]:
                data = encoded.get(stream.encode)
                if data is None:
                    data = encoded[stream.encode] = stream.encode(entries)
            else:  # some were delivered by the backlog already
                fresh = [entry for entry, entry_id in zip(entries, ids, strict=True) if entry_id > stream.last_id]
                if not fresh:
                    continue
                data = stream.encode(fresh)
            stream.last_id = ids[-1]
            self._deliver(stream, data)

    def _on_attach(self, stream: Stream, target: socket.socket | Sink, protocol: WireProtocol, head: bytes,
                   admission: Admission | None) -> None:  # fmt: skip
        if stream.finished:
            target.close()
            return
        stream.protocol = protocol
        stream.since = self._now
        if admission is not None and not isinstance(target, Sink):
            # all that is queued so far is the stream's own: it waits for the admission
            stream.admission, stream.admit_by = admission, self._now + admission.seconds
            stream.gated, stream.out = stream.out, collections.deque()
        if isinstance(target, Sink):
            stream.sink = target
            for data in (head, *stream.out) if head else stream.out:
                stream.dropped += target.put(data)
            stream.out.clear()
            return
        target.setblocking(False)
        stream.connection = target
        if head:
            stream.out.appendleft(head)
        self._selector.register(target, selectors.EVENT_READ, stream)
        self._flush(stream)

    def _on_admit(self, stream: Stream) -> None:
        if stream.finished or stream.closing_until is not None or stream.gated is None:
            return
        gated, stream.gated, stream.admission = stream.gated, None, None
        for data in gated:
            self._send(stream, data)

    def _on_end(self, stream: Stream, code: int, reason: str) -> None:
        if stream.finished or stream.closing_until is not None:
            return
        if stream.connection is None:  # not served on a connection of ours (yet)
            self._finish(stream)
            return
        self._send(stream, stream.protocol.goodbye(code, reason))
        self._close_after_output(stream)

    def _on_shutdown(self, code: int, reason: str, done: threading.Event) -> None:
        """The worker stops: every stream gets its goodbye now, and the thread ends."""
        for stream in tuple(self._streams):
            if stream.connection is not None and stream.closing_until is None:
                self._send(stream, stream.protocol.goodbye(code, reason))
                if not stream.finished:
                    self._flush(stream)
            self._finish(stream)
        self._stopped = True
        done.set()

    def _deliver(self, stream: Stream, data: bytes) -> None:
        """Send the stream's own bytes (entries), or hold them while its client is not admitted."""
        gated = stream.gated
        if gated is None:
            self._send(stream, data)
        elif data:
            gated.append(data)
            if len(gated) > self.queue_length:
                gated.popleft()
                stream.dropped += 1

    def _send(self, stream: Stream, data: bytes) -> None:
        """Write ``data`` (or queue what cannot be written yet); not held back by an admission."""
        if not data or stream.finished:
            return
        if stream.sink is not None:
            stream.dropped += stream.sink.put(data)
            stream.since = self._now
            return
        if stream.connection is None or stream.out:
            self._queue(stream, data)
            return
        try:
            written = stream.connection.send(data)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError:
            self._finish(stream)
            return
        stream.since = self._now
        if written < len(data):
            stream.out.append(data)
            stream.sent = written
            self._selector.modify(stream.connection, selectors.EVENT_READ | selectors.EVENT_WRITE, stream)

    def _queue(self, stream: Stream, data: bytes) -> None:
        out = stream.out
        out.append(data)
        if len(out) > self.queue_length:
            # the oldest piece not yet begun goes (a begun one must be finished, or the framing breaks)
            del out[1 if stream.sent else 0]
            stream.dropped += 1

    def _flush(self, stream: Stream) -> None:
        out = stream.out
        while out:
            piece = out[0]
            try:
                written = stream.connection.send(memoryview(piece)[stream.sent :])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._finish(stream)
                return
            stream.since = self._now
            stream.sent += written
            if stream.sent < len(piece):
                self._selector.modify(stream.connection, selectors.EVENT_READ | selectors.EVENT_WRITE, stream)
                return
            out.popleft()
            stream.sent = 0
        self._selector.modify(stream.connection, selectors.EVENT_READ, stream)
        if stream.closing_until is not None:
            self._shut_write(stream)

    def _readable(self, stream: Stream) -> None:
        try:
            data = stream.connection.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client left (or closed its side after our goodbye)
            self._finish(stream)
            return
        reply, done = stream.protocol.received(data)
        if reply:
            self._send(stream, reply)
        if done:
            self._close_after_output(stream)

    def _close_after_output(self, stream: Stream) -> None:
        if stream.finished:
            return
        if stream.closing_until is None:
            stream.closing_until = self._now + self.linger_seconds
        if not stream.out:
            self._shut_write(stream)

    def _shut_write(self, stream: Stream) -> None:
        if stream.write_shut:
            return
        stream.write_shut = True
        try:
            stream.connection.shutdown(socket.SHUT_WR)
        except OSError:
            self._finish(stream)

    def _tick(self) -> None:
        now = self._now
        for stream in tuple(self._streams):
            if stream.finished:
                continue
            if stream.closing_until is not None:
                if now >= stream.closing_until:
                    self._finish(stream)
            elif stream.protocol is None:
                if now - stream.since > self.attach_seconds:
                    logger.warning("A stream was opened but never served; its slot is freed")
                    self._finish(stream)
            elif stream.admission is not None:
                if now >= stream.admit_by:
                    self._on_end(stream, stream.admission.code, stream.admission.reason)
            elif stream.protocol.heartbeat and not stream.out and now - stream.since >= self.heartbeat_seconds:
                self._send(stream, stream.protocol.heartbeat)

    def _finish(self, stream: Stream) -> None:
        if stream.finished:
            return
        stream.finished = True
        if stream.connection is not None:
            try:
                self._selector.unregister(stream.connection)
            except (KeyError, ValueError):
                pass
            stream.connection.close()
        if stream.sink is not None:
            stream.sink.close()
        stream.out.clear()
        stream.held = stream.gated = None
        self._streams.discard(stream)
        peers = self._by_key.get(stream.key)
        if peers is not None:
            peers.discard(stream)
            if not peers:
                del self._by_key[stream.key]
        self._on_finished(stream)
