import json

from domainlm.kb import store, text
from domainlm.kb.chunking import chunk_document
from domainlm.kb.config import KBConfig
from domainlm.kb.terms import mine_terms
from domainlm.kb.text import Tokenizer, language, normalize, split_sentences, tokenize_texts


def test_normalize_folds_traditional_width_and_case():
    assert normalize("海港銀行ＡＢＣ１２３") == "海港银行abc123"


def test_language():
    assert language("活期存款的年利率是多少？") == "zh"
    assert language("What is the arrangement fee?") == "en"


def test_sentences_zh_en_abbreviations_and_wrapped_lines():
    text = "年利率为0.35%。按季结息！The address is No. 12 Xinhua Road. Paid at\nmaturity.\n开户：免费"
    got = [text[a:b] for a, b in split_sentences(text)]
    assert got == ["年利率为0.35%。", "按季结息！", "The address is No. 12 Xinhua Road.", "Paid at\nmaturity.", "开户：免费"]


def test_tokens_search_mode_stopwords_and_terms():
    tok = Tokenizer()
    tokens = tok.tokens("海港银行的活期存款利率是多少？")
    assert "活期存款" in tokens and "活期" in tokens and "存款" in tokens
    assert "的" not in tokens and "多少" not in tokens and "？" not in tokens
    assert "智选" not in tok.tokens("海港智选货币基金")
    assert tok.unknown_runs("海港智选货币基金") == ["智选"]
    tok.add_terms(["海港智选"])
    assert "海港智选" in tok.tokens("海港智选货币基金")


def test_chunks_are_exact_slices_with_headings_and_whole_tables():
    text = (
        "# 活期存款\n\n## 费用\n| 项目 | 费用 |\n|---|---|\n| 开户 | 免费 |\n| 小额账户管理费 | 每月3元 |\n\n"
        "## 利率\n" + "海港银行活期存款年利率为0.35%。" * 12 + "\n"
    )
    chunks = chunk_document("d", text, chunk_chars=80, title="T")
    for c in chunks:
        assert text[c.start : c.end] == c.text
    table = [c for c in chunks if c.text.startswith("| 项目")]
    assert len(table) == 1 and table[0].text.endswith("每月3元 |") and table[0].headings == ["活期存款", "费用"]
    body = [c for c in chunks if "利率" in c.headings]
    assert len(body) >= 3 and all(c.text.endswith("。") and len(c.text) <= 80 for c in body)


def test_chunk_ids_are_stable_and_local_to_edits():
    a = "# A\n\n第一段。\n\n# B\n\n第二段。\n\n# C\n\n第三段。"
    b = a.replace("第二段。", "第二段，改过了。")
    first, again, edited = (chunk_document("doc", t, chunk_chars=10) for t in (a, a, b))
    assert [c.id for c in first] == [c.id for c in again]
    assert first[0].id == edited[0].id and first[2].id == edited[2].id and first[1].id != edited[1].id
    assert all(c.id.startswith("doc#") for c in first)


def test_mine_terms_finds_a_repeated_product_name():
    left = ["购买", "推荐", "关于", "持有", "赎回", "咨询"]
    right = ["收益稳定", "随时赎回", "起购一元", "风险较低", "支持定投", "手续费低"]
    texts = [f"客户{a}瑞丰宝{b}。" for a in left for b in right]
    terms = mine_terms(texts, min_count=3, min_pmi=1.0, min_entropy=1.0)
    assert any("瑞丰宝" in t for t in terms)
    assert not any(t.endswith("的") for t in terms)


def _cmrc_passages(shared_benchmarks) -> list[dict]:
    data = json.loads((shared_benchmarks / "cmrc2018" / "cmrc2018_dev.json").read_text("utf-8"))["data"]
    return [
        {"id": p["id"], "text": p["context"], "source": "cmrc2018_dev.json", "meta": {"title": a["title"]}}
        for a in data
        for p in a["paragraphs"]
    ]


def test_tokenising_in_worker_processes_gives_the_same_tokens_on_real_prose(shared_benchmarks, monkeypatch):
    passages = [p["text"] for p in _cmrc_passages(shared_benchmarks)]
    # Mined terms change jieba's cuts, so the workers must rebuild the same dictionary to agree.
    tokenizer = Tokenizer(mine_terms(passages) + ["跨境理财通"])
    assert tokenizer.terms
    pools = []

    class CountedPool(text.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(text, "ProcessPoolExecutor", CountedPool)
    monkeypatch.setattr(text, "PARALLEL_MIN_TEXTS", 100)
    monkeypatch.setattr(text, "_BATCH", 100)
    one = tokenize_texts(tokenizer, passages, workers=1)
    assert pools == []
    done = []
    two = tokenize_texts(tokenizer, passages, workers=2, on_batch=done.append)
    assert pools == [2]
    assert two == one and len(two) == len(passages)
    assert sum(done) == len(passages) and len(done) == -(-len(passages) // 100)
    # Below the threshold no process is started.
    assert tokenize_texts(tokenizer, passages[:99], workers=2) == one[:99] and pools == [2]


def test_build_with_workers_writes_the_same_kb(shared_benchmarks, monkeypatch, tmp_path):
    docs = _cmrc_passages(shared_benchmarks)[:300]
    monkeypatch.setattr(text, "PARALLEL_MIN_TEXTS", 50)
    monkeypatch.setattr(text, "_BATCH", 100)
    config = KBConfig(embedder="none")
    store.build_kb(docs, tmp_path / "one", config, workers=1)
    store.build_kb(docs, tmp_path / "two", config, workers=2)
    gen_one = json.loads((tmp_path / "one" / "kb.json").read_text())["generation"]
    gen_two = json.loads((tmp_path / "two" / "kb.json").read_text())["generation"]
    tokens = (tmp_path / "one" / gen_one / "tokens.jsonl").read_text("utf-8")
    assert tokens and tokens == (tmp_path / "two" / gen_two / "tokens.jsonl").read_text("utf-8")
