"""Chat with one long file: summary (map-reduce with a model, extractive without) and QA over an
ephemeral knowledge base of that file alone."""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, Field

from domainlm.kb.chunking import chunk_document
from domainlm.kb.text import Tokenizer, language, split_sentences


class Summary(BaseModel):
    file: str
    summary: str
    mode: str = Field(description="extractive | model")
    language: str
    sentences: list[dict] = Field(default_factory=list, description="Extractive: {text, start, end, score}.")
    sections: int = Field(0, description="How many parts the map step read.")


def read_document(path: str | Path) -> dict:
    from domainlm.kb.sources import _title, read_file

    path = Path(path)
    if not path.is_file():
        from domainlm.errors import DomainlmError

        raise DomainlmError(f"{path}: no such file")
    text = read_file(path)
    return {"id": path.stem, "text": text, "source": str(path), "meta": {"title": _title(text)}}


def extractive_summary(text: str, *, max_sentences: int = 8, section_chars: int = 3000, tokenizer: Tokenizer | None = None) -> list[dict]:
    """Centroid summary, map-reduce shaped: each section proposes its two most central sentences (map),
    then the proposals most central to the whole document are kept, in document order (reduce).

    Written by hand (TF-IDF centroid, Radev et al. 2004) because it is a dozen lines with numpy-free
    dict arithmetic and scales linearly, unlike graph methods on a hundreds-of-pages document.
    """
    tokenizer = tokenizer or Tokenizer()
    sentences = []
    for s, e in split_sentences(text):
        tokens = tokenizer.tokens(text[s:e])
        # Headings, table rows and fragments (no closing punctuation) are not summary sentences.
        if len(tokens) >= 3 and text[e - 1] in "。！？!?.;；”\"）)":
            sentences.append({"start": s, "end": e, "text": text[s:e], "tf": Counter(tokens)})
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


def summarize_file(path: str | Path, model=None, *, max_sentences: int = 8, window_chars: int = 3000) -> Summary:
    doc = read_document(path)
    lang = language(doc["text"])
    if model is None:
        picked = extractive_summary(doc["text"], max_sentences=max_sentences, section_chars=window_chars)
        sep = "" if lang == "zh" else " "
        return Summary(file=str(path), summary=sep.join(s["text"] for s in picked), mode="extractive", language=lang,
                       sentences=picked, sections=len(chunk_document("doc", doc["text"], chunk_chars=window_chars)))
    if isinstance(model, str):
        from domainlm.models import load_model

        model = load_model(model)
    text, sections = model_summary(doc["text"], model, window_chars=window_chars)
    return Summary(file=str(path), summary=text, mode="model", language=lang, sections=sections)


def ask_file(path: str | Path, question: str, model=None, *, embedder: str = "none", chunk_chars: int = 400, k: int = 5):
    """Answer a question from one file through a temporary knowledge base of that file."""
    from domainlm.kb.answer import answer
    from domainlm.kb.index import KBConfig, build_kb, open_kb

    doc = read_document(path)
    with tempfile.TemporaryDirectory(prefix="domainlm-chatfile-") as tmp:
        build_kb([doc], tmp, KBConfig(chunk_chars=chunk_chars, embedder=embedder))
        kb = open_kb(tmp)
        return answer(kb, question, model, k=k, mode="hybrid")
