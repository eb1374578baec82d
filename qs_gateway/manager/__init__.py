"""RE Manager client: its methods, their caching and read-your-writes; knows nothing of HTTP."""

from .client import ManagerClient, TimeoutPolicy
from .methods import ALL_METHODS, READ_METHODS, WRITE_METHODS, is_read
from .reply import Reply, dump_json
from .status_cache import StatusCache

__all__ = [
    "ALL_METHODS",
    "ManagerClient",
    "READ_METHODS",
    "Reply",
    "StatusCache",
    "TimeoutPolicy",
    "WRITE_METHODS",
    "dump_json",
    "is_read",
]
