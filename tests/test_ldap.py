"""LDAP login against a real slapd (Debian's package), started and seeded here on a free port."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import ldap3
import pytest

from qs_gateway.auth.providers.ldap import LDAPAuthenticator
from qs_gateway.serving.stack import ManagedProcess, free_port

from .auth_support import auth_config, bearer, configured_app, provider

SLAPD = "/usr/sbin/slapd"
BASE = "dc=example,dc=org"
ADMIN = f"cn=admin,{BASE}"
ADMIN_PASSWORD = "admin-secret"
PEOPLE = f"ou=people,{BASE}"
STAFF = f"ou=staff,{BASE}"
GROUP = f"cn=bl99,ou=groups,{BASE}"
PASSWORDS = {"alice": "alice-ldap", "bob": "bob-ldap", "carl": "carl-ldap"}

SLAPD_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {dir}/slapd.pid
database mdb
maxsize 10485760
suffix "{base}"
rootdn "{admin}"
rootpw {password}
directory {dir}/data
access to attrs=userPassword by anonymous auth by self read by * none
access to * by * read
"""


def _seed(port: int) -> None:
    connection = ldap3.Connection(f"ldap://127.0.0.1:{port}", user=ADMIN, password=ADMIN_PASSWORD, auto_bind=True)
    connection.add(BASE, ["dcObject", "organization"], {"o": "Example", "dc": "example"})
    for unit in ("people", "staff", "groups"):
        connection.add(f"ou={unit},{BASE}", ["organizationalUnit"], {"ou": unit})
    # alice and bob in ou=people, carl in ou=staff; alice and carl in the beamline's group
    for uid, unit in (("alice", PEOPLE), ("bob", PEOPLE), ("carl", STAFF)):
        connection.add(
            f"uid={uid},{unit}",
            ["inetOrgPerson"],
            {"uid": uid, "cn": uid.title(), "sn": uid.title(), "userPassword": PASSWORDS[uid]},
        )
    connection.add(GROUP, ["groupOfNames"], {"cn": "bl99", "member": [f"uid=alice,{PEOPLE}", f"uid=carl,{STAFF}"]})
    assert connection.result["description"] == "success", connection.result
    connection.unbind()


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    if not Path(SLAPD).exists():
        pytest.fail("slapd is not installed: run scripts/setup (it installs the Debian package)")
    workdir = tmp_path_factory.mktemp("slapd")
    (workdir / "data").mkdir()
    conf = workdir / "slapd.conf"
    conf.write_text(SLAPD_CONF.format(dir=workdir, base=BASE, admin=ADMIN, password=ADMIN_PASSWORD))
    port = free_port()
    # -d 0: stay in the foreground, so the process (group) we stop is slapd itself
    process = ManagedProcess(
        "slapd", [SLAPD, "-f", str(conf), "-h", f"ldap://127.0.0.1:{port}/", "-d", "0"], workdir / "slapd.log"
    ).start()

    def answers() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True

    process.wait_until(answers, 15, "accepting connections")
    _seed(port)
    yield port
    process.stop()
    shutil.rmtree(workdir / "data", ignore_errors=True)


def ldap_args(port: int, **overrides) -> dict:
    dead = free_port()  # nothing listens there: the pool moves on to the next server
    return {
        "server_address": [f"127.0.0.1:{dead}", f"127.0.0.1:{port}"],
        "use_tls": False,
        "connect_timeout": 2,
        "receive_timeout": 5,
        "bind_dn_template": [f"uid={{username}},{PEOPLE}", f"uid={{username}},{STAFF}"],
        "allowed_groups": [GROUP],
        **overrides,
    }


@pytest.fixture
def ldap_client(slapd, tmp_path, re_manager):
    config = auth_config(
        [provider("ldap", "LDAPAuthenticator", **ldap_args(slapd))],
        users={"alice": {"roles": "user"}, "bob": {"roles": "user"}, "carl": {"roles": "observer"}},
    )
    with configured_app(re_manager, tmp_path, config) as app:
        yield app.test_client()


def _login(client, username: str, password: str):
    return client.post("/api/auth/provider/ldap/token", data={"username": username, "password": password})


def test_ldap_login_through_the_gateway(ldap_client):
    alice = _login(ldap_client, "alice", PASSWORDS["alice"])
    assert alice.status_code == 200, alice.get_json()
    who = ldap_client.get("/api/auth/whoami", headers=bearer(alice.get_json())).get_json()
    assert who["identities"][0] == {**who["identities"][0], "id": "alice", "provider": "ldap"}
    # carl's DN comes from the second template
    carl = _login(ldap_client, "carl", PASSWORDS["carl"])
    assert carl.status_code == 200
    assert ldap_client.get("/api/auth/scopes", headers=bearer(carl.get_json())).get_json()["roles"] == ["observer"]


@pytest.mark.parametrize(
    "username, password",
    [
        ("alice", "wrong"),
        ("alice", ""),  # an empty password would be an anonymous bind
        ("bob", PASSWORDS["bob"]),  # right password, not in the allowed group
        ("Alice", PASSWORDS["alice"]),  # refused by valid_username_regex
        ("alice)(uid=*", PASSWORDS["alice"]),  # injection attempt
        ("nobody", "x"),
    ],
)
def test_ldap_refusals(ldap_client, username, password):
    response = _login(ldap_client, username, password)
    assert response.status_code in (400, 401)  # 400: the form refuses an empty password
    if response.status_code == 401:
        assert response.get_json()["detail"] == "Incorrect username or password"


def test_lookup_dn_searches_the_user_first(slapd):
    authenticator = LDAPAuthenticator(
        **ldap_args(
            slapd,
            bind_dn_template=None,
            allowed_groups=None,
            lookup_dn=True,
            user_search_base=BASE,
            user_attribute="uid",
            lookup_dn_search_user=ADMIN,
            lookup_dn_search_password=ADMIN_PASSWORD,
        )
    )
    assert authenticator.authenticate("carl", PASSWORDS["carl"]) == "carl"
    assert authenticator.authenticate("bob", PASSWORDS["bob"]) == "bob"
    assert authenticator.authenticate("bob", PASSWORDS["alice"]) is None
    assert authenticator.authenticate("nobody", "x") is None


def test_search_filter_and_group_checks(slapd):
    only_people = LDAPAuthenticator(
        **ldap_args(
            slapd,
            allowed_groups=None,
            user_search_base=PEOPLE,
            user_attribute="uid",
            search_filter="(&(objectClass=inetOrgPerson)({userattr}={username}))",
        )
    )
    assert only_people.authenticate("bob", PASSWORDS["bob"]) == "bob"
    assert only_people.authenticate("carl", PASSWORDS["carl"]) is None  # carl is not under ou=people


def test_no_reachable_server_is_a_refusal_not_an_error():
    authenticator = LDAPAuthenticator(
        server_address=[f"127.0.0.1:{free_port()}"],
        use_tls=False,
        connect_timeout=1,
        bind_dn_template=f"uid={{username}},{PEOPLE}",
    )
    assert authenticator.authenticate("alice", "x") is None
