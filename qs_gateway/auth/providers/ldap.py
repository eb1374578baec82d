"""Login against an LDAP directory (ldap3), with bluesky-httpserver's options.

The user is bound with their own password, either at a DN built from ``bind_dn_template`` or,
with ``lookup_dn``, at the DN found by searching for the user name first. Optional checks:
membership of one of ``allowed_groups``, and a ``search_filter`` the user must match exactly once.
Each login opens its own connection in the request's thread and holds no lock, so a slow
directory (a two-factor prompt may take a minute: ``receive_timeout`` defaults to 60 s) delays
only that login.

TLS (``use_tls``: StartTLS, the default; ``use_ssl``: LDAPS) verifies the server's certificate
against the system's CAs or ``tls_ca_file``. A password is never sent before TLS is up: if
StartTLS fails, that server is treated as unreachable.
"""

from __future__ import annotations

import logging
import math
import os
import re
import ssl
from collections.abc import Sequence
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException, LDAPStartTLSError
from ldap3.utils.conv import escape_filter_chars

from ...config import ConfigError

logger = logging.getLogger(__name__)


def _as_list(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{name}: expected a string or a list of strings, got {value!r}")


def _tls(ca_file: str | None, validate: bool) -> Any:
    """ldap3's TLS settings: the server's certificate is checked unless told otherwise."""

    if ca_file is not None and not (isinstance(ca_file, str) and os.path.isfile(ca_file)):
        raise ConfigError(f"tls_ca_file: no such file: {ca_file!r}")
    if not isinstance(validate, bool):
        raise ConfigError(f"tls_validate: expected true or false, got {validate!r}")
    if not validate:
        logger.warning("LDAP: tls_validate is false, so any server can pose as the directory and read passwords")
    return ldap3.Tls(validate=ssl.CERT_REQUIRED if validate else ssl.CERT_NONE, ca_certs_file=ca_file)


def _split_address(address: str, default_port: int | None) -> tuple[str, int | None]:
    host, sep, port = address.rpartition(":")
    if sep and port.isdigit() and "://" not in address[len(host) :]:
        return host, int(port)
    return address, default_port


class LDAPAuthenticator:
    mode = "password"

    def __init__(
        self,
        *,
        server_address: str | Sequence[str],
        server_port: int | None = None,
        use_ssl: bool = False,
        use_tls: bool = True,
        connect_timeout: float = 5,
        receive_timeout: float = 60,
        bind_dn_template: str | Sequence[str] | None = None,
        allowed_groups: Sequence[str] | None = None,
        valid_username_regex: str = r"^[a-z][.a-z0-9_-]*$",
        lookup_dn: bool = False,
        user_search_base: str | None = None,
        user_attribute: str | None = None,
        lookup_dn_search_filter: str = "({login_attr}={login})",
        lookup_dn_search_user: str | None = None,
        lookup_dn_search_password: str | None = None,
        lookup_dn_user_dn_attribute: str | None = None,
        escape_userdn: bool = False,
        search_filter: str = "",
        attributes: Sequence[str] | None = None,
        auth_state_attributes: Sequence[str] | None = None,
        use_lookup_dn_username: bool = True,
        tls_ca_file: str | None = None,
        tls_validate: bool = True,
    ) -> None:
        self.servers = [_split_address(address, server_port) for address in _as_list(server_address, "server_address")]
        if not self.servers:
            raise ConfigError("server_address: at least one LDAP server is required")
        self.use_ssl = bool(use_ssl)
        self.use_tls = bool(use_tls)
        self.tls = _tls(tls_ca_file, tls_validate) if self.use_ssl or self.use_tls else None
        self.connect_timeout = float(connect_timeout)
        # ldap3 packs it into a socket option as whole seconds
        self.receive_timeout = max(1, math.ceil(receive_timeout))
        self.bind_dn_templates = _as_list(bind_dn_template, "bind_dn_template")
        for template in self.bind_dn_templates:
            if "{username}" not in template:
                raise ConfigError(f"bind_dn_template: {template!r} does not contain '{{username}}'")
        self.allowed_groups = _as_list(allowed_groups, "allowed_groups")
        try:
            self.valid_username = re.compile(valid_username_regex)
        except (re.error, TypeError) as exc:
            raise ConfigError(f"valid_username_regex: {exc}") from None
        self.lookup_dn = bool(lookup_dn)
        if self.lookup_dn and not (user_search_base and user_attribute):
            raise ConfigError("lookup_dn needs user_search_base and user_attribute")
        if not self.lookup_dn and not self.bind_dn_templates:
            raise ConfigError("bind_dn_template: required unless lookup_dn is true")
        self.user_search_base = user_search_base
        self.user_attribute = user_attribute
        self.lookup_dn_search_filter = lookup_dn_search_filter
        self.lookup_dn_search_user = lookup_dn_search_user
        self.lookup_dn_search_password = lookup_dn_search_password
        self.lookup_dn_user_dn_attribute = lookup_dn_user_dn_attribute or user_attribute
        self.escape_userdn = bool(escape_userdn)
        self.search_filter = search_filter or ""
        self.attributes = list(attributes or [])
        self.auth_state_attributes = list(auth_state_attributes or [])
        self.use_lookup_dn_username = bool(use_lookup_dn_username)

    # -- ldap3 plumbing ----------------------------------------------------------------------

    def _connection(self, user: str | None, password: str | None) -> Any:
        """An open connection to the first server that answers (tried in the configured order;
        ldap3's ServerPool would sleep 10 s between rounds)."""

        failure: LDAPException | None = None
        for host, port in self.servers:
            # get_info NONE: no schema read on every login, a round trip nothing here needs
            server = ldap3.Server(
                host,
                port=port,
                use_ssl=self.use_ssl,
                tls=self.tls,
                connect_timeout=self.connect_timeout,
                get_info=ldap3.NONE,
            )
            connection = ldap3.Connection(
                server, user=user, password=password, receive_timeout=self.receive_timeout, raise_exceptions=False
            )
            try:
                connection.open()
                if self.use_tls and not self.use_ssl and not connection.start_tls():
                    raise LDAPStartTLSError(f"StartTLS refused: {connection.result}")
            except LDAPException as exc:
                # an untrusted certificate lands here too: no password goes to that server
                logger.warning("LDAP server %s:%s cannot be used: %s", host, port, exc)
                try:
                    connection.unbind()
                except LDAPException:
                    pass  # closing what could not be opened
                failure = exc
                continue
            return connection
        raise failure

    def _escape_dn(self, dn: str) -> str:
        if not self.escape_userdn:
            return dn

        return escape_filter_chars(dn)

    def _lookup(self, username: str) -> tuple[str, str] | None:
        """(the user name found in the directory, the user's DN) for what the user typed."""

        search_user = self.lookup_dn_search_user
        connection = self._connection(
            self._escape_dn(search_user) if search_user else None, self.lookup_dn_search_password
        )
        try:
            if not connection.bind():
                logger.warning("LDAP: the lookup bind as %r failed", search_user)
                return None
            search = self.lookup_dn_search_filter.format(
                login_attr=self.user_attribute, login=escape_filter_chars(username)
            )
            connection.search(
                search_base=self.user_search_base,
                search_scope=ldap3.SUBTREE,
                search_filter=search,
                attributes=[self.lookup_dn_user_dn_attribute],
            )
            entries = [e for e in connection.response or [] if e.get("type") == "searchResEntry"]
            if len(entries) != 1:
                return None
            value = entries[0]["attributes"].get(self.lookup_dn_user_dn_attribute)
            if isinstance(value, list):
                if len(value) != 1:
                    return None
                value = value[0]
            return (str(value), entries[0]["dn"]) if value else None
        finally:
            connection.unbind()

    def _in_allowed_group(self, connection: Any, userdn: str, username: str) -> bool:

        member_filter = "(|(member={dn})(uniqueMember={dn})(memberUid={uid}))".format(
            dn=escape_filter_chars(userdn), uid=escape_filter_chars(username)
        )
        for group in self.allowed_groups:
            if connection.search(
                group,
                search_scope=ldap3.BASE,
                search_filter=member_filter,
                attributes=["member", "uniqueMember", "memberUid"],
            ):
                return True
        return False

    def _matches_search_filter(self, connection: Any, username: str) -> bool:

        connection.search(
            search_base=self.user_search_base,
            search_scope=ldap3.SUBTREE,
            search_filter=self.search_filter.format(userattr=self.user_attribute, username=username),
            attributes=self.attributes,
        )
        return len([e for e in connection.response or [] if e.get("type") == "searchResEntry"]) == 1

    # -- the login ---------------------------------------------------------------------------

    def authenticate(self, username: str, password: str) -> str | None:

        # Also the guard against LDAP injection: the name goes into DNs and filters.
        if not username or not self.valid_username.match(username):
            return None
        # An empty password would be an anonymous bind, which "succeeds".
        if not password or not password.strip():
            return None
        try:
            return self._authenticate(username, password)
        except LDAPException as exc:
            logger.warning("LDAP login of %r failed: %s", username, exc)
            return None

    def _authenticate(self, username: str, password: str) -> str | None:
        templates = self.bind_dn_templates
        if self.lookup_dn:
            found = self._lookup(username)
            if found is None:
                return None
            found_name, found_dn = found
            if not templates:
                templates = [found_dn.replace("{", "{{").replace("}", "}}")]
            if self.use_lookup_dn_username:
                username = found_name
        for template in templates:
            userdn = self._escape_dn(template.format(username=username))
            connection = self._connection(userdn, password)
            try:
                if not connection.bind():
                    continue
                if self.search_filter and not self._matches_search_filter(connection, username):
                    return None
                if self.allowed_groups and not self._in_allowed_group(connection, userdn, username):
                    return None
                return username
            finally:
                connection.unbind()
        return None
