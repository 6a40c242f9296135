"""The serving stage as a function: options in, a running uvicorn server out."""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domainlm.errors import DomainlmError


class ServeOptions(BaseModel):
    """Everything ``domainlm serve`` needs; flags override the ``serve`` section of domainlm.yaml."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="Model spec to serve (not with edge/cloud).")
    name: str | None = Field(None, description="Public model id; default: derived from the spec.")
    edge: str | None = Field(None, description="Router: the small on-premise model.")
    cloud: str | None = Field(None, description="Router: the big model requests go to when the edge is unsure.")
    route: str = Field("confidence:0.5", description="Router policy: edge | cloud | confidence[:T].")
    kb: str | None = Field(None, description="Knowledge-base folder for grounded answers and kb_search.")
    kb_reader: str = Field("extractive", pattern="^(extractive|model)$")
    plugins: list[str] = Field(default_factory=list, description="Tools the server runs for the model: built-in tool "
                               "or domainlm.plugins entry-point names, or 'all'.")
    openapi: list[str] = Field(default_factory=list, description="OpenAPI 3 files whose operations become tools.")
    max_steps: int = Field(3, ge=1, le=20, description="Rounds of server tool calls in one answer.")
    tool_timeout: float = Field(10.0, gt=0, description="Seconds one tool call may take.")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    db: str = "sqlite:///artifacts/feedback.db"
    api_keys: list[str] = Field(default_factory=list, description="Literal keys (see also api_keys_file).")
    api_keys_file: str | None = None
    rate_limit: float = Field(600.0, ge=0, description="Requests per minute per key (0: unlimited).")
    max_body_bytes: int = Field(1 << 20, ge=1024)
    max_tokens: int = Field(1024, ge=1, description="Largest max_tokens a request may ask for.")
    default_max_tokens: int = Field(256, ge=1)
    max_queue: int = Field(16, ge=0, description="Chat completions that may wait for the model; more get a 429.")
    max_batch: int = Field(16, ge=1, description="Requests a transformers model decodes together (continuous "
                           "batching; 1: one at a time).")
    max_prompt_tokens: int = Field(8192, ge=0, description="Largest prompt in tokens, chat template included (0: no limit).")
    metrics_token: str | None = Field(None, min_length=16, description="Bearer token that opens /metrics (and nothing else).")
    privacy: str = Field("keep-on-edge", pattern="^(keep-on-edge|redact|refuse)$",
                         description="Router: a request with personal data stays on the edge, goes to the cloud "
                         "redacted, or is refused (403).")
    store_redact_pii: bool = Field(True, description="Redact personal data in what the feedback store keeps.")
    watch_registry: float = Field(5.0, ge=0, description="Seconds between looks at REGISTRY/current when the model is a "
                                  "registry's current link: a promotion or rollback is served without a restart (0: never).")

    @model_validator(mode="after")
    def _one_model(self):
        if self.model and (self.edge or self.cloud):
            raise ValueError("give --model, or --edge with --cloud, not both")
        if not self.model and not (self.edge and self.cloud):
            raise ValueError("give --model M, or both --edge M_SMALL and --cloud M_BIG")
        return self


def resolve_keys(options: ServeOptions):
    """The API keys; when none are configured a random one is made (and printed by the command).

    Keys given on the command line (and the generated one) are the operator's: role admin. A key file says
    each key's role (default user)."""
    from domainlm.serve.auth import ApiKey, parse_api_keys

    keys = [ApiKey(key=k, name=f"key{i + 1}", role="admin") for i, k in enumerate(options.api_keys)]
    if options.api_keys_file:
        keys += parse_api_keys(options.api_keys_file)
    generated = None
    if not keys:
        generated = "sk-domainlm-" + secrets.token_urlsafe(24)
        keys = [ApiKey(key=generated, name="default", role="admin")]
    return keys, generated


def build_state(options: ServeOptions, keys=None):
    """Load models, knowledge base and store into a :class:`ServeState` (the app's dependencies)."""
    from domainlm.serve.generation import load_served_model
    from domainlm.serve.state import ServeState
    from domainlm.serve.store import FeedbackStore

    if keys is None:
        keys, _ = resolve_keys(options)
    router = None
    if options.model:
        model = load_served_model(options.model, options.name, max_batch=options.max_batch)
        name = model.name
    else:
        from domainlm.serve.router import RoutePolicy, Router

        policy = RoutePolicy.parse(options.route, privacy=options.privacy)
        edge = load_served_model(options.edge, None, max_batch=options.max_batch)
        cloud = load_served_model(options.cloud, None, max_batch=options.max_batch)
        router = Router(edge, cloud, policy)
        model, name = edge, options.name or "domainlm-router"
    kb = None
    if options.kb:
        if not Path(options.kb).exists():
            raise DomainlmError(f"{options.kb}: no such knowledge base")
        from domainlm.serve.plugins import open_knowledge_base

        kb = open_knowledge_base(options.kb)
    from domainlm.serve.plugins import server_tools

    tools = server_tools(kb, options.plugins, options.openapi, options.tool_timeout)
    store = FeedbackStore(options.db, redact_pii=options.store_redact_pii)
    return ServeState(model=model, name=name, store=store, api_keys=keys, router=router, kb=kb, tools=tools,
                      max_steps=options.max_steps, tool_timeout=options.tool_timeout,
                      kb_reader=options.kb_reader, rate_per_minute=options.rate_limit,
                      max_body_bytes=options.max_body_bytes, max_new_tokens=options.max_tokens,
                      default_max_new_tokens=min(options.default_max_tokens, options.max_tokens),
                      max_queue=options.max_queue, max_prompt_tokens=options.max_prompt_tokens,
                      metrics_token=options.metrics_token)


def make_asgi(state, registry=None):
    """The ASGI app; ``registry``: the :class:`~domainlm.serve.reload.RegistryWatcher` the admin's promote and
    rollback routes act on (None: a server without a model registry)."""
    from domainlm.serve.app import create_app
    from domainlm.serve.asgi import BodyLimit, JsonBodies

    return BodyLimit(JsonBodies(create_app(state, registry=registry)), state.max_body_bytes)


def run_server(options: ServeOptions, on_ready=None) -> None:
    """Build the app and run uvicorn until interrupted."""
    import uvicorn

    from domainlm.serve.reload import RegistryWatcher, registry_link

    keys, generated = resolve_keys(options)
    state = build_state(options, keys)
    link = registry_link(options.model)
    # Made for any registry: the admin's promote and rollback routes swap through it even when it does not
    # look on its own (--watch-registry 0).
    watcher = RegistryWatcher(state, link, options.watch_registry) if link is not None else None
    if watcher is not None and options.watch_registry > 0:
        watcher.start()
    if on_ready is not None:
        on_ready(state, generated)
    uvicorn.run(make_asgi(state, registry=watcher), host=options.host, port=options.port, log_level="warning", access_log=False)
