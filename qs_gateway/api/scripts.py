"""Scripts and functions run in the worker environment, and the tasks they start."""

from __future__ import annotations

from marshmallow import fields, validate

from .declare import Resource
from .schemas import (
    CHECKED,
    ItemSchema,
    Payload,
    StringOrStrings,
    flag_field,
    identifier,
    item_field,
    lock_key_field,
)


class FunctionItemSchema(ItemSchema):
    item_type = fields.String(required=True, validate=validate.Equal("function"))


class ScriptUpload(Payload):
    script = fields.String()
    update_lists = flag_field()
    update_re = flag_field()
    run_in_background = flag_field()
    lock_key = lock_key_field()


class FunctionExecute(Payload):
    item = item_field(FunctionItemSchema)
    run_in_background = flag_field()
    lock_key = lock_key_field()


# bluesky-queueserver-api checks the type of a task uid before anything is sent
class TaskStatus(Payload):
    task_uid = StringOrStrings(metadata=CHECKED)


class TaskResult(Payload):
    task_uid = identifier(metadata=CHECKED)


scripts = Resource("scripts", __name__)

scripts.forward("/script/upload", "script_upload", scope="write:scripts", schema=ScriptUpload)
scripts.forward("/function/execute", "function_execute", scope="write:execute", schema=FunctionExecute)
scripts.forward("/task/status", "task_status", methods=("GET",), scope="read:monitor", schema=TaskStatus)
scripts.forward("/task/result", "task_result", methods=("GET",), scope="read:monitor", schema=TaskResult)
