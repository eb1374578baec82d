"""The control room page: a web page served by the gateway itself, at ``/`` and ``/ui/``.

Plain HTML, CSS and ES modules from ``static/`` (no build step, no third-party code, works
without internet access). The page finds the API relative to its own address, so it works
behind a proxy under a prefix too. It sends its credentials in the ``Authorization`` header
and never cookies (see ``static/api.js``).

Every answer of this blueprint carries a strict Content-Security-Policy: scripts, styles and
connections only from this origin, no inline script, no framing. ``QS_GATEWAY_UI=0`` removes
the page.
"""

from __future__ import annotations

import urllib.parse
from functools import cache
from pathlib import Path

from flask import Response, request, send_from_directory

from ..api.access import PUBLIC
from ..api.declare import Call, Resource

web = Resource("web", __name__)

STATIC = Path(__file__).parent / "static"
PAGE_TEMPLATE = Path(__file__).parent / "page.html"
ASSETS_PLACEHOLDER = "{assets}"

# The `state` of an OpenID Connect sign-in the page started begins with this; the identity
# provider's redirect to the code endpoint is then sent on to the page (see `oidc_return`).
OIDC_STATE_PREFIX = "qsui."

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        # The sign-in form is handled by the page's script; an OIDC sign-in is a navigation
        # to the identity provider, which form-action does not govern.
        "form-action 'self'",
    )
)
# nosniff, no referrer and no framing come with every answer of the gateway (api/hooks.py).
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # Revalidated on every load (ETag, 304): an upgraded gateway serves its new page at once.
    "Cache-Control": "no-cache",
}


def _secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


@cache
def _page(assets: str) -> bytes:
    # The asset URLs are relative: "ui/app.js" from "/", "app.js" from "/ui/", under any prefix.
    return PAGE_TEMPLATE.read_text(encoding="utf-8").replace(ASSETS_PLACEHOLDER, assets).encode()


def _page_response(assets: str) -> Response:
    response = Response(_page(assets), mimetype="text/html")
    response.add_etag()
    return _secured(response.make_conditional(request))


@web.endpoint("/", scope=PUBLIC, media_type="text/html")
def page_at_root(call: Call) -> Response:
    """The control room page: status, queue, history, console and controls of RE Manager."""
    return _page_response("ui/")


@web.endpoint("/ui/", scope=PUBLIC, media_type="text/html")
def page(call: Call) -> Response:
    """The control room page (the same as at `/`)."""
    if not request.path.endswith("/"):
        # "/ui" would resolve the page's relative asset URLs against the root
        return _secured(Response(status=308, headers={"Location": "ui/"}))
    return _page_response("")


@web.endpoint("/ui/<path:asset>", scope=PUBLIC, media_type="*/*")
def page_asset(call: Call) -> Response:
    """The scripts, styles and icon of the control room page."""
    return _secured(send_from_directory(STATIC, call.path["asset"], max_age=None))


def oidc_return(code: str, state: str) -> Response | None:
    """Where an identity provider's redirect goes when the page started the sign-in.

    The provider sends the browser to the code endpoint configured as ``redirect_uri``; the
    code endpoint answers with the bare refresh token (bluesky-httpserver's behaviour), which a
    browser would only display. When the ``state`` shows the page started the sign-in, the
    browser is sent on to the page with the code instead; the page checks the state and posts
    the code to the code endpoint itself, so the refresh token reaches its script, never a URL.
    """
    if request.method != "GET" or not state.startswith(OIDC_STATE_PREFIX):
        return None
    query = urllib.parse.urlencode({"code": code, "state": state})
    return _secured(Response(status=303, headers={"Location": f"{request.script_root}/ui/?{query}"}))
