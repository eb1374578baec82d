"""ServerBasedAPIAccessControl against an access server that the test runs on a free port."""

from __future__ import annotations

import contextlib
import time

import pytest

from qs_gateway.auth.server_based import ServerBasedAPIAccessControl, users_from_access_list
from qs_gateway.config.redis import RedisSettings
from qs_gateway.extensions import EXTENSION_KEY
from qs_gateway.redis_store import RedisStore
from qs_gateway.serving.stack import free_port

from .auth_support import JsonServer, auth_config, bearer, configured_app, login, private_prefix, provider
from .support import plan, wait_for

PASSWORDS = {"dana": "dana_password", "eric": "eric_password", "zed": "zed_password"}
ACCESS_PATH = "/api/instrument/bl99/qserver/access"


class AccessServer:
    def __init__(self) -> None:
        self.access = {
            "user": {"dana": {"first_name": "Dana", "last_name": "Scully", "email": "dana@example.org"}},
            "observer": {"eric": {}},
            "no_such_role": {"zed": {}},
        }
        self.failing = False
        self.server = JsonServer(self.answer)

    def answer(self, method: str, path: str, body: str) -> tuple[int, dict]:
        if self.failing:
            return 500, {"detail": "down for maintenance"}
        if path != ACCESS_PATH:
            return 404, {"detail": "Not Found"}
        return 200, self.access


@pytest.fixture
def access_server():
    server = AccessServer()
    yield server
    server.server.close()


def server_based_config(access_server: AccessServer, update_period: float, expiration_period: float) -> dict:
    """The toy provider's users, their roles from ``access_server``."""
    policy_args = {
        "instrument": "BL99",
        "base_url": f"{access_server.server.url}/api",
        "update_period": update_period,
        "expiration_period": expiration_period,
        "http_timeout": 2,
    }
    return auth_config(
        [provider("toy", "DictionaryAuthenticator", users_to_passwords=PASSWORDS)],
        api_access={"policy": "bluesky_httpserver.authorization:ServerBasedAPIAccessControl", "args": policy_args},
    )


@pytest.fixture
def app_and_client(access_server, tmp_path, re_manager):
    config = server_based_config(access_server, update_period=0.2, expiration_period=1.0)
    with configured_app(re_manager, tmp_path, config) as app:
        yield app, app.test_client()


def test_users_and_roles_come_from_the_access_server(app_and_client, access_server, manager_idle):
    app, client = app_and_client
    policy = app.extensions[EXTENSION_KEY].auth.api_access
    # building the app started nothing: the poller starts in the process that serves requests
    assert policy._poller_pid is None and access_server.server.requests == []

    dana = bearer(login(client, "dana", PASSWORDS["dana"]))
    assert client.get("/api/auth/scopes", headers=dana).get_json()["roles"] == ["user"]
    added = client.post("/api/queue/item/add", json={"item": plan()}, headers=dana).get_json()
    assert added["item"]["user"] == 'dana "Dana Scully <dana@example.org>"'
    eric = bearer(login(client, "eric", PASSWORDS["eric"]))
    assert client.post("/api/queue/item/add", json={"item": plan()}, headers=eric).status_code == 401
    # a role the gateway does not know is ignored: zed is nobody
    refused = client.post("/api/auth/provider/toy/token", data={"username": "zed", "password": PASSWORDS["zed"]})
    assert refused.get_json()["detail"] == "User is not authorized to access the server"

    # dana loses her role on the access server: her token loses its scopes at the next poll
    access_server.access["observer"]["dana"] = access_server.access["user"].pop("dana")

    def demoted() -> bool:
        return client.get("/api/auth/scopes", headers=dana).get_json()["roles"] == ["observer"]

    wait_for(demoted, 10, "dana's new role")
    assert client.post("/api/queue/item/add", json={"item": plan()}, headers=dana).status_code == 401

    # the access server fails: the last list holds until it expires, then only built-in users remain
    access_server.failing = True

    def forgotten() -> bool:
        return client.get("/api/auth/scopes", headers=eric).get_json()["roles"] == []

    wait_for(forgotten, 10, "the access list to expire")
    assert client.get("/api/status", headers=eric).status_code == 401
    access_server.failing = False
    wait_for(lambda: not forgotten(), 10, "the access list to come back")


def test_workers_share_one_download_and_change_their_minds_together(access_server, tmp_path, re_manager):
    # Three apps on one Redis prefix stand for three workers (or hosts).
    update_period = 2.0
    config = server_based_config(access_server, update_period=update_period, expiration_period=10.0)
    prefix = private_prefix()
    with contextlib.ExitStack() as apps:
        workers = [
            apps.enter_context(configured_app(re_manager, tmp_path / str(n), config, QS_GATEWAY_REDIS_PREFIX=prefix))
            for n in range(3)
        ]
        for app in workers:  # each starts polling with its first login
            assert (
                app.test_client()
                .post("/api/auth/provider/toy/token", data={"username": "dana", "password": PASSWORDS["dana"]})
                .status_code
                == 200
            )
        policies = [app.extensions[EXTENSION_KEY].auth.api_access for app in workers]
        started = time.monotonic()

        # every worker holds the same download; a change reaches all of them with the next one
        access_server.access["observer"]["dana"] = access_server.access["user"].pop("dana")

        def all_demoted() -> bool:
            return all(policy.get_user_roles("dana") == {"observer"} for policy in policies)

        wait_for(all_demoted, 10, "dana's new role on every worker")
        wait_for(lambda: len({policy._fetched_at for policy in policies}) == 1, 5, "one download for all")
        elapsed = time.monotonic() - started
        downloads = len(access_server.server.requests)
        # one download per update period for all three, not one per worker
        assert downloads <= elapsed / update_period + 2, (downloads, elapsed)


def test_without_redis_each_worker_downloads_for_itself_once_per_period(access_server):
    policy = ServerBasedAPIAccessControl(
        instrument="BL99", base_url=f"{access_server.server.url}/api", update_period=60, http_timeout=2
    )
    policy.share_through(RedisStore(RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0")))  # nothing listens there
    try:
        assert policy.get_user_roles("dana") == {"user"}
        time.sleep(2.5)  # two checks of the shared list, both failing: no download before 60 s
        assert len(access_server.server.requests) == 1
    finally:
        policy.stop()


def test_access_list_parsing():
    roles = {"user": frozenset(), "observer": frozenset()}
    users = users_from_access_list(
        {
            "User": {"ann": {"first_name": " Ann ", "last_name": 5, "email": "ann@example.org"}},
            "observer": {"ann": None, "ben": {"last_name": "Bell"}},
            "admin_of_nothing": {"cy": {}},
        },
        roles,
    )
    assert users["ann"] == {
        "roles": frozenset({"user", "observer"}),
        "displayed_name": "Ann",
        "email": "ann@example.org",
    }
    assert users["ben"]["displayed_name"] == "Bell" and "cy" not in users
    with pytest.raises(ValueError):
        users_from_access_list(["not", "a", "mapping"], roles)
