"""Domain dictionary: mine multi-character terms (product names, jargon) from the corpus itself.

The classic "new word discovery" recipe, written by hand because no maintained library does it for
Chinese: a candidate string is a term when it is frequent, its characters stick together (pointwise
mutual information of its best split) and it appears in varied contexts (entropy of the characters to
its left and right). Terms that jieba already knows as one word are dropped: they add nothing.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable

from domainlm.kb.text import normalize

_CJK_RUN = re.compile(r"[\u4e00-\u9fff]{2,}")
# Function characters never start or end a term ("基金的", "位于" are phrases, not terms).
_FUNCTION_CHARS = set("的了是在和与为及或等之其于以对从把被将向也都就而并且则所每各该本此这那个有无不")


def _entropy(counter: Counter) -> float:
    total = sum(counter.values())
    return -sum(c / total * math.log(c / total) for c in counter.values()) if total else 0.0


def mine_terms(
    texts: Iterable[str],
    *,
    min_count: int = 3,
    min_len: int = 3,
    max_len: int = 6,
    min_pmi: float = 3.0,
    min_entropy: float = 1.0,
    max_chars: int = 2_000_000,
    max_terms: int = 2000,
    known: set[str] | None = None,
) -> list[str]:
    """Terms of ``min_len``..``max_len`` CJK characters, best first (deterministic for the same texts).

    Only the first ``max_chars`` characters are read, which bounds the cost on a large corpus.
    """
    runs: list[str] = []
    used = 0
    for text in texts:
        for run in _CJK_RUN.findall(normalize(text)):
            runs.append(run)
            used += len(run)
        if used >= max_chars:
            break
    grams: Counter = Counter()
    left: dict[str, Counter] = defaultdict(Counter)
    right: dict[str, Counter] = defaultdict(Counter)
    for run in runs:
        # Pad with sentinels so a term at a run boundary gets a (varied) boundary context.
        padded = f"^{run}$"
        for n in range(1, max_len + 1):
            for i in range(1, len(padded) - n):
                gram = padded[i : i + n]
                grams[gram] += 1
                if n >= min_len:
                    left[gram][padded[i - 1]] += 1
                    right[gram][padded[i + n]] += 1
    total = sum(c for g, c in grams.items() if len(g) == 1) or 1
    scored = []
    for gram, count in grams.items():
        if len(gram) < min_len or count < min_count or (known and gram in known):
            continue
        if gram[0] in _FUNCTION_CHARS or gram[-1] in _FUNCTION_CHARS:
            continue
        p = count / total
        # Cohesion: the weakest split decides (a real term has no split the corpus explains by chance).
        pmi = min(
            math.log(p / ((grams[gram[:i]] / total) * (grams[gram[i:]] / total))) for i in range(1, len(gram))
        )
        ent = min(_entropy(left[gram]), _entropy(right[gram]))
        if pmi >= min_pmi and ent >= min_entropy:
            scored.append((count * pmi * ent, gram))
    scored.sort(key=lambda item: (-item[0], item[1]))
    # Prefer the longest term: drop a candidate contained in a better-scoring one with nearly its count.
    chosen: list[str] = []
    for _, gram in scored:
        if any(gram in longer and grams[longer] >= 0.8 * grams[gram] for longer in chosen):
            continue
        chosen.append(gram)
        if len(chosen) >= max_terms:
            break
    return sorted(chosen)
