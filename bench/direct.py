"""Load on RE Manager itself over ZeroMQ: the ceiling of every request that reaches it.

Each of ``concurrency`` processes has its own REQ socket and sends the same request in a loop.
"""

from __future__ import annotations

import multiprocessing
import time

import orjson
import zmq


def _worker(address: str, message: bytes, seconds: float, start: float, results: multiprocessing.Queue) -> None:
    context = zmq.Context()
    sock = context.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    latencies = []
    while time.time() < start:
        time.sleep(0.001)
    end = start + seconds
    while time.time() < end:
        began = time.perf_counter()
        sock.send(message)
        sock.recv()
        latencies.append(time.perf_counter() - began)
    sock.close()
    context.term()
    results.put(latencies)


def request(address: str, method: str, params: dict | None = None, timeout: float = 10.0) -> dict:
    """One request on a socket of its own, for setting RE Manager up between measurements."""
    context = zmq.Context()
    sock = context.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(address)
        sock.send(orjson.dumps({"method": method, "params": params or {}}))
        if not sock.poll(int(timeout * 1000)):
            raise TimeoutError(f"RE Manager at {address} did not answer {method!r} in {timeout} s")
        reply = orjson.loads(sock.recv())
    finally:
        sock.close()
        context.term()
    if reply.get("success") is False:  # a status reply has no "success"
        raise RuntimeError(f"RE Manager refused {method!r}: {reply.get('msg')}")
    return reply


def run(address: str, method: str, params: dict, concurrency: int, seconds: float) -> list[float]:
    """Latencies (seconds) of every request answered in ``seconds``, from all processes."""
    message = orjson.dumps({"method": method, "params": params})
    results: multiprocessing.Queue = multiprocessing.Queue()
    start = time.time() + 0.5
    processes = [
        multiprocessing.Process(target=_worker, args=(address, message, seconds, start, results))
        for _ in range(concurrency)
    ]
    for process in processes:
        process.start()
    latencies = []
    for _ in processes:
        latencies.extend(results.get())
    for process in processes:
        process.join()
    return latencies
