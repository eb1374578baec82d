"""The framework floor: Flask under the same gunicorn settings, answering constant bodies.

Nothing is faster than this with Flask + gunicorn gthread on the same machine, so it is the
ceiling of answers the gateway serves from its caches.
"""

from flask import Flask, Response

app = Flask(__name__)

SMALL = b'{"success": true, "msg": ""}'
LARGE = b'{"items": [' + b",".join([b'{"item_type": "plan", "name": "count", "args": [["det1"]]}'] * 3000) + b"]}"


@app.get("/small")
def small() -> Response:
    return Response(SMALL, mimetype="application/json")


@app.get("/large")
def large() -> Response:
    return Response(LARGE, mimetype="application/json")
