"""Log formatting: plain text or one JSON object per line (``log_format``).

The gateway's own lines carry their data in ``extra={"fields": {...}}``: the text format appends
them as ``key=value``, the JSON format makes them keys of the object. Nothing secret is ever put
in fields (see :mod:`qs_gateway.config.redact`).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson

LOG_FORMATS = ("text", "json")
_HANDLER_MARK = "_qs_gateway_handler"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


# What a text line must not carry raw: a newline would start a forged line, a quote a forged
# value. Control characters (C0, DEL, C1), the Unicode line and paragraph separators, and (in
# values) quotes and backslashes are written as escapes.
_UNSAFE_IN_MESSAGE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_UNSAFE_IN_VALUE = re.compile('[\x00-\x1f\x7f-\x9f\u2028\u2029"\\\\]')
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}


def _escape(match: re.Match) -> str:
    char = match.group()
    return _ESCAPES.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape_message(text: str) -> str:
    return _UNSAFE_IN_MESSAGE.sub(_escape, text)


def _text_value(value: Any) -> str:
    if not isinstance(value, str):
        return orjson.dumps(value, default=str).decode()  # JSON: its strings are escaped already
    text = _UNSAFE_IN_VALUE.sub(_escape, value)
    return f'"{text}"' if not text or " " in text or text[0] in "{[" else text


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S %z")

    def formatMessage(self, record: logging.LogRecord) -> str:
        # One record, one line: a message that carries a request's text cannot add lines (a
        # traceback, appended after this, keeps its own).
        return self._style._fmt % {**record.__dict__, "message": escape_message(record.message)}

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _fields(record)
        if fields:
            line += " " + " ".join(f"{key}={_text_value(value)}" for key, value in fields.items())
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def make_formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(log_format: str, level: str = "info") -> None:
    """Send the gateway's loggers to stderr in ``log_format`` (gunicorn's master calls this)."""
    logger = logging.getLogger("qs_gateway")
    for handler in [h for h in logger.handlers if getattr(h, _HANDLER_MARK, False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(make_formatter(log_format))
    logger.addHandler(handler)
    logger.setLevel(level.upper())
