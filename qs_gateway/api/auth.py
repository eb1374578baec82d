"""``/api/auth``: logins, sessions, API keys, who am I, and the principals (for administrators).

Login and refresh are PUBLIC: clients send their stale ``Authorization`` header along, and it
must not stand in the way. ``scopes`` and ``logout`` answer anonymous requests too, as in
bluesky-httpserver; the other endpoints of a principal need credentials.
"""

from __future__ import annotations

from flask import Response, request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from ..auth.credentials import API_KEY_COOKIE
from ..auth.providers import EXTERNAL, PASSWORD, PROXIED, Provider
from ..exceptions import InvalidPayload, NotFound
from ..extensions import services
from ..manager import dump_json
from ..web import oidc_return
from .access import ANY_PRINCIPAL, PUBLIC
from .browser import CSRF_COOKIE
from .declare import Call, Resource
from .schemas import IDENTIFIER_MAX_LENGTH, TEXT_MAX_LENGTH, Int64, Payload, identifier
from .sso import provider_returned

MISSING = "Missing data for required field."


def _text(max_length: int, min_length: int = 0) -> dict:
    return {"type": "string", "minLength": min_length, "maxLength": max_length}


_OAUTH_FORM_FIELDS = {
    "grant_type": _text(TEXT_MAX_LENGTH),
    "scope": _text(TEXT_MAX_LENGTH),
    "client_id": _text(IDENTIFIER_MAX_LENGTH),
    "client_secret": _text(TEXT_MAX_LENGTH),
}


class TokenRequest(Payload):
    """OAuth2 password-flow form fields (only username and password are used), or the
    ``device_code`` of a device sign-in at an external provider."""

    username = fields.String(validate=validate.Length(min=1, max=IDENTIFIER_MAX_LENGTH))
    password = fields.String(validate=validate.Length(min=1, max=TEXT_MAX_LENGTH))
    device_code = fields.String(validate=validate.Length(min=1, max=TEXT_MAX_LENGTH))
    grant_type = fields.String(allow_none=True, validate=validate.Length(max=TEXT_MAX_LENGTH))
    scope = fields.String(allow_none=True, validate=validate.Length(max=TEXT_MAX_LENGTH))
    client_id = identifier(allow_none=True)
    client_secret = fields.String(allow_none=True, validate=validate.Length(max=TEXT_MAX_LENGTH))

    # The document shows the two forms: the fields alone cannot say which are required when.
    openapi = {
        "oneOf": [
            {
                "type": "object",
                "description": "A login with user name and password (OAuth2 password-flow form)",
                "properties": {
                    "username": _text(IDENTIFIER_MAX_LENGTH, 1),
                    "password": _text(TEXT_MAX_LENGTH, 1),
                    **_OAUTH_FORM_FIELDS,
                },
                "required": ["username", "password"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "description": "A poll of a device sign-in at an external provider",
                "properties": {"device_code": _text(TEXT_MAX_LENGTH, 1), **_OAUTH_FORM_FIELDS},
                "required": ["device_code"],
                "additionalProperties": False,
            },
        ]
    }

    @validates_schema
    def _credentials(self, data: dict, **kwargs: object) -> None:
        if "device_code" not in data:
            missing = {name: [MISSING] for name in ("username", "password") if name not in data}
            if missing:
                raise ValidationError(missing)


class AuthorizationCode(Schema):
    """The identity provider's redirect carries more (state, session_state, ...): only code counts."""

    class Meta:
        unknown = EXCLUDE

    code = fields.String(required=True, validate=validate.Length(min=1, max=TEXT_MAX_LENGTH))


class SessionRefresh(Payload):
    refresh_token = fields.String(required=True, validate=validate.Length(max=TEXT_MAX_LENGTH))


class ApiKeyNew(Payload):
    # seconds; at most a century (null: never expires)
    expires_in = Int64(minimum=1, maximum=100 * 365 * 24 * 3600, required=True, allow_none=True)
    scopes = fields.List(identifier(), allow_none=True)
    note = fields.String(allow_none=True, validate=validate.Length(max=255))


class ApiKeyDelete(Payload):
    first_eight = fields.String(required=True, validate=validate.Length(equal=8))


auth = Resource("auth", __name__)


def _describe(provider: Provider) -> dict:
    root = f"{request.script_root}/api/auth/provider/{provider.name}"
    described: dict = {"name": provider.name, "mode": provider.mode}
    if provider.mode == PASSWORD:
        described["token_url"] = f"{root}/token"
    elif provider.mode == EXTERNAL:
        described["code_url"] = f"{root}/code"
        authenticator = provider.authenticator
        authorization_url = getattr(authenticator, "authorization_url", None)
        if getattr(authenticator, "discovered", False):  # the gateway sends the browser on (PKCE)
            described["authorization_url"] = (
                f"{request.url_root.rstrip('/')}/api/auth/provider/{provider.name}/authorize"
            )
        else:
            described["authorization_url"] = authorization_url() if callable(authorization_url) else None
        described["confirmation_message"] = getattr(authenticator, "confirmation_message", None)
    elif provider.mode == PROXIED:  # clients get tokens from the provider itself
        described.update(provider.authenticator.client_settings())
    return described


@auth.endpoint("/auth/providers", scope=PUBLIC)
def login_providers(call: Call) -> dict:
    """How to sign in: the login providers, whether one API key is the only credential, anonymous access."""
    authenticator = services().auth
    return {
        "providers": [_describe(provider) for provider in authenticator.providers.values()],
        "single_user": not authenticator.providers,
        "anonymous": authenticator.allow_anonymous_access,
    }


@auth.endpoint(
    "/auth/provider/<provider>/token",
    methods=("POST",),
    scope=PUBLIC,
    schema=TokenRequest,
    location="form",
    errors=(401, 429, 503),
)
def password_login(call: Call) -> dict:
    """Log in with user name and password (form-encoded), or poll a device sign-in with its
    `device_code`; answers an access and a refresh token."""
    payload, name, accounts = call.payload, call.path["provider"], services().accounts
    polling = "device_code" in payload and "username" not in payload
    if not accounts.has_provider(name, EXTERNAL if polling else PASSWORD):
        raise NotFound("Not Found")  # bluesky-httpserver has a route per provider and mode
    if polling:
        return services().sso.device_token(name, payload["device_code"], request.remote_addr)
    missing = {field: [MISSING] for field in ("username", "password") if field not in payload}
    if missing:
        raise InvalidPayload(f"{' and '.join(missing)}: {MISSING}", missing)
    return accounts.password_login(name, payload["username"], payload["password"], request.remote_addr)


@auth.endpoint(
    "/auth/provider/<provider>/code",
    methods=("GET", "POST"),
    scope=PUBLIC,
    schema=AuthorizationCode,
    location="query",
    errors=(401, 429, 503),
)
def code_login(call: Call) -> Response:
    """The identity provider's redirect (OIDC): exchanges `?code=`, answers the refresh token."""
    name, code, state = call.path["provider"], call.payload["code"], request.args.get("state", "")
    sso_flows = services().sso
    if request.method == "GET" and sso_flows.is_pending(state):  # a sign-in the gateway started
        return provider_returned(name, code, state)
    if request.method == "POST" and services().accounts.has_provider(name, EXTERNAL):
        refresh_token = sso_flows.redeem(code)  # the hand-over code of a browser sign-in
        if refresh_token is not None:
            return Response(dump_json(refresh_token), mimetype="application/json")
    if services().settings.http.ui:
        to_the_page = oidc_return(call.payload["code"], request.args.get("state", ""))
        if to_the_page is not None:  # the web page started this sign-in: it exchanges the code
            return to_the_page
    refresh_token = services().accounts.code_login(call.path["provider"], call.payload["code"], request.remote_addr)
    return Response(dump_json(refresh_token), mimetype="application/json")


@auth.endpoint("/auth/session/refresh", methods=("POST",), scope=PUBLIC, schema=SessionRefresh, errors=(401, 429, 503))
def session_refresh(call: Call) -> dict:
    """New access and refresh tokens for the session of a refresh token (which is spent)."""
    return services().accounts.refresh(call.payload["refresh_token"], request.remote_addr)


@auth.endpoint("/auth/session/revoke/<session_id>", methods=("DELETE",), scope=ANY_PRINCIPAL)
def session_revoke(call: Call) -> dict:
    """End one of the caller's sessions (its refresh and access tokens stop working)."""
    return services().accounts.revoke_session(call.principal, call.path["session_id"])


@auth.endpoint("/auth/apikey", methods=("POST",), scope="user:apikeys", schema=ApiKeyNew)
def apikey_new(call: Call) -> dict:
    """A new API key of the caller (`secret` is shown only in this answer)."""
    return _new_api_key(call)


def _new_api_key(call: Call, for_principal: str | None = None) -> dict:
    return services().accounts.create_api_key(
        call.principal,
        expires_in=call.payload["expires_in"],
        scopes=call.payload.get("scopes"),
        note=call.payload.get("note"),
        for_principal=for_principal,
    )


@auth.endpoint("/auth/apikey", methods=("GET",), scope=ANY_PRINCIPAL)
def apikey_info(call: Call) -> dict:
    """The API key this request was made with."""
    return services().accounts.api_key_info(call.principal)


@auth.endpoint(
    "/auth/apikey",
    methods=("DELETE",),
    scope="user:apikeys",
    schema=ApiKeyDelete,
    location="query",
    errors=(404,),
)
def apikey_delete(call: Call) -> dict:
    """Delete one of the caller's API keys (`?first_eight=`)."""
    return services().accounts.delete_api_key(call.principal, call.payload["first_eight"])


@auth.endpoint("/auth/whoami", scope=ANY_PRINCIPAL)
def whoami(call: Call) -> dict:
    """The caller's principal: identities, API keys, sessions, roles and scopes."""
    return services().accounts.whoami(call.principal)


@auth.endpoint("/auth/scopes", scope=ANY_PRINCIPAL)
def api_scopes(call: Call) -> dict:
    """The roles and scopes of this request's credentials (none without credentials)."""
    return {"roles": sorted(call.principal.roles), "scopes": sorted(call.principal.scopes)}


@auth.endpoint("/auth/logout", methods=("POST",), scope=ANY_PRINCIPAL)
def logout(call: Call) -> Response:
    """Forget the browser's API-key and CSRF cookies; a logout with an access token ends its session."""
    services().accounts.logout(call.principal)
    response = Response(dump_json({}), mimetype="application/json")
    response.delete_cookie(API_KEY_COOKIE)
    response.delete_cookie(CSRF_COOKIE)
    return response


@auth.endpoint("/auth/principal", scope="admin:read:principals")
def principals(call: Call) -> list:
    """Every principal that has logged in."""
    return services().accounts.principals()


@auth.endpoint("/auth/principal/<principal_id>", scope="admin:read:principals")
def principal(call: Call) -> dict:
    """One principal."""
    accounts = services().accounts
    return accounts.principal_info(accounts.known_principal(call.path["principal_id"]))


@auth.endpoint("/auth/principal/<principal_id>/apikey", methods=("POST",), scope="admin:apikeys", schema=ApiKeyNew)
def principal_apikey_new(call: Call) -> dict:
    """A new API key for another principal, limited by that principal's scopes."""
    return _new_api_key(call, for_principal=call.path["principal_id"])
