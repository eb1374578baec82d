"""CurveZMQ for the control channel: a client key pair for RE Manager's public key (checked when the
configuration is read: :func:`qs_gateway.config.parsers.parse_public_key`)."""

from __future__ import annotations

from dataclasses import dataclass

import zmq


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
