"""LDAP login against a real slapd (Debian's package), started and seeded here on free ports:
plain LDAP with StartTLS, and LDAPS, with a certificate made for the run."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import ldap3
import pytest

from qs_gateway.auth.providers.ldap import LDAPAuthenticator
from qs_gateway.config import ConfigError
from qs_gateway.serving.stack import ManagedProcess, free_port

from .auth_support import auth_config, bearer, configured_app, provider
from .support import self_signed_certificate

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
TLSCACertificateFile {cert}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
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


@dataclass(frozen=True)
class Directory:
    port: int  # ldap://, where StartTLS is offered
    ldaps_port: int
    ca_file: str  # the certificate the server presents, its own CA


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    if not Path(SLAPD).exists():
        pytest.fail("slapd is not installed: run scripts/setup (it installs the Debian package)")
    workdir = tmp_path_factory.mktemp("slapd")
    (workdir / "data").mkdir()
    cert, key = self_signed_certificate(workdir)
    conf = workdir / "slapd.conf"
    conf.write_text(SLAPD_CONF.format(dir=workdir, base=BASE, admin=ADMIN, password=ADMIN_PASSWORD, cert=cert, key=key))
    port, ldaps_port = free_port(), free_port()
    urls = f"ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{ldaps_port}/"

    # -d 0: stay in the foreground, so the process (group) we stop is slapd itself
    def answers() -> bool:
        for listening in (port, ldaps_port):
            with socket.create_connection(("127.0.0.1", listening), timeout=0.5):
                pass
        return True

    slapd = ManagedProcess("slapd", [SLAPD, "-f", str(conf), "-h", urls, "-d", "0"], workdir / "slapd.log")
    process = slapd.start_until(answers, 60, "accepting connections")
    try:
        _seed(port)
        yield Directory(port, ldaps_port, str(cert))
    finally:
        process.stop()
        shutil.rmtree(workdir / "data", ignore_errors=True)


def ldap_args(directory: Directory, **overrides) -> dict:
    dead = free_port()  # nothing listens there: the pool moves on to the next server
    return {
        "server_address": [f"127.0.0.1:{dead}", f"127.0.0.1:{directory.port}"],
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


def test_starttls_and_ldaps_with_the_directory_certificate(slapd, caplog):
    starttls = LDAPAuthenticator(**ldap_args(slapd, use_tls=True, tls_ca_file=slapd.ca_file))
    assert starttls.authenticate("alice", PASSWORDS["alice"]) == "alice"
    assert starttls.authenticate("alice", "wrong") is None
    ldaps = LDAPAuthenticator(
        **ldap_args(slapd, server_address=f"127.0.0.1:{slapd.ldaps_port}", use_ssl=True, tls_ca_file=slapd.ca_file)
    )
    assert ldaps.authenticate("carl", PASSWORDS["carl"]) == "carl"


@pytest.mark.parametrize("use_ssl", [False, True])
def test_an_untrusted_certificate_gets_no_password(slapd, caplog, use_ssl):
    # the system's CAs do not know the directory's certificate: as if someone posed as the server
    port = slapd.ldaps_port if use_ssl else slapd.port
    untrusting = LDAPAuthenticator(
        **ldap_args(slapd, server_address=f"127.0.0.1:{port}", use_tls=True, use_ssl=use_ssl)
    )
    assert untrusting.authenticate("alice", PASSWORDS["alice"]) is None
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"


def _refuse_starttls(message_id: int) -> bytes:
    """An LDAP ExtendedResponse with resultCode protocolError (2), in BER."""
    response = b"\x0a\x01\x02\x04\x00\x04\x00"  # resultCode, matchedDN "", diagnosticMessage ""
    body = b"\x02\x01" + bytes([message_id]) + b"\x78" + bytes([len(response)]) + response
    return b"\x30" + bytes([len(body)]) + body


def test_starttls_refused_by_the_server_means_no_bind_in_clear(caplog):
    # A server that refuses StartTLS (as a directory without TLS does): the login fails, and the
    # password never crosses the wire in clear.
    listener = socket.create_server(("127.0.0.1", 0))
    received = bytearray()

    def serve() -> None:
        listener.settimeout(5)
        with contextlib.suppress(OSError):
            while True:
                connection, _ = listener.accept()
                with connection:
                    connection.settimeout(2)
                    with contextlib.suppress(OSError):
                        while chunk := connection.recv(4096):
                            received.extend(chunk)
                            if STARTTLS_OID in chunk:
                                connection.sendall(_refuse_starttls(message_id=chunk[4]))

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        authenticator = LDAPAuthenticator(
            server_address=f"127.0.0.1:{listener.getsockname()[1]}",
            use_tls=True,
            connect_timeout=1,
            receive_timeout=1,
            bind_dn_template=f"uid={{username}},{PEOPLE}",
        )
        assert authenticator.authenticate("alice", PASSWORDS["alice"]) is None
    finally:
        listener.close()
        server.join(10)
    assert STARTTLS_OID in received  # the request was made, and refused
    assert PASSWORDS["alice"].encode() not in received
    assert "startTLS failed" in caplog.text


def test_tls_options_are_checked_at_start_up(tmp_path):
    with pytest.raises(ConfigError, match="tls_ca_file: no such file"):
        LDAPAuthenticator(
            server_address="ldap.example.org", bind_dn_template="uid={username}", tls_ca_file=str(tmp_path / "none.pem")
        )
    with pytest.raises(ConfigError, match="tls_validate: expected true or false"):
        LDAPAuthenticator(server_address="ldap.example.org", bind_dn_template="uid={username}", tls_validate="no")
