"""CLI: ``domainlm serve`` and ``domainlm feedback export`` (thin shells over server.py and export.py)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from domainlm.config import find_config, validate
from domainlm.serve.config import ServeConfig
from domainlm.serve.flywheel import FlywheelConfig, init_registry, rollback, run_flywheel
from domainlm.serve.server import ServeOptions, run_server
from domainlm.workspace import Workspace, load_workspace, workspace_config_or_defaults

console = Console(stderr=True)


def _serve_section(config: Path | None, overrides: list[str]) -> ServeConfig:
    return workspace_config_or_defaults(config, overrides).serve


def _options(**values) -> ServeOptions:
    return validate(ServeOptions, {k: v for k, v in values.items() if v is not None}, "serve")


def _line_workspace(config: Path | None, overrides: list[str] = ()) -> Workspace | None:
    path = config or find_config()
    return load_workspace(path, overrides) if path is not None else None


def line_model_and_kb(config: Path | None, overrides: list[str]) -> tuple[str | None, str | None]:
    """The model and knowledge base the workspace's line made (tuned model, kb), found by name through its
    layout, so ``domainlm serve`` in a built workspace needs no paths. (None, None) outside a workspace."""
    ws = _line_workspace(config, overrides)
    if ws is None:
        return None, None
    model = ws.tuned_model() if ws.config.train.stages and ws.trained_stages() else None
    kb = ws.layout.kb if (ws.layout.kb / "kb.json").is_file() else None
    return (str(model) if model else None), (str(kb) if kb else None)


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        args: list[str] = typer.Argument(None, help="key=value overrides of domainlm.yaml (serve.port=9000)"),
        model: str = typer.Option(None, "--model", help="Model spec: tiny | HF folder | file.gguf | openai:URL#name"),
        kb: Path = typer.Option(None, "--kb", help="Knowledge base for grounded answers (requests with \"kb\": true)."),
        kb_reader: str = typer.Option(None, "--kb-reader", help="extractive (default) or model: who writes KB answers."),
        plugin: list[str] = typer.Option(None, "--plugin", help="A tool the server runs for the model (requests with "
                                         "\"plugins\": true): built-in or entry-point name, or all (repeatable)."),
        openapi: list[Path] = typer.Option(None, "--openapi", help="OpenAPI 3 file whose operations become tools (repeatable)."),
        max_steps: int = typer.Option(None, "--max-steps", help="Rounds of server tool calls in one answer (default 3)."),
        tool_timeout: float = typer.Option(None, "--tool-timeout", help="Seconds one tool call may take (default 10)."),
        host: str = typer.Option(None, "--host"),
        port: int = typer.Option(None, "--port"),
        api_key: list[str] = typer.Option(None, "--api-key", help="An API key (repeatable)."),
        api_keys: Path = typer.Option(None, "--api-keys", help="File: KEY [NAME] [REQUESTS_PER_MINUTE] [ROLE] per line (role: user, reviewer, admin)."),
        db: str = typer.Option(None, "--db", help="Feedback store URL (sqlite:///f.db, postgresql://...)."),
        name: str = typer.Option(None, "--name", help="Public model id (default: from the spec)."),
        edge: str = typer.Option(None, "--edge", help="Router: small edge model spec."),
        cloud: str = typer.Option(None, "--cloud", help="Router: big cloud model spec."),
        route: str = typer.Option(None, "--route", help="Router policy: edge | cloud | confidence[:T] (default confidence:0.5)."),
        privacy: str = typer.Option(None, "--privacy", help="Router: a request with personal data: keep-on-edge (default) | "
                                    "redact (to the cloud with placeholders) | refuse (403)."),
        rate_limit: float = typer.Option(None, "--rate-limit", help="Requests per minute per key (0 = unlimited)."),
        max_body_bytes: int = typer.Option(None, "--max-body-bytes", help="Largest request body (default 1 MiB)."),
        max_queue: int = typer.Option(None, "--max-queue", help="Chat completions that may wait for the model (default 16); more get a 429."),
        max_batch: int = typer.Option(None, "--max-batch", help="Requests a transformers model decodes together "
                                      "(continuous batching; default 16, 1 = one at a time)."),
        max_prompt_tokens: int = typer.Option(None, "--max-prompt-tokens", help="Largest prompt in tokens (default 8192, 0 = no limit)."),
        metrics_token: str = typer.Option(None, "--metrics-token", envvar="DOMAINLM_METRICS_TOKEN",
                                          help="Bearer token for scraping /metrics (opens nothing else; 16+ characters)."),
        watch_registry: float = typer.Option(None, "--watch-registry", help="With --model REGISTRY/current: seconds "
                                             "between looks for a promotion or rollback to swap in (default 5, 0 = never)."),
        config: Path = typer.Option(None, "-c", "--config", help="domainlm.yaml (default: nearest one)."),
    ) -> None:
        """Serve a model: OpenAI-compatible API, chat page at /, feedback store, plugins, metrics.

        In a built workspace, with no --model/--edge/--cloud, the line's tuned model and knowledge base are served."""
        section = _serve_section(config, args or [])
        if model is None and edge is None and cloud is None:
            model, line_kb = line_model_and_kb(config, args or [])
            kb = kb or (Path(line_kb) if line_kb else None)
        options = _options(
            model=model, kb=str(kb) if kb else None, kb_reader=kb_reader, plugins=list(plugin or []) or None,
            openapi=[str(p) for p in openapi or []] or None, max_steps=max_steps, tool_timeout=tool_timeout,
            host=host or section.host,
            port=port or section.port, db=db or section.db, api_keys=list(api_key or []) or None,
            api_keys_file=str(api_keys) if api_keys else None, name=name, edge=edge, cloud=cloud, route=route,
            rate_limit=rate_limit, max_body_bytes=max_body_bytes, max_queue=max_queue, max_batch=max_batch,
            max_prompt_tokens=max_prompt_tokens, metrics_token=metrics_token, privacy=privacy or section.privacy,
            store_redact_pii=section.store_redact_pii, watch_registry=watch_registry,
        )

        def ready(state, generated_key):
            url = f"http://{options.host}:{options.port}"
            console.print(f"serving [bold]{state.name}[/] at {url}/v1 (chat page: {url}/ , metrics: {url}/metrics)")
            console.print(f"feedback store: {options.db}")
            if generated_key:
                console.print(f"API key (generated for this run): [bold]{generated_key}[/]")

        run_server(options, on_ready=ready)

    feedback = typer.Typer(help="The feedback store: export ratings and corrections as training data.",
                           no_args_is_help=True)

    @feedback.command("export")
    def export(
        fmt: str = typer.Option(..., "--format", help="kto | dpo | sft | raw"),
        out: Path = typer.Option(..., "--out", help="Output JSONL file."),
        db: str = typer.Option(None, "--db", help="Feedback store URL (default: serve.db of domainlm.yaml)."),
        since: int = typer.Option(0, "--since", help="Only feedback with id above this."),
        conversational: bool = typer.Option(False, "--conversational",
                                            help="kto/dpo: TRL's conversational rows (whole conversation) instead of strings."),
        config: Path = typer.Option(None, "-c", "--config"),
    ) -> None:
        """Write feedback as TRL training rows (PII redacted): thumbs → KTO, corrections/choices → DPO, corrections → SFT."""
        from domainlm.serve.audit import AuditLog, command_actor
        from domainlm.serve.export import export_feedback
        from domainlm.serve.store import FeedbackStore

        store = FeedbackStore(db or _serve_section(config, []).db)
        try:
            result = export_feedback(store, fmt, out, since_id=since, conversational=conversational)
            AuditLog(store.engine).record(command_actor(), "export", str(out), format=fmt, rows=result["rows"],
                                          feedback=result["feedback"], since=since, last_id=result["last_id"])
        finally:
            store.close()
        console.print(f"{result['rows']} {fmt} rows from {result['feedback']} feedback records → {out} "
                      f"(last feedback id {result['last_id']})")

    @feedback.command("failures")
    def failures(
        db: str = typer.Option(None, "--db", help="Feedback store URL (default: serve.db of domainlm.yaml)."),
        suite: list[Path] = typer.Option(None, "--suite", help="Eval suite(s) to label questions by task and intent "
                                         "(in a workspace, default: its eval suites)."),
        examples: int = typer.Option(3, "--examples", help="Examples shown per group."),
        as_json: bool = typer.Option(False, "--json", help="JSON output."),
        config: Path = typer.Option(None, "-c", "--config"),
    ) -> None:
        """What users flagged: downvoted and corrected answers grouped by task / intent / tool, with examples."""
        from domainlm.io import dumps
        from domainlm.serve.failures import failure_report, format_report
        from domainlm.serve.store import FeedbackStore

        line = _line_workspace(config)
        suites = list(suite or []) or ([str(s) for s in line.eval_suites()] if line is not None else [])
        store = FeedbackStore(db or _serve_section(config, []).db)
        try:
            report = failure_report(store.iter_feedback(), suites, examples=examples)
        finally:
            store.close()
        if as_json:
            typer.echo(dumps(report))
        else:
            console.print(format_report(report), highlight=False, markup=False, soft_wrap=True)

    @feedback.command("audit")
    def audit_log(
        db: str = typer.Option(None, "--db", help="Feedback store URL (default: serve.db of domainlm.yaml)."),
        action: str = typer.Option(None, "--action", help="Only this action: export | promote | refuse | rollback."),
        config: Path = typer.Option(None, "-c", "--config"),
    ) -> None:
        """The append-only audit log: who exported feedback, promoted, refused or rolled back a model, and when."""
        from domainlm.io import dumps
        from domainlm.serve.audit import AuditLog

        for entry in AuditLog(db or _serve_section(config, []).db).entries(action=action):
            typer.echo(dumps(entry))

    app.add_typer(feedback, name="feedback")

    @app.command()
    def flywheel(
        registry: Path = typer.Option(..., "--registry", help="Model registry folder (serve REGISTRY/current)."),
        gate: list[str] = typer.Option(None, "--gate", help="Gate suite(s): the candidate must beat the serving model "
                                       "here (in a workspace, default: its eval suites)."),
        db: str = typer.Option(None, "--db", help="Feedback store URL (default: serve.db of domainlm.yaml)."),
        stage: str = typer.Option("sft", "--stage", help="sft (corrections) | dpo (corrections, choices) | kto (thumbs)"),
        init_model: str = typer.Option(None, "--init-model", help="Create the registry with this model as v0001 "
                                       "(in a built workspace, default: the line's tuned model)."),
        max_steps: int = typer.Option(30, "--max-steps"),
        lr: float = typer.Option(1e-3, "--lr"),
        method: str = typer.Option("full", "--method", help="full | lora"),
        min_gain: float = typer.Option(0.0, "--min-gain", help="Promote only when candidate > current + this."),
        min_rows: int = typer.Option(1, "--min-rows", help="Skip the run with fewer new training rows."),
        gate_by: list[str] = typer.Option(None, "--gate-by", help="Per-group check by category (default), subcategory "
                                          "or task (repeatable)."),
        gate_min_retention: float = typer.Option(None, "--gate-min-retention", help="Candidate / current each group "
                                                 "must keep beyond its interval (default 1.0)."),
        gate_min_items: int = typer.Option(None, "--gate-min-items", help="Groups with fewer items are decided by "
                                           "--gate-few-items (default 30)."),
        gate_few_items: str = typer.Option(None, "--gate-few-items", help="point | interval | refuse (default point)."),
        replay: list[Path] = typer.Option(None, "--replay", help="Original fine-tuning data mixed into each sft turn "
                                          "(repeatable; in a workspace, default: its sft data)."),
        replay_ratio: float = typer.Option(None, "--replay-ratio", help="Replay rows per feedback row (default 4; 0: none)."),
        holdback: float = typer.Option(None, "--holdback", help="Share of the new feedback questions with a target "
                                       "held back from training and scored as the gate's 'feedback-heldout' category "
                                       "(default 0.2; 0: none)."),
        do_rollback: bool = typer.Option(False, "--rollback", help="Serve the previous version again, and stop."),
        config: Path = typer.Option(None, "-c", "--config"),
    ) -> None:
        """Feedback → train from the serving model → gate → promote only if better (previous kept for rollback)."""
        from domainlm.serve.audit import AuditLog, command_actor

        db = db or _serve_section(config, []).db
        if do_rollback:
            state = rollback(registry)
            AuditLog(db).record(command_actor(), "rollback", str(registry), current=state["current"])
            console.print(f"{registry}: serving {state['current']} again")
            return
        line = _line_workspace(config)
        if init_model is None and line is not None and not (registry / "registry.json").exists():
            init_model = str(line.tuned_model()) if line.trained_stages() else None
        if not gate and line is not None:
            gate = [str(suite) for suite in line.eval_suites()]
        if not replay and line is not None:
            replay = line.sft_data()
        if init_model:
            init_registry(registry, init_model)
            console.print(f"{registry}: v0001 = {init_model}")
            if not gate:
                return
        cfg = validate(FlywheelConfig, dict(registry=str(registry), db=db,
                                            gate=list(gate or []), stage=stage, max_steps=max_steps, lr=lr,
                                            method=method, min_gain=min_gain, min_rows=min_rows,
                                            replay_data=[str(p) for p in replay or []],
                                            **{k: v for k, v in dict(gate_by=gate_by or None, replay_per_row=replay_ratio, holdback=holdback,
                                                                     gate_min_retention=gate_min_retention,
                                                                     gate_min_items=gate_min_items,
                                                                     gate_few_items=gate_few_items).items()
                                               if v is not None}), "flywheel")
        decision = run_flywheel(cfg, console=console)
        if decision.get("decision") in ("promoted", "refused"):
            action = "promote" if decision["decision"] == "promoted" else "refuse"
            AuditLog(db).record(command_actor(), action, str(registry),
                                **{k: v for k, v in decision.items() if isinstance(v, (int, float, str))})
