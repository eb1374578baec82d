"""RE Manager client: its methods, their caching and read-your-writes; knows nothing of HTTP."""

from .client import ManagerClient, TimeoutPolicy
from .methods import METHODS, Access, Method, Timeout, is_read, method
from .refusals import Refusal
from .reply import Reply, dump_json
from .status_cache import StatusCache

__all__ = [
    "METHODS",
    "Access",
    "ManagerClient",
    "Method",
    "Refusal",
    "Reply",
    "StatusCache",
    "Timeout",
    "TimeoutPolicy",
    "dump_json",
    "is_read",
    "method",
]
