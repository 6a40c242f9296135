"""The kb stage: documents in, a knowledge base folder with its manifest out.

``domainlm kb build`` and the line both build their knowledge base through :func:`build_stage`, so the
two cannot drift apart: the same checks on the output folder, the same cache (the inputs, the user term
file and the settings), the same report of inputs that could not be read (``rejected.jsonl`` beside the
index, the first few named on stderr), the same metrics, and the same cleanup when a first build fails.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from domainlm.errors import DomainlmError
from domainlm.io import write_jsonl
from domainlm.kb.config import KBConfig
from domainlm.kb.governance import DEFAULT_RECIPE, governed_documents
from domainlm.kb.sources import Unreadable
from domainlm.kb.store import KB_FILE, build_kb, only_build_leftovers, remove_unbuilt
from domainlm.manifest import StageResult, StageRun, stage_run

REJECTED_FILE = "rejected.jsonl"
_SHOWN = 5  # unreadable inputs named on stderr; the rest are counted (all of them are in rejected.jsonl)

_err = Console(stderr=True)


def build_stage(
    inputs: list[str | Path], out: str | Path, config: KBConfig, *, force: bool = False, show_progress: bool = False,
    workers: int | None = None,
) -> StageResult:
    """Build the knowledge base ``out`` from ``inputs`` (clean.jsonl files, raw files, folders), or skip
    when the inputs, the user term file (``config.terms``) and the settings are those of the last build.

    Metrics: ``format_version``, ``documents``, ``chunks``, ``embedder`` (None without embeddings),
    ``rejected`` (inputs that could not be read), ``duplicates`` (documents dropped for a repeated id) and
    ``store`` (the Milvus collection's URL; None for the on-disk index).
    Outputs: ``kb``, the folder to open with :func:`domainlm.kb.open_kb`; ``rejected``, its
    ``rejected.jsonl``, when some input could not be read.

    ``workers``: processes that tokenise a large corpus (default: one per core); it changes how fast, not
    what is built, so it is not a setting (changing it does not rebuild).

    Refuses an ``out`` that is something other than a knowledge base (or what a killed build left), and
    removes the folder again when it created it and the build failed.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DomainlmError(f"{out}: exists and is not a folder; give --out a folder for the knowledge base")
    # A folder holding only a killed or failed build's own files (lock, temp generation) may be taken over.
    if out.exists() and not (out / KB_FILE).is_file() and not only_build_leftovers(out):
        raise DomainlmError(f"{out}: exists and is not a knowledge base; refusing to write into it")
    if config.store:
        from domainlm.kb.milvus import parse_url

        parse_url(config.store)  # a bad store URL is one error line, before any folder is made
    created = not out.exists()
    # The term file is an input too: editing it must rebuild, though the path in the settings is unchanged.
    tracked = [*inputs, *([config.terms] if config.terms else []), *_recipe_file(config.recipe)]
    try:
        with stage_run("kb", out, inputs=tracked, config=config, force=force) as run:
            if not run.skipped:
                _build(run, inputs, out, config, show_progress, workers)
    except BaseException:
        if created:
            remove_unbuilt(out)  # a failed first build leaves no empty (or lock-only) folder behind
        raise
    return run.result()


def _recipe_file(recipe: str | None) -> list[str]:
    """A recipe given as a YAML file is an input too: editing it must rebuild."""
    return [recipe] if recipe and Path(recipe).suffix in {".yaml", ".yml"} else []


def _build(
    run: StageRun, inputs: list[str | Path], out: Path, config: KBConfig, show_progress: bool, workers: int | None
) -> None:
    rejected: list[Unreadable] = []
    docs = governed_documents(inputs, config.recipe or DEFAULT_RECIPE, rejected)
    if not docs:
        report_unreadable(rejected)  # say why before failing: there is no KB to hold rejected.jsonl
        raise DomainlmError(
            "no documents to index (every input was empty or unreadable"
            + (f"; {len(rejected)} skipped, reasons above)" if rejected else ")")
        )
    info = build_kb(docs, out, config, show_progress=show_progress, workers=workers)
    run.outputs += [KB_FILE, info["generation"]]
    run.name_output("kb", ".")
    report_unreadable(rejected, out)
    if rejected:
        run.name_output("rejected", REJECTED_FILE)
    else:
        (out / REJECTED_FILE).unlink(missing_ok=True)  # an older build's list would now be false
    run.metrics.update(
        format_version=info["format_version"], documents=info["n_documents"], chunks=info["n_chunks"],
        embedder=info["embedder"], rejected=len(rejected), duplicates=len(info["duplicates"]),
        store=info.get("store"),
    )


def report_unreadable(unreadable: list[Unreadable], kb_dir: Path | None = None) -> None:
    """Write ``kb_dir/rejected.jsonl`` (when a KB folder is given) and name the first few on stderr."""
    if not unreadable:
        return
    if kb_dir is not None:
        write_jsonl(kb_dir / REJECTED_FILE, ({"source": u.source, "reason": u.reason} for u in unreadable))
    for u in unreadable[:_SHOWN]:
        _err.print(f"[yellow]skipped[/] {escape(u.source)}: {escape(u.reason)}", highlight=False, soft_wrap=True)
    if len(unreadable) > _SHOWN:
        where = f" (see {kb_dir / REJECTED_FILE})" if kb_dir is not None else ""
        _err.print(f"[yellow]skipped[/] {len(unreadable) - _SHOWN} more{escape(where)}", highlight=False, soft_wrap=True)
