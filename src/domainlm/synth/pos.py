"""Part-of-speech tags for synth's rules (jieba's ``posseg``), loaded on first use.

Loading jieba's tagging model takes about a quarter of a second; synth's modules are imported whenever a
workspace config is loaded (its settings class lives here), so the model loads when a sentence is tagged,
not when ``domainlm`` starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache


@lru_cache(maxsize=1)
def tagger():
    """jieba's tagger over a dictionary of its own: the global one is not ours to rely on (Milvus Lite's
    analyzer adds a knowledge base's terms to it, which changed what synth and exam extract)."""
    import jieba
    import jieba.posseg

    jieba.setLogLevel(60)  # no "Building prefix dict" lines on stderr
    return jieba.posseg.POSTokenizer(jieba.Tokenizer())


def cut(text: str) -> Iterator:
    """``(word, flag)`` pairs of ``text`` (jieba's ``pair`` objects: ``.word``, ``.flag``)."""
    return tagger().cut(text)
