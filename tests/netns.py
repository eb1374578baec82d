"""A private network of Linux network namespaces, for tests that need real hosts (root only).

Each "host" is a namespace with one link (a veth pair) to a bridge that lives in a namespace of
its own, as machines on one switch; the root namespace, where the test and nginx run, has a link
to the bridge too. Names carry the test process's id and the subnet is derived from it, so two
runs at once do not meet. :meth:`Network.close` removes every namespace and link it made, and
the fixture that makes a network closes it in ``finally``.

* :meth:`Network.cut` pulls a host's cable (its port on the bridge goes down): nothing reaches it
  and nothing leaves it, connections time out; :meth:`Network.restore` plugs it back in.
* :meth:`Network.block` drops a host's packets to one address (a blackhole route), e.g. to Redis
  only, while it stays reachable from everything else.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field


def ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def namespaces_work() -> str | None:
    """Why network namespaces cannot be used here, or None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    try:
        subprocess.run(["ip", "netns", "list"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"'ip netns' does not work here: {exc}"
    return None


@dataclass
class Host:
    namespace: str
    address: str
    switch_port: str  # its veth end on the bridge

    @property
    def launcher(self) -> list[str]:
        """The command prefix that runs a program on this host."""
        return ["ip", "netns", "exec", self.namespace]


@dataclass
class Network:
    tag: str = field(default_factory=lambda: f"qsg{os.getpid()}")
    hosts: dict[str, Host] = field(default_factory=dict)
    _namespaces: list[str] = field(default_factory=list)
    _root_link: str | None = None

    def __post_init__(self) -> None:
        pid = os.getpid()
        self.subnet = f"10.{64 + pid % 128}.{(pid // 128) % 250}"
        self.switch = f"{self.tag}-sw"

    @property
    def root_address(self) -> str:
        return f"{self.subnet}.254"

    def _namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self._namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def _link(self, name: str, namespace: str | None) -> str:
        """A veth pair from ``namespace`` (None: the root namespace) to the bridge; its ends' names."""
        inside, port = f"{self.tag}{name}", f"{self.tag}{name}s"
        ip("link", "add", inside, "type", "veth", "peer", "name", port)
        ip("link", "set", port, "netns", self.switch)
        ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        if namespace is not None:
            ip("link", "set", inside, "netns", namespace)
        return inside

    def start(self) -> "Network":
        self._namespace(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        self._root_link = self._link("r", None)
        ip("addr", "add", f"{self.root_address}/24", "dev", self._root_link)
        ip("link", "set", self._root_link, "up")
        return self

    def add_host(self, name: str, *addresses: int) -> Host:
        """A host with one address per number given (``subnet.number``); the first is its own."""
        namespace = f"{self.tag}-{name}"
        self._namespace(namespace)
        inside = self._link(str(len(self.hosts)), namespace)
        for number in addresses:
            ip("-n", namespace, "addr", "add", f"{self.subnet}.{number}/24", "dev", inside)
        ip("-n", namespace, "link", "set", inside, "up")
        host = Host(namespace, f"{self.subnet}.{addresses[0]}", f"{inside}s")
        self.hosts[name] = host
        return host

    def cut(self, host: Host) -> None:
        ip("-n", self.switch, "link", "set", host.switch_port, "down")

    def restore(self, host: Host) -> None:
        ip("-n", self.switch, "link", "set", host.switch_port, "up")

    def block(self, host: Host, address: str) -> None:
        ip("-n", host.namespace, "route", "add", "blackhole", f"{address}/32")

    def unblock(self, host: Host, address: str) -> None:
        ip("-n", host.namespace, "route", "del", "blackhole", f"{address}/32")

    def close(self) -> None:
        """Remove every namespace and link made (stop the processes in them first)."""
        errors = []
        if self._root_link is not None:
            try:
                ip("link", "del", self._root_link)  # its peer on the bridge goes with it
            except RuntimeError as exc:
                errors.append(str(exc))
            self._root_link = None
        for namespace in reversed(self._namespaces):
            try:
                ip("netns", "del", namespace)  # its links go with it
            except RuntimeError as exc:
                errors.append(str(exc))
        self._namespaces.clear()
        if errors:
            raise RuntimeError("; ".join(errors))
