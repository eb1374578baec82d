"""A Redis that fails over, for tests: a master, replicas and Sentinels, all the one redis-server
binary (a Sentinel is ``redis-server <its file> --sentinel``), each on a free port, stopped by PID.

The Sentinels' timing is given by the caller: ``down_after_ms`` (how long a master may be silent
before a Sentinel thinks it down) and ``failover_timeout_ms`` bound how long a failover takes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from .stack import ManagedProcess, RedisTls, free_port, start_redis, stop_all, stopped_on_failure


def _client(host: str, port: int, password: str | None, tls: RedisTls | None) -> redis.Redis:
    options = {"ssl": True, "ssl_ca_certs": str(tls.ca)} if tls is not None else {}
    return redis.Redis(host, port, password=password or None, socket_timeout=2, **options)


def _password_args(password: str | None) -> list[str]:
    return ["--requirepass", password, "--masterauth", password] if password else []


def start_master(
    workdir: Path, *, password: str | None = None, tls: RedisTls | None = None, bind: Sequence[str] = ("127.0.0.1",)
) -> tuple[ManagedProcess, int]:
    """A Redis that its replicas (should it become one itself) reach with ``password``."""
    return start_redis(workdir, extra_args=_password_args(password), tls=tls, bind=bind, name="master")


def start_replica(
    workdir: Path,
    master_port: int,
    *,
    master_host: str = "127.0.0.1",
    password: str | None = None,
    tls: RedisTls | None = None,
    bind: Sequence[str] = ("127.0.0.1",),
    timeout: float = 15.0,
) -> tuple[ManagedProcess, int]:
    """A replica of the master at ``master_host:master_port``, returned once it is in sync."""
    proc, port = start_redis(
        workdir,
        extra_args=["--replicaof", master_host, str(master_port), *_password_args(password)],
        tls=tls,
        bind=bind,
        name="replica",
    )
    client = _client(bind[0], port, password, tls)
    with stopped_on_failure(proc):
        proc.wait_until(lambda: client.info("replication")["master_link_status"] == "up", timeout, "in sync")
    client.close()
    return proc, port


@dataclass
class SentinelGroup:
    processes: list[ManagedProcess]
    ports: list[int]
    service_name: str
    host: str = "127.0.0.1"
    password: str | None = None
    tls: RedisTls | None = None

    @property
    def addresses(self) -> list[str]:
        return [f"{self.host}:{port}" for port in self.ports]

    def master_address(self) -> tuple[str, int] | None:
        """The master as the first Sentinel that answers names it."""
        for port in self.ports:
            try:
                with _client(self.host, port, self.password, self.tls) as client:
                    found = client.sentinel_get_master_addr_by_name(self.service_name)
            except redis.RedisError:
                continue
            if found:
                host = found[0].decode() if isinstance(found[0], bytes) else found[0]
                return host, int(found[1])
        return None

    def wait_for_new_master(self, old: tuple[str, int], timeout: float) -> tuple[tuple[str, int], float]:
        """Poll until the Sentinels name another master: (its address, when, on the monotonic clock)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            address = self.master_address()
            if address is not None and address != old:
                return address, time.monotonic()
            time.sleep(0.05)
        raise TimeoutError(f"the Sentinels still name {old} as the master after {timeout} s")

    def stop(self) -> None:
        stop_all(self.processes)


def start_sentinels(
    workdir: Path,
    master_port: int,
    *,
    count: int = 3,
    quorum: int = 2,
    service_name: str = "mymaster",
    master_host: str = "127.0.0.1",
    master_password: str | None = None,
    password: str | None = None,
    down_after_ms: int = 1000,
    failover_timeout_ms: int = 3000,
    tls: RedisTls | None = None,
    bind: Sequence[str] = ("127.0.0.1",),
    replicas: int = 1,
    timeout: float = 30.0,
) -> SentinelGroup:
    """``count`` Sentinels watching the master, returned once each knows the others and ``replicas``
    replicas (Sentinels find each other through the master, within a few seconds)."""
    workdir.mkdir(parents=True, exist_ok=True)
    group = SentinelGroup([], [], service_name, bind[0], password, tls)
    try:
        for _ in range(count):
            port = free_port()
            config = workdir / f"sentinel-{port}.conf"  # a Sentinel writes what it learns into its file
            lines = [
                f"sentinel monitor {service_name} {master_host} {master_port} {quorum}",
                f"sentinel down-after-milliseconds {service_name} {down_after_ms}",
                f"sentinel failover-timeout {service_name} {failover_timeout_ms}",
                f"sentinel parallel-syncs {service_name} 1",
            ]
            if master_password:
                lines.append(f"sentinel auth-pass {service_name} {master_password}")
            if password:
                lines += [f"requirepass {password}", f"sentinel sentinel-pass {password}"]
            config.write_text("\n".join(lines) + "\n")
            process, _ = start_redis(
                workdir, port, ["--sentinel"], tls=tls, bind=bind, config=config, name=f"sentinel-{port}"
            )
            group.processes.append(process)
            group.ports.append(port)
        clients = [_client(group.host, port, password, tls) for port in group.ports]

        def all_acquainted() -> bool:
            for client in clients:
                master = client.sentinel_master(service_name)
                if master["num-other-sentinels"] < count - 1 or master["num-slaves"] < replicas:
                    return False
            return True

        group.processes[0].wait_until(all_acquainted, timeout, "knowing each other and the replicas")
        for client in clients:
            client.close()
    except BaseException:
        group.stop()
        raise
    return group
