"""Turning an uploaded spreadsheet into queue items (no HTTP here).

The first custom module that defines ``spreadsheet_to_plan_list`` is asked first; if there is
none, or it returns ``None``, bluesky-queueserver's default converter reads the file (``.xlsx``,
``.xls``, ``.csv``). The default converter pulls in pandas, so it is imported only when a
spreadsheet is actually uploaded: workers that never see one stay small.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from .extending import find_custom_function

CONVERTER_NAME = "spreadsheet_to_plan_list"


def default_converter() -> Any:
    from bluesky_queueserver.manager.conversions import spreadsheet_to_plan_list

    return spreadsheet_to_plan_list


def spreadsheet_items(
    custom_modules: Iterable[ModuleType], content: bytes, file_name: str, data_type: str | None, user: str
) -> list[dict[str, Any]]:
    """The queue items described by a spreadsheet; raises with a readable message otherwise."""
    kwargs = {"file_name": file_name, "data_type": data_type, "user": user}
    items = None
    custom = find_custom_function(custom_modules, CONVERTER_NAME)
    if custom is not None:
        items = custom(spreadsheet_file=io.BytesIO(content), **kwargs)
    if items is None:
        items = default_converter()(spreadsheet_file=io.BytesIO(content), **kwargs)
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, dict) for item in items):
        raise TypeError(f"{CONVERTER_NAME} must return a list of dictionaries, not {type(items).__name__}")
    return [item if "item_type" in item else {**item, "item_type": "plan"} for item in items]
