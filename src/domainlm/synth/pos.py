"""Part-of-speech tags for synth's rules (jieba's ``posseg``), loaded on first use.

Loading jieba's tagging model takes about a quarter of a second; synth's modules are imported whenever a
workspace config is loaded (its settings class lives here), so the model loads when a sentence is tagged,
not when ``domainlm`` starts.
"""

from __future__ import annotations

from collections.abc import Iterator


def cut(text: str) -> Iterator:
    """``(word, flag)`` pairs of ``text`` (jieba's ``pair`` objects: ``.word``, ``.flag``)."""
    import jieba
    import jieba.posseg

    jieba.setLogLevel(60)  # no "Building prefix dict" lines on stderr
    return jieba.posseg.cut(text)
