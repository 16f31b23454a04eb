"""The OpenAPI 3 document, built from the route declarations and their @api marks.

Every method a route's handler implements is in the document; ``@api`` adds the
summary, body and response models, roles and success status. An unmarked method is
still listed, summarised by its docstring, so the document never misses a route (a
test fails while its success answer has no schema: tests/core/test_openapi_responses.py).

Request and response models become ``components/schemas`` entries (one pass over all
of them, so two models of one name in different modules get distinct names); every
operation answers refusals with the error envelope (``Error``).
"""

from __future__ import annotations

import inspect
from typing import Any

import tornado.web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from kpay import __version__
from kpay.core.web import JSON_MEDIA_TYPE, PLACEHOLDER, Operation, Route

METHODS = ("get", "post", "put", "patch", "delete")
REF = "#/components/schemas/{model}"

#: ``{"error": {...}}``: every refusal (docs/api.md, "Conventions").
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"$ref": "#/components/schemas/ErrorDetail"}},
    "additionalProperties": True,
}

#: The error itself: a code and a message, and details that depend on the error.
ERROR_DETAIL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "string", "description": "snake_case, stable: what clients test"},
        "message": {"type": "string", "description": "human text"},
        "field": {"type": "string", "description": "the bad field, dotted (item.amount)"},
        "needed": {"type": "integer", "description": "fen (insufficient_balance)"},
        "balance": {"type": "integer", "description": "fen (insufficient_balance)"},
        "limit": {"type": "integer", "description": "bytes (payload_too_large)"},
        "lesson_id": {"type": "string", "description": "lesson_locked"},
        "unlocks_at": {"type": ["string", "null"], "description": "lesson_locked"},
    },
    "additionalProperties": True,
}

#: The H5 pages (``static/``), served beside the API when the directory exists.
PAGES: dict[str, Any] = {
    "/": {"get": {
        "summary": "The H5 index page (static/index.html)",
        "operationId": "get_index_page",
        "tags": ["pages"],
        "parameters": [],
        "responses": {
            "200": {"description": "the page", "content": {"text/html": {}}},
            "4XX": {"description": "refused", "content": {JSON_MEDIA_TYPE: {
                "schema": {"$ref": "#/components/schemas/Error"}}}},
            "default": {"description": "error", "content": {JSON_MEDIA_TYPE: {
                "schema": {"$ref": "#/components/schemas/Error"}}}},
        },
    }},
    "/static/{path}": {"get": {
        "summary": "A file of the H5 pages (HTML, scripts, styles, vendored files)",
        "operationId": "get_static_file",
        "tags": ["pages"],
        "parameters": [{"name": "path", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "responses": {
            "200": {"description": "the file, typed by its extension",
                    "content": {"*/*": {}}},
            "4XX": {"description": "no such file", "content": {JSON_MEDIA_TYPE: {
                "schema": {"$ref": "#/components/schemas/Error"}}}},
            "default": {"description": "error", "content": {JSON_MEDIA_TYPE: {
                "schema": {"$ref": "#/components/schemas/Error"}}}},
        },
    }},
}


def operation_of(route: Route, method: str) -> Operation:
    """The ``@api`` mark of a handler method, or a summary from its docstring."""
    function = getattr(route.handler, method)
    return getattr(function, "__kpay_operation__", None) or Operation(
        summary=first_line(function) or f"{method.upper()} {route.path}")


def document(routes: list[Route], pages: bool = False) -> dict[str, Any]:
    """The document of ``routes`` (and of the H5 pages when ``pages``)."""
    operations = [(route, method, operation_of(route, method))
                  for route in routes for method in implemented_methods(route.handler)]
    models: dict[type[BaseModel], None] = {}
    for _, _, operation in operations:
        for model in (operation.body, operation.response,
                      *(model for _, model in operation.responses)):
            if model is not None:
                models[model] = None
    refs, definitions = models_json_schema([(model, "validation") for model in models],
                                           ref_template=REF)
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA, "ErrorDetail": ERROR_DETAIL_SCHEMA,
                               **definitions.get("$defs", {})}
    model_refs = {model: refs[(model, "validation")] for model in models}
    paths: dict[str, Any] = {}
    for route, method, operation in operations:
        paths.setdefault(route.path, {})[method] = describe(route, method, operation,
                                                            model_refs)
    if pages:
        for path, item in PAGES.items():
            paths.setdefault(path, item)
    return {
        "openapi": "3.1.0",
        "info": {"title": "kpay", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "bearerFormat": "JWT"}},
        },
    }


def implemented_methods(handler: type[tornado.web.RequestHandler]) -> list[str]:
    """The HTTP methods (lower case) a handler class answers."""
    return [m for m in METHODS
            if getattr(handler, m, None) is not getattr(tornado.web.RequestHandler, m)]


def first_line(function: Any) -> str:
    return (inspect.getdoc(function) or "").strip().split("\n")[0]


def responses_of(operation: Operation,
                 refs: dict[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    """The success answer (a schema, a non-JSON media type or a redirect), any other
    declared answers, and the error envelope for 4xx and anything else."""
    status = operation.status
    success: dict[str, Any] = {"description": "success"}
    if 300 <= status < 400:
        success = {"description": "redirect", "headers": {"Location": {
            "description": "where to go", "required": True, "schema": {"type": "string"}}}}
    elif operation.media_type != JSON_MEDIA_TYPE:
        success["content"] = {operation.media_type: {}}
    elif operation.response is not None:
        success["content"] = {JSON_MEDIA_TYPE: {"schema": refs[operation.response]}}
    answers: dict[str, Any] = {str(status): success}
    for other, model in operation.responses:
        answers[str(other)] = {"description": f"answer with status {other}", "content": {
            JSON_MEDIA_TYPE: {"schema": refs[model]}}}
    envelope = {JSON_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Error"}}}
    if operation.error_media_type != JSON_MEDIA_TYPE:
        envelope = {operation.error_media_type: {}, **envelope}
    answers["4XX"] = {"description": "refused: the error envelope", "content": envelope}
    answers["default"] = {"description": "error: the error envelope", "content": envelope}
    return answers


def describe(route: Route, method: str, operation: Operation,
             refs: dict[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in PLACEHOLDER.findall(route.path)
    ] + [{"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
         for name in operation.query]
    described: dict[str, Any] = {
        "summary": operation.summary,
        "operationId": f"{method}_{route.path.strip('/').replace('/', '_')}".replace(
            "{", "").replace("}", ""),
        "parameters": parameters,
        "responses": responses_of(operation, refs),
    }
    if route.tags:
        described["tags"] = list(route.tags)
    if operation.auth:
        described["security"] = [{"bearer": []}]
    if operation.roles:
        described["x-roles"] = list(operation.roles)
    if operation.body is not None:
        described["requestBody"] = {"required": True, "content": {
            operation.body_media_type: {"schema": refs[operation.body]}}}
    return described
