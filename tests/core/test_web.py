"""The HTTP base: error envelope for every error, body limit, input validation, OpenAPI,
health, metrics, identity, and dev-only routes."""

from __future__ import annotations

import json
from typing import Any

import pytest
import tornado.httpclient
import tornado.web
from openapi_spec_validator import validate as validate_openapi
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field
from pymongo import AsyncMongoClient

from kpay import hookimpl
from kpay.core.openapi import implemented_methods
from kpay.core.web import BaseHandler, Route, api

SECRET_DETAIL = "db password is hunter2"


class Crash(BaseHandler):
    async def get(self) -> None:
        """Test plugin: fail like a bug would."""
        raise RuntimeError(SECRET_DETAIL)


class Teapot(BaseHandler):
    def get(self) -> None:
        """Test plugin: a Tornado HTTPError."""
        raise tornado.web.HTTPError(418)


class FailedUpstream(BaseHandler):
    def get(self) -> None:
        """Test plugin: a server error whose log message must stay in the log."""
        raise tornado.web.HTTPError(503, SECRET_DETAIL)


class Parcel(BaseModel):
    weight: int = Field(gt=0)
    label: str = Field(min_length=1)
    tags: list[str] = []


class ParcelHandler(BaseHandler):
    # Open (auth=False): marks are enforced, and these tests send no token.
    @api("Test plugin: validate a body", body=Parcel, status=201, query=("limit", "offset"),
         auth=False)
    def post(self) -> None:
        parcel = self.body(Parcel)
        limit = self.query_int("limit", 10, 1, 100)
        offset = self.query_int("offset", 0, -720, 720)
        self.write_json({"parcel": parcel, "limit": limit, "offset": offset}, 201)


class WebTestPlugin:
    @hookimpl
    def register_routes(self, app):
        return [Route("/api/v1/test/crash", Crash), Route("/api/v1/test/teapot", Teapot),
                Route("/api/v1/test/upstream", FailedUpstream),
                Route("/api/v1/test/parcels", ParcelHandler)]


@pytest.fixture
def kpay_extra_plugins():
    return [("web_test", WebTestPlugin())]


async def fetch(app: Any, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None,
                **options: Any) -> tornado.httpclient.HTTPResponse:
    client = tornado.httpclient.AsyncHTTPClient()
    if body is None and method in ("POST", "PUT") and "body_producer" not in options:
        body = b""
    return await client.fetch(f"http://127.0.0.1:{app.port}{path}", method=method, body=body,
                              headers=headers, raise_error=False,
                              allow_nonstandard_methods=True, **options)


def envelope_of(response: tornado.httpclient.HTTPResponse) -> dict[str, Any]:
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = json.loads(response.body)
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["message"]
    return body["error"]


# -- the error envelope ---------------------------------------------------------------


@pytest.mark.gen_test
async def test_unknown_paths_get_a_404_envelope(kpay_app):
    for path in ("/nope", "/api/v1/nope", "/api/v1/me/extra", "/static/no-such-file.js"):
        response = await fetch(kpay_app, "GET", path)
        assert response.code == 404, path
        assert envelope_of(response)["code"] == "not_found"
    response = await fetch(kpay_app, "GET", "/static/../../etc/passwd")
    assert response.code == 403
    assert envelope_of(response)["code"] == "forbidden"


@pytest.mark.gen_test
async def test_wrong_method_gets_a_405_envelope(kpay_app):
    for method in ("DELETE", "PUT", "FOO"):  # PATCH changes the nickname (docs/api.md)
        response = await fetch(kpay_app, method, "/api/v1/me",
                               body=b"" if method != "DELETE" else None)
        assert response.code == 405, method
        assert envelope_of(response)["code"] == "method_not_allowed"


@pytest.mark.gen_test
async def test_a_crash_gets_a_500_envelope_without_details(kpay_app):
    response = await fetch(kpay_app, "GET", "/api/v1/test/crash")
    assert response.code == 500
    error = envelope_of(response)
    assert error == {"code": "internal_error", "message": "internal server error"}
    text = response.body.decode()
    assert SECRET_DETAIL not in text and "Traceback" not in text and "<html" not in text


@pytest.mark.gen_test
async def test_tornado_http_errors_get_the_envelope(kpay_app):
    response = await fetch(kpay_app, "GET", "/api/v1/test/teapot")
    assert response.code == 418
    assert envelope_of(response)["code"] == "http_error"
    response = await fetch(kpay_app, "GET", "/api/v1/test/upstream")
    assert response.code == 503
    assert envelope_of(response)["code"] == "internal_error"
    assert SECRET_DETAIL not in response.body.decode()


# -- input --------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_valid_body_is_parsed(api):
    status, body = await api.post("/api/v1/test/parcels?limit=5", {"weight": 3, "label": "x"})
    assert status == 201
    assert body == {"parcel": {"weight": 3, "label": "x", "tags": []}, "limit": 5, "offset": 0}


@pytest.mark.gen_test
async def test_bad_fields_are_named(api):
    cases = [
        ({"label": "x"}, "weight"),
        ({"weight": 0, "label": "x"}, "weight"),
        ({"weight": "heavy", "label": "x"}, "weight"),
        ({"weight": 1, "label": ""}, "label"),
        ({"weight": 1, "label": "x", "tags": [1]}, "tags.0"),
    ]
    for sent, field in cases:
        status, body = await api.post("/api/v1/test/parcels", sent)
        assert status == 400, sent
        assert body["error"]["code"] == "invalid_field", body
        assert body["error"]["field"] == field, body
        assert field in body["error"]["message"]


@pytest.mark.gen_test
async def test_bad_query_parameter_is_named(api):
    # Digits int() would take but kpay does not: Arabic-Indic 3, a sign, an underscore;
    # and "²", which str.isdigit() takes and int() refuses.
    for query in ("limit=lots", "limit=0", "limit=101", "limit=%D9%A3", "limit=%2B5",
                  "limit=1_0", "limit=%C2%B2"):
        status, body = await api.post(f"/api/v1/test/parcels?{query}", {"weight": 1, "label": "x"})
        assert status == 400 and body["error"]["field"] == "limit", (query, body)


@pytest.mark.gen_test
async def test_a_query_number_is_negative_only_where_its_range_is(api):
    status, body = await api.post("/api/v1/test/parcels?offset=-60", {"weight": 1, "label": "x"})
    assert (status, body["offset"]) == (201, -60), body
    for query in ("offset=--5", "offset=-", "offset=-721", "limit=-5", "offset=-%D9%A3"):
        status, body = await api.post(f"/api/v1/test/parcels?{query}", {"weight": 1, "label": "x"})
        assert status == 400, (query, body)


@pytest.mark.gen_test
async def test_invalid_json_bodies(api):
    for raw in (b"{", b"\xff\xfe", b"not json", b'{"weight": 1,}'):
        status, body = await api.request("POST", "/api/v1/test/parcels", raw=raw)
        assert status == 400, raw
        assert body["error"]["code"] == "invalid_json", body
    for raw in (b"[]", b"3", b'"text"', b"null"):
        status, body = await api.request("POST", "/api/v1/test/parcels", raw=raw)
        assert status == 400, raw
        assert body["error"]["code"] in ("invalid_json", "invalid_field"), body


class TestBodyLimit:
    @pytest.fixture
    def kpay_overrides(self):
        return {"server": {"max_body_bytes": 1000, "max_discard_bytes": 100_000}}

    @pytest.mark.gen_test
    async def test_declared_oversize_body_gets_a_413_envelope(self, kpay_app):
        response = await fetch(kpay_app, "POST", "/api/v1/test/parcels", body=b"x" * 5000)
        assert response.code == 413
        error = envelope_of(response)
        assert error["code"] == "payload_too_large" and error["limit"] == 1000

    @pytest.mark.gen_test
    async def test_chunked_oversize_body_gets_a_413_envelope(self, kpay_app):
        async def produce(write):
            for _ in range(10):
                await write(b"x" * 500)

        response = await fetch(kpay_app, "POST", "/api/v1/test/parcels", body_producer=produce)
        assert response.code == 413
        assert envelope_of(response)["code"] == "payload_too_large"

    @pytest.mark.gen_test
    async def test_body_at_the_limit_is_served(self, api):
        label = "y" * (1000 - len(json.dumps({"weight": 1, "label": ""})))
        raw = json.dumps({"weight": 1, "label": label})
        assert len(raw) == 1000
        status, body = await api.request("POST", "/api/v1/test/parcels", raw=raw)
        assert status == 201 and body["parcel"]["label"] == label

    @pytest.mark.gen_test
    async def test_body_past_the_discard_limit_is_cut_off(self, kpay_app, api):
        # Tornado refuses to read it at all: a bare 400 and a closed connection.
        response = await fetch(kpay_app, "POST", "/api/v1/test/parcels", body=b"x" * 200_000)
        assert response.code in (400, 599)
        status, _ = await api.get("/healthz")
        assert status == 200


# -- OpenAPI -------------------------------------------------------------------------------


@pytest.mark.gen_test
async def test_openapi_lists_every_route_and_is_valid(api, kpay_app):
    status, document = await api.get("/api/v1/openapi.json")
    assert status == 200
    validate_openapi(document)
    missing = [f"{method.upper()} {route.path}" for route in kpay_app.routes
               for method in implemented_methods(route.handler)
               if method not in document["paths"].get(route.path, {})]
    assert not missing, f"routes missing from the OpenAPI document: {missing}"
    # Every built-in plugin is loaded here, and so are its routes.
    assert len(kpay_app.pm.describe()) >= 5
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["summary"], (method, path)


@pytest.mark.gen_test
async def test_openapi_describes_bodies_parameters_and_security(api):
    _, document = await api.get("/api/v1/openapi.json")
    parcels = document["paths"]["/api/v1/test/parcels"]["post"]
    assert parcels["summary"] == "Test plugin: validate a body"
    assert "201" in parcels["responses"]
    schema = document["components"]["schemas"]["Parcel"]
    assert set(schema["required"]) == {"weight", "label"}
    assert {"name": "limit", "in": "query", "required": False,
            "schema": {"type": "string"}} in parcels["parameters"]
    assert "security" not in parcels  # declared auth=False
    assert document["paths"]["/api/v1/me"]["get"]["security"] == [{"bearer": []}]
    # Unmarked methods are listed too, summarised by their docstring.
    crash = document["paths"]["/api/v1/test/crash"]["get"]
    assert crash["summary"] == "Test plugin: fail like a bug would."
    assert "security" not in document["paths"]["/healthz"]["get"]


# -- health, metrics, identity --------------------------------------------------------------


@pytest.mark.gen_test
async def test_healthz_pings_the_database(api, kpay_app):
    status, body = await api.get("/healthz")
    assert status == 200 and body["ok"] is True and body["database"] == "up"
    # Point the store at a port where no database listens: reported down with 503.
    working = kpay_app.store.client
    kpay_app.store.client = AsyncMongoClient("mongodb://127.0.0.1:1",
                                             serverSelectionTimeoutMS=300)
    try:
        status, body = await api.get("/healthz")
    finally:
        await kpay_app.store.client.close()
        kpay_app.store.client = working
    assert status == 503 and body["ok"] is False and body["database"] == "down"


@pytest.mark.gen_test
async def test_metrics_in_prometheus_text(api, kpay_app):
    token = await api.login("alice")
    await api.get("/api/v1/me", token)
    ws = await api.socket(token)
    await ws.request("ping")
    response = await fetch(kpay_app, "GET", "/metrics")
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.body.decode())}
    for name in ("kpay_http_requests", "kpay_sockets_open", "kpay_socket_frames_in",
                 "kpay_events_published", "kpay_orders", "kpay_ledger_transactions",
                 "kpay_billing_charges", "kpay_job_runs", "kpay_db_commands"):
        assert name in families, name
    served = [s for s in families["kpay_http_requests"].samples
              if s.labels.get("route") == "/api/v1/me" and s.labels.get("status") == "200"]
    assert served and served[0].value >= 1
    assert families["kpay_sockets_open"].samples[0].value >= 1
    # /api/v1/me read the user; the store counted its commands by name.
    finds = [s for s in families["kpay_db_commands"].samples
             if s.name.endswith("_total") and s.labels.get("command") == "find"]
    assert finds and finds[0].value >= 1
    ws.close()


@pytest.mark.gen_test
async def test_me(api):
    token = await api.login("carol", "consultant", name="Carol C")
    status, body = await api.get("/api/v1/me", token)
    assert status == 200 and body == {"id": "carol", "role": "consultant", "name": "Carol C",
                                      "avatar_url": None}
    status, body = await api.get("/api/v1/me")
    assert status == 401 and body["error"]["code"] == "unauthorized"


@pytest.mark.gen_test
async def test_dev_login_validates(api):
    for sent, field in (({"user_id": "a", "role": "root"}, "role"),
                        ({"user_id": "", "role": "student"}, "user_id"),
                        ({"user_id": "a b", "role": "student"}, "user_id"),
                        ({"role": "student"}, "user_id")):
        status, body = await api.post("/api/v1/dev/login", sent)
        assert status == 400 and body["error"]["field"] == field, (sent, body)


# -- dev-only routes -----------------------------------------------------------------------


class TestDevModeOff:
    @pytest.fixture
    def kpay_overrides(self, dev_off_overrides):
        return dev_off_overrides

    @pytest.mark.gen_test
    async def test_every_dev_route_is_absent(self, api, kpay_app):
        assert not [r.path for r in kpay_app.routes if r.path.startswith("/api/v1/dev")]
        await kpay_app.users.ensure("root", "admin")  # as `kpay user role root admin` does
        token = kpay_app.tokens.issue("root", "admin")
        for path in ("/api/v1/dev/login", "/api/v1/dev/clock", "/api/v1/dev/orders/o1/pay"):
            status, body = await api.post(path, {"user_id": "a", "role": "admin",
                                                 "advance": 60}, token)
            assert status == 404 and body["error"]["code"] == "not_found", path
        _, document = await api.get("/api/v1/openapi.json")
        assert not [p for p in document["paths"] if p.startswith("/api/v1/dev")]
        status, _ = await api.get("/api/v1/me", token)
        assert status == 200
