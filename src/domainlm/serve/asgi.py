"""The error shape every route answers with, and the request-body guards in front of the app.

Errors use OpenAI's shape ``{"error": {"message", "type", "code", "param"}}`` so OpenAI clients raise their
usual exceptions. The size guard is raw ASGI rather than FastAPI middleware: it has to refuse an oversized
body before anything reads it into memory, and a FastAPI middleware only runs once the request is parsed.
Every body this API takes is JSON, so :class:`JsonBodies` reads it as JSON whatever Content-Type the client
sent (``curl -d`` sends a form type, and FastAPI would then refuse the body as not JSON).
"""

from __future__ import annotations

import json

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                409: "conflict_error", 413: "invalid_request_error", 429: "rate_limit_error"}


class ApiError(Exception):
    """A request the server refuses: raised anywhere below a route, answered in the error shape."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.headers = status, message, code, param, headers or {}


def error_body(status: int, message: str, code: str, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": _ERROR_TYPES.get(status, "server_error"), "code": code, "param": param}}


def error_response(status: int, message: str, code: str, param: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, code, param), status_code=status, headers=headers)


async def api_error_handler(_request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.message, exc.code, exc.param, exc.headers)


async def validation_error_handler(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """A body that is not JSON, or does not fit the schema: one 400 naming the first problem's field."""
    err = exc.errors()[0]
    if err.get("type") == "json_invalid":
        return error_response(400, f"request body is not valid JSON ({err.get('ctx', {}).get('error', err['msg'])})", "invalid_json")
    loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
    return error_response(400, f"'{loc}': {err['msg']}" if loc else err["msg"], "invalid_request", loc or None)


class BodyLimit:
    """Wraps an ASGI app: a request body over ``limit`` bytes gets a 413 and is not read further."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        seen = 0
        too_large = False
        started = False

        async def limited_receive():
            nonlocal seen, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Stop reading: the app sees a disconnect; whatever it answers is dropped below.
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if too_large:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not too_large:
                raise
        if too_large and not started:
            await self._refuse(send)

    async def _refuse(self, send):
        body = json.dumps(error_body(413, f"request body is larger than {self.limit} bytes", "request_too_large")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class JsonBodies:
    """Wraps an ASGI app: a POST body is JSON whatever its Content-Type says."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = [(k, v) for k, v in scope.get("headers") or [] if k != b"content-type"]
            scope = {**scope, "headers": headers + [(b"content-type", b"application/json")]}
        return await self.app(scope, receive, send)
