"""``/api/auth/provider/<provider>/...``: single sign-on at an OpenID provider (the names of
Tiled and bluesky-httpserver's development line). What the flows do is in
:mod:`qs_gateway.auth.sso`; this module is their HTTP side: redirects, the state cookie, and the
small page where a person enters the user code of a device sign-in.

The device flow's poll is the provider's ``/token`` endpoint (:mod:`.auth`), and the provider's
redirect comes back to its ``/code`` endpoint, as for bluesky-httpserver's code login.
"""

from __future__ import annotations

import html

from flask import Response, request
from marshmallow import EXCLUDE, Schema, fields, validate

from ..auth.providers.oidc import add_query
from ..auth.sso import SIGN_IN_SECONDS, SignedIn
from ..exceptions import ApiError, BadRequest
from ..extensions import services
from ..manager import dump_json
from .access import PUBLIC
from .declare import Call, Resource
from .schemas import IDENTIFIER_MAX_LENGTH, Payload

sso = Resource("sso", __name__)

STATE_COOKIE = "qs_gateway_sso_state"
# form-action is left out: the form's answer redirects to the provider, which it would block
PAGE_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
STATE_MAX_LENGTH = 200


class BrowserSignIn(Schema):
    class Meta:
        unknown = EXCLUDE

    # the caller's own state, given back with the hand-over code (the web page checks it)
    state = fields.String(validate=validate.Length(max=STATE_MAX_LENGTH))


class UserCode(Payload):
    user_code = fields.String(required=True, validate=validate.Length(min=1, max=IDENTIFIER_MAX_LENGTH))


class UserCodeQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    user_code = fields.String(validate=validate.Length(max=IDENTIFIER_MAX_LENGTH))


def _provider_url(name: str, tail: str) -> str:
    return f"{request.url_root.rstrip('/')}/api/auth/provider/{name}/{tail}"


def _to_provider(name: str, *, client_state: str | None = None, device: str | None = None) -> Response:
    """Send the browser to the provider, with the sign-in's state in its cookie."""
    url, state = services().sso.start(name, _provider_url(name, "code"), client_state=client_state, device=device)
    response = Response(status=302, headers={"Location": url})
    response.set_cookie(
        STATE_COOKIE,
        state,
        max_age=SIGN_IN_SECONDS,
        path=f"{request.script_root}/api/auth/provider/{name}/",
        secure=request.is_secure,
        httponly=True,
        samesite="Lax",  # sent along with the provider's redirect, a top-level navigation
    )
    return response


@sso.endpoint(
    "/auth/provider/<provider>/authorize", scope=PUBLIC, schema=BrowserSignIn, location="query", errors=(404,)
)
def browser_authorize(call: Call) -> Response:
    """Sign in with the provider in this browser: redirects to the provider (PKCE, state, nonce)."""
    return _to_provider(call.path["provider"], client_state=call.payload.get("state"))


@sso.endpoint("/auth/provider/<provider>/authorize", methods=("POST",), scope=PUBLIC, errors=(404, 503))
def device_authorize(call: Call) -> dict:
    """Start a device-code sign-in (for scripts): the codes, and where the person signs in."""
    name = call.path["provider"]
    codes = services().sso.device_authorize(name)
    verification_uri = _provider_url(name, "device_code")
    return {
        "authorization_uri": add_query(verification_uri, {"user_code": codes["user_code"]}),
        "verification_uri": verification_uri,
        **codes,
    }


def _page(title: str, body: str) -> Response:
    text = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
    # no script, style or frame: the page is a form; it must not be framed (a hidden user-code form)
    return Response(text, mimetype="text/html", headers={"Content-Security-Policy": PAGE_POLICY})


def _user_code_form(name: str, user_code: str = "", error: str = "") -> Response:
    note = f'<p role="alert" id="error">{html.escape(error)}</p>' if error else ""
    warning = "<p>Enter only a code that your own terminal shows: whoever made the code gets your sign-in.</p>"
    form = (
        f'<form method="post" action="{html.escape(_provider_url(name, "device_code"))}">'
        '<label for="user_code">Code shown by your terminal</label> '
        f'<input id="user_code" name="user_code" value="{html.escape(user_code)}" autocomplete="off" autofocus> '
        f'<button type="submit">Sign in with {html.escape(name)}</button></form>'
    )
    return _page(f"Sign in a device with {name}", note + warning + form)


@sso.endpoint(
    "/auth/provider/<provider>/device_code",
    scope=PUBLIC,
    schema=UserCodeQuery,
    location="query",
    media_type="text/html",
    errors=(404,),
)
def device_code_page(call: Call) -> Response:
    """The page where a person enters the user code of a device sign-in."""
    name = call.path["provider"]
    services().sso.provider(name)
    return _user_code_form(name, call.payload.get("user_code", ""))


@sso.endpoint(
    "/auth/provider/<provider>/device_code",
    methods=("POST",),
    scope=PUBLIC,
    schema=UserCode,
    location="form",
    media_type="text/html",
    errors=(404, 429, 503),
)
def device_code_entered(call: Call) -> Response:
    """The person's user code: on to the provider to sign in, or the page again if it is wrong."""
    name = call.path["provider"]
    user_code = call.payload["user_code"]
    services().sso.provider(name)
    try:
        device = services().sso.device_for_user_code(name, user_code, request.remote_addr)
    except BadRequest as exc:  # the page again, for the person to correct the code (counted as a failure)
        return _user_code_form(name, user_code, str(exc.detail))
    return _to_provider(name, device=device)


def provider_returned(name: str, code: str, state: str) -> Response:
    """The provider's redirect of a sign-in the gateway started (see ``/authorize``)."""
    sso_flows = services().sso
    authenticator = sso_flows.provider(name).authenticator
    try:
        signed_in = sso_flows.finish(name, code, state, request.cookies.get(STATE_COOKIE), request.remote_addr)
    except ApiError as exc:
        if authenticator.redirect_on_failure is None or exc.status == 429:
            raise
        signed_in = None
        failure = str(exc.detail)
    if signed_in is None:
        response = Response(
            status=303, headers={"Location": add_query(authenticator.redirect_on_failure, {"error": failure})}
        )
    elif signed_in.device:
        message = (
            authenticator.confirmation_message
            or "You are signed in: you may close this window and go back to your terminal."
        )
        response = _page("Signed in", f'<p id="confirmation">{html.escape(message)}</p>')
    elif authenticator.redirect_on_success is None and not services().settings.http.ui:
        # no page to go on to: the code endpoint's answer of bluesky-httpserver, the refresh token
        response = Response(dump_json(sso_flows.redeem(signed_in.handover)), mimetype="application/json")
    else:
        response = Response(status=303, headers={"Location": _success_url(signed_in)})
    response.delete_cookie(STATE_COOKIE, path=f"{request.script_root}/api/auth/provider/{name}/")
    return response


def _success_url(signed_in: SignedIn) -> str:
    """Where a browser sign-in ends: ``redirect_on_success`` or the gateway's page, with the
    one-time hand-over code the page exchanges for the session (at the code endpoint)."""
    target = signed_in.provider.authenticator.redirect_on_success or f"{request.script_root}/ui/"
    handover = {"code": signed_in.handover}
    if signed_in.client_state:
        handover["state"] = signed_in.client_state
    return add_query(target, handover)
