"""The RE Worker environment and its IPython kernel."""

from __future__ import annotations

from .declare import Resource
from .schemas import LockKeyOnly, Payload, flag_field, lock_key_field


class EnvironmentUpdate(Payload):
    run_in_background = flag_field()
    lock_key = lock_key_field()


class KernelInterrupt(Payload):
    interrupt_task = flag_field()
    interrupt_plan = flag_field()
    lock_key = lock_key_field()


environment = Resource("environment", __name__)

for action in ("open", "close", "destroy"):
    environment.forward(
        f"/environment/{action}", f"environment_{action}", scope="write:manager:control", schema=LockKeyOnly
    )
environment.forward("/environment/update", "environment_update", scope="write:queue:control", schema=EnvironmentUpdate)
environment.forward("/kernel/interrupt", "kernel_interrupt", scope="write:queue:control", schema=KernelInterrupt)
