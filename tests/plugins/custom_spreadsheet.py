"""A facility's spreadsheet converter, as a custom module (QSERVER_CUSTOM_MODULES)."""

from __future__ import annotations


def spreadsheet_to_plan_list(*, spreadsheet_file, file_name, data_type, user, **kwargs):
    if data_type == "unsupported":
        raise ValueError(f"Unsupported data type: {data_type!r}")
    if data_type != "numbers":
        return None  # not ours: the default converter reads the file
    # one count plan per line, the line giving `num`; the uploader's name goes into the metadata
    lines = spreadsheet_file.read().decode().split()
    return [
        {"name": "count", "args": [["det1"]], "kwargs": {"num": int(line)}, "meta": {"uploaded_by": user}}
        for line in lines
    ]
