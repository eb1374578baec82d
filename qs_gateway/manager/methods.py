"""RE Manager's request methods, one row each: everything the gateway knows about a method.

* **access**: a READ may be repeated and served from a cache; a WRITE is sent at most once, and
  the shared status is invalidated once it has been sent (also after a timeout: it may have been
  carried out), so no reading fetched before it is served after it.
* **guard**: the status field (``*_uid``) that changes whenever the reply would; the reply is
  cached until it changes, and it is the reply's ETag.
* **timeout**: the class of its receive timeout (:class:`Timeout`).
* **identity**: who the gateway says the caller is: ``user`` (displayed name), ``user_group``.
* **refusal**: how RE Manager words a refusal of the method, and what else its reply holds then
  (:mod:`.refusals`); the gateway answers a value it refuses itself in the same shape.
* **changes**: the guards a write may change: their cached replies are dropped at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from ..config.parsers import ConfigError
from .refusals import REFUSALS, Refusal


class Access(Enum):
    READ = "read"
    WRITE = "write"


class Timeout(Enum):
    STANDARD = "standard"  # answered at once: the configured receive timeout
    BULK = "bulk"  # replies that grow with the facility (lists of plans, devices, queue, history)


USER = ("user",)
USER_GROUP = ("user_group",)
IDENTITY = ("user", "user_group")


@dataclass(frozen=True)
class Method:
    name: str
    access: Access
    guard: str | None = None
    timeout: Timeout = Timeout.STANDARD
    identity: tuple[str, ...] = ()
    changes: tuple[str, ...] = ()

    @property
    def reads(self) -> bool:
        return self.access is Access.READ

    @property
    def refusal(self) -> Refusal | None:
        return REFUSALS.get(self.name)


def _read(name: str, guard: str | None = None, **kwargs: object) -> Method:
    return Method(name, Access.READ, guard, **kwargs)


def _write(name: str, *changes: str, **kwargs: object) -> Method:
    return Method(name, Access.WRITE, changes=changes, **kwargs)


QUEUE, HISTORY, RUNS, LOCK = "plan_queue_uid", "plan_history_uid", "run_list_uid", "lock_info_uid"
LISTS = ("plans_allowed_uid", "devices_allowed_uid", "plans_existing_uid", "devices_existing_uid")
BULK = Timeout.BULK

_TABLE = (
    # status and configuration
    _read("status", "status_uid"),
    _read("ping"),
    _read("config_get"),
    # plans, devices and who may use them
    _read("plans_allowed", "plans_allowed_uid", timeout=BULK, identity=USER_GROUP),
    _read("devices_allowed", "devices_allowed_uid", timeout=BULK, identity=USER_GROUP),
    _read("plans_existing", "plans_existing_uid", timeout=BULK),
    _read("devices_existing", "devices_existing_uid", timeout=BULK),
    _read("permissions_get", timeout=BULK),
    _write("permissions_reload", *LISTS),
    _write("permissions_set", *LISTS),
    # the queue
    _read("queue_get", QUEUE, timeout=BULK),
    _read("queue_item_get"),
    _write("queue_item_add", QUEUE, identity=IDENTITY),
    _write("queue_item_add_batch", QUEUE, identity=IDENTITY),
    _write("queue_item_update", QUEUE, identity=IDENTITY),
    _write("queue_item_remove", QUEUE),
    _write("queue_item_remove_batch", QUEUE),
    _write("queue_item_move", QUEUE),
    _write("queue_item_move_batch", QUEUE),
    _write("queue_item_execute", QUEUE, HISTORY, identity=IDENTITY),
    _write("queue_clear", QUEUE),
    _write("queue_mode_set"),
    _write("queue_autostart"),
    _write("queue_start", QUEUE, HISTORY),
    _write("queue_stop"),
    _write("queue_stop_cancel"),
    # history
    _read("history_get", HISTORY, timeout=BULK),
    _write("history_clear", HISTORY),
    # the worker environment
    _write("environment_open", *LISTS),
    _write("environment_close"),
    _write("environment_destroy"),
    _write("environment_update", *LISTS),
    _write("script_upload", *LISTS),
    _write("function_execute", identity=IDENTITY),
    _read("task_status"),
    _read("task_result"),
    _write("kernel_interrupt"),
    # the Run Engine
    _write("re_pause"),
    _write("re_resume"),
    _write("re_stop", QUEUE, HISTORY),
    _write("re_abort", QUEUE, HISTORY),
    _write("re_halt", QUEUE, HISTORY),
    _read("re_runs", RUNS),
    _read("re_metadata"),
    # locking
    _write("lock", LOCK, identity=USER),
    _write("unlock", LOCK),
    _read("lock_info", LOCK),
    # RE Manager itself
    _write("manager_stop"),
    _write("manager_kill"),
)

METHODS: Mapping[str, Method] = MappingProxyType({method.name: method for method in _TABLE})


def method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown RE Manager method {name!r}") from None


def is_read(name: str) -> bool:
    return method(name).reads


def check_method_names(names: Iterable[str], where: str) -> None:
    """Refuse configured names that are no RE Manager method (a typo would silently do nothing)."""
    unknown = sorted(set(names) - METHODS.keys())
    if unknown:
        raise ConfigError(f"{where}: unknown RE Manager method {unknown[0]!r}")
