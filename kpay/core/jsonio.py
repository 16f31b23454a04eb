"""JSON in and out of handlers: bodies parsed with a depth bound, values written with
times as ISO 8601."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from kpay.core.errors import BadRequest

# Deeper than any kpay body needs, far below Python's recursion limit: a deeper body is
# refused before anything (pydantic, a plugin) walks it recursively.
MAX_JSON_DEPTH = 64


def parse_json(raw: bytes) -> Any:
    """A request body as JSON; 400 ``invalid_json`` when it is not JSON or nested deeper
    than :data:`MAX_JSON_DEPTH` (so deep that the parser gives up included)."""
    too_deep = BadRequest(f"body is not valid JSON: nested deeper than {MAX_JSON_DEPTH} levels",
                          code="invalid_json")
    try:
        data = json.loads(raw)
    except RecursionError:
        # The parser recurses per level: 100,000 "[" would otherwise be a 500.
        raise too_deep from None
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"body is not valid JSON: {e}", code="invalid_json") from None
    # Counting brackets is cheap (C speed); the walk is needed only when there are enough
    # of them (inside strings or not) to nest that deep.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and nested_deeper(data, MAX_JSON_DEPTH):
        raise too_deep
    return data


def nested_deeper(value: Any, limit: int) -> bool:
    """Whether lists and dicts nest more than ``limit`` levels in ``value`` (no recursion)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))
    return False


def json_default(value: Any) -> Any:
    from datetime import datetime

    from bson import ObjectId

    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot serialise {type(value).__name__}")
