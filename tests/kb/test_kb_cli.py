import json
import shutil

from domainlm.cli import main


def _json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_cli_build_search_ask_add_remove(sample_dir, tmp_path, capsys):
    docs = tmp_path / "docs"
    shutil.copytree(sample_dir / "docs", docs)
    (docs / "garbage.pdf").write_bytes(bytes(range(256)) * 20)
    (docs / "broken.docx").write_bytes(b"PK\x03\x04garbage" * 10)
    kb = tmp_path / "kb"
    assert main(["kb", "build", str(docs), "--out", str(kb), "--embedder", "none"]) == 0
    err = capsys.readouterr().err
    # 11 prose documents, 3 tables (HTML, DOCX, PDF) and the scanned notice (PNG, read by OCR)
    assert "15 documents" in err and "2 inputs skipped" in err
    rejected = [json.loads(x) for x in (kb / "rejected.jsonl").read_text("utf-8").splitlines()]
    assert sorted(r["source"] for r in rejected) == [str(docs / "broken.docx"), str(docs / "garbage.pdf")]
    manifest = json.loads((kb / "manifest.json").read_text("utf-8"))
    assert manifest["stage"] == "kb" and manifest["metrics"]["format_version"] == 1
    assert main(["kb", "build", str(docs), "--out", str(kb), "--embedder", "none"]) == 0
    assert "up to date" in capsys.readouterr().err

    item = json.loads((sample_dir / "tasks" / "eval" / "knowledge_qa.jsonl").read_text("utf-8").splitlines()[0])
    assert main(["kb", "search", str(kb), item["question"], "-k", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["hits"]) == 3 and any(item["evidence"] in h["text"] for h in result["hits"])
    assert {"chunk_id", "source", "start", "end", "score", "bm25"} <= set(result["hits"][0])

    queries = tmp_path / "q.jsonl"
    queries.write_text(
        json.dumps({"id": "a", "query": item["question"]}, ensure_ascii=False) + "\n{broken\n"
        + json.dumps({"id": "c", "query": "存" * 5000}) + "\n",
        encoding="utf-8",
    )
    assert main(["kb", "search", str(kb), "--queries", str(queries), "--mode", "bm25"]) == 0
    lines = _json_lines(capsys.readouterr().out)
    assert [x["id"] for x in lines] == ["a", 2, "c"] and lines[0]["hits"] and "error" in lines[1] and "limit" in lines[2]["error"]

    assert main(["ask", str(kb), item["question"], "--json"]) == 0
    ans = json.loads(capsys.readouterr().out)
    assert not ans["refused"] and item["answer"] in ans["answer"] and ans["citations"][0]["n"] == 1

    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"id": "new-doc", "text": "海港银行新推出海港鲸落存单，起存金额为5万元。", "source": "x"},
                                ensure_ascii=False) + "\n", encoding="utf-8")
    assert main(["kb", "add", str(kb), str(extra)]) == 0
    assert "added 1" in capsys.readouterr().err
    assert main(["ask", str(kb), "海港鲸落存单的起存金额是多少？"]) == 0
    assert "5万元" in capsys.readouterr().out
    assert main(["kb", "remove", str(kb), "new-doc"]) == 0
    capsys.readouterr()
    assert main(["ask", str(kb), "海港鲸落存单的起存金额是多少？", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["refused"]
    assert main(["kb", "info", str(kb)]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == 15


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["kb", "search", str(tmp_path / "nope"), "q"]) == 2
    err = capsys.readouterr().err
    assert "no such knowledge base folder" in err and "Traceback" not in err
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "a.txt").write_text("x", encoding="utf-8")
    assert main(["kb", "build", str(tmp_path / "stuff"), "--out", str(tmp_path / "stuff")]) == 2
    assert "not a knowledge base; refusing" in capsys.readouterr().err
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "x.txt").write_bytes(b"\x00\x01\x02" * 100)
    assert main(["kb", "build", str(tmp_path / "bin"), "--out", str(tmp_path / "kb2"), "--embedder", "none"]) == 2
    assert "no documents to index" in capsys.readouterr().err
    assert not (tmp_path / "kb2" / "kb.json").exists()
    assert main(["chatfile", str(tmp_path / "bin" / "x.txt"), "--summary", "--ask", "q"]) == 2


def test_chatfile_summary_and_ask(sample_dir, capsys):
    pdf = next((sample_dir / "docs").glob("*-zh.pdf"))
    assert main(["chatfile", str(pdf), "--summary", "--json", "--sentences", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["mode"] == "extractive" and summary["language"] == "zh" and 1 <= len(summary["sentences"]) <= 3
    truth = {d["path"]: d for d in map(json.loads, (sample_dir / "truth" / "documents.jsonl").read_text("utf-8").splitlines())}
    doc = next(d for p, d in truth.items() if p.endswith(pdf.name))
    facts = [json.loads(x) for x in (sample_dir / "truth" / "facts.jsonl").read_text("utf-8").splitlines()]
    fact = next(f for f in facts if f["doc_id"] == doc["id"])
    item = next(json.loads(x) for x in (sample_dir / "tasks" / "train" / "knowledge_qa.jsonl").read_text("utf-8").splitlines()
                if json.loads(x)["doc_id"] == doc["id"])
    assert main(["chatfile", str(pdf), "--ask", item["question"], "--json"]) == 0
    ans = json.loads(capsys.readouterr().out)
    assert not ans["refused"] and item["answer"] in ans["answer"], ans
    assert fact["doc_id"] == doc["id"]


class ShorteningModel:
    """Stands in for a model: 'summarises' a prompt by keeping its last 30 characters; counts calls."""

    def __init__(self):
        self.calls = 0

    def chat(self, conversations, **kwargs):
        self.calls += len(conversations)
        return [c[-1]["content"][-30:] for c in conversations]


def test_map_reduce_summary_reads_every_part(tmp_path):
    from domainlm.kb.chatfile import summarize_file

    long = tmp_path / "long.txt"
    long.write_text("\n\n".join(f"第{i}节。海港银行第{i}号规定的内容说明，适用于全部网点。" * 20 for i in range(30)), encoding="utf-8")
    model = ShorteningModel()
    result = summarize_file(long, model, window_chars=1000)
    assert result.mode == "model" and result.sections > 10
    assert model.calls == result.sections + 1  # one map call per part, then one reduce
    assert result.summary
    extractive = summarize_file(long, max_sentences=4)
    assert extractive.mode == "extractive" and 1 <= len(extractive.sentences) <= 4


RATE = "海港银行定期存款的年利率为1.75%，起存金额为50元，期限为三个月至五年。"
LOAN = "个人住房贷款最长期限为三十年，首付比例不低于百分之二十。"


def test_build_from_a_messy_folder_indexes_the_rest(tmp_path, capsys, unreadable_file):
    from domainlm.data.ingest import doc_id

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "rate.md").write_text(RATE, encoding="utf-8")
    unreadable_file(docs / "locked.txt")
    (docs / "records.jsonl").write_text(
        json.dumps({"id": "r1", "text": LOAN}, ensure_ascii=False) + "\n"
        + "{not json\n"
        + json.dumps({"text": "没有编号的记录：活期存款年利率为0.2%。"}, ensure_ascii=False) + "\n"  # no id, as clean accepts
        + json.dumps(["a list"]) + "\n"
        + json.dumps({"id": "r5", "text": "  "}) + "\n",
        encoding="utf-8")
    kb = tmp_path / "kb"
    assert main(["kb", "build", str(docs), "--out", str(kb), "--embedder", "none"]) == 0
    err = capsys.readouterr().err
    assert "3 documents" in err and "4 inputs skipped" in err and "Traceback" not in err
    rejected = {r["source"]: r["reason"] for r in map(json.loads, (kb / "rejected.jsonl").read_text("utf-8").splitlines())}
    records = str(docs / "records.jsonl")
    assert rejected == {
        str(docs / "locked.txt"): "unreadable file (Input/output error)",
        f"{records}:2": "not valid JSON (Expecting property name enclosed in double quotes)",
        f"{records}:4": "expected a JSON object, got list",
        f"{records}:5": "record needs a non-empty string 'text'",
    }
    for source, reason in rejected.items():
        assert f"skipped {source}: {reason}" in err
    generation = kb / json.loads((kb / "kb.json").read_text("utf-8"))["generation"]
    documents = {json.loads(x)["id"] for x in (generation / "documents.jsonl").read_text("utf-8").splitlines()}
    no_id = doc_id("docs/records.jsonl", 3)  # the id `domainlm clean docs` gives that record
    assert documents == {"rate", "r1", no_id}

    # `clean` of the same folder gives the id-less record that same id, and its output indexes as well.
    assert main(["clean", str(docs), "--out", str(tmp_path / "clean"), "--workers", "1"]) == 0
    capsys.readouterr()
    cleaned = [json.loads(x) for x in (tmp_path / "clean" / "clean.jsonl").read_text("utf-8").splitlines()]
    assert no_id in {r["id"] for r in cleaned}
    assert main(["kb", "build", str(tmp_path / "clean" / "clean.jsonl"), "--out", str(tmp_path / "kb-clean"),
                 "--embedder", "none"]) == 0
    assert f"{tmp_path / 'kb-clean'}: {len(cleaned)} documents" in capsys.readouterr().err


def test_build_reports_an_unreadable_subfolder(tmp_path, unprivileged):
    import os
    import subprocess
    import sys

    prefix = unprivileged
    docs = tmp_path / "docs"
    (docs / "private").mkdir(parents=True)
    (docs / "rate.md").write_text(RATE, encoding="utf-8")
    (docs / "private" / "loan.md").write_text(LOAN, encoding="utf-8")
    os.chmod(docs / "private", 0)
    try:
        result = subprocess.run([*prefix, sys.executable, "-m", "domainlm", "kb", "build", str(docs), "--out",
                                 str(tmp_path / "kb"), "--embedder", "none"], capture_output=True, text=True)
    finally:
        os.chmod(docs / "private", 0o755)
    assert result.returncode == 0, result.stderr
    assert f"skipped {docs / 'private'}: unreadable folder (Permission denied)" in result.stderr
    rejected = [json.loads(x) for x in (tmp_path / "kb" / "rejected.jsonl").read_text("utf-8").splitlines()]
    assert rejected == [{"source": str(docs / "private"), "reason": "unreadable folder (Permission denied)"}]


def test_failed_build_leaves_no_empty_folder(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n", encoding="utf-8")
    kb = tmp_path / "kb"
    assert main(["kb", "build", str(bad), "--out", str(kb), "--embedder", "none"]) == 2
    err = capsys.readouterr().err
    assert f"skipped {bad}:1: not valid JSON" in err and "no documents to index" in err
    assert not kb.exists()  # created by the failed run, so removed
    kb.mkdir()  # a folder that existed before is left alone
    assert main(["kb", "build", str(bad), "--out", str(kb), "--embedder", "none"]) == 2
    assert kb.is_dir() and list(kb.iterdir()) == []
    capsys.readouterr()


def test_build_takes_over_a_killed_builds_leftovers_and_drops_a_stale_rejected_list(tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "rate.md").write_text(RATE, encoding="utf-8")
    (docs / "broken.docx").write_bytes(b"PK\x03\x04garbage")
    kb = tmp_path / "kb"
    (kb / ".gen-000001.k1ll3d").mkdir(parents=True)  # what a build killed while writing leaves
    (kb / ".lock").touch()
    assert main(["kb", "build", str(docs), "--out", str(kb), "--embedder", "none"]) == 0
    assert sorted(p.name for p in kb.iterdir()) == [".lock", "gen-000001", "kb.json", "manifest.json", "rejected.jsonl"]
    (docs / "broken.docx").unlink()
    assert main(["kb", "build", str(docs), "--out", str(kb), "--embedder", "none"]) == 0
    assert not (kb / "rejected.jsonl").exists()  # nothing was rejected this time: the old list would lie
    capsys.readouterr()
