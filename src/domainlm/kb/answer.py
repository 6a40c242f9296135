"""Grounded answers from a knowledge base: retrieve, read, cite, check, or refuse.

Without a model an extractive reader picks the sentences of the retrieved chunks that cover the
question's terms best and stitches them with numbered citations. With a model (any spec), the model is
asked for a cited answer and every sentence it writes is checked against the chunks it cites; sentences
the chunks do not support are dropped, and when nothing supported is left the answer is a refusal in the
question's language.

The support score is lexical and written by hand (no NLI model ships with the core install): the
idf-weighted share of a claim's terms found in the evidence, and zero when the claim states a number
the evidence does not contain (numbers are where small models hallucinate most).

Definition questions ("什么是X？", "X是什么？", "What is X?") are answered with the sentence that defines
X ("X是…", "X指…", "X（…）是…", "X（…），…", "X is a …"), not with whichever sentence repeats X most densely
(a heading "X" alone, or the question itself in an FAQ).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from pydantic import BaseModel, Field

from domainlm.errors import DomainlmError
from domainlm.kb.search import Hit, KnowledgeBase
from domainlm.kb.text import language, normalize, split_sentences
from domainlm.models import load_model
from domainlm.prompts import REFUSAL

_CITE = re.compile(r"\s*[\[［【](\d{1,2})[\]］】]")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*%?")

# Definition questions, matched on the normalised question without its final punctuation; ``x`` is the
# term asked about. Written by hand: no kept library classifies Chinese question forms.
_DEFINITION_QUESTIONS = [
    re.compile(p)
    for p in (
        r"^(?:请问)?[，,]?\s*(?:什么|啥)(?:叫做|是|叫)(?P<x>.+)$",  # 什么是X / 什么叫X
        r"^(?:请问)?[，,]?\s*何(?:为|谓)(?P<x>.+)$",  # 何为X / 何谓X
        # X是什么 / X是谁 / X指什么 / X是什么意思 / X的定义是什么 / X的含义是什么
        r"^(?:请问)?[，,]?\s*(?P<x>.+?)(?:的(?:定义|含义|意思))?(?:是|指|是指|指的是)(?:什么|啥|谁|何物)(?:意思|东西)?$",
        r"^(?:what|who)(?:'s|\s+(?:is|are|was|were))\s+(?:an?\s+|the\s+)?(?P<x>.+)$",  # What is (a) X
        r"^what\s+does\s+(?:an?\s+|the\s+)?(?P<x>.+?)\s+(?:mean|stand\s+for|refer\s+to)$",
        r"^what\s+is\s+meant\s+by\s+(?:an?\s+|the\s+)?(?P<x>.+)$",
        r"^define\s+(?:an?\s+|the\s+)?(?P<x>.+)$",
    )
]
# What may stand between X and its definition: a closing quote, a gloss in brackets ("X（英语：…）"),
# alias clauses ("X，又称Y，"), then a copula. Each copula must be a whole word of the sentence (jieba),
# so "X指挥部…", "X是否…" and "X即将…" are not definitions.
_LEAD_MARKS = re.compile(r"^[\s#>*\-•·]*[《「『“\"']?")
_CLOSE_QUOTE = re.compile(r"^[》」』”\"']")
_GLOSS = re.compile(r"^\s*[（(][^（）()]*[）)]")
_ALIAS = re.compile(r"^[，,]\s*(?:又称|亦称|又名|简称|全称|俗称|旧称|别称|原名|英文名)[^，,。；;]*")
_COPULAS_ZH = ("是", "即", "乃", "指", "是指", "系指", "意指", "意为", "泛指", "特指", "就是", "即是", "乃是", "便是", "指的是")
_COPULA_EN = re.compile(r"^(?:\s*,[^,]{1,80},)?\s*(?:is|are|was|were|refers\s+to|means|denotes|stands\s+for)\b")


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
    echo: bool = False  # a question, or nothing but the question's own terms: it cannot answer
    defines: int = 0  # definition questions: 2 defines the term, 1 has the term as its subject, 0 neither


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


def definition_term(question: str) -> str | None:
    """The term a definition question asks about ("什么是X？", "X是什么？", "What is X?"), normalised; None
    for any other question."""
    text = normalize(question).strip().rstrip("?？!！.。 ")
    for pattern in _DEFINITION_QUESTIONS:
        match = pattern.match(text)
        if match:
            term = match.group("x").strip().strip("《》「」『』“”\"' ")
            return term or None
    return None


def _is_statement(sentence: str) -> bool:
    """Ends like a statement (full stop, exclamation, semicolon, ellipsis; closing quotes allowed), not
    like a heading, a table cell or a fragment."""
    return sentence.rstrip().rstrip("”’\"'」』").endswith(("。", ".", "!", "！", ";", "；", "…"))


def _words_end(tokenizer, text: str) -> set[int]:
    """Offsets where a jieba word of ``text`` ends (precise mode, HMM off, like the index)."""
    ends, pos = set(), 0
    for word in tokenizer.words(text):  # the KB's own dictionary, with its domain terms
        pos += len(word)
        ends.add(pos)
    return ends


def defines(tokenizer, sentence: str, term: str) -> int:
    """2 when ``sentence`` defines ``term`` ("X是…", "X指…", "X（…）是…", "X（…），…", "X，又称Y，是…",
    "X is a …"), 1 when it is a statement with ``term`` as its subject ("X位于…"), else 0.

    Hand-written: the shapes are how definitions open in encyclopedias, glossaries and regulations, and
    no kept library recognises them. A question ("X是什么？") never defines anything.
    """
    text = _LEAD_MARKS.sub("", normalize(sentence).strip(), count=1)
    if not term or text.endswith(("?", "？")):
        return 0
    english = language(text) == "en"  # the sentence's language decides: "Stam1na是…" is Chinese
    if english:
        text = re.sub(r"^(?:an?|the)\s+", "", text)
        if not re.match(re.escape(term) + r"(?![a-z0-9])", text):
            return 0
    elif not text.startswith(term) or len(term) not in _words_end(tokenizer, text[: len(term) + 12]):
        return 0  # not X, or X is the head of a longer word ("铁路" in "铁路局…")
    rest = _CLOSE_QUOTE.sub("", text[len(term):], count=1)
    glossed = _GLOSS.match(rest)
    if glossed:
        rest = rest[glossed.end():]
    while alias := _ALIAS.match(rest):
        rest = rest[alias.end():]
    if english:
        if _COPULA_EN.match(rest):
            return 2
    elif glossed and len(rest.strip(" ，,。.")) >= 2:
        return 2  # "X（英语：…），中国足球运动员": a gloss in brackets after X is where a term is introduced
    else:
        body = rest.lstrip("，, ")
        ends = _words_end(tokenizer, body[:12])
        if any(body.startswith(c) and len(c) in ends for c in _COPULAS_ZH):
            return 2
    # Subject only: a complete statement (not a heading or a fragment) that opens with X.
    if len(rest.strip(" ，,。.")) >= 2 and _is_statement(text):
        return 1
    return 0


def _context(hit: Hit) -> str:
    return " / ".join(h for h in [hit.title, *hit.headings] if h)


def _candidates(
    kb: KnowledgeBase, question: str, hits: list[Hit], rare_share: float = 0.2, term: str | None = None
) -> list[_Candidate]:
    """The retrieved sentences that share a term with the question, best first. ``term``: the subject of
    a definition question; its terms stand for the question's, and sentences defining it come first."""
    q_tokens = set(kb.tokenizer.tokens(term or question))
    idf = kb.idf(sorted(q_tokens))
    total = sum(idf.values()) or 1.0
    # Rare terms (in at most ``rare_share`` of the chunks) are what a question is specifically about: a
    # product name, an attribute. A sentence that misses one answers a different question.
    limit = max(1, int(rare_share * len(kb)))
    rare = {t for t in q_tokens if len(t) >= 2 and kb.doc_freq(t) <= limit}
    phrases = kb.tokenizer.unknown_runs(term or question)
    out = []
    for hit in hits:
        context_tokens = set(kb.tokenizer.tokens(_context(hit)))
        for s, e in split_sentences(hit.text):
            sentence = hit.text[s:e]
            tokens = set(kb.tokenizer.tokens(sentence))
            own = tokens & q_tokens
            if not own:
                continue  # a sentence that shares nothing with the question does not answer it
            covered = own | (context_tokens & q_tokens)
            relevance = sum(idf[t] for t in covered) / total
            seen_text = normalize(f"{_context(hit)}\n{sentence}")
            missing = sorted(rare - covered) + [p for p in phrases if p not in seen_text]
            density = len(own) / max(1, len(tokens))
            # A question (an FAQ's), or a heading made of the question's own words, says nothing new. A
            # statement of only the question's words stays: it confirms a yes/no question.
            echo = sentence.rstrip().endswith(("?", "？")) or (tokens <= q_tokens and not _is_statement(sentence))
            tier = defines(kb.tokenizer, sentence, term) if term else 0
            out.append(_Candidate(hit, sentence, hit.start + s, hit.start + e, relevance, missing, density, echo, tier))
    out.sort(key=_order)
    return out


def _order(c: _Candidate) -> tuple:
    """Complete sentences first, then ones that say something beyond the question, then (definition
    questions) the defining sentence, then best coverage and the focused sentence; among equals the
    better-ranked chunk, then document order. A defining sentence is not judged by density: the first
    definition of the best chunk wins, not the shortest sentence naming the term."""
    density = 0.0 if c.defines else -c.density
    return (bool(c.missing), c.echo, -c.defines, -round(c.relevance, 6), density, c.hit.rank, c.start)


def rerank(kb: KnowledgeBase, question: str, hits: list[Hit]) -> list[Hit]:
    """Re-order hits by how well their best sentence (with its headings) covers the question: chunks
    with a sentence naming every rare question term first, then by that sentence's idf-weighted
    coverage, then by the first-stage rank. Lexical and cheap (no model), so it runs on every query."""
    best: dict[str, tuple] = {}
    for cand in _candidates(kb, question, hits):
        key = (bool(cand.missing), -round(cand.relevance, 6))
        best[cand.hit.chunk_id] = min(key, best.get(cand.hit.chunk_id, key))
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
    # tokenisation leftovers. A definition question is about its term alone: "定义", "意思", "mean" are
    # the question's frame, not words a passage must contain.
    term = definition_term(question)
    asked = term or question
    unknown = [t for t in dict.fromkeys(kb.tokenizer.tokens(asked)) if len(t) >= 2 and not kb.doc_freq(t)]
    if unknown and len(kb):
        shown = ", ".join(f"'{t}'" for t in unknown[:5])
        return _refuse(question, lang, f"unknown_terms: the knowledge base never mentions {shown}", kind)
    hits = kb.search(asked, k=k, mode=mode) if len(kb) else []
    candidates = _candidates(kb, question, hits, term=term)
    if not candidates:
        return _refuse(question, lang, "no_match: no retrieved passage shares a term with the question", kind)
    confidence = candidates[0].relevance
    if candidates[0].missing:
        shown = ", ".join(f"'{t}'" for t in candidates[0].missing[:5])
        return _refuse(question, lang, f"low_confidence: no retrieved passage mentions {shown}", kind, confidence)
    if candidates[0].echo:
        return _refuse(question, lang, "no_answer: the retrieved passages only repeat the question's words", kind, confidence)
    if confidence < min_relevance:
        return _refuse(
            question, lang, f"low_confidence: the best passage covers {confidence:.2f} of the question (< {min_relevance})",
            kind, confidence,
        )
    if model is None:
        # A definition is one sentence: a second one picked by shared terms is about something else.
        return _extractive(question, lang, candidates, confidence, 1 if candidates[0].defines else max_sentences)
    if isinstance(model, str):
        model = load_model(model)
    return _generative(kb, question, lang, hits, model, confidence, min_support, max_new_tokens)


def _extractive(question: str, lang: str, candidates: list[_Candidate], confidence: float, max_sentences: int) -> Answer:
    chosen: list[_Candidate] = []
    for cand in candidates:
        # Near the best only: a second sentence is added when it is (almost) as relevant, e.g. the rate
        # and its condition stated in two sentences.
        if cand.missing or cand.echo or cand.relevance < confidence - 0.15 or len(chosen) >= max_sentences:
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
