"""CurveZMQ for the control channel: validate RE Manager's public key, make a client key pair."""

from __future__ import annotations

from dataclasses import dataclass

import zmq


class InvalidCurveKey(ValueError):
    pass


def validate_public_key(key: str, *, source: str = "QSERVER_ZMQ_PUBLIC_KEY") -> str:
    """Return ``key`` if it is a usable z85 CURVE key, else raise with a message naming ``source``.

    A wrong key is not an error for ZeroMQ at connect time (requests just time out), so a
    malformed one is refused before the gateway starts.
    """
    if not zmq.has("curve"):
        raise InvalidCurveKey(f"{source} is set, but this libzmq was built without CURVE support")
    if not isinstance(key, str) or len(key) != 40:
        raise InvalidCurveKey(f"{source} must be a z85-encoded key of 40 characters, got {len(str(key))}")
    try:
        zmq.curve_public(key.encode("ascii"))
    except (zmq.ZMQError, ValueError, UnicodeEncodeError) as exc:
        raise InvalidCurveKey(f"{source} is not a valid z85-encoded CURVE key: {exc}") from None
    return key


@dataclass(frozen=True)
class ClientCurveKeys:
    """RE Manager's public key plus a key pair for this process (RE Manager accepts any pair)."""

    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def generate(cls, server_public_key: str) -> "ClientCurveKeys":
        public, secret = zmq.curve_keypair()
        return cls(server_public_key.encode("ascii"), public, secret)

    def apply(self, sock: zmq.Socket) -> None:
        """Configure ``sock`` as a CURVE client; must happen before ``connect``."""
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server_public)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)
