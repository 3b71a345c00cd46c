"""The pieces every API module writes its part of the OpenAPI description with.

Each module under ``web/`` describes its own paths (merged in ``web/openapi.py``); these few
builders keep the shapes of a response and a query parameter written once.
"""

from __future__ import annotations

from typing import Any

REF = "#/components/schemas/"


def json_response(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A response whose JSON body follows ``schema``."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def ref_response(schema: str, description: str) -> dict[str, Any]:
    """A response whose JSON body is the named component schema."""
    return json_response({"$ref": REF + schema}, description)


def query_param(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    """An optional query parameter of one JSON type."""
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": kind}}
