"""Chat with one long file: summary (map-reduce with a model, extractive without) and QA over an
ephemeral knowledge base of that file alone.

The file goes through the same clean recipe as ``domainlm clean`` (mojibake, pinyin annotations,
traditional→simplified, boilerplate, PII redaction, language and quality filters) before anything reads
it: a user's file is as messy as a corpus, and what chatfile quotes back must be what ``clean`` → ``kb
build`` would have indexed. A JSONL or CSV file is read the way ``clean`` reads one: each record's text
field is a document.

A structured summary of a court judgment or meeting minutes, every item cited to its span of the text read
here, is :mod:`domainlm.kb.structured_summary` (``chatfile --summary --structure court|meeting``).
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, Field

from domainlm.data import Recipe, Unit, iter_units, load_recipe, process_unit
from domainlm.errors import DomainlmError
from domainlm.kb.answer import answer
from domainlm.kb.chunking import chunk_document
from domainlm.kb.config import KBConfig
from domainlm.kb.search import open_kb
from domainlm.kb.sources import RAW_SUFFIXES, read_file, title_of
from domainlm.kb.store import build_kb
from domainlm.kb.text import Tokenizer, language, split_sentences
from domainlm.models import load_model

DEFAULT_RECIPE = "default-zh"
RECORD_SUFFIXES = {".jsonl", ".csv"}
_SENTENCE_END = "。！？!?.;；”\"）)"


class Summary(BaseModel):
    file: str
    summary: str
    mode: str = Field(description="extractive | model")
    language: str
    sentences: list[dict] = Field(default_factory=list, description="Extractive: {text, start, end, score}.")
    sections: int = Field(0, description="How many parts the map step read.")
    documents: int = Field(1, description="Documents read: 1 for a file, the kept records of a JSONL/CSV file.")
    skipped: list[dict] = Field(default_factory=list, description="Records the recipe rejected: {source, reason}.")


def read_documents(
    path: str | Path, recipe=DEFAULT_RECIPE, *, text_field: str = "text", skipped: list[dict] | None = None
) -> list[dict]:
    """The documents of one file after the clean recipe (a name, a YAML path or a loaded Recipe).

    One document for a .txt/.md/.html/.pdf/.docx file; one per record for .jsonl/.csv (``text_field``
    names the text). A record the recipe rejects is appended to ``skipped`` as ``{source, reason}``.
    Raises a one-line DomainlmError naming the file when nothing is left to read.
    """
    path = Path(path)
    if not path.is_file():
        raise DomainlmError(f"{path}: no such file")
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    suffix = path.suffix.lower()
    if suffix in RECORD_SUFFIXES:
        units = list(iter_units([path], text_field))
    elif suffix in RAW_SUFFIXES:
        # The knowledge base's reader, not clean's: it keeps .docx headings and tables in place, which
        # the chunker needs for --ask. The text then runs through the recipe as one record.
        units = [Unit(path.name, 0, str(path), record={text_field: read_file(path)})]
    else:
        known = ", ".join(sorted(RAW_SUFFIXES | RECORD_SUFFIXES))
        raise DomainlmError(f"{path}: unsupported file type '{suffix or path.name}' (use one of {known})")
    docs, rejected = [], []
    for unit in units:
        outcome = process_unit(unit, recipe, text_field)
        if outcome.text is None:
            rejected.append((unit.position, _reason(outcome, unit.position, recipe.name)))
            continue
        if suffix in RECORD_SUFFIXES:
            doc_id = str(outcome.meta.get("orig_id") or f"{path.stem}-{unit.position}")
            if any(d["id"] == doc_id for d in docs):  # the index keeps one document per id: keep every record
                doc_id = f"{doc_id}-{unit.position}"
            source = f"{path}:{unit.position}"
        else:
            doc_id, source = path.stem, str(path)
        docs.append({"id": doc_id, "text": outcome.text, "source": source, "meta": {"title": title_of(outcome.text)}})
    if suffix in RECORD_SUFFIXES and skipped is not None:
        skipped += [{"source": f"{path}:{position}", "reason": reason} for position, reason in rejected]
    if docs:
        return docs
    if suffix not in RECORD_SUFFIXES:
        raise DomainlmError(f"{path}: {rejected[0][1]}")
    if not rejected:
        raise DomainlmError(f"{path}: no records")
    position, reason = rejected[0]
    where = f"line {position}" if suffix == ".jsonl" else f"row {position}"
    raise DomainlmError(f"{path}: none of its {len(rejected)} records is left to read (first, {where}: {reason})")


def _reason(outcome, position: int, recipe: str) -> str:
    """One line: why the recipe left nothing of a document (or a record)."""
    reason = outcome.reject_reason or "rejected"
    # Ingest starts a record's reason with "line N: "; the caller names the record itself.
    reason = reason.removeprefix(f"line {position}: ").removeprefix(f"row {position}: ")
    if outcome.reject_stage == "ingest":
        return reason
    if outcome.reject_stage == "clean" or (outcome.rejected_text is not None and not outcome.rejected_text.strip()):
        # Nothing was left (boilerplate only): say that, not the language or quality verdict on "".
        return f"empty after cleaning (recipe '{recipe}')"
    return f"rejected by the clean recipe '{recipe}' at {outcome.reject_stage}: {reason}"


def extractive_summary(text: str, *, max_sentences: int = 8, section_chars: int = 3000, tokenizer: Tokenizer | None = None) -> list[dict]:
    """Centroid summary, map-reduce shaped: each section proposes its two most central sentences (map),
    then the proposals most central to the whole document are kept, in document order (reduce).

    Written by hand (TF-IDF centroid, Radev et al. 2004) because it is a dozen lines with numpy-free
    dict arithmetic and scales linearly, unlike graph methods on a hundreds-of-pages document.
    """
    tokenizer = tokenizer or Tokenizer()
    spans = split_sentences(text)
    tokens = {(s, e): tokenizer.tokens(text[s:e]) for s, e in spans}
    # Headings, table rows and fragments (no closing punctuation) are not summary sentences, unless the
    # text has nothing else: a one-line note without a full stop, "你好。", a list. A short text is then
    # its own summary, never an empty one.
    picked = [(s, e) for s, e in spans if len(tokens[s, e]) >= 3 and text[e - 1] in _SENTENCE_END]
    picked = picked or [(s, e) for s, e in spans if tokens[s, e]] or spans
    sentences = [{"start": s, "end": e, "text": text[s:e], "tf": Counter(tokens[s, e])} for s, e in picked]
    if not sentences:
        return []
    df = Counter(t for sent in sentences for t in sent["tf"])
    n = len(sentences)
    for sent in sentences:
        vec = {t: c * math.log(1 + n / df[t]) for t, c in sent["tf"].items()}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        sent["vec"] = {t: v / norm for t, v in vec.items()}

    def centroid(group):
        total: Counter = Counter()
        for sent in group:
            total.update(sent["vec"])
        norm = math.sqrt(sum(v * v for v in total.values())) or 1.0
        return {t: v / norm for t, v in total.items()}

    def cos(a, b):
        return sum(v * b.get(t, 0.0) for t, v in a.items())

    sections = [
        [s for s in sentences if c.start <= s["start"] < c.end]
        for c in chunk_document("doc", text, chunk_chars=section_chars)
    ]
    proposals = []
    for group in sections:
        if group:
            center = centroid(group)
            proposals += sorted(group, key=lambda s: -cos(s["vec"], center))[:2]
    whole = centroid(sentences)
    chosen = []
    for sent in sorted(proposals, key=lambda s: (-cos(s["vec"], whole), s["start"])):
        if any(cos(sent["vec"], c["vec"]) > 0.7 for c in chosen):
            continue  # near-repeat of a sentence already chosen
        sent["score"] = round(cos(sent["vec"], whole), 4)
        chosen.append(sent)
        if len(chosen) >= max_sentences:
            break
    return [{k: s[k] for k in ("text", "start", "end", "score")} for s in sorted(chosen, key=lambda s: s["start"])]


def model_summary(text: str, model, *, window_chars: int = 3000, max_new_tokens: int = 256) -> tuple[str, int]:
    """Map-reduce: summarise each window, then summarise the summaries until one fits a window."""
    lang = language(text)
    ask = "用中文概括下面这部分文件的要点：\n\n" if lang == "zh" else "Summarise the key points of this part of a document:\n\n"
    final = "把下面几段摘要合并成一份完整的文件摘要：\n\n" if lang == "zh" else "Merge these partial summaries into one summary of the document:\n\n"
    parts = [c.text for c in chunk_document("doc", text, chunk_chars=window_chars)]
    first_map = len(parts)
    while True:
        prompt = final if len(parts) > 1 else ask
        if len(parts) == 1 or sum(len(p) for p in parts) <= window_chars:
            joined = "\n\n".join(parts)
            out = model.chat([[{"role": "user", "content": prompt + joined}]], max_new_tokens=max_new_tokens)[0]
            return out.strip(), first_map
        summaries = model.chat([[{"role": "user", "content": ask + p}] for p in parts], max_new_tokens=max_new_tokens)
        merged = "\n\n".join(s.strip() for s in summaries if s.strip())
        parts = [c.text for c in chunk_document("doc", merged, chunk_chars=window_chars)] or [merged[:window_chars]]
        if len(parts) >= first_map:  # the model does not shorten: stop growing and keep what fits
            parts = [merged[:window_chars]]


def summarize_file(
    path: str | Path, model=None, *, max_sentences: int = 8, window_chars: int = 3000, recipe=DEFAULT_RECIPE,
    text_field: str = "text",
) -> Summary:
    """Summarise one file, read through the clean recipe. Never returns an empty summary: a file with
    nothing left to read, or a model that answers nothing, is a DomainlmError naming the file."""
    skipped: list[dict] = []
    docs = read_documents(path, recipe, text_field=text_field, skipped=skipped)
    text = "\n\n".join(d["text"] for d in docs)
    lang = language(text)
    common = {"file": str(path), "language": lang, "documents": len(docs), "skipped": skipped}
    if model is None:
        picked = extractive_summary(text, max_sentences=max_sentences, section_chars=window_chars)
        if not picked:
            raise DomainlmError(f"{path}: no sentence to summarise")
        return Summary(summary=_join(picked, lang), mode="extractive", sentences=picked,
                       sections=len(chunk_document("doc", text, chunk_chars=window_chars)), **common)
    if isinstance(model, str):
        model = load_model(model)
    summary, sections = model_summary(text, model, window_chars=window_chars)
    if not summary:
        raise DomainlmError(f"{path}: the model returned an empty summary")
    return Summary(summary=summary, mode="model", sections=sections, **common)


def _join(sentences: list[dict], lang: str) -> str:
    """Sentences as one text; one without closing punctuation (a heading, a list item) ends its line."""
    out = ""
    for i, sent in enumerate(sentences):
        out += sent["text"]
        if i < len(sentences) - 1:
            out += ("" if lang == "zh" else " ") if sent["text"][-1] in _SENTENCE_END else "\n"
    return out


def ask_file(
    path: str | Path, question: str, model=None, *, embedder: str = "none", chunk_chars: int = 400, k: int = 5,
    recipe=DEFAULT_RECIPE, text_field: str = "text", skipped: list[dict] | None = None,
):
    """Answer a question from one file (read through the clean recipe) through a temporary knowledge
    base of that file alone; each record of a JSONL/CSV file is a document of its own, cited by line."""
    docs = read_documents(path, recipe, text_field=text_field, skipped=skipped)
    with tempfile.TemporaryDirectory(prefix="domainlm-chatfile-") as tmp:
        build_kb(docs, tmp, KBConfig(chunk_chars=chunk_chars, embedder=embedder))
        kb = open_kb(tmp)
        return answer(kb, question, model, k=k, mode="hybrid")
