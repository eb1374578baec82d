"""The RE Worker environment and its IPython kernel."""

from __future__ import annotations

from . import schemas
from .declare import Resource

environment = Resource("environment", __name__)

for action in ("open", "close", "destroy"):
    environment.forward(
        f"/environment/{action}", f"environment_{action}", scope="write:manager:control", schema=schemas.LockKeyOnly
    )
environment.forward(
    "/environment/update", "environment_update", scope="write:queue:control", schema=schemas.EnvironmentUpdate
)
environment.forward(
    "/kernel/interrupt", "kernel_interrupt", scope="write:queue:control", schema=schemas.KernelInterrupt
)
