"""Log formatting: plain text or one JSON object per line (``log_format``).

The gateway's own lines carry their data in ``extra={"fields": {...}}``: the text format appends
them as ``key=value``, the JSON format makes them keys of the object. Nothing secret is ever put
in fields (see :mod:`qs_gateway.redact`).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

LOG_FORMATS = ("text", "json")
_HANDLER_MARK = "_qs_gateway_handler"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return f'"{text}"' if (not text or " " in text) and not text.startswith(("{", "[")) else text


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S %z")

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
