"""Transport to RE Manager: ZeroMQ REQ sockets, pooled; no knowledge of HTTP or Flask."""

from .breaker import CircuitBreaker, CircuitOpen
from .codec import Codec
from .pool import PoolExhausted, ProtocolError, RequestTimeout, SocketPool, Timeouts

__all__ = [
    "CircuitBreaker",
    "CircuitOpen",
    "Codec",
    "PoolExhausted",
    "ProtocolError",
    "RequestTimeout",
    "SocketPool",
    "Timeouts",
]
