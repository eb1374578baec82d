"""Scripts and functions run in the worker environment, and the tasks they start."""

from __future__ import annotations

from . import schemas
from .declare import Resource

scripts = Resource("scripts", __name__)

scripts.forward("/script/upload", "script_upload", scope="write:scripts", schema=schemas.ScriptUpload)
scripts.forward(
    "/function/execute",
    "function_execute",
    scope="write:execute",
    schema=schemas.FunctionExecute,
    injects=("user", "user_group"),
)
scripts.forward("/task/status", "task_status", methods=("GET",), scope="read:monitor", schema=schemas.TaskStatus)
scripts.forward("/task/result", "task_result", methods=("GET",), scope="read:monitor", schema=schemas.TaskResult)
