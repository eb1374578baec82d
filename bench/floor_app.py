"""The framework floor: Flask under the same gunicorn settings, answering constant bodies.

Nothing is faster than this with Flask + gunicorn gthread on the same machine, so it is the
ceiling of answers the gateway serves from its caches. ``/large`` is as long as the gateway's
answer it is compared with (the benchmark sets ``QS_BENCH_LARGE_BYTES`` to the size of a
1,000-item queue).
"""

import itertools
import os

from flask import Flask, Response

LARGE_BYTES_ENV = "QS_BENCH_LARGE_BYTES"

app = Flask(__name__)

SMALL = b'{"success": true, "msg": ""}'
_ITEM = b'{"item_type": "plan", "name": "count", "args": [["det1"]]}'
_ITEMS = -(-int(os.environ.get(LARGE_BYTES_ENV, "200000")) // (len(_ITEM) + 1))  # rounded up
LARGE = b'{"items": [' + b",".join([_ITEM] * _ITEMS) + b"]}"
_served = itertools.count()  # requests this process answered (the profile reads it)


@app.get("/small")
def small() -> Response:
    next(_served)
    return Response(SMALL, mimetype="application/json")


@app.get("/large")
def large() -> Response:
    next(_served)
    return Response(LARGE, mimetype="application/json")


@app.get("/served")
def served() -> Response:
    """``<pid> <count>``: which worker answered, and how many requests it answered."""
    return Response(f"{os.getpid()} {next(_served) - 1}\n", mimetype="text/plain")
