"""The OpenAPI 3.1 description of every JSON endpoint.

Written as data next to the handlers rather than generated: the API is small, and a test
(tests/web/test_openapi.py) checks that every route is described and that real responses
validate against these schemas, so the document cannot drift from the code.
"""

from __future__ import annotations

from typing import Any

from ioc import __version__
from web.alerts_api import ALERT_PATHS, ALERT_SCHEMAS
from web.announcement import ANNOUNCEMENT_PATHS, ANNOUNCEMENT_SCHEMAS
from web.audit_api import AUDIT_PATHS, AUDIT_SCHEMAS
from web.console_bulk import BULK_PATHS, BULK_SCHEMAS
from web.events_api import EVENT_PATHS, EVENT_SCHEMAS
from web.incidents_api import INCIDENT_PATHS, INCIDENT_SCHEMAS
from web.maintenance_api import MAINTENANCE_PATHS, MAINTENANCE_SCHEMAS
from web.oncall_api import ONCALL_PATHS, ONCALL_SCHEMAS
from web.openapi_parts import json_response as _json
from web.reload_api import RELOAD_PATHS, RELOAD_SCHEMAS
from web.report_download import REPORT_DOWNLOAD_PATHS
from web.status_openapi import STATUS_PATHS, STATUS_SCHEMAS
from web.try_api import TRY_PATHS, TRY_SCHEMAS

_ERROR = {"$ref": "#/components/schemas/Error"}

_NUM_OR_NULL = {"type": ["number", "null"]}
_STR_OR_NULL = {"type": ["string", "null"]}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {"error": {"type": "string"}, "detail": {}},
    },
    "Health": {
        "type": "object", "required": ["status"],
        "properties": {"status": {"type": "string", "enum": ["ok"]}},
    },
    "Ready": {
        "type": "object", "required": ["status", "checks"],
        "properties": {
            "status": {"type": "string", "enum": ["ready", "not ready"]},
            "checks": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "Target": {
        "type": "object",
        "required": ["name", "department", "department_name", "kind", "up", "last_value",
                     "latency_seconds", "last_check", "last_success", "failing_since", "stale",
                     "reason", "last_error", "raw_up", "degraded", "consecutive_failures",
                     "consecutive_successes", "shard", "remote"],
        "properties": {
            "name": {"type": "string", "description": "target name (the `target` label)"},
            "department": {"type": "string", "description": "department code"},
            "department_name": {"type": "string"},
            "kind": {"type": "string", "description": "collector type, e.g. http"},
            "up": {"type": ["boolean", "null"],
                   "description": "debounced state (failure_threshold / recovery_threshold); "
                                  "null before the first poll"},
            "raw_up": {"type": ["boolean", "null"],
                       "description": "verdict of the last poll alone"},
            "degraded": {"type": "boolean",
                         "description": "up but over a soft limit (max_latency); see last_error"},
            "consecutive_failures": {"type": "integer", "minimum": 0},
            "consecutive_successes": {"type": "integer", "minimum": 0},
            "last_value": _NUM_OR_NULL,
            "latency_seconds": _NUM_OR_NULL,
            "last_check": {**_NUM_OR_NULL, "description": "unix seconds"},
            "last_success": {**_NUM_OR_NULL, "description": "unix seconds"},
            "failing_since": {**_NUM_OR_NULL,
                              "description": "unix seconds of the first failed poll of the "
                                             "current failing run (the outage's start); null "
                                             "while the last poll succeeded"},
            "stale": {"type": "boolean",
                      "description": "no poll finished within three intervals"},
            "reason": {**_STR_OR_NULL, "description": "failure reason of the last poll"},
            "last_error": _STR_OR_NULL,
            "shard": {"type": ["integer", "null"], "minimum": 0,
                      "description": "with collection.shard i/N, the index of the instance "
                                     "that polls this target; with auto, that instance's "
                                     "member slot (null while no member is known); null "
                                     "without sharding"},
            "remote": {"type": "boolean",
                       "description": "polled by another instance: its state is read from "
                                      "the shared store every wall heartbeat (no reason "
                                      "is stored, so reason and last_error stay null)"},
        },
        "additionalProperties": False,
    },
    "Status": {
        "type": "object",
        "required": ["generated_at", "province", "summary", "targets"],
        "properties": {
            "generated_at": {"type": "number"},
            "province": {"type": "object", "additionalProperties": {"type": "string"}},
            "summary": {
                "type": "object", "required": ["targets", "up", "down", "unknown"],
                "properties": {k: {"type": "integer", "minimum": 0}
                               for k in ("targets", "up", "down", "unknown")},
            },
            "targets": {"type": "array", "items": {"$ref": "#/components/schemas/Target"}},
        },
    },
    "SeriesResult": {
        "type": "object",
        "required": ["metric", "start", "end", "step", "series"],
        "properties": {
            "metric": {"type": "string"},
            "start": {"type": "number"}, "end": {"type": "number"}, "step": {"type": "number"},
            "series": {"type": "array", "items": {
                "type": "object", "required": ["labels", "points"],
                "properties": {
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "points": {"type": "array", "items": {
                        "type": "array", "description": "[unix seconds, value]",
                        "items": {"type": "number"}, "minItems": 2, "maxItems": 2}},
                },
            }},
        },
    },
    **EVENT_SCHEMAS,
    **ALERT_SCHEMAS,
    **MAINTENANCE_SCHEMAS,
    **ONCALL_SCHEMAS,
    **ANNOUNCEMENT_SCHEMAS,
    **AUDIT_SCHEMAS,
    **RELOAD_SCHEMAS,
    **TRY_SCHEMAS,
    **INCIDENT_SCHEMAS,
    **BULK_SCHEMAS,
    **STATUS_SCHEMAS,
}


def _query(name: str, description: str, required: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"} if name == "metric" else {"type": "number"}
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema}


PATHS: dict[str, Any] = {
    "/healthz": {"get": {
        "summary": "The process is alive", "operationId": "healthz",
        "responses": {"200": _json({"$ref": "#/components/schemas/Health"}, "alive")},
    }},
    "/readyz": {"get": {
        "summary": "The store answers and the scheduler runs", "operationId": "readyz",
        "responses": {
            "200": _json({"$ref": "#/components/schemas/Ready"}, "ready"),
            "503": _json({"$ref": "#/components/schemas/Ready"}, "not ready, with the reason"),
        },
    }},
    "/api/v1/status": {"get": {
        "summary": "Every target with its current state, failing ones first",
        "operationId": "status",
        "responses": {"200": _json({"$ref": "#/components/schemas/Status"}, "status")},
    }},
    "/api/v1/series": {"get": {
        "summary": "Stored history of one metric, downsampled",
        "description": "Any other query parameter is an exact label matcher, e.g. "
                       "`target=stttt-health`. Points are bucket averages; each timestamp is "
                       "the start of its bucket (a multiple of step).",
        "operationId": "series",
        "parameters": [
            _query("metric", "metric name, e.g. ioc_target_up", required=True),
            _query("start", "unix seconds (default: end - 1h)"),
            _query("end", "unix seconds (default: now)"),
            _query("step", "bucket width in seconds (default: range / 250, at least 1)"),
        ],
        "responses": {
            "200": _json({"$ref": "#/components/schemas/SeriesResult"}, "series"),
            "400": _json(_ERROR, "invalid query"),
        },
    }},
    "/api/openapi.json": {"get": {
        "summary": "This document", "operationId": "openapi",
        "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document")},
    }},
    **EVENT_PATHS,
    **ALERT_PATHS,
    **MAINTENANCE_PATHS,
    **ONCALL_PATHS,
    **ANNOUNCEMENT_PATHS,
    **AUDIT_PATHS,
    **RELOAD_PATHS,
    **TRY_PATHS,
    **INCIDENT_PATHS,
    **REPORT_DOWNLOAD_PATHS,
    **BULK_PATHS,
    **STATUS_PATHS,
}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "ioc API", "version": __version__,
                 "description": "Monitoring service of a provincial Intelligent Operations "
                                "Centre. Errors are JSON {error, detail} with a 4xx status."},
        "paths": PATHS,
        "components": {"schemas": SCHEMAS},
    }
