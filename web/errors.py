"""JSON errors for the API: ``{"error": ..., "detail": ...}`` with a 4xx, never a traceback."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

log = logging.getLogger("ioc.web")


def json_error(status: int, error: str, detail: Any = None) -> web.Response:
    return web.Response(status=status, content_type="application/json",
                        text=json.dumps({"error": error, "detail": detail}, ensure_ascii=False))


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return json_error(exc.status, exc.error, exc.detail)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        text = exc.text or ""
        detail = text if text and text != exc.reason and not text.startswith(f"{exc.status}:") \
            else None
        return json_error(exc.status, exc.reason, detail)
    except Exception:
        log.exception("request failed", extra={"fields": {"path": request.path}})
        return json_error(500, "internal error", "see the service log")
