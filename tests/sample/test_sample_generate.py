"""Determinism, layout, sizes and the CLI of the sample domain generator."""

import json

import pytest

from domainlm.cli import main
from domainlm.io import read_jsonl, sha256_file
from domainlm.manifest import read_manifest
from domainlm.sample import build_sample, generate_sample

TASKS = ("knowledge_qa", "unanswerable", "intent", "ner", "tool_call", "json_extract", "mcq")


def tree_hashes(root):
    # manifest.json records wall time and the command line, so it is the one file allowed to differ
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


def test_same_seed_gives_byte_identical_tree(tiny_sample, tmp_path):
    again = generate_sample(tmp_path / "again", seed=0, size="tiny")
    first, second = tree_hashes(tiny_sample), tree_hashes(again)
    assert len(first) > 30
    assert first == second


def test_output_does_not_depend_on_python_hash_seed(tiny_sample, tmp_path):
    # a fresh interpreter with another PYTHONHASHSEED: catches any set- or hash()-order dependence
    import os
    import subprocess
    import sys

    out = tmp_path / "other-process"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    code = "import sys; from domainlm.sample import generate_sample; generate_sample(sys.argv[1], seed=0, size='tiny')"
    subprocess.run([sys.executable, "-c", code, str(out)], env=env, check=True, capture_output=True)
    assert tree_hashes(out) == tree_hashes(tiny_sample)


def test_different_seed_gives_different_content(tiny_sample, tmp_path):
    other = generate_sample(tmp_path / "seed1", seed=1, size="tiny")
    first, second = tree_hashes(tiny_sample), tree_hashes(other)
    assert first != second
    facts0 = {(f["product"], f["attribute"], f["value"]) for f in read_jsonl(tiny_sample / "truth/facts.jsonl")}
    facts1 = {(f["product"], f["attribute"], f["value"]) for f in read_jsonl(other / "truth/facts.jsonl")}
    assert facts0 != facts1


def test_layout_and_contents(tiny_sample):
    docs = read_jsonl(tiny_sample / "truth/documents.jsonl")
    assert {d["path"].rsplit(".", 1)[1] for d in docs} == {"md", "html", "txt", "docx", "pdf", "png"}
    assert {d["lang"] for d in docs} == {"zh", "en"}
    assert {d["kind"] for d in docs} == {"manual", "policy", "faq", "notice"}
    for d in docs:
        assert (tiny_sample / d["path"]).is_file()
    web = read_jsonl(tiny_sample / "truth/web.jsonl")
    assert {"utf-8", "gbk", "big5"} <= {w["encoding"] for w in web}
    assert any(w["duplicate_of"] for w in web) and any(w["near_duplicate_of"] for w in web)
    for w in web:
        assert (tiny_sample / w["path"]).is_file()
    for split in ("train", "eval"):
        for task in TASKS:
            items = read_jsonl(tiny_sample / f"tasks/{split}/{task}.jsonl")
            assert len(items) >= 10, (split, task)
    tools = json.loads((tiny_sample / "tasks/tools.json").read_text(encoding="utf-8"))
    assert all(t["type"] == "function" and t["function"]["parameters"]["type"] == "object" for t in tools)
    assert len(json.loads((tiny_sample / "tasks/intents.json").read_text(encoding="utf-8"))) >= 20
    manifest = read_manifest(tiny_sample)
    assert manifest.stage == "sample" and manifest.config == {"seed": 0, "size": "tiny"}


def test_small_size_is_rich_enough(small_files):
    files = small_files
    manuals = [d for d in files["truth/documents.jsonl"] if d["kind"] == "manual"]
    assert 30 <= len(manuals) <= 60
    for task in TASKS:
        assert len(files[f"tasks/train/{task}.jsonl"]) >= 200, task
        assert len(files[f"tasks/eval/{task}.jsonl"]) >= 80, task
    # every fact (a product/service/branch attribute, per language) is asked in train and in eval, but the
    # scanned notice's, which only eval asks (so the eval shows whether OCR'd text reached the knowledge base)
    facts = {f["id"]: (f["product"], f["attribute"]) for f in files["truth/facts.jsonl"]}
    scanned = {f["id"] for f in files["truth/facts.jsonl"] if f["doc_id"].startswith("scan-")}
    assert len(scanned) == 3
    assert {facts[i["fact_id"]] for i in files["tasks/train/knowledge_qa.jsonl"]} == {
        v for k, v in facts.items() if k not in scanned}
    assert {facts[i["fact_id"]] for i in files["tasks/eval/knowledge_qa.jsonl"]} == set(facts.values())
    assert any(f in scanned for f in (i["fact_id"] for i in files["tasks/eval/knowledge_qa.jsonl"]))


def test_unknown_size_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from domainlm.errors import DomainlmError

    with pytest.raises(DomainlmError, match="size 'huge'"):
        build_sample(0, "huge")
    with pytest.raises(DomainlmError, match="size 'huge'"):
        generate_sample(tmp_path / "y", size="huge")
    assert not (tmp_path / "y").exists()
    assert main(["sample", "--out", str(tmp_path / "x"), "--size", "huge"]) != 0
    assert not (tmp_path / "x").exists()


def test_cli_generates_then_skips(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no domainlm.yaml above: defaults apply
    out = tmp_path / "cli"
    assert main(["sample", "--out", str(out), "--size", "tiny", "--seed", "2"]) == 0
    assert "wrote" in capsys.readouterr().err
    first = read_manifest(out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert main(["sample", "--out", str(out), "--size", "tiny", "--seed", "2"]) == 0
    assert "up to date" in capsys.readouterr().err
    assert read_manifest(out).started == first.started
    assert mtimes == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    # --force re-runs and gives the same bytes
    before = tree_hashes(out)
    assert main(["sample", "--out", str(out), "--size", "tiny", "--seed", "2", "--force"]) == 0
    assert tree_hashes(out) == before


def test_cli_help_lists_sample(capsys):
    assert main(["--help"]) == 0
    assert "sample" in capsys.readouterr().out
    assert main(["sample", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--seed" in text and "--size" in text and "--out" in text


def test_regenerating_with_another_seed_leaves_no_stale_files(tmp_path):
    out = tmp_path / "reuse"
    generate_sample(out, seed=0, size="tiny")
    first = set(read_manifest(out).outputs)
    (out / "notes.txt").write_text("a user's own file")  # never written by the generator: must survive
    generate_sample(out, seed=7, size="tiny")
    manifest = read_manifest(out)
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert on_disk == set(manifest.outputs) | {"manifest.json", "notes.txt"}
    assert manifest.config == {"seed": 7, "size": "tiny"}
    assert first - set(manifest.outputs)  # seed 7 names its files differently: there was something to remove


def test_cli_reads_domainlm_yaml_and_overrides(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "domainlm.yaml").write_text("sample:\n  seed: 9\n  size: small\n", encoding="utf-8")
    assert main(["sample", "sample.size=tiny", "--out", "a"]) == 0  # seed from the file, size overridden
    assert read_manifest(tmp_path / "a").config == {"seed": 9, "size": "tiny"}
    assert main(["sample", "sample.seed=4", "sample.size=tiny", "--seed", "5", "--out", "b"]) == 0
    assert read_manifest(tmp_path / "b").config == {"seed": 5, "size": "tiny"}  # an explicit option wins
    capsys.readouterr()
    assert main(["sample", "sample.sizes=tiny", "--out", "d"]) != 0
    assert "unknown key 'sample.sizes'" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_cli_import_stays_light():
    # `domainlm --help` must not pay for python-docx, reportlab, opencc (or torch) through the sample stage
    import subprocess
    import sys

    code = ("import sys, domainlm.cli, domainlm.sample; "
            "print(sorted(m for m in ('torch', 'docx', 'reportlab', 'opencc', 'pypdf') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert result.stdout.strip() == "[]"
