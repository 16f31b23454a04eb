"""The OpenAPI document describes what every route answers, not only what it takes.

Every operation of the core and the built-in plugins (dev mode on, so the dev routes
too) declares its success answer: a JSON schema (``@api(response=Model)``), or the
media type of a body that is not JSON (``/metrics``, the WeChat notify XML, the pages),
or a redirect with its ``Location``. Refusals are the error envelope. A new route
without ``response=`` fails here; tests/reliability/test_fuzz_api.py checks the real
answers against these schemas.
"""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate as validate_openapi
from pydantic import BaseModel

from kpay.core import openapi
from kpay.core.web import Operation, Route, api

JSON = "application/json"
ERROR_REF = {"$ref": "#/components/schemas/Error"}


def success_problem(operation: dict) -> str | None:
    """Why the operation's success answer is undescribed, or None when it is."""
    successes = [code for code in operation["responses"] if code[0] in "23"]
    if len(successes) != 1:
        return f"{len(successes)} success statuses: {successes}"
    code = successes[0]
    answer = operation["responses"][code]
    if code.startswith("3"):
        return None if "Location" in answer.get("headers", {}) else "redirect without Location"
    content = answer.get("content") or {}
    if not content:
        return f"{code} has no content"
    if JSON in content and "schema" not in content[JSON]:
        return f"{code} is JSON without a schema"
    return None


@pytest.mark.gen_test
async def test_every_success_response_has_a_schema(api):
    status, document = await api.get("/api/v1/openapi.json")
    assert status == 200
    problems = [f"{method.upper()} {path}: {problem}"
                for path, item in document["paths"].items()
                for method, operation in item.items()
                if (problem := success_problem(operation)) is not None]
    assert not problems, "success responses without a schema (add @api(response=...)):\n" \
        + "\n".join(problems)


@pytest.mark.gen_test
async def test_json_success_schemas_are_components(api):
    _, document = await api.get("/api/v1/openapi.json")
    schemas = document["components"]["schemas"]
    json_operations = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for code, answer in operation["responses"].items():
                schema = (answer.get("content") or {}).get(JSON, {}).get("schema")
                if schema is None:
                    continue
                assert set(schema) == {"$ref"}, (method, path, code)
                name = schema["$ref"].removeprefix("#/components/schemas/")
                assert name in schemas, (method, path, code, name)
                json_operations += code[0] == "2"
    # Most routes answer JSON: well over fifty with every built-in plugin loaded.
    assert json_operations > 50


@pytest.mark.gen_test
async def test_refusals_are_the_error_envelope(api):
    _, document = await api.get("/api/v1/openapi.json")
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for code in ("4XX", "default"):
                content = operation["responses"][code]["content"]
                assert content[JSON]["schema"] == ERROR_REF, (method, path, code)
    schemas = document["components"]["schemas"]
    assert schemas["Error"]["required"] == ["error"]
    detail = schemas["ErrorDetail"]
    assert detail["required"] == ["code", "message"]
    assert detail["additionalProperties"] is True
    assert detail["properties"]["field"] == {
        "type": "string", "description": "the bad field, dotted (item.amount)"}
    assert detail["properties"]["needed"]["type"] == "integer"


@pytest.mark.gen_test
async def test_non_json_routes_declare_their_media_type_or_redirect(api):
    _, document = await api.get("/api/v1/openapi.json")
    paths = document["paths"]
    assert list(paths["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    health = paths["/healthz"]["get"]["responses"]
    assert health["200"]["content"][JSON]["schema"] == health["503"]["content"][JSON]["schema"]
    for notify in ("/api/v1/pay/wechat/notify", "/api/v1/pay/wechat/refund-notify"):
        answers = paths[notify]["post"]["responses"]
        assert list(answers["200"]["content"]) == ["text/xml"]
        assert "text/xml" in answers["4XX"]["content"]
        # XML in, too: <xml><return_code>...</return_code>...</xml>.
        body = paths[notify]["post"]["requestBody"]["content"]["text/xml"]["schema"]
        name = body["$ref"].rsplit("/", 1)[1]
        assert document["components"]["schemas"][name]["xml"] == {"name": "xml"}
    for oauth in ("/api/v1/wechat/oauth/start", "/api/v1/wechat/oauth/callback"):
        answers = paths[oauth]["get"]["responses"]
        assert "302" in answers and "200" not in answers
        assert "Location" in answers["302"]["headers"]
    assert list(paths["/"]["get"]["responses"]["200"]["content"]) == ["text/html"]
    assert "/static/{path}" in paths


@pytest.mark.gen_test
async def test_response_schemas_say_what_handlers_write(api):
    """Spot checks of the schemas against the handlers: integer fen, nullable times,
    extra fields where a document has them, and the bare lesson list."""
    _, document = await api.get("/api/v1/openapi.json")
    schemas = document["components"]["schemas"]
    assert schemas["Wallet"]["properties"]["balance"]["type"] == "integer"
    assert schemas["Wallet"]["required"] == ["balance", "held", "available", "currency"]
    assert schemas["PayInstructions"]["additionalProperties"] is True
    assert {"type": "null"} in schemas["Order"]["properties"]["paid_at"]["anyOf"]
    assert schemas["LessonList"]["type"] == "array"
    lessons = document["paths"]["/api/v1/courses/{course_id}/lessons"]["get"]
    assert lessons["responses"]["200"]["content"][JSON]["schema"] == {
        "$ref": "#/components/schemas/LessonList"}
    created = document["paths"]["/api/v1/orders"]["post"]["responses"]
    assert created["201"]["content"][JSON]["schema"] == {
        "$ref": "#/components/schemas/OrderCreated"}


# -- the builder itself ------------------------------------------------------------------


class Parcel(BaseModel):
    weight: int


class Receipt(BaseModel):
    id: str


class OtherReceipt(BaseModel):
    total: int


def test_operation_stays_backwards_compatible():
    import tornado.web

    # Built positionally, as plugins written before response= did.
    operation = Operation("Old style", Parcel, True, (), 201, ("limit",))
    assert operation.response is None and operation.media_type == JSON

    class Old(tornado.web.RequestHandler):
        def post(self) -> None: ...

    Old.post.__kpay_operation__ = operation  # type: ignore[attr-defined]
    described = openapi.document([Route("/old", Old)])["paths"]["/old"]["post"]
    assert described["summary"] == "Old style"
    assert described["responses"]["201"] == {"description": "success"}
    assert described["requestBody"]["content"][JSON]["schema"] == {
        "$ref": "#/components/schemas/Parcel"}
    assert success_problem(described) == "201 has no content"


def test_document_emits_response_models_and_keeps_same_named_models_apart():
    import tornado.web

    class First(tornado.web.RequestHandler):
        @api("make one", body=Parcel, response=Receipt, status=201)
        def post(self) -> None: ...

    # Another model also called Receipt (as in another plugin's module).
    other = type("Receipt", (OtherReceipt,), {"__module__": "elsewhere"})

    class Second(tornado.web.RequestHandler):
        @api("see one", response=other)
        def get(self) -> None: ...

    class Unmarked(tornado.web.RequestHandler):
        def get(self) -> None:
            """Say nothing about the answer."""

    document = openapi.document([Route("/a", First), Route("/b", Second),
                                 Route("/c", Unmarked)])
    validate_openapi(document)
    created = document["paths"]["/a"]["post"]["responses"]["201"]["content"][JSON]["schema"]
    seen = document["paths"]["/b"]["get"]["responses"]["200"]["content"][JSON]["schema"]
    assert created != seen
    schemas = document["components"]["schemas"]
    assert schemas[created["$ref"].rsplit("/", 1)[1]]["required"] == ["id"]
    assert "total" in schemas[seen["$ref"].rsplit("/", 1)[1]]["properties"]
    assert success_problem(document["paths"]["/c"]["get"]) == "200 has no content"
