"""How an application's answer is handed to gunicorn's ``Response`` by the gateway's worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..api.hooks import CONSTANT_ANSWER_HEADERS

StartResponse = Callable[..., Any]


def answer_start(start_response: StartResponse) -> StartResponse:
    """``start_response`` for the application: it honours the application's ``Connection:
    close`` (gunicorn drops an application's hop-by-hop headers, and would keep the connection)
    and hands the gateway's constant headers to gunicorn's answer without gunicorn's checks (two
    regular expressions per header, ~0.6 µs each; these are known to be valid)."""
    gunicorn_response = getattr(start_response, "__self__", None)
    if gunicorn_response is None:  # not gunicorn's Response (see tests/test_gunicorn_contract.py)
        return start_response

    def start(status: str, headers: list, exc_info: Any = None) -> Any:
        checked, passed = [], []
        for header in headers:
            if type(header) is tuple and header in CONSTANT_ANSWER_HEADERS:
                checked.append(header)
                continue
            passed.append(header)
            name, value = header
            if len(name) == 10 and name.lower() == "connection" and value.strip().lower() == "close":
                gunicorn_response.force_close()
        write = start_response(status, passed, exc_info)
        gunicorn_response.headers.extend(checked)  # what send_headers() writes
        return write

    return start
