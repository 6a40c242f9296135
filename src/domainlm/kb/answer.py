"""Grounded answers from a knowledge base: retrieve, read, cite, check, or refuse.

Without a model an extractive reader picks the sentences of the retrieved chunks that cover the
question's terms best and stitches them with numbered citations. With a model (any spec), the model is
asked for a cited answer and every sentence it writes is checked against the chunks it cites; sentences
the chunks do not support are dropped, and when nothing supported is left the answer is a refusal in the
question's language.

The support score is lexical and written by hand (no NLI model ships with the core install): the
idf-weighted share of a claim's terms found in the evidence, and zero when the claim states a number
the evidence does not contain (numbers are where small models hallucinate most).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from pydantic import BaseModel, Field

from domainlm.errors import DomainlmError
from domainlm.kb.index import Hit, KnowledgeBase
from domainlm.kb.text import language, normalize, split_sentences
from domainlm.prompts import REFUSAL

_CITE = re.compile(r"\s*[\[［【](\d{1,2})[\]］】]")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*%?")


class Citation(BaseModel):
    n: int = Field(description="The number used in the answer text, [n].")
    chunk_id: str
    doc_id: str
    source: str
    title: str = ""
    start: int
    end: int
    text: str


class SentenceSupport(BaseModel):
    text: str
    citations: list[int]
    support: float = Field(description="How well the cited chunks support the sentence, 0..1.")
    relevance: float | None = Field(None, description="Share of the question's terms the sentence covers (extractive).")
    kept: bool = True


class Answer(BaseModel):
    question: str
    answer: str
    refused: bool
    reason: str | None = None
    language: str
    mode: str = Field(description="extractive | model")
    confidence: float = Field(description="Best question coverage among the retrieved sentences, 0..1.")
    citations: list[Citation] = Field(default_factory=list)
    sentences: list[SentenceSupport] = Field(default_factory=list)


@dataclass
class _Candidate:
    hit: Hit
    text: str
    start: int  # offsets in the document
    end: int
    relevance: float
    missing: list[str]  # rare question terms neither the sentence nor its headings mention
    density: float  # share of the sentence's terms that are question terms (prefers the focused sentence)


def _numbers(text: str) -> set[str]:
    return {m.group(0).replace(",", "") for m in _NUMBER.finditer(normalize(text))}


def support(kb: KnowledgeBase, claim: str, evidence: str) -> float:
    """idf-weighted share of the claim's terms present in the evidence; 0 if a number is unsupported."""
    claim_tokens = set(kb.tokenizer.tokens(claim))
    if not claim_tokens:
        return 0.0
    if not _numbers(claim) <= _numbers(evidence):
        return 0.0
    evidence_tokens = set(kb.tokenizer.tokens(evidence))
    idf = kb.idf(sorted(claim_tokens))
    total = sum(idf.values())
    return sum(w for t, w in idf.items() if t in evidence_tokens) / total if total else 0.0


def _context(hit: Hit) -> str:
    return " / ".join(h for h in [hit.title, *hit.headings] if h)


def _candidates(kb: KnowledgeBase, question: str, hits: list[Hit], rare_share: float = 0.2) -> list[_Candidate]:
    q_tokens = set(kb.tokenizer.tokens(question))
    idf = kb.idf(sorted(q_tokens))
    total = sum(idf.values()) or 1.0
    # Rare terms (in at most ``rare_share`` of the chunks) are what a question is specifically about: a
    # product name, an attribute. A sentence that misses one answers a different question.
    limit = max(1, int(rare_share * len(kb)))
    rare = {t for t in q_tokens if len(t) >= 2 and kb.doc_freq(t) <= limit}
    phrases = kb.tokenizer.unknown_runs(question)
    out = []
    for hit in hits:
        context_tokens = set(kb.tokenizer.tokens(_context(hit)))
        for s, e in split_sentences(hit.text):
            sentence = hit.text[s:e]
            own = set(kb.tokenizer.tokens(sentence)) & q_tokens
            if not own:
                continue  # a sentence that shares nothing with the question does not answer it
            covered = own | (context_tokens & q_tokens)
            relevance = sum(idf[t] for t in covered) / total
            seen_text = normalize(f"{_context(hit)}\n{sentence}")
            missing = sorted(rare - covered) + [p for p in phrases if p not in seen_text]
            density = len(own) / max(1, len(kb.tokenizer.tokens(sentence)))
            out.append(_Candidate(hit, sentence, hit.start + s, hit.start + e, relevance, missing, density))
    # Complete sentences first, then best coverage; among equals the better-ranked chunk, then order.
    out.sort(key=lambda c: (bool(c.missing), -round(c.relevance, 6), -c.density, c.hit.rank, c.start))
    return out


def rerank(kb: KnowledgeBase, question: str, hits: list[Hit]) -> list[Hit]:
    """Re-order hits by how well their best sentence (with its headings) covers the question: chunks
    with a sentence naming every rare question term first, then by that sentence's idf-weighted
    coverage, then by the first-stage rank. Lexical and cheap (no model), so it runs on every query."""
    best: dict[str, tuple] = {}
    for cand in _candidates(kb, question, hits):  # sorted best first: the first per chunk is its best
        best.setdefault(cand.hit.chunk_id, (bool(cand.missing), -round(cand.relevance, 6)))
    ordered = sorted(hits, key=lambda h: (*best.get(h.chunk_id, (True, 0.0)), h.rank))
    return [replace(h, rank=i) for i, h in enumerate(ordered, start=1)]


def _refuse(question: str, lang: str, reason: str, mode: str, confidence: float = 0.0, sentences=()) -> Answer:
    return Answer(
        question=question, answer=REFUSAL[lang], refused=True, reason=reason, language=lang, mode=mode,
        confidence=round(confidence, 4), sentences=list(sentences),
    )


def _citation(n: int, hit: Hit) -> Citation:
    return Citation(n=n, chunk_id=hit.chunk_id, doc_id=hit.doc_id, source=hit.source, title=hit.title,
                    start=hit.start, end=hit.end, text=hit.text)


def _joiner(lang: str) -> str:
    return "" if lang == "zh" else " "


def answer(
    kb: KnowledgeBase,
    question: str,
    model=None,
    *,
    k: int = 5,
    mode: str = "hybrid",
    min_relevance: float = 0.75,
    min_support: float = 0.6,
    max_sentences: int = 2,
    max_new_tokens: int = 256,
) -> Answer:
    """Answer ``question`` from ``kb``; ``model`` is None (extractive) or a loaded model / model spec."""
    if not isinstance(question, str) or not question.strip():
        raise DomainlmError("empty question")
    lang = language(question)
    kind = "extractive" if model is None else "model"
    if len(question) > kb.config.max_query_chars:
        return _refuse(question, lang, f"question_too_long ({len(question)} > {kb.config.max_query_chars} characters)", kind)
    # A name or term of two or more characters that no chunk contains means the question is about
    # something the knowledge base does not know (a product it does not sell): refuse rather than answer
    # about the nearest neighbour. Single characters are left to the coverage score: they are often
    # tokenisation leftovers.
    unknown = [t for t in dict.fromkeys(kb.tokenizer.tokens(question)) if len(t) >= 2 and not kb.doc_freq(t)]
    if unknown and len(kb):
        shown = ", ".join(f"'{t}'" for t in unknown[:5])
        return _refuse(question, lang, f"unknown_terms: the knowledge base never mentions {shown}", kind)
    hits = kb.search(question, k=k, mode=mode) if len(kb) else []
    candidates = _candidates(kb, question, hits)
    if not candidates:
        return _refuse(question, lang, "no_match: no retrieved passage shares a term with the question", kind)
    confidence = candidates[0].relevance
    if candidates[0].missing:
        shown = ", ".join(f"'{t}'" for t in candidates[0].missing[:5])
        return _refuse(question, lang, f"low_confidence: no retrieved passage mentions {shown}", kind, confidence)
    if confidence < min_relevance:
        return _refuse(
            question, lang, f"low_confidence: the best passage covers {confidence:.2f} of the question (< {min_relevance})",
            kind, confidence,
        )
    if model is None:
        return _extractive(question, lang, candidates, confidence, max_sentences)
    if isinstance(model, str):
        from domainlm.models import load_model

        model = load_model(model)
    return _generative(kb, question, lang, hits, model, confidence, min_support, max_new_tokens)


def _extractive(question: str, lang: str, candidates: list[_Candidate], confidence: float, max_sentences: int) -> Answer:
    chosen: list[_Candidate] = []
    for cand in candidates:
        # Near the best only: a second sentence is added when it is (almost) as relevant, e.g. the rate
        # and its condition stated in two sentences.
        if cand.missing or cand.relevance < confidence - 0.15 or len(chosen) >= max_sentences:
            break
        if any(cand.text == c.text for c in chosen):
            continue
        chosen.append(cand)
    numbers: dict[str, int] = {}
    citations: list[Citation] = []
    sentences: list[SentenceSupport] = []
    parts = []
    for cand in chosen:
        if cand.hit.chunk_id not in numbers:
            numbers[cand.hit.chunk_id] = len(numbers) + 1
            citations.append(_citation(numbers[cand.hit.chunk_id], cand.hit))
        n = numbers[cand.hit.chunk_id]
        parts.append(f"{cand.text}[{n}]")
        # Verbatim sentences of the cited chunk: fully supported by construction.
        sentences.append(SentenceSupport(text=cand.text, citations=[n], support=1.0, relevance=round(cand.relevance, 4)))
    return Answer(
        question=question, answer=_joiner(lang).join(parts), refused=False, language=lang, mode="extractive",
        confidence=round(confidence, 4), citations=citations, sentences=sentences,
    )


def build_prompt(question: str, hits: list[Hit], lang: str) -> list[dict]:
    """Chat messages asking for an answer from numbered passages, with [n] citations."""
    passages = "\n\n".join(f"[{i}] {_context(h)}\n{h.text}" for i, h in enumerate(hits, start=1))
    if lang == "zh":
        system = (
            "你是银行等行业机构的知识库助手。只能根据下面编号的资料回答，每句话后用[编号]注明出处。"
            f"如果资料中没有答案，只回答：{REFUSAL['zh']}"
        )
        user = f"资料：\n{passages}\n\n问题：{question}"
    else:
        system = (
            "You answer from the numbered passages only, citing each sentence with its passage number like [1]. "
            f"If the passages do not contain the answer, reply exactly: {REFUSAL['en']}"
        )
        user = f"Passages:\n{passages}\n\nQuestion: {question}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _generative(kb, question, lang, hits, model, confidence, min_support, max_new_tokens) -> Answer:
    output = model.chat([build_prompt(question, hits, lang)], max_new_tokens=max_new_tokens, temperature=0.0)[0]
    text = (output or "").strip()
    if not text or REFUSAL[lang] in text or REFUSAL["zh" if lang == "en" else "en"] in text:
        return _refuse(question, lang, "model_refused: the model found no answer in the passages", "model", confidence)
    by_number = {i: h for i, h in enumerate(hits, start=1)}
    sentences: list[SentenceSupport] = []
    kept: list[tuple[str, list[Hit]]] = []
    for s, e in split_sentences(text):
        raw = text[s:e]
        cited = [int(n) for n in _CITE.findall(raw) if int(n) in by_number]
        claim = _CITE.sub("", raw).strip()
        if not claim:
            continue
        # An uncited sentence is checked against every retrieved chunk and credited to the best one.
        pool = [by_number[n] for n in dict.fromkeys(cited)] or hits
        scored = [(support(kb, claim, f"{_context(h)}\n{h.text}"), h) for h in pool]
        best = max(score for score, _ in scored)
        sources = [h for score, h in scored if score == best] if not cited else [h for _, h in scored]
        ok = best >= min_support
        sentences.append(SentenceSupport(text=claim, citations=[], support=round(best, 4), kept=ok))
        if ok:
            kept.append((claim, sources[:1] if not cited else sources))
    if not kept:
        return _refuse(question, lang, "unsupported: no sentence of the model's answer is supported by the cited passages",
                       "model", confidence, sentences)
    numbers: dict[str, int] = {}
    citations: list[Citation] = []
    parts = []
    kept_iter = iter(kept)
    for sentence in sentences:
        if not sentence.kept:
            continue
        claim, sources = next(kept_iter)
        for h in sources:
            if h.chunk_id not in numbers:
                numbers[h.chunk_id] = len(numbers) + 1
                citations.append(_citation(numbers[h.chunk_id], h))
        sentence.citations = [numbers[h.chunk_id] for h in sources]
        parts.append(claim + "".join(f"[{n}]" for n in sentence.citations))
    return Answer(
        question=question, answer=_joiner(lang).join(parts), refused=False,
        reason=None if all(s.kept for s in sentences) else "dropped_unsupported_sentences",
        language=lang, mode="model", confidence=round(confidence, 4), citations=citations, sentences=sentences,
    )
