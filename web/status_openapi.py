"""The public status page's routes in the OpenAPI document: the JSON twin's schema, which
docs/status-page.md explains field by field (a test validates real answers against it)."""

from __future__ import annotations

from typing import Any

from web.openapi_parts import REF as _REF
from web.openapi_parts import query_param as _param
from web.openapi_parts import ref_response as _resp

_STATE = {"type": "string", "enum": ["operational", "partial", "major", "maintenance",
                                     "unknown"]}
_TIME = {"type": "number", "description": "unix seconds"}
_TEXT_OR_NULL = {"type": ["string", "null"]}

STATUS_SCHEMAS: dict[str, Any] = {
    "PublicDay": {
        "type": "object", "required": ["date", "availability", "level"],
        "properties": {
            "date": {"type": "string", "format": "date",
                     "description": "a local day in province.timezone"},
            "availability": {"type": ["number", "null"],
                             "description": "up / (up + down) of the service's targets; "
                                            "null without data (or all planned)"},
            "level": {"type": "string",
                      "enum": ["ok", "minor", "major", "maintenance", "none"]},
        },
    },
    "PublicService": {
        "type": "object",
        "required": ["slug", "name", "state", "state_label", "availability",
                     "availability_label", "days"],
        "properties": {
            "slug": {"type": "string"}, "name": {"type": "string"}, "state": _STATE,
            "state_label": {"type": "string"},
            "availability": {"type": ["number", "null"],
                             "description": "over all the days shown"},
            "availability_label": _TEXT_OR_NULL,
            "days": {"type": "array", "items": {"$ref": _REF + "PublicDay"}},
        },
    },
    "PublicIncident": {
        "type": "object",
        "required": ["service", "service_name", "started_at", "ended_at", "open",
                     "duration_seconds", "notes", "summary"],
        "properties": {
            "service": {"type": "string"}, "service_name": {"type": "string"},
            "started_at": _TIME, "ended_at": {"type": ["number", "null"]},
            "open": {"type": "boolean"},
            "duration_seconds": {"type": ["integer", "null"], "description": "null while open"},
            "notes": {"type": "array", "items": {"type": "string"},
                      "description": "the operators' public notes"},
            "summary": {"type": "string", "description": "generic wording"},
        },
    },
    "PublicMaintenance": {
        "type": "object", "required": ["starts_at", "ends_at", "active", "note", "services"],
        "properties": {"starts_at": _TIME, "ends_at": _TIME, "active": {"type": "boolean"},
                       "note": {"type": "string"},
                       "services": {"type": "array", "items": {"type": "string"}}},
    },
    "PublicStatus": {
        "type": "object",
        "required": ["page", "lang", "overall", "history_days", "incident_days", "first_day",
                     "groups", "incidents", "maintenance", "updated_at"],
        "properties": {
            "page": {"type": "object", "required": ["slug", "title", "description"],
                     "properties": {"slug": {"type": "string"}, "title": {"type": "string"},
                                    "description": _TEXT_OR_NULL}},
            "lang": {"type": "string", "enum": ["vi", "en"]},
            "overall": {"type": "object", "required": ["state", "label"],
                        "properties": {"state": _STATE, "label": {"type": "string"}}},
            "history_days": {"type": "integer"}, "incident_days": {"type": "integer"},
            "first_day": _TEXT_OR_NULL,
            "groups": {"type": "array", "items": {
                "type": "object", "required": ["name", "services"],
                "properties": {"name": {"type": "string"}, "services": {
                    "type": "array", "items": {"$ref": _REF + "PublicService"}}}}},
            "incidents": {"type": "array", "items": {"$ref": _REF + "PublicIncident"}},
            "maintenance": {"type": "array", "items": {"$ref": _REF + "PublicMaintenance"}},
            "updated_at": {**_TIME, "description": "when this content last changed"},
        },
    },
}

_PUBLIC = ("Public (no token) unless the page has require_auth. Cacheable: ETag, "
           "Last-Modified, 304 on If-None-Match / If-Modified-Since. Rate limited per client "
           "address: 429 with Retry-After.")
_LANG = _param("lang", "en for English; Vietnamese otherwise", "string")
_SLUG = {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}
_COMMON = {"304": {"description": "not modified"},
           "429": _resp("Error", "too many requests from this address")}

_HTML = {"description": "the page (HTML, no script)", "content": {"text/html": {}}}
_HTML_ERROR: dict[str, Any] = {"content": {"text/html": {}}}

STATUS_PATHS: dict[str, Any] = {
    "/status": {"get": {
        "summary": "The first public status page (HTML)", "description": _PUBLIC,
        "operationId": "publicStatusHtml", "parameters": [_LANG],
        "responses": {"200": _HTML,
                      "404": {**_HTML_ERROR, "description": "no status page configured"},
                      "304": {"description": "not modified"},
                      "429": {**_HTML_ERROR, "description": "too many requests"}},
    }},
    "/status/{slug}": {"get": {
        "summary": "A public status page (HTML)", "description": _PUBLIC,
        "operationId": "publicStatusPageHtml", "parameters": [_SLUG, _LANG],
        "responses": {"200": _HTML, "404": {**_HTML_ERROR, "description": "no such page"},
                      "304": {"description": "not modified"},
                      "429": {**_HTML_ERROR, "description": "too many requests"}},
    }},
    "/status.json": {"get": {
        "summary": "The first public status page as data", "description": _PUBLIC,
        "operationId": "publicStatus", "parameters": [_LANG],
        "responses": {"200": _resp("PublicStatus", "the page's public document"),
                      "404": _resp("Error", "no status page configured"), **_COMMON},
    }},
    "/status/{slug}.json": {"get": {
        "summary": "A public status page as data", "description": _PUBLIC,
        "operationId": "publicStatusPage", "parameters": [_SLUG, _LANG],
        "responses": {"200": _resp("PublicStatus", "the page's public document"),
                      "404": _resp("Error", "no such page"), **_COMMON},
    }},
    "/status/badge/{service}.svg": {"get": {
        "summary": "A service's badge (SVG): public name and state",
        "description": _PUBLIC + " Unknown services get a 404 badge.",
        "operationId": "publicStatusBadge",
        "parameters": [{**_SLUG, "name": "service"}, _LANG],
        "responses": {"200": {"description": "the badge",
                              "content": {"image/svg+xml": {}}},
                      "404": {"description": "no such service",
                              "content": {"image/svg+xml": {}}}, **_COMMON},
    }},
}
