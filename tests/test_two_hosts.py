"""Two gateway hosts for real: Linux network namespaces, the shipped nginx configuration in front.

Redis and RE Manager run in one namespace ("core", Redis and RE Manager on addresses of their
own), each gateway host (gunicorn, two workers) in another, all on one bridge; nginx runs in the
root namespace with deploy/nginx.conf as it is, its upstream replaced by the two hosts. Under a
load of reads and writes through nginx:

* one host's cable is pulled: requests started once nginx had time to notice (its connect
  timeout) all succeed through the other host; if the cut host held the ingest lease, the other
  takes it within ``ingest_lease_seconds`` × 1.25 + 1 s; the cable is plugged back in and the
  host serves again without a restart;
* one host is cut from Redis only: it answers what needs Redis 503 with ``Retry-After``, the rest
  as before, and the other host takes the lease;

and no status any host answered was older than the documented bounds (docs/deployment.md, "A second host").
Everything runs as root (CI does); the namespaces, links and processes are made here and removed
here, also when a test fails.
"""

from __future__ import annotations

import os
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from qs_gateway.config.redis import RedisSettings
from qs_gateway.redis_store import RedisStore
from qs_gateway.serving.proxy import MAIN_CONF, NGINX
from qs_gateway.serving.proxy import render_site as deployed_site
from qs_gateway.serving.stack import (
    ManagedProcess,
    ManagerPorts,
    free_port,
    start_gateway,
    start_re_manager,
    start_redis,
)

from .load import Answer, Load
from .netns import Host, Network, namespaces_work
from .support import (
    API_KEY,
    DirectManager,
    clients_on_every_worker,
    plan,
    reset_manager,
    self_signed_certificate,
    wait_for,
)

# Network namespaces need root. A developer's run without root skips this module; CI (root)
# never does: there, a machine where namespaces do not work fails the test instead.
pytestmark = pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"), reason=str(namespaces_work()))

HEADERS = {"Authorization": f"ApiKey {API_KEY}"}
LEASE_SECONDS = 1.0
STATUS_TTL = 0.4
FAIL_TIMEOUT = 3  # nginx's, for the two hosts
CONNECT_TIMEOUT = 2.0  # deploy/nginx.conf's proxy_connect_timeout
REDIS_NUMBER, MANAGER_NUMBER = 1, 2  # core's addresses: subnet.1 Redis, subnet.2 RE Manager
PORT = 60610

# which host nginx sent each request to (and tried first), by request id
ACCESS_LOG_FORMAT = "log_format hosts '$msec $request_time $status \"$upstream_addr\" $http_x_request_id';"


def render_site(hosts: list[Host], port: int, redirect_port: int, cert: Path, key: Path) -> str:
    """deploy/nginx.conf as tests/test_deploy.py runs it, its upstream the two hosts."""
    servers = [f"{h.address}:{PORT} max_fails=1 fail_timeout={FAIL_TIMEOUT}s" for h in hosts]
    text = deployed_site(";\n    server ".join(servers), port, redirect_port, cert, key)
    assert f"proxy_connect_timeout {CONNECT_TIMEOUT:g}s;" in text, "deploy/nginx.conf's connect timeout changed"
    return text


@dataclass
class GatewayHost:
    host: Host
    process: ManagedProcess
    url: str  # straight to this host, not through nginx

    def workers(self) -> set[int]:
        return children(self.process.pid)


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


@dataclass
class TwoHosts:
    network: Network
    hosts: dict[str, GatewayHost]
    redis: redis.Redis
    redis_address: str
    prefix: str
    url: str  # through nginx
    trust: ssl.SSLContext
    access_log: Path
    manager: DirectManager

    def leader(self) -> str | None:
        """The name of the host whose worker holds the ingest lease, if any."""
        holder = self.redis.get(f"{self.prefix}:ingest:leader")
        if holder is None:
            return None
        pid = int(holder.decode().split(":")[1])
        return next((name for name, h in self.hosts.items() if pid in h.workers()), None)

    def upstreams(self) -> dict[str, tuple[float, str]]:
        """Per request id: (when nginx logged it, the upstream addresses it tried)."""
        found = {}
        for line in self.access_log.read_text().splitlines():
            msec, _, _, rest = line.split(" ", 3)
            addresses, _, request_id = rest.rpartition(" ")
            found[request_id] = (float(msec), addresses.strip('"'))
        return found


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory) -> Iterator[TwoHosts]:
    workdir = tmp_path_factory.mktemp("two-hosts")
    network = Network()
    processes: list[ManagedProcess] = []
    try:
        network.start()
        core = network.add_host("core", REDIS_NUMBER, MANAGER_NUMBER)
        redis_address = core.address
        process, redis_port = start_redis(
            workdir / "redis",
            # RE Manager knows no Redis passwords; the private network stands in for one
            extra_args=("--protected-mode", "no"),
            bind=(redis_address, "127.0.0.1"),
            launcher=core.launcher,
        )
        processes.append(process)
        ports = ManagerPorts(free_port(), free_port(), host=f"{network.subnet}.{MANAGER_NUMBER}")
        process, _ = start_re_manager(
            workdir / "re-manager", redis_port=redis_port, ports=ports, launcher=core.launcher, timeout=60
        )
        processes.append(process)
        prefix = f"qs_gateway_hosts_{uuid.uuid4().hex[:8]}"
        env = {
            "QSERVER_ZMQ_CONTROL_ADDRESS": ports.control_address,
            "QSERVER_ZMQ_INFO_ADDRESS": ports.info_address,
            "QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY": API_KEY,
            "QS_GATEWAY_REDIS_URL": f"redis://{redis_address}:{redis_port}/0",
            "QS_GATEWAY_REDIS_PREFIX": prefix,
            "QS_GATEWAY_WORKERS": "2",
            "QS_GATEWAY_THREADS": "8",
            "QS_GATEWAY_WORKER_HEADER": "1",
            "QS_GATEWAY_PROXY_HOPS": "1",
            "QS_GATEWAY_INGEST_LEASE_SECONDS": str(LEASE_SECONDS),
            "QS_GATEWAY_STATUS_TTL": str(STATUS_TTL),
        }
        hosts = {}
        for name, number in (("a", 11), ("b", 12)):
            host = network.add_host(name, number)
            process, url = start_gateway(
                workdir / name,
                env,
                port=PORT,
                host=host.address,
                launcher=host.launcher,
                log_name=f"gateway-{name}.log",
            )
            processes.append(process)
            hosts[name] = GatewayHost(host, process, url)

        cert, key = self_signed_certificate(workdir)
        port = free_port()
        nginx_dir = workdir / "nginx"
        nginx_dir.mkdir()
        (nginx_dir / "qs-gateway.conf").write_text(
            render_site([h.host for h in hosts.values()], port, free_port(), cert, key)
        )
        access_log = f"access_log {nginx_dir}/access.log;"
        main = MAIN_CONF.format(user="user root;", dir=nginx_dir)
        assert main.count(access_log) == 1
        main = main.replace(access_log, f"{ACCESS_LOG_FORMAT}\n    access_log {nginx_dir}/access.log hosts;")
        (nginx_dir / "nginx.conf").write_text(main)
        nginx = ManagedProcess(
            "nginx",
            [NGINX, "-p", str(nginx_dir), "-e", str(nginx_dir / "error.log"), "-c", str(nginx_dir / "nginx.conf"),
             "-g", "daemon off;"],
            nginx_dir / "nginx.out",
        ).start()  # fmt: skip
        processes.append(nginx)
        url = f"https://localhost:{port}/qserver"
        trust = ssl.create_default_context(cafile=cert)
        nginx.wait_until(lambda: httpx.get(f"{url}/healthz", verify=trust).status_code == 200, 15, "proxying")
        store = redis.Redis(redis_address, redis_port, socket_timeout=2)
        manager = DirectManager(ports.control_address)
        setup = TwoHosts(network, hosts, store, redis_address, prefix, url, trust, nginx_dir / "access.log", manager)
        wait_for(lambda: setup.leader() is not None, 20, "a worker to take the ingest lease")
        yield setup
        manager.close()
    finally:
        for process in reversed(processes):
            process.stop()
        network.close()


def standard_load(setup: TwoHosts) -> Load:
    """Reads and writes through nginx, on connections kept open (as a browser or client does)."""
    load = Load(lambda: httpx.Client(base_url=setup.url, verify=setup.trust, timeout=CONNECT_TIMEOUT * 3))
    load.add("status", lambda c, h: c.get("/api/status", headers={**h, **HEADERS}), copies=3)
    load.add("queue", lambda c, h: c.get("/api/queue/get", headers={**h, **HEADERS}))
    load.add("console", lambda c, h: c.get("/api/console_output", headers={**h, **HEADERS}))
    load.add("write", lambda c, h: c.post("/api/queue/item/add", json={"item": plan()}, headers={**h, **HEADERS}))
    return load


def staleness(answers: list[Answer]) -> float:
    """The most a status answer lagged behind the writes answered before it was asked (seconds).

    A status asked at time t that counts fewer items than the writes answered by t - x lags by
    at least x; this is the largest such x (0: every status saw every write answered before it).
    """
    writes = sorted(a.ended for a in answers if a.kind == "write" and a.status == 200 and a.body["success"])
    worst = 0.0
    for answer in answers:
        if answer.kind == "status" and answer.status == 200:
            seen = answer.body["items_in_queue"]
            if seen < len(writes):
                worst = max(worst, answer.started - writes[seen])  # the first write it did not see
    return worst


def test_a_host_cut_off_then_back(two_hosts, tmp_path):
    setup = two_hosts
    reset_manager(setup.manager)
    cut_name = setup.leader()
    other_name = next(name for name in setup.hosts if name != cut_name)
    cut, other = setup.hosts[cut_name], setup.hosts[other_name]
    workers_before = cut.workers()
    with standard_load(setup) as load:
        load.wait_until_each_kind_succeeds(after=time.monotonic())
        setup.network.cut(cut.host)
        cut_at, cut_wall = time.monotonic(), time.time()
        wait_for(lambda: setup.leader() == other_name, 30, "the other host to take the ingest lease")
        takeover = time.monotonic() - cut_at

        def tries_of_the_cut_host() -> list[float]:
            """When nginx tried the cut host since the cut and went on to the other (its access log)."""
            return sorted(
                msec
                for msec, addresses in setup.upstreams().values()
                if msec > cut_wall and addresses.startswith(f"{cut.host.address}:{PORT}, ")
            )

        # nginx notices (a connect timeout), and tries the host again after fail_timeout
        wait_for(
            lambda: (tries := tries_of_the_cut_host()) and tries[-1] - tries[0] >= FAIL_TIMEOUT,
            60,
            "nginx to try the cut host again after fail_timeout",
        )
        setup.network.restore(cut.host)
        restored_at = time.monotonic()

        def serves_again() -> bool:
            upstreams = setup.upstreams()
            back = f"{cut.host.address}:{PORT}"
            return any(
                a.ended > restored_at and a.status == 200 and upstreams.get(a.request_id, (0.0, ""))[1] == back
                for a in load.answers
            )

        wait_for(serves_again, FAIL_TIMEOUT + 60, "nginx to send to the restored host again")
        load.wait_until_each_kind_succeeds(after=time.monotonic())
    answers, upstreams = load.answers, setup.upstreams()

    assert takeover <= LEASE_SECONDS * 1.25 + 1, takeover
    noticed = cut_at + CONNECT_TIMEOUT + 1
    cut_address, other_address = f"{cut.host.address}:{PORT}", f"{other.host.address}:{PORT}"

    def answered_by(answer: Answer) -> str:
        return upstreams.get(answer.request_id, (0.0, ""))[1].rpartition(", ")[2]

    for answer in answers:
        if answer.started < noticed and answer.ended >= cut_at:
            # in flight at the cut, or sent on a connection nginx kept open to the cut host
            # before it noticed: may fail, never wrongly
            assert answer.status in (200, None), answer
        elif answer.status == 503 and answered_by(answer) == cut_address and answer.ended >= restored_at:
            # back, but its Redis cool-down (1 s) not yet over: refused, not stale
            assert answer.kind == "console" and answer.retry_after == "1", answer
        else:
            assert answer.status == 200 and not answer.error, answer
    through_other = [a for a in answers if answered_by(a) == other_address]
    assert through_other and all(a.status == 200 for a in through_other)
    failed = [a for a in answers if a.status != 200]
    tried_cut_host = [msec for msec, addresses in upstreams.values() if cut.host.address in addresses]
    print(
        f"\ncut host: lease taken over {takeover:.2f} s after the cut; {len(failed)} of {len(answers)} requests "
        f"failed, all sent within {max((a.started - cut_at for a in failed), default=0):.2f} s of the cut; "
        f"status lag at most {staleness(answers):.2f} s"
    )
    assert tried_cut_host
    assert cut.workers() == workers_before and cut.process.running(), "the host was restarted"
    assert httpx.get(f"{cut.url}/api/status", headers=HEADERS).json()["items_in_queue"] == len(
        httpx.get(f"{other.url}/api/queue/get", headers=HEADERS).json()["items"]
    )
    assert staleness(answers) <= STATUS_TTL + 0.5


def back_on_every_worker(host: GatewayHost, after: float) -> float:
    """When each worker of ``host`` serves the console (which needs Redis) again, for requests
    sent from ``after`` on: the time of the last worker's first such answer.

    A Redis call begun before the unblock may still time out after it (the store's timeout) and
    restart that worker's cool-down; so only answers to requests sent once such calls are over
    count. Each worker is asked on a kept-alive connection of its own: a fresh connection per
    request goes to the worker that holds fewer connections (qs_gateway/serving/turns.py), and
    under the load through nginx that may be the same worker every time.
    """
    store = RedisStore(RedisSettings())  # the timeout and cool-down every worker's store has
    pending_until = after + store.timeout
    back: dict[str, float] = {}
    with clients_on_every_worker(host.url, len(host.workers()), within=60) as clients:

        def every_worker_back() -> bool:
            for client in clients.values():
                started = time.monotonic()
                answer = client.get("/api/console_output")
                if answer.status_code == 200 and started >= pending_until:
                    back.setdefault(answer.headers["X-Gateway-Worker"], time.monotonic())
            return {int(worker.rpartition(":")[2]) for worker in back} >= host.workers()

        wait_for(every_worker_back, 60, "every worker of the host to reach Redis again")
    return max(back.values())


def test_a_host_cut_from_redis_only(two_hosts):
    setup = two_hosts
    reset_manager(setup.manager)
    cut_name = setup.leader()
    other_name = next(name for name in setup.hosts if name != cut_name)
    cut = setup.hosts[cut_name]
    with httpx.Client(base_url=cut.url, headers=HEADERS, timeout=10) as direct, standard_load(setup) as load:
        load.wait_until_each_kind_succeeds(after=time.monotonic())
        setup.network.block(cut.host, setup.redis_address)
        blocked_at = time.monotonic()
        try:
            wait_for(lambda: setup.leader() == other_name, 30, "the other host to take the ingest lease")
            takeover = time.monotonic() - blocked_at
            # straight to the cut host: what needs Redis is 503, the rest works
            console = direct.get("/api/console_output")
            assert console.status_code == 503 and console.headers["Retry-After"] == "1", console.text
            assert console.json()["detail"].startswith(
                f"Shared state unavailable: Redis at redis://{setup.redis_address}"
            )
            assert direct.get("/api/status").status_code == 200
            assert direct.post("/api/queue/item/add", json={"item": plan()}).json()["success"] is True
            assert direct.get("/api/queue/get").status_code == 200
            wait_for(
                lambda: any(a.kind == "console" and a.status == 503 for a in list(load.answers)),
                60,
                "the load to reach the cut host",
            )
        finally:
            setup.network.unblock(cut.host, setup.redis_address)
        recovered_at = back_on_every_worker(cut, after=time.monotonic())
    answers = load.answers

    assert takeover <= LEASE_SECONDS * 1.25 + 1, takeover
    for answer in answers:
        if answer.kind == "console" and blocked_at <= answer.ended and answer.started <= recovered_at:
            assert answer.status in (200, 503), answer
            if answer.status == 503:
                assert answer.retry_after == "1", answer
        else:
            assert answer.status == 200 and not answer.error, answer
    assert any(a.kind == "console" and a.status == 503 for a in answers), "no request reached the cut host"
    lag = staleness(answers)
    print(f"\nRedis cut: lease taken over {takeover:.2f} s after the cut; status lag at most {lag:.2f} s")
    # a write through the cut host cannot tell the others' caches; the published status corrects
    # them within RE Manager's next publication (at least once a second)
    assert lag <= max(STATUS_TTL, 1.0) + 0.5
