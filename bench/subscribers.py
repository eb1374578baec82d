"""``python -m bench.subscribers``: one process holding many stream subscribers, as clients hold them.

Each subscriber is a Server-Sent Events client (HTTP/1.1, chunked, as a browser's EventSource
reads it) or a websocket client (the ``websockets`` library), on its own connection. The
process opens them all, prints one JSON line (how many got in, and the statuses of those that
did not), records every message with the time it arrived, and when it reads a line on stdin
prints what each subscriber received as one JSON line and exits.

Kinds: ``console_sse``, ``status_sse``, ``console_ws``, ``status_ws``. A message is recorded by
its key: the ``time`` RE Manager gave it, or for status events (whose data is the bare status)
the event id, which the benchmark maps to the time through Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import ssl
import sys
import time
import urllib.parse

import websockets
from websockets.asyncio.client import connect

PATHS = {
    "console_sse": "/api/console_output/events",
    "status_sse": "/api/status/events",
    "console_ws": "/api/console_output/ws",
    "status_ws": "/api/status/ws",
}
CONNECTING_AT_ONCE = 32


class Subscriber:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.status: int | None = None  # of the answer: 101/200 got in
        self.received: list[tuple[object, float]] = []  # (key, arrival time)
        self.connected = asyncio.Event()

    def result(self) -> dict:
        return {"kind": self.kind, "status": self.status, "received": self.received}


async def _sse(
    subscriber: Subscriber, url: urllib.parse.SplitResult, headers: dict, tls: ssl.SSLContext | None
) -> None:
    port = url.port or (443 if url.scheme == "https" else 80)
    reader, writer = await asyncio.open_connection(url.hostname, port, ssl=tls, limit=1 << 20)
    try:
        lines = [f"GET {url.path} HTTP/1.1", f"Host: {url.netloc}", "Accept: text/event-stream"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        subscriber.status = int(head.split(b" ", 2)[1])
        subscriber.connected.set()
        if subscriber.status != 200:
            return
        chunked = b"transfer-encoding: chunked" in head.lower()
        pending = b""
        by_id = subscriber.kind == "status_sse"
        while True:
            if chunked:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    return
                data = (await reader.readexactly(size + 2))[:-2]
            else:
                data = await reader.read(65536)
                if not data:
                    return
            arrived = time.time()
            pending += data
            *events, pending = pending.split(b"\n\n")
            for event in events:
                fields = dict(line.split(b": ", 1) for line in event.split(b"\n") if b": " in line and line[:1] != b":")
                if b"data" not in fields:
                    continue
                key = fields[b"id"].decode() if by_id else json.loads(fields[b"data"])["time"]
                subscriber.received.append((key, arrived))
    finally:
        writer.close()


async def _websocket(subscriber: Subscriber, uri: str, headers: dict, tls: ssl.SSLContext | None) -> None:
    try:
        async with connect(uri, ssl=tls, additional_headers=headers, max_size=None, ping_interval=None) as ws:
            subscriber.status = 101
            subscriber.connected.set()
            async for frame in ws:
                subscriber.received.append((json.loads(frame)["time"], time.time()))
    except websockets.InvalidStatus as refused:
        subscriber.status = refused.response.status_code
    except websockets.ConnectionClosed:
        pass


async def _run(args: argparse.Namespace) -> None:
    tls = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
    headers = {"Authorization": f"ApiKey {args.api_key}"}
    subscribers: list[Subscriber] = []
    for spec in args.kinds.split(","):
        kind, _, count = spec.partition(":")
        subscribers += [Subscriber(kind) for _ in range(int(count))]
    gate = asyncio.Semaphore(CONNECTING_AT_ONCE)

    async def serve(subscriber: Subscriber) -> None:
        url = args.url + PATHS[subscriber.kind]
        async with gate:  # a few handshakes at a time, as clients arriving over a few seconds
            if subscriber.kind.endswith("_ws"):
                running = asyncio.ensure_future(_websocket(subscriber, url.replace("http", "ws", 1), headers, tls))
            else:
                running = asyncio.ensure_future(_sse(subscriber, urllib.parse.urlsplit(url), headers, tls))
            waiting = asyncio.ensure_future(subscriber.connected.wait())
            await asyncio.wait({running, waiting}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
        try:
            await running
        except Exception as exc:  # the connection failed or broke: counted, not fatal
            subscriber.status = subscriber.status or f"error: {type(exc).__name__}"

    tasks = [asyncio.ensure_future(serve(subscriber)) for subscriber in subscribers]
    while not all(s.status is not None for s in subscribers):
        await asyncio.sleep(0.1)
    refused: dict[str, int] = {}
    for s in subscribers:
        if s.status not in (101, 200):
            refused[str(s.status)] = refused.get(str(s.status), 0) + 1
    connected = sum(s.status in (101, 200) for s in subscribers)
    print(json.dumps({"connected": connected, "refused": refused}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps([s.result() for s in subscribers]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the gateway's base URL (https://host:port/prefix)")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--cafile", help="the certificate to trust (https)")
    parser.add_argument("--kinds", required=True, help="kind:count,... e.g. console_sse:100,status_ws:100")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
