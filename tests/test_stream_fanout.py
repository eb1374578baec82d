"""The fan-out thread on its own, over real socket pairs: ordering, slow clients, leaving, ending."""

from __future__ import annotations

import socket
import time

import pytest
from websockets.frames import Close, Frame, Opcode

from qs_gateway.streaming.fanout import Fanout
from qs_gateway.streaming.stream import Admission, Sink, Stream, StreamClosed
from qs_gateway.streaming.wire import END_OF_CHUNKS, HttpStream, WebSocketLogin, WebSocketStream, chunk

from .support import wait_for


def brackets(entries):
    return b"".join(b"[%s]" % entry_id.encode() for entry_id, _ in entries)


@pytest.fixture
def fanout():
    finished: list[Stream] = []
    fanout = Fanout(queue_length=3, heartbeat_seconds=0.5, on_finished=finished.append, linger_seconds=1.0)
    fanout.finished = finished
    yield fanout
    fanout.shutdown(1001, "test over")


def served(fanout: Fanout, protocol=None, after=(0, 0), head=b"") -> tuple[Stream, socket.socket]:
    server, client = socket.socketpair()
    stream = Stream("k", brackets, after)
    fanout.add(stream)
    fanout.backlog(stream, [])
    fanout.attach(stream, server, protocol or HttpStream(chunked=False), head)
    return stream, client


def read_until_closed(client: socket.socket) -> bytes:
    client.settimeout(10)
    received = b""
    while data := client.recv(65536):
        received += data
    return received


def test_live_entries_that_come_before_the_backlog_are_delivered_after_it_once(fanout):
    server, client = socket.socketpair()
    stream = Stream("k", brackets, (1, 0))
    fanout.add(stream)
    fanout.entries("k", [("5-0", b""), ("6-0", b"")])  # the reader was ahead of the backlog read
    fanout.backlog(stream, [(f"{i}-0", b"") for i in range(1, 7)])  # from Redis: 1..6, after 1-0
    fanout.entries("k", [("6-0", b""), ("7-0", b"")])
    fanout.attach(stream, server, HttpStream(chunked=False), b"head:")
    fanout.end(stream, 1000, "")
    assert read_until_closed(client) == b"head:[2-0][3-0][4-0][5-0][6-0][7-0]"
    wait_for(lambda: stream in fanout.finished, 5, "the stream to finish")


def test_each_kind_is_encoded_once_and_every_stream_gets_it(fanout):
    encodings = []

    def counted(entries):
        encodings.append(entries)
        return brackets(entries)

    pairs = [served(fanout) for _ in range(20)]
    for stream, _ in pairs:
        stream.encode = counted  # the same encoder object for all: one kind
    fanout.entries("k", [("1-0", b"")])
    for stream, client in pairs:
        fanout.end(stream, 1000, "")
        assert read_until_closed(client) == b"[1-0]"
    assert len(encodings) == 1


def test_a_slow_client_loses_its_oldest_messages_and_gets_whole_pieces(fanout):
    stream, client = served(fanout)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    big = 200_000

    def sized(entries):
        return b"".join(b"[%s]" % entry_id.encode() + b"." * big for entry_id, _ in entries)

    stream.encode = sized
    for i in range(1, 11):
        fanout.entries("k", [(f"{i}-0", b"")])
    wait_for(lambda: stream.dropped > 0, 5, "the slow client to lose some")
    fanout.end(stream, 1000, "")
    received = read_until_closed(client)
    pieces = [piece for piece in received.split(b"[") if piece]
    ids = [int(piece.split(b"-")[0]) for piece in pieces]
    assert all(piece == b"%d-0]" % i + b"." * big for piece, i in zip(pieces, ids, strict=True))  # whole
    assert ids == sorted(ids) and ids[-1] == 10  # in order, the newest kept
    assert len(ids) == 10 - stream.dropped and stream.dropped >= 5  # queue_length 3: most of the burst lost


def test_a_client_that_leaves_frees_its_slot_at_once(fanout):
    stream, client = served(fanout)
    client.close()
    wait_for(lambda: stream in fanout.finished, 2, "the stream to end when its client left")


def test_quiet_streams_get_heartbeats(fanout):
    stream, client = served(fanout, HttpStream(chunked=True, heartbeat=b": beat\n\n"))
    client.settimeout(5)
    assert client.recv(100) == chunk(b": beat\n\n")


def test_the_server_ends_a_chunked_stream_with_the_last_chunk(fanout):
    stream, client = served(fanout, HttpStream(chunked=True))
    fanout.entries("k", [("1-0", b"")])
    fanout.end(stream, 4001, "revoked")
    assert read_until_closed(client) == b"[1-0]" + END_OF_CHUNKS
    client.close()
    wait_for(lambda: stream in fanout.finished, 5, "the stream to finish")


def client_frame(opcode: Opcode, data: bytes) -> bytes:
    return Frame(opcode, data).serialize(mask=True, extensions=[])


def test_websockets_get_pongs_and_their_close_returned(fanout):
    stream, client = served(fanout, WebSocketStream())
    client.settimeout(5)
    client.sendall(client_frame(Opcode.PING, b"hi"))
    assert client.recv(100) == bytes((0x8A, 2)) + b"hi"
    client.sendall(client_frame(Opcode.CLOSE, Close(1000, "bye").serialize()))
    assert read_until_closed(client)[:4] == bytes((0x88, 5)) + (1000).to_bytes(2, "big")
    wait_for(lambda: stream in fanout.finished, 5, "the stream to finish")


def test_a_revoked_websocket_is_closed_with_its_code(fanout):
    stream, client = served(fanout, WebSocketStream())
    fanout.end(stream, 4001, "The credentials are no longer valid")
    frame = read_until_closed(client)
    assert frame[0] == 0x88 and int.from_bytes(frame[2:4], "big") == 4001


def test_a_stream_never_attached_is_freed(fanout):
    fanout.attach_seconds = 0.5
    stream = Stream("k", brackets, (0, 0))
    fanout.add(stream)
    wait_for(lambda: stream in fanout.finished, 5, "the unattached stream to be freed")


def test_thread_held_streams_read_a_sink_until_it_closes(fanout):
    sink = Sink(limit=2)
    stream = Stream("k", brackets, (0, 0))
    fanout.add(stream)
    fanout.backlog(stream, [("1-0", b"")])
    fanout.attach(stream, sink, HttpStream(chunked=False), b"head:")
    wait_for(lambda: sink.take(0.1) == b"head:[1-0]", 5, "the head and the backlog")
    fanout.drop(stream)
    with pytest.raises(StreamClosed):
        wait_for(lambda: sink.take(0.1) is None, 5, "the sink to close")


def waiting_for_login(fanout: Fanout, seconds: float, on_message=lambda text: None) -> tuple[Stream, socket.socket]:
    server, client = socket.socketpair()
    stream = Stream("k", brackets, (0, 0))
    fanout.add(stream)
    fanout.backlog(stream, [("1-0", b"")])
    protocol = WebSocketLogin(on_message, longest=100)
    fanout.attach(stream, server, protocol, b"head:", Admission(seconds, 4401, "No credentials"))
    return stream, client


def test_a_socket_not_admitted_gets_nothing_of_its_stream_until_it_is(fanout):
    messages = []
    stream, client = waiting_for_login(fanout, 30, messages.append)
    fanout.entries("k", [("2-0", b"")])
    client.settimeout(5)
    assert client.recv(100) == b"head:"
    client.sendall(client_frame(Opcode.TEXT, b'{"type": "auth"}'))
    client.sendall(client_frame(Opcode.TEXT, b"later messages are not logins"))
    wait_for(lambda: messages == ['{"type": "auth"}'], 5, "the first message to be handed on")
    client.settimeout(0.3)
    with pytest.raises(TimeoutError):
        client.recv(100)
    fanout.admit(stream)
    fanout.entries("k", [("3-0", b"")])
    client.settimeout(5)
    received = b""
    while len(received) < len(b"[1-0][2-0][3-0]"):
        received += client.recv(100)
    assert received == b"[1-0][2-0][3-0]"


def test_no_admission_in_time_closes_and_a_trickling_client_is_cut_after_the_linger(fanout):
    stream, client = waiting_for_login(fanout, 0.3)
    client.settimeout(5)
    received = b""
    while b"\x88" not in received:
        received += client.recv(100)
    close = received[received.index(b"\x88") :]
    assert int.from_bytes(close[2:4], "big") == 4401 and b"[1-0]" not in received
    closed_at, client_left = time.monotonic(), False
    client.settimeout(0.2)
    while not client_left and time.monotonic() - closed_at < 10:
        try:
            client_left = client.recv(100) == b""
        except TimeoutError:
            client.send(b"x")  # never the close the server waits for
    assert client_left, "the refused client was served for 10 s"
    assert time.monotonic() - closed_at < fanout.linger_seconds + 2
    wait_for(lambda: stream in fanout.finished, 5, "the stream to finish")


def test_a_too_long_first_message_is_handed_on_cut_one_past_the_limit():
    messages = []
    protocol = WebSocketLogin(messages.append, longest=10)
    protocol.received(client_frame(Opcode.TEXT, b"x" * 50))
    assert messages == ["x" * 11]
