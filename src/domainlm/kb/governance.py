"""Raw documents reach a knowledge base only through the clean recipe.

``domainlm clean`` → ``kb build`` is the main road; ``kb build`` of raw files and ``kb add`` are side
doors. A side door runs each raw document (a file, or a record of a JSONL file that no clean stage wrote)
through the same per-document recipe steps as ``clean`` — mojibake, pinyin annotations, traditional →
simplified, web furniture, PII redaction, language and quality — so a mobile number in a raw file is
indexed as ``[MOBILE]``, never as itself. A clean stage's own output went through the recipe already and
is indexed as it is. A document the recipe rejects is reported like an unreadable input, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from domainlm.data import Recipe, Unit, load_recipe, process_unit
from domainlm.kb.sources import Unreadable, iter_documents, title_of
from domainlm.manifest import read_result

NO_RECIPE = "none"
DEFAULT_RECIPE = "default-zh"


def is_clean_output(path: str | Path) -> bool:
    """Whether ``path`` is what a clean stage wrote: its folder, or the JSONL it names as output."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    result = read_result(folder)
    if result is None or result.stage != "clean":
        return False
    return path.is_dir() or path.resolve() == Path(result.outputs.get("clean", "")).resolve()


def governed_documents(inputs: list[str | Path], recipe: str | Recipe | None,
                       rejected: list[Unreadable] | None = None) -> list[dict]:
    """The documents of ``inputs`` as the knowledge base should index them.

    Clean-stage outputs are read as they are; every other input runs through ``recipe`` (a name, a YAML
    path or a loaded Recipe; ``None`` or ``"none"`` reads raw inputs as they are). Documents keep their
    input order within each kind; inputs that cannot be read or documents the recipe rejects are appended
    to ``rejected``.
    """
    clean = [p for p in inputs if is_clean_output(p)]
    raw = [p for p in inputs if p not in clean]
    docs = list(iter_documents(clean, rejected)) if clean else []
    if raw:
        raw_docs = iter_documents(raw, rejected)
        if recipe is not None and recipe != NO_RECIPE:
            recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
            raw_docs = govern(raw_docs, recipe, rejected)
        docs += list(raw_docs)
    return docs


def govern(documents: Iterable[dict], recipe: Recipe, rejected: list[Unreadable] | None = None) -> Iterator[dict]:
    """Each document ``{"id","text","source","meta"}`` after the recipe's per-document steps; a document the
    recipe leaves nothing of is appended to ``rejected`` with the step and reason."""
    for doc in documents:
        unit = Unit(doc["source"], 0, doc["source"], record={"text": doc["text"], "meta": dict(doc.get("meta") or {})})
        outcome = process_unit(unit, recipe)
        if outcome.text is None:
            if rejected is not None:
                why = outcome.reject_reason or "rejected"
                rejected.append(Unreadable(doc["source"], f"rejected by the clean recipe '{recipe.name}' at "
                                                          f"{outcome.reject_stage}: {why}"))
            continue
        meta = {**outcome.meta, "recipe": recipe.name}
        meta.pop("format", None)  # process_unit's guess from the source name, not the file's format
        if meta.get("title") == title_of(doc["text"]):  # a title taken from the raw text: take it again
            meta["title"] = title_of(outcome.text)
        yield {**doc, "text": outcome.text, "meta": meta}
