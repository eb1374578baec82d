"""User group permissions (which plans and devices each group may use)."""

from __future__ import annotations

from marshmallow import fields

from .declare import Resource
from .schemas import Empty, Payload, flag_field, lock_key_field


class PermissionsReload(Payload):
    restore_plans_devices = flag_field()
    restore_permissions = flag_field()
    lock_key = lock_key_field()


class PermissionsSet(Payload):
    user_group_permissions = fields.Dict(keys=fields.String())
    lock_key = lock_key_field()


permissions = Resource("permissions", __name__)

permissions.forward("/permissions/reload", "permissions_reload", scope="write:config", schema=PermissionsReload)
permissions.forward("/permissions/get", "permissions_get", methods=("GET",), scope="read:config", schema=Empty)
permissions.forward("/permissions/set", "permissions_set", scope="write:permissions", schema=PermissionsSet)
