"""Encoding of RE Manager messages: JSON (the default) or msgpack, as RE Manager is configured."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgpack
import orjson

ENCODINGS = ("json", "msgpack")


def _json_decode(frame: bytes) -> Any:
    try:
        return orjson.loads(frame)
    except orjson.JSONDecodeError:
        # RE Manager serialises with the standard library, which writes NaN and Infinity;
        # orjson refuses those tokens, the standard library reads them.
        return json.loads(frame)


class Codec:
    """Turns request dicts into frames and reply frames into dicts."""

    def __init__(self, encoding: str = "json") -> None:
        if encoding not in ENCODINGS:
            raise ValueError(f"Unsupported ZeroMQ encoding {encoding!r}; expected one of {ENCODINGS}")
        self.encoding = encoding
        self.encode: Callable[[Any], bytes]
        self.decode: Callable[[bytes], Any]
        if encoding == "json":
            self.encode = orjson.dumps
            self.decode = _json_decode
        else:
            self.encode = msgpack.packb
            self.decode = lambda frame: msgpack.unpackb(frame, raw=False)
