"""Side doors into a knowledge base (`kb build` of raw files, `kb add`, `chatfile`) run the clean recipe."""

import json

from domainlm.cli import main
from domainlm.kb import open_kb
from domainlm.kb.governance import governed_documents, is_clean_output


def _cmrc_passages(shared_benchmarks, n: int) -> list[str]:
    data = json.loads((shared_benchmarks / "cmrc2018" / "cmrc2018_dev.json").read_text(encoding="utf-8"))["data"]
    return [p["context"] for d in data for p in d["paragraphs"]][:n]


def _messy(passage: str) -> str:
    """Real prose with what users' files carry: a mobile number, a pinyin annotation, traditional characters."""
    first, _, rest = passage.partition("，")
    return f"{first[:2]}（zhōng guó）{first[2:]}，如有疑問請聯繫聯絡人，手机13912345678。{rest}"


def _all_text(kb_dir) -> str:
    kb = open_kb(kb_dir)
    return "\n".join(c["text"] for c in kb.chunks)


def test_kb_build_and_add_redact_and_fold_raw_files(tmp_path, shared_benchmarks, capsys):
    first, second = (_messy(p) for p in _cmrc_passages(shared_benchmarks, 2))
    (tmp_path / "a.txt").write_text(first, encoding="utf-8")
    (tmp_path / "b.txt").write_text(second, encoding="utf-8")
    kb = tmp_path / "kb"
    assert main(["kb", "build", str(tmp_path / "a.txt"), "--out", str(kb), "--embedder", "none"]) == 0
    assert main(["kb", "add", str(kb), str(tmp_path / "b.txt")]) == 0
    capsys.readouterr()
    text = _all_text(kb)
    assert "13912345678" not in text and text.count("[MOBILE]") == 2
    assert "zhōng" not in text and "疑問" not in text and "疑问" in text
    # the real prose itself is all there (the passages' own sentences, in simplified form)
    assert first.rsplit("。", 2)[-2][-20:] in text


def test_recipe_none_indexes_raw_and_kb_add_keeps_the_kb_recipe(tmp_path, shared_benchmarks, capsys):
    raw = tmp_path / "a.txt"
    raw.write_text(_messy(_cmrc_passages(shared_benchmarks, 1)[0]), encoding="utf-8")
    kb = tmp_path / "kb"
    assert main(["kb", "build", str(raw), "--out", str(kb), "--embedder", "none", "--recipe", "none"]) == 0
    assert "13912345678" in _all_text(kb)
    other = tmp_path / "b.txt"
    other.write_text(_messy(_cmrc_passages(shared_benchmarks, 2)[1]), encoding="utf-8")
    assert main(["kb", "add", str(kb), str(other)]) == 0  # built with 'none': added as read
    assert _all_text(kb).count("13912345678") == 2
    capsys.readouterr()


def test_recipe_rejection_is_reported_not_indexed(tmp_path, shared_benchmarks, capsys):
    good = tmp_path / "good.txt"
    good.write_text(_cmrc_passages(shared_benchmarks, 1)[0], encoding="utf-8")
    spam = tmp_path / "spam.txt"
    spam.write_text("点击 点击 点击 ###### ###### $$$$ 1234 5678", encoding="utf-8")
    kb = tmp_path / "kb"
    assert main(["kb", "build", str(good), str(spam), "--out", str(kb), "--embedder", "none"]) == 0
    rejected = [json.loads(x) for x in (kb / "rejected.jsonl").read_text("utf-8").splitlines()]
    assert [r["source"] for r in rejected] == [str(spam)]
    assert "clean recipe 'default-zh'" in rejected[0]["reason"]
    assert "skipped" in capsys.readouterr().err
    assert {d["id"] for d in open_kb(kb).documents} == {"good"}


def test_clean_output_is_indexed_as_is(tmp_path, shared_benchmarks, capsys):
    """A clean stage's output went through its recipe already (here one that keeps traditional characters);
    kb build must not run default-zh over it again."""
    records = tmp_path / "in.jsonl"
    records.write_text(json.dumps({"id": "short", "text": "信用卡年費為每年二百元，首年免年費。"}, ensure_ascii=False) + "\n"
                       + json.dumps({"id": "long", "text": _cmrc_passages(shared_benchmarks, 1)[0]},
                                    ensure_ascii=False) + "\n", encoding="utf-8")
    recipe = tmp_path / "light.yaml"
    recipe.write_text("name: light\noperators:\n  - op: normalize\n  - op: redact_pii\n", encoding="utf-8")
    out = tmp_path / "clean"
    assert main(["clean", str(records), "--out", str(out), "--recipe", str(recipe)]) == 0
    assert is_clean_output(out / "clean.jsonl") and is_clean_output(out) and not is_clean_output(records)
    as_cleaned = governed_documents([out / "clean.jsonl"], "default-zh")
    assert len(as_cleaned) == 2 and "年費" in as_cleaned[0]["text"]
    raw = governed_documents([records], "default-zh")
    assert raw[0]["text"] == "信用卡年费为每年二百元，首年免年费。" and raw[0]["meta"]["recipe"] == "default-zh"
    capsys.readouterr()
