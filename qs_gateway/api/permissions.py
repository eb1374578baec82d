"""User group permissions (which plans and devices each group may use)."""

from __future__ import annotations

from . import schemas
from .declare import Resource

permissions = Resource("permissions", __name__)

permissions.forward("/permissions/reload", "permissions_reload", scope="write:config", schema=schemas.PermissionsReload)
permissions.forward("/permissions/get", "permissions_get", methods=("GET",), scope="read:config", schema=schemas.Empty)
permissions.forward("/permissions/set", "permissions_set", scope="write:permissions", schema=schemas.PermissionsSet)
