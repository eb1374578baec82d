"""The OpenAPI document, the /docs page's files, and GET parameters from the query string."""

from __future__ import annotations

import pytest

from qs_gateway.api import endpoint_specs
from qs_gateway.api.declare import PUBLIC
from qs_gateway.api.openapi import _openapi_path

from .support import API_KEY, make_app, plan


@pytest.fixture
def document(anonymous):
    response = anonymous.get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_every_route_of_the_app_is_a_documented_declaration(app, document):
    documented = {(path, method) for path, operations in document["paths"].items() for method in operations}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path, _ = _openapi_path(rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in documented, (rule.rule, method)
    # and every declaration is there (metrics are off in this app)
    assert len(documented) == sum(len(spec.methods) for spec in endpoint_specs() if spec.blueprint != "metrics")


def test_operations_carry_fields_scope_and_error_responses(document):
    paths = document["paths"]
    add = paths["/api/queue/item/add"]["post"]
    assert add["x-scope"] == "write:queue:edit" and add["x-manager-method"] == "queue_item_add"
    assert {"ApiKeyHeader": ["write:queue:edit"]} in add["security"]
    assert set(add["responses"]) == {"200", "400", "401", "403", "408", "409", "413", "422", "429", "502", "503"}
    assert {"in": "header", "name": "Idempotency-Key"}.items() <= add["parameters"][0].items()
    body = add["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    fields = document["components"]["schemas"][body]["properties"]
    assert {"item", "pos", "before_uid", "after_uid", "lock_key"} <= set(fields)
    assert fields["pos"]["oneOf"][1]["enum"] == ["front", "back"]

    # GET parameters are documented as query parameters (what the docs page can send)
    get = paths["/api/queue/item/get"]["get"]
    assert {p["name"] for p in get["parameters"] if p["in"] == "query"} == {"pos", "uid"}
    assert "requestBody" not in get

    runs = paths["/api/re/runs/{option}"]["get"]
    assert runs["parameters"][0] == {
        "in": "path",
        "name": "option",
        "required": True,
        "schema": {"type": "string", "enum": ["active", "open", "closed"]},
    }
    upload = paths["/api/queue/upload/spreadsheet"]["post"]
    form = upload["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert document["components"]["schemas"][form]["properties"]["spreadsheet"]["format"] == "binary"

    for public in ("/healthz", "/readyz", "/openapi.json", "/docs"):
        assert paths[public]["get"]["security"] == [], public
        assert "401" not in paths[public]["get"]["responses"]
    errors = document["components"]["responses"]
    bad_request = errors["BadRequest"]["content"]["application/json"]["schema"]
    assert bad_request["required"] == ["detail"] and "errors" in bad_request["properties"]


def test_documented_answers_are_the_ones_the_gateway_gives(document):
    paths, schemas = document["paths"], document["components"]["schemas"]
    # a body is required exactly when an empty one is refused
    assert paths["/api/lock"]["post"]["requestBody"]["required"] is True
    assert paths["/api/queue/item/add"]["post"]["requestBody"]["required"] is False
    assert (
        len(paths["/api/queue/mode/set"]["post"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"]) == 2
    )
    assert "400" in paths["/api/auth/whoami"]["get"]["responses"]  # a malformed Authorization header
    assert "404" in paths["/api/re/runs/{option}"]["get"]["responses"]  # an option that is none
    assert "414" in paths["/api/queue/item/get"]["get"]["responses"]  # gunicorn's URL limit
    assert set(paths["/healthz"]["get"]["responses"]) == {"200"}
    assert set(paths["/readyz"]["get"]["responses"]) == {"200", "503"}
    assert paths["/docs"]["get"]["responses"]["200"]["content"] == {"text/html": {}}
    assert "text/event-stream" in paths["/api/status/events"]["get"]["responses"]["200"]["content"]
    assert "101" in paths["/api/status/ws"]["get"]["responses"]
    assert {"type": "null"} in schemas["ItemAdd"]["properties"]["pos"]["oneOf"]
    assert schemas["ItemAdd"]["properties"]["before_uid"]["maxLength"] == 256


def test_public_declarations_need_no_credentials():
    assert {spec.rule for spec in endpoint_specs() if spec.scope is PUBLIC} >= {"/healthz", "/readyz", "/docs"}


def test_docs_page_and_its_files_come_from_the_installed_package(anonymous):
    page = anonymous.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert "/docs/swagger-ui-bundle.js" in text and '"url": "/openapi.json"' in text
    assert "http://" not in text and "https://" not in text  # nothing from a CDN
    bundle = anonymous.get("/docs/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.get_data()) > 500_000
    assert anonymous.get("/docs/../setup.py").status_code == 404


def test_docs_can_be_turned_off_and_metrics_on(re_manager):
    client = make_app(re_manager, QS_GATEWAY_DOCS="0").test_client()
    assert client.get("/docs").status_code == 404
    assert client.get("/openapi.json").status_code == 404
    paths = make_app(re_manager, QS_GATEWAY_METRICS="1").test_client().get("/openapi.json").get_json()["paths"]
    assert paths["/metrics"]["get"]["x-scope"] == "admin:metrics"


def test_get_parameters_from_the_query_string_typed_by_the_schema(client, anonymous, manager_idle):
    client.post("/api/queue/item/add/batch", json={"items": [plan(num=1), plan(num=2), plan(num=3)]})
    assert client.get("/api/queue/item/get?pos=front").get_json()["item"]["kwargs"]["num"] == 1
    assert client.get("/api/queue/item/get?pos=-1").get_json()["item"]["kwargs"]["num"] == 3
    uid = client.get("/api/queue/item/get?pos=1").get_json()["item"]["item_uid"]
    assert client.get(f"/api/queue/item/get?uid={uid}").get_json()["item"]["kwargs"]["num"] == 2
    assert client.get("/api/status?reload=true").get_json()["items_in_queue"] == 3
    # the API key in the query string is a credential, not a parameter
    assert anonymous.get(f"/api/queue/item/get?pos=back&api_key={API_KEY}").get_json()["item"]["kwargs"]["num"] == 3

    # a body wins: the query string is not read at all then
    assert client.get("/api/queue/item/get?pos=front", json={"pos": "back"}).get_json()["item"]["kwargs"]["num"] == 3

    # a wrong value is refused in RE Manager's shape for queue_item_get (the reference passes it on)
    wrong = client.get("/api/queue/item/get?pos=middle")
    assert wrong.status_code == 200 and wrong.get_json() == {
        "success": False,
        "msg": "Failed to get an item: Invalid value of 'pos': Must be an integer or one of 'front', 'back'.",
        "item": {},
        "errors": {"pos": ["Must be an integer or one of 'front', 'back'."]},
    }
    unknown = client.get("/api/queue/item/get?position=1")
    assert unknown.status_code == 400 and "position" in unknown.get_json()["detail"]
    # POST reads the body only
    assert client.post("/api/queue/item/remove?pos=front").get_json()["item"]["kwargs"]["num"] == 3


def test_query_string_typing_of_numbers_lists_and_strings():
    from marshmallow import fields

    from qs_gateway.api import schemas
    from qs_gateway.api.payload import query_payload

    class Probe(schemas.Payload):
        size = fields.Integer(strict=True)
        ratio = fields.Float()
        name = fields.String()
        uids = fields.List(fields.String())
        flag = fields.Boolean()

    payload = query_payload(
        Probe(),
        {"size": ["5"], "ratio": ["0.5"], "name": ["123"], "uids": ["a", "b"], "flag": ["true"], "csrf": ["x"]},
    )
    assert payload == {"size": 5, "ratio": 0.5, "name": "123", "uids": ["a", "b"], "flag": True}
    assert Probe().load(payload)["flag"] is True
    assert query_payload(Probe(), {"uids": ['["x", "y"]']}) == {"uids": ["x", "y"]}


def test_the_error_answers_are_the_error_contract(document):
    """Every error of the contract is documented with its own words, and every status an
    operation documents is either a success or an error of the contract."""
    from qs_gateway.exceptions import CONTRACT

    responses = document["components"]["responses"]
    assert set(responses) == {error.__name__ for error in CONTRACT.values()}
    for status, error in CONTRACT.items():
        assert responses[error.__name__]["description"] == error.description, status
    for path, operations in document["paths"].items():
        for operation in operations.values():
            for status, answer in operation["responses"].items():
                if status in ("101", "200", "304"):
                    continue
                assert answer == {"$ref": f"#/components/responses/{CONTRACT[int(status)].__name__}"}, (path, status)


def test_refusals_and_etags_come_from_the_method_table(document):
    from qs_gateway.manager import method

    add = document["paths"]["/api/queue/item/add"]["post"]
    assert add["x-refusal"] == {"prefix": "Failed to add an item: ", "fields": ["qsize", "item"]}
    assert "Failed to add an item: " in add["responses"]["200"]["description"]
    queue = document["paths"]["/api/queue/get"]["get"]
    assert "304" in queue["responses"] and "`plan_queue_uid`" in queue["responses"]["200"]["description"]
    runs = document["paths"]["/api/re/runs/{option}"]["get"]
    assert runs["x-manager-method"] == "re_runs" and "408" in runs["responses"]
    for path, operations in document["paths"].items():
        for operation in operations.values():
            name = operation.get("x-manager-method")
            if name and "x-refusal" in operation:
                assert operation["x-refusal"]["prefix"] == method(name).refusal.prefix, path
