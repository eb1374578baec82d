"""The OpenAPI document and the interactive docs page (Swagger UI, served from the installed
``flask-swagger-ui`` package: the page works without internet access).

Both are public on purpose: a browser must load the page before the user can enter a key, and
the document describes the API, not its data. ``QS_GATEWAY_DOCS=0`` removes them.
"""

from __future__ import annotations

import html
import json
import secrets
from pathlib import Path

import flask_swagger_ui
from flask import Response, current_app, request, send_from_directory

from ..manager import dump_json
from .access import PUBLIC
from .declare import Call, Resource, registered_endpoints
from .openapi import build_document

docs = Resource("docs", __name__)

SWAGGER_UI_DIST = Path(flask_swagger_ui.__file__).parent / "dist"
DOCUMENT_CACHE_KEY = "qs_gateway.openapi"

# What Swagger UI needs, from the gateway alone: its own script and this page's (by nonce), its
# stylesheet (it sets styles through the DOM, which CSP allows), its images (some are data:
# URIs), and calls to the API. No inline code without the nonce, no eval; the page may not be
# framed (clickjacking "Try it out"). tests/test_docs_browser.py runs it in Chromium.
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'nonce-{nonce}'; style-src 'self'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>qs-gateway API</title>
  <link rel="stylesheet" type="text/css" href="{root}/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="{root}/docs/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{root}/docs/swagger-ui-bundle.js"></script>
  <script nonce="{nonce}">
    window.onload = function () {{
      window.ui = SwaggerUIBundle(Object.assign({config}, {{
        presets: [SwaggerUIBundle.presets.apis],
        layout: "BaseLayout"
      }}));
    }};
  </script>
</body>
</html>
"""


def _document() -> dict:
    # Built once per application: the declarations do not change while it runs.
    document = current_app.extensions.get(DOCUMENT_CACHE_KEY)
    if document is None:
        document = build_document(registered_endpoints(current_app))
        current_app.extensions[DOCUMENT_CACHE_KEY] = document
    return document


@docs.endpoint("/openapi.json", scope=PUBLIC)
def openapi_document(call: Call) -> Response:
    """The OpenAPI 3.1 document of every endpoint."""
    # The server URL follows the deployment prefix (X-Forwarded-Prefix through the proxy).
    document = {**_document(), "servers": [{"url": request.script_root or "/"}]}
    return Response(dump_json(document), mimetype="application/json")


@docs.endpoint("/docs", scope=PUBLIC, media_type="text/html")
def docs_page(call: Call) -> Response:
    """Interactive documentation (Swagger UI): read the endpoints and try them."""
    root = request.script_root
    config = {
        "url": f"{root}/openapi.json",
        "dom_id": "#swagger-ui",
        "deepLinking": True,
        "persistAuthorization": False,
    }
    nonce = secrets.token_urlsafe(16)
    # json.dumps output is safe inside <script> once "</" cannot close the element.
    page = PAGE.format(root=html.escape(root, quote=True), config=json.dumps(config).replace("</", "<\\/"), nonce=nonce)
    return Response(page, mimetype="text/html", headers={"Content-Security-Policy": DOCS_CSP.format(nonce=nonce)})


@docs.endpoint("/docs/<path:asset>", scope=PUBLIC, media_type="*/*")
def docs_asset(call: Call) -> Response:
    """The files of the docs page (Swagger UI's distribution)."""
    return send_from_directory(SWAGGER_UI_DIST, call.path["asset"], max_age=3600)
