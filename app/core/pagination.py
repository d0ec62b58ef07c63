"""Keyset pagination: opaque cursors carrying the last row's sort key."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from app.core.errors import ValidationFailed, field_error


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> list[Any] | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, orjson.JSONDecodeError):
        values = None
    if not isinstance(values, list) or len(values) != arity:
        raise ValidationFailed(errors=[field_error("cursor", "Invalid cursor.")])
    return values
