"""The OpenAPI 3 document, built from the route declarations and their @api marks.

Every method a route's handler implements is in the document; ``@api`` adds the
summary, body model, roles and success status. An unmarked method is still listed,
summarised by its docstring, so the document never misses a route.
"""

from __future__ import annotations

import inspect
from typing import Any

import tornado.web

from kpay import __version__
from kpay.core.web import PLACEHOLDER, Operation, Route

METHODS = ("get", "post", "put", "patch", "delete")

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}}}},
}


def document(routes: list[Route]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for route in routes:
        item: dict[str, Any] = {}
        for method in implemented_methods(route.handler):
            function = getattr(route.handler, method)
            operation: Operation = getattr(function, "__kpay_operation__", None) or Operation(
                summary=first_line(function) or f"{method.upper()} {route.path}")
            item[method] = describe(route, method, operation, schemas)
        if item:
            paths[route.path] = item
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


def describe(route: Route, method: str, operation: Operation,
             schemas: dict[str, Any]) -> dict[str, Any]:
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
        "responses": {
            str(operation.status): {"description": "success"},
            "default": {"description": "error",
                        "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Error"}}}},
        },
    }
    if route.tags:
        described["tags"] = list(route.tags)
    if operation.auth:
        described["security"] = [{"bearer": []}]
    if operation.roles:
        described["x-roles"] = list(operation.roles)
    if operation.body is not None:
        schema = operation.body.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in schema.pop("$defs", {}).items():
            schemas[name] = definition
        schemas[operation.body.__name__] = schema
        described["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{operation.body.__name__}"}}}}
    return described
