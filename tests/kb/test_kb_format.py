"""A knowledge base written by format version 1 (committed under data/) must keep opening, giving the same
results, and accepting updates in every later version of domainlm."""

import shutil
from pathlib import Path

from kb_docs import DOCS

from domainlm.kb import add_documents, open_kb

V1 = Path(__file__).parent / "data" / "kb_format_v1"

EXPECTED = {
    "活期存款年利率": [("deposit#55e12ef9eb", 2.8975), ("deposit#48227c5c8d", 1.5625)],
    "信用卡年費多少": [("card#6b5c02e49a", 2.8767)],
    "mortgage arrangement fee": [("mortgage#bd2c90b93f", 2.2006)],
}


def test_format_v1_kb_opens_with_the_same_results(tmp_path):
    kb = open_kb(V1)
    assert kb.info["format_version"] == 1 and len(kb) == 5 and len(kb.documents) == 4
    for query, expected in EXPECTED.items():
        assert [(h.chunk_id, round(h.score, 4)) for h in kb.search(query, k=2, mode="bm25")] == expected
    texts = {d["id"]: d["text"] for d in DOCS}
    assert all(texts[c["doc_id"]][c["start"] : c["end"]] == c["text"] for c in kb.chunks)


def test_format_v1_kb_accepts_updates(tmp_path):
    copy = tmp_path / "kb"
    shutil.copytree(V1, copy)
    changed = dict(DOCS[1], text=DOCS[1]["text"].replace("800元", "900元"))
    info = add_documents(copy, [changed])
    assert info["replaced"] == ["card"] and info["generation"] == "gen-000002"
    assert "900元" in open_kb(copy).search("白金信用卡年费", k=1, mode="bm25")[0].text
