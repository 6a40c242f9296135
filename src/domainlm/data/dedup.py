"""Exact and near-duplicate detection: a content hash, then MinHash-LSH (datasketch) over
Chinese-aware shingles.

Shingles are n-grams of *tokens* where every Han character is a token and every Latin word or number is
one token, so the same threshold works for Chinese (no spaces) and English. Signatures are computed in
the workers (:func:`signature`); :class:`Deduplicator` runs in the main process in input order, so the
first copy of a document is the one kept and the result does not depend on the number of workers.
"""

from __future__ import annotations

import functools
import hashlib
import re
import zlib
from dataclasses import dataclass, field

_TOKEN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[A-Za-z]+|\d+")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def shingles(text: str, n: int = 3) -> set[bytes]:
    toks = tokens(text)
    if len(toks) <= n:
        return {" ".join(toks).encode("utf-8")} if toks else set()
    return {" ".join(toks[i : i + n]).encode("utf-8") for i in range(len(toks) - n + 1)}


def exact_key(text: str) -> str:
    """Hash of the text with whitespace removed and case folded: copies differing only in layout match."""
    return hashlib.sha1(re.sub(r"\s+", "", text).lower().encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=4)
def _template(num_perm: int, seed: int):
    """One MinHash per (num_perm, seed): its permutations are reused instead of regenerated per document."""
    from datasketch import MinHash

    return MinHash(num_perm=num_perm, seed=seed)


def _scheme(template) -> dict:
    # datasketch >= 2.0 asks which hashing scheme pre-computed values or permutations come from.
    return {"scheme": template.scheme} if hasattr(template, "scheme") else {}


def signature(text: str, num_perm: int = 128, n: int = 3, seed: int = 1):
    """MinHash hash values (a numpy uint64 array) of the text's shingles.

    Shingles are hashed with CRC-32 rather than datasketch's default SHA-1: ten times cheaper, and the
    random affine permutations MinHash applies afterwards do the mixing.
    """
    from datasketch import MinHash

    template = _template(num_perm, seed)
    m = MinHash(
        num_perm=num_perm, seed=seed, hashfunc=zlib.crc32, permutations=template.permutations, **_scheme(template)
    )
    grams = shingles(text, n)
    if grams:
        m.update_batch(list(grams))
    return m.hashvalues


def as_minhash(hashvalues, num_perm: int = 128, seed: int = 1):
    """A lightweight MinHash for LSH and Jaccard estimates, rebuilt from a worker's hash values."""
    from datasketch import LeanMinHash

    return LeanMinHash(seed=seed, hashvalues=hashvalues, **_scheme(_template(num_perm, seed)))


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def numbers_in(text: str) -> frozenset[str]:
    """The figures a document states (rates, fees, dates, phone numbers), as strings."""
    return frozenset(_NUMBER.findall(text))


def number_overlap(a: frozenset, b: frozenset) -> float:
    """Share of the smaller set of figures found in the other: 1.0 when a copy dropped some lines."""
    return round(len(a & b) / min(len(a), len(b)), 4) if a and b else float(a == b)


@dataclass(frozen=True)
class DedupParams:
    """The ``dedup`` recipe step: Jaccard threshold, MinHash permutations, shingle size, which checks,
    and ``same_numbers``: the least share of the figures (numbers) of the shorter document that the
    other must state too for a near duplicate (0 turns the check off)."""

    threshold: float = 0.5
    num_perm: int = 128
    ngram: int = 3
    exact: bool = True
    near: bool = True
    same_numbers: float = 0.8


@dataclass
class Deduplicator:
    """Online dedup: ``check`` a document, get ``None`` (keep) or the evidence that it is a duplicate."""

    threshold: float = 0.5
    num_perm: int = 128
    near: bool = True
    exact: bool = True
    same_numbers: float = 0.8
    _exact: dict[str, str] = field(default_factory=dict)
    _lsh: object = None
    _sigs: dict[str, object] = field(default_factory=dict)
    _numbers: dict[str, frozenset] = field(default_factory=dict)
    clusters: dict[str, list[dict]] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: dict) -> Deduplicator:
        """The deduplicator of a recipe's ``dedup`` step."""
        known = ("threshold", "num_perm", "near", "exact", "same_numbers")
        return cls(**{key: params[key] for key in known if key in params})

    def __post_init__(self):
        if self.near:
            from datasketch import MinHashLSH

            # The LSH bands are tuned below the decision threshold so that pairs just above it are
            # still candidates (fewer misses); every candidate is then checked against the threshold.
            self._lsh = MinHashLSH(threshold=max(0.3, self.threshold - 0.15), num_perm=self.num_perm)

    def check(self, doc_id: str, text: str, hashvalues=None) -> dict | None:
        key = exact_key(text) if self.exact else None
        if key is not None:
            first = self._exact.get(key)
            if first is not None:
                return self._record(first, doc_id, {"type": "exact", "duplicate_of": first, "jaccard": 1.0})
        if self.near and hashvalues is not None:
            m = as_minhash(hashvalues, self.num_perm)
            numbers = numbers_in(text)
            candidates = sorted(self._lsh.query(m))
            scored = sorted(((round(float(m.jaccard(self._sigs[c])), 4), c) for c in candidates), reverse=True)
            for score, best in scored:
                if score < self.threshold:
                    break
                # Templated pages (one per product or branch) share their sentences but state different
                # figures; a copy of a page states the same ones.
                same = number_overlap(numbers, self._numbers[best])
                if same >= self.same_numbers:
                    evidence = {"type": "near", "duplicate_of": best, "jaccard": score, "numbers_overlap": same}
                    return self._record(best, doc_id, evidence)
            self._lsh.insert(doc_id, m)
            self._sigs[doc_id] = m
            self._numbers[doc_id] = numbers
        if key is not None:  # only kept documents: a later copy must point at the copy that was kept
            self._exact[key] = doc_id
        return None

    def _record(self, first: str, doc_id: str, evidence: dict) -> dict:
        self.clusters.setdefault(first, []).append({"id": doc_id, **evidence})
        return evidence
