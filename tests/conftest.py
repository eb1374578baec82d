"""Fixtures: a private Redis and RE Manager per session, the app in-process and under gunicorn.

Every process is started on free loopback ports, waited for until it answers, and stopped by
its process group; nothing here touches the Redis on 6379 or a manager started by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from qs_gateway.app import create_app
from qs_gateway.config import load_settings
from qs_gateway.extensions import EXTENSION_KEY
from qs_gateway.serving.stack import ManagedProcess, ManagerPorts, start_gateway, start_re_manager, start_redis

from .support import API_KEY, reset_manager, zmq_api


@dataclass
class Manager:
    process: ManagedProcess
    ports: ManagerPorts
    workdir: Path
    redis_port: int

    @property
    def control_address(self) -> str:
        return self.ports.control_address

    def gateway_env(self, **extra: str) -> dict[str, str]:
        """Environment for a gateway in front of this RE Manager."""
        return {
            "QSERVER_ZMQ_CONTROL_ADDRESS": self.ports.control_address,
            "QSERVER_ZMQ_INFO_ADDRESS": self.ports.info_address,
            "QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY": API_KEY,
            "QS_GATEWAY_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            # one cache namespace per RE Manager
            "QS_GATEWAY_REDIS_PREFIX": f"qs_gateway_test_{self.ports.control}",
            **extra,
        }


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def redis_port(stack_dir: Path) -> Iterator[int]:
    process, port = start_redis(stack_dir / "redis")
    yield port
    process.stop()


@pytest.fixture(scope="session")
def re_manager(stack_dir: Path, redis_port: int) -> Iterator[Manager]:
    workdir = stack_dir / "re-manager"
    workdir.mkdir()
    process, ports = start_re_manager(workdir, redis_port=redis_port, name_prefix="qs_gateway_tests")
    yield Manager(process, ports, workdir, redis_port)
    process.stop()


@pytest.fixture(scope="session")
def zmq_rm(re_manager: Manager) -> Iterator:
    rm = zmq_api(re_manager.control_address)
    yield rm
    rm.close()


@pytest.fixture
def manager_idle(zmq_rm):
    """RE Manager idle with an empty queue and history (environment left as it is)."""
    reset_manager(zmq_rm)
    return zmq_rm


@pytest.fixture
def manager_open(zmq_rm):
    """As ``manager_idle``, with the worker environment open."""
    reset_manager(zmq_rm, environment=True)
    return zmq_rm


@pytest.fixture
def manager_closed(zmq_rm):
    """As ``manager_idle``, with the worker environment closed."""
    reset_manager(zmq_rm, environment=False)
    return zmq_rm


def make_app(manager: Manager, **env: str) -> Flask:
    return create_app(load_settings(environ=manager.gateway_env(**env)))


@pytest.fixture
def app(re_manager: Manager) -> Iterator[Flask]:
    app = make_app(re_manager)
    yield app
    app.extensions[EXTENSION_KEY].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """An in-process client that sends the single-user API key."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"ApiKey {API_KEY}"
    return client


@pytest.fixture
def anonymous(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="session")
def gateway_url(stack_dir: Path, re_manager: Manager) -> Iterator[str]:
    """The gateway under real gunicorn: three workers of four threads."""
    process, url = start_gateway(
        stack_dir,
        re_manager.gateway_env(QS_GATEWAY_WORKERS="3", QS_GATEWAY_THREADS="4", QS_GATEWAY_WORKER_HEADER="1"),
        log_name="gunicorn.log",
    )
    yield url
    process.stop()
