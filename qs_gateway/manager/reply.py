"""An RE Manager reply, held as a dict, as JSON bytes, or both (each made on first use)."""

from __future__ import annotations

from typing import Any

import orjson

_DUMP_OPTIONS = orjson.OPT_NON_STR_KEYS


def dump_json(data: Any) -> bytes:
    """JSON for HTTP bodies. Non-finite floats (which RE Manager may send) become null."""
    return orjson.dumps(data, option=_DUMP_OPTIONS)


class Reply:
    __slots__ = ("_data", "_body")

    def __init__(self, data: Any = None, *, body: bytes | None = None) -> None:
        if data is None and body is None:
            raise ValueError("a reply needs data or a body")
        self._data = data
        self._body = body

    @property
    def data(self) -> Any:
        if self._data is None:
            self._data = orjson.loads(self._body)
        return self._data

    @property
    def body(self) -> bytes:
        if self._body is None:
            self._body = dump_json(self._data)
        return self._body

    def get(self, key: str, default: Any = None) -> Any:
        data = self.data
        return data.get(key, default) if isinstance(data, dict) else default

    @property
    def succeeded(self) -> bool:
        return self.get("success") is True

    def __repr__(self) -> str:
        return f"Reply({self.data!r})"
