"""Text helpers shared by chunking, indexing and answering: normalisation, language, sentences, tokens.

Chinese-first: traditional characters are folded to simplified (OpenCC), full-width forms to half-width
(NFKC), and words are cut with jieba in search mode so that both a compound ("活期存款") and its parts
("活期", "存款") are tokens; English words pass through jieba as words, lower-cased.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import re
import unicodedata
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# Sentence ends: Chinese full stops always end a sentence; ASCII ones only before a space or line end,
# so "0.35%" and "e.g." inside a line do not split. Written by hand: no library splits mixed zh/en text
# at these boundaries while keeping exact character offsets.
_ABBREV = r"(?<!\bNo)(?<!\bno)(?<!\bMr)(?<!\bMs)(?<!\bDr)(?<!\bSt)(?<!\bRd)(?<!\bvs)(?<!\bMrs)(?<!\bAve)(?<!\b[A-Z])"
# A line break ends a sentence unless it wraps English text mid-sentence (PDF lines: "paid at\nmaturity").
_SENTENCE_END = re.compile(
    r"(?:[。！？!?；;]+[」』”’\"')）]*|" + _ABBREV + r"\.(?=\s|$)[」』”’\"')）]*|(?<![a-z,])\n+|\n+(?![a-z]))"
)
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORDLIKE = re.compile(r"\w", re.UNICODE)

# Function words and question words that carry no topic. Kept small on purpose: BM25's idf already
# discounts common words; these are the ones that would otherwise count as "question terms" when
# judging whether a passage answers a question.
STOPWORDS = frozenset(
    ["的", "了", "是", "在", "和", "与", "及", "或", "吗", "呢", "吧", "啊", "呀", "么", "嘛", "哪", "哪些", "哪个", "哪里", "什么", "多少", "几", "怎么", "怎样", "如何", "为什么", "是否", "有没有", "可以", "能否", "能", "会", "请问", "请", "我", "我们", "你", "你们", "您", "他", "她", "它", "这", "那", "这个", "那个", "之", "其", "对", "于", "为", "被", "把", "从", "到", "向", "也", "都", "就", "还", "又", "并", "而", "但", "所", "以", "等", "个", "一个", "有", "没有", "要", "需要", "给", "让", "时", "时候", "怎么样", "啥", "咋", "该", "应", "应该", "麻烦", "告诉", "了解", "想", "想要", "知道", "关于", "具体", "一下", "问", "问问", "请教", "咨询", "帮", "帮忙", "帮我", "查", "查询", "说", "说明", "介绍", "多久", "多长", "多长时间", "哪天", "哪一天", "何时", "几时", "什么时候", "多大", "多高", "多低", "几天", "几个", "a", "an", "the", "of", "to", "in", "on", "at", "for", "by", "with", "from", "and", "or", "is", "are", "was", "were", "be", "been", "being", "do", "does", "did", "what", "which", "who", "whom", "whose", "how", "why", "when", "where", "whether", "can", "could", "will", "would", "shall", "should", "may", "might", "must", "i", "you", "we", "they", "he", "she", "it", "me", "my", "your", "our", "their", "this", "that", "these", "those", "there", "here", "please", "tell", "about", "any", "some", "if", "than", "then", "as", "into", "has", "have", "had", "not", "no", "its", "it's", "i'm", "im", "m", "s", "let", "give", "show", "find", "out", "know", "like", "want", "looking", "look", "tell", "explain", "apply", "applies", "applied", "detail", "details", "information", "info", "exactly", "just", "also", "much", "many", "long", "often", "soon"]
)


@functools.lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def normalize(text: str) -> str:
    """Fold width (NFKC), case and traditional→simplified, keeping one character per character.

    NFKC can change the length of rare compatibility characters (ligatures, circled numbers); callers
    that need offsets keep the original text and only normalise for matching.
    """
    return _t2s().convert(unicodedata.normalize("NFKC", text).lower())


def language(text: str) -> str:
    """'zh' when CJK characters make up a fair share of the letters, else 'en'."""
    sample = text[:2000]
    cjk = len(_CJK.findall(sample))
    letters = sum(1 for ch in sample if ch.isalpha())
    return "zh" if letters and cjk / letters >= 0.2 else "en"


def split_sentences(text: str, start: int = 0) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences of ``text`` (offsets shifted by ``start``); blanks dropped."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
        _add_span(text, pos, end, start, spans)
        pos = end
    _add_span(text, pos, len(text), start, spans)
    return spans


def _add_span(text: str, a: int, b: int, shift: int, spans: list[tuple[int, int]]) -> None:
    piece = text[a:b]
    stripped = piece.strip()
    if not stripped or not _WORDLIKE.search(stripped):
        return
    a += len(piece) - len(piece.lstrip())
    b -= len(piece) - len(piece.rstrip())
    spans.append((a + shift, b + shift))


@functools.lru_cache(maxsize=1)
def _base_jieba():
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer


class Tokenizer:
    """jieba (search mode) over normalised text, with a domain dictionary of extra terms.

    Each instance owns its own ``jieba.Tokenizer`` so two knowledge bases with different dictionaries
    can live in one process.
    """

    def __init__(self, terms: list[str] = ()):  # type: ignore[assignment]
        import jieba

        base = _base_jieba()
        # Copy the loaded dictionary instead of loading it again (a dict copy is ~30x faster).
        self._jieba = jieba.Tokenizer()
        self._jieba.FREQ, self._jieba.total = dict(base.FREQ), base.total
        self._jieba.initialized = True
        self.terms: list[str] = []
        self.add_terms(terms)

    def add_terms(self, terms) -> None:
        for term in terms:
            term = normalize(term.strip())
            if term and " " not in term:
                # A high frequency makes jieba prefer the whole term over its parts; search mode still
                # emits the parts, so queries written either way match.
                self._jieba.add_word(term, freq=max(1000, self._jieba.suggest_freq(term)))
                self.terms.append(term)

    def tokens(self, text: str) -> list[str]:
        """Index/query tokens: normalised jieba search-mode words minus stopwords and punctuation."""
        out = []
        # HMM off: jieba's HMM invents "words" from unknown neighbours ("费是", "期是") that differ
        # between a question and the document; without it unknown runs fall apart into characters.
        for token in self._jieba.cut_for_search(normalize(text), HMM=False):
            token = token.strip()
            if token and token not in STOPWORDS and _WORDLIKE.search(token):
                out.append(token)
        return out

    def words(self, text: str) -> list[str]:
        """jieba's precise-mode words of ``text`` as given (no normalisation, HMM off like :meth:`tokens`),
        so their lengths add up to ``len(text)``: for finding where words end."""
        return list(self._jieba.cut(text, HMM=False))

    def known_words(self) -> set[str]:
        """Every word of the dictionary (jieba's base one plus added terms). jieba also stores each word's
        prefixes with frequency 0; those are not words and are left out."""
        return {word for word, freq in self._jieba.FREQ.items() if freq}

    def unknown_runs(self, text: str) -> list[str]:
        """Runs of two or more Chinese characters that jieba cannot group into words ("智选" in
        "海港智选货币基金" when the dictionary lacks the name): usually names, and as such exactly what a
        question is about. Normalised, in order of appearance."""
        runs, current = [], []
        for token in list(self._jieba.cut(normalize(text), HMM=False)) + [""]:
            if len(token) == 1 and _CJK.match(token) and token not in STOPWORDS:
                current.append(token)
                continue
            if len(current) >= 2:
                runs.append("".join(current))
            current = []
        return list(dict.fromkeys(runs))


# Below this many texts one process tokenises: a worker process starts in ~1-2 s (imports, jieba's
# dictionary), which ~400-800 texts of one core's tokenising pay for.
PARALLEL_MIN_TEXTS = 10_000
_BATCH = 1_000  # texts a worker tokenises per task: small enough for a progress bar, large enough to amortise pickling

_worker_tokenizer: Tokenizer | None = None


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _start_worker(terms: list[str]) -> None:
    global _worker_tokenizer
    _worker_tokenizer = Tokenizer(terms)


def _tokens_of(texts: list[str]) -> list[list[str]]:
    return [_worker_tokenizer.tokens(text) for text in texts]


def tokenize_texts(
    tokenizer: Tokenizer, texts: list[str], *, workers: int | None = None, on_batch: Callable[[int], None] | None = None
) -> list[list[str]]:
    """``tokenizer.tokens`` of each text, in order, in up to ``workers`` processes (default: one per available
    core; from :data:`PARALLEL_MIN_TEXTS` texts up, else in this one). jieba is pure Python and holds the GIL,
    so threads would not help; each worker builds the same tokenizer from ``tokenizer.terms`` (added in the
    same order, so jieba's frequencies, and hence every cut, are the same). Workers are spawned, not forked:
    a fork would copy the parent's threads' locks (progress bar, torch, a Milvus client's gRPC channel)."""
    workers = available_cores() if workers is None else max(1, int(workers))
    workers = min(workers, -(-len(texts) // _BATCH))
    batches = [texts[start : start + _BATCH] for start in range(0, len(texts), _BATCH)]
    out: list[list[str]] = []
    if workers <= 1 or len(texts) < PARALLEL_MIN_TEXTS:
        for batch in batches:
            out.extend(tokenizer.tokens(text) for text in batch)
            if on_batch:
                on_batch(len(batch))
        return out
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(tokenizer.terms,)) as pool:
        for tokens in pool.map(_tokens_of, batches):
            out.extend(tokens)
            if on_batch:
                on_batch(len(tokens))
    return out


def read_terms(path: str | Path) -> list[str]:
    """A term file: one term a line; '#' starts a comment; an optional second column (jieba's format) is ignored."""
    path = Path(path)
    if not path.is_file():
        return []
    terms = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            terms.append(line.split()[0])
    return terms
