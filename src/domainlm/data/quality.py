"""Language identification and document quality: transparent heuristics plus a learned scorer that
a user trains on their own kept/rejected examples.

Language identification is by script (Han, kana, Hangul, Cyrillic, Arabic, Latin): for the
Chinese/English split this platform cares about it is exact and needs no model download, which the
fastText/lingua models would. The learned scorer is a multinomial naive Bayes over hashed character
n-grams (written here in numpy: a few lines, no scikit-learn dependency), stored as one ``.npz`` file.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from domainlm.data.edits import OpResult
from domainlm.errors import DomainlmError

_SCRIPTS = {
    "zh": re.compile("[\u4e00-\u9fff\u3400-\u4dbf]"),
    "ja": re.compile("[\u3040-\u30ff]"),
    "ko": re.compile("[\uac00-\ud7af]"),
    "ru": re.compile("[\u0400-\u04ff]"),
    "ar": re.compile("[\u0600-\u06ff]"),
    "en": re.compile("[A-Za-z]"),
}


def detect_language(text: str) -> tuple[str, float]:
    """``(language, confidence)`` by script share; a Han character weighs as much as ~4 Latin letters."""
    sample = text[:20000]
    counts = {lang: len(p.findall(sample)) for lang, p in _SCRIPTS.items()}
    counts["en"] = counts["en"] / 4
    if counts["ja"] and counts["ja"] >= 0.1 * counts["zh"]:
        counts["ja"] += counts["zh"]  # Japanese text uses kanji too
    total = sum(counts.values())
    if total == 0:
        return "unknown", 0.0
    lang = max(counts, key=lambda k: (counts[k], k))
    return lang, round(counts[lang] / total, 3)


def language_filter(text: str, keep: Iterable[str] = ("zh", "en"), min_confidence: float = 0.0) -> OpResult:
    lang, confidence = detect_language(text)
    result = OpResult(text, score=confidence, meta={"lang": lang})
    keep = tuple(keep)
    if keep and (lang not in keep or confidence < min_confidence):
        result.drop = f"language {lang} ({confidence:.2f}) not in {list(keep)}"
    return result


# --- Heuristic quality ------------------------------------------------------------------------


_SPACE = re.compile(r"\s")
_HAN = re.compile("[\u4e00-\u9fff]")
_LETTER = re.compile(r"[^\W\d_]")  # any Unicode letter, Han included
_DIGIT = re.compile(r"\d")
_SYMBOL = re.compile(r"[#|{}<>\[\]@$^~=_\\/*]")
_WORD = re.compile(r"[A-Za-z]+")


def quality_signals(text: str) -> dict[str, float]:
    """Simple, explainable per-document signals (the Gopher/C4 family, adapted to Chinese). Counted with
    regexes, not Python loops over characters: this runs on every document."""
    n = max(1, len(text) - len(_SPACE.findall(text)))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    n_lines = max(1, len(lines))
    ends = sum(1 for line in lines if line[-1] in '。！？.!?；;：:」”"）)…')
    words = _WORD.findall(text)
    return {
        "chars": float(len(text)),
        "alpha_ratio": len(_LETTER.findall(text)) / n,
        "han_ratio": len(_HAN.findall(text)) / n,
        "digit_ratio": len(_DIGIT.findall(text)) / n,
        "symbol_ratio": len(_SYMBOL.findall(text)) / n,
        "end_punct_ratio": ends / n_lines,
        "dup_line_ratio": (n_lines - len(set(lines))) / n_lines,
        "mean_line_chars": sum(len(line) for line in lines) / n_lines,
        "mean_word_len": (sum(map(len, words)) / len(words)) if words else 0.0,
    }


def heuristic_score(signals: dict[str, float], min_chars: int = 50) -> tuple[float, list[str]]:
    """A score in [0, 1] (mean of passed checks) and the names of the failed checks."""
    checks = {
        "too_short": signals["chars"] >= min_chars,
        "few_letters": signals["alpha_ratio"] >= 0.6,
        "many_symbols": signals["symbol_ratio"] <= 0.1,
        "many_digits": signals["digit_ratio"] <= 0.3,
        "no_sentences": signals["end_punct_ratio"] >= 0.2 or signals["mean_line_chars"] >= 60,
        "duplicate_lines": signals["dup_line_ratio"] <= 0.3,
        "short_lines": signals["mean_line_chars"] >= 8,
        "odd_words": signals["mean_word_len"] == 0.0 or 2.0 <= signals["mean_word_len"] <= 12.0,
    }
    failed = [name for name, ok in checks.items() if not ok]
    return round(1 - len(failed) / len(checks), 4), failed


def quality_filter(
    text: str,
    threshold: float = 0.7,
    min_chars: int = 50,
    scorer: str | None = None,
    scorer_threshold: float = 0.5,
) -> OpResult:
    """Score a document; drop it under ``threshold`` (heuristics) or ``scorer_threshold`` (learned)."""
    signals = quality_signals(text)
    score, failed = heuristic_score(signals, min_chars)
    result = OpResult(text, score=score, meta={"quality": score})
    if score < threshold:
        result.drop = f"quality {score:.2f} < {threshold} ({', '.join(failed)})"
    if scorer:
        learned = load_scorer(scorer).predict(text)
        result.meta["quality_learned"] = round(learned, 4)
        if learned < scorer_threshold and result.drop is None:
            result.drop = f"learned quality {learned:.2f} < {scorer_threshold}"
    return result


# --- Learned scorer -------------------------------------------------------------------------------

_BINS = 1 << 18


def _features(text: str, orders: tuple[int, ...] = (1, 2, 3)) -> Counter:
    # Character n-grams hashed with crc32 (stable across processes, unlike hash()).
    text = re.sub(r"\s+", " ", text)[:5000]
    grams: Counter = Counter()
    for n in orders:
        for i in range(len(text) - n + 1):
            grams[zlib.crc32(text[i : i + n].encode("utf-8")) % _BINS] += 1
    return grams


class QualityScorer:
    """Multinomial naive Bayes: per-bin log-probability ratio of kept over rejected, plus a prior."""

    def __init__(self, log_ratio, prior: float):
        self.log_ratio = log_ratio
        self.prior = prior

    @classmethod
    def train(cls, kept: list[str], rejected: list[str], alpha: float = 1.0) -> QualityScorer:
        import numpy as np

        if not kept or not rejected:
            raise DomainlmError("training a quality scorer needs at least one kept and one rejected example")
        counts = np.zeros((2, _BINS), dtype=np.float64)
        for label, texts in ((0, kept), (1, rejected)):
            for text in texts:
                for b, c in _features(text).items():
                    counts[label, b] += c
        probs = (counts + alpha) / (counts.sum(axis=1, keepdims=True) + alpha * _BINS)
        log_ratio = (np.log(probs[0]) - np.log(probs[1])).astype(np.float32)
        return cls(log_ratio, math.log(len(kept) / len(rejected)))

    def predict(self, text: str) -> float:
        """Probability that ``text`` is like the kept examples (length-normalised so long docs aren't extreme)."""
        grams = _features(text)
        total = sum(grams.values())
        if not total:
            return 0.5
        evidence = sum(float(self.log_ratio[b]) * c for b, c in grams.items()) / math.sqrt(total)
        z = max(-30.0, min(30.0, evidence + self.prior))
        return 1 / (1 + math.exp(-z))

    def save(self, path: str | Path) -> Path:
        import io

        import numpy as np

        from domainlm.io import write_bytes

        buffer = io.BytesIO()
        np.savez_compressed(buffer, log_ratio=self.log_ratio, prior=np.array([self.prior]))
        return write_bytes(path, buffer.getvalue())


_LOADED: dict[str, QualityScorer] = {}


def load_scorer(path: str | Path) -> QualityScorer:
    import numpy as np

    key = str(path)
    if key not in _LOADED:
        try:
            data = np.load(key)
            _LOADED[key] = QualityScorer(data["log_ratio"], float(data["prior"][0]))
        except (OSError, KeyError, ValueError) as exc:
            raise DomainlmError(f"{path}: not a quality scorer file ({exc})") from None
    return _LOADED[key]
