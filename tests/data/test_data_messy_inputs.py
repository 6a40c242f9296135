"""A user's folder is messy: unreadable files and folders, broken links, FIFOs. `clean` goes on, and each
one becomes a rejected record with its reason and a warning line; nothing vanishes."""

import json
import os
import subprocess
import sys

from domainlm.io import read_jsonl

TEXT = "海港银行定期存款的年利率为1.75%，起存金额为50元，期限为三个月至五年。客户可通过手机银行或网点办理。"
OTHER = "个人住房贷款最长期限为三十年，首付比例不低于百分之二十，贷款利率按照贷款市场报价利率加点确定。"


def _cli(*args, cwd, prefix=()):
    return subprocess.run([*prefix, sys.executable, "-m", "domainlm", *args], capture_output=True, text=True, cwd=cwd)


def test_unreadable_files_links_and_fifos_are_rejected_with_reasons(tmp_path, unreadable_file):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.txt").write_text(TEXT, encoding="utf-8")
    (docs / "records.jsonl").write_text(json.dumps({"text": OTHER}, ensure_ascii=False) + "\n", encoding="utf-8")
    unreadable_file(docs / "locked.txt")
    unreadable_file(docs / "locked.jsonl")
    unreadable_file(docs / "locked.csv")
    (docs / "dangling.md").symlink_to(tmp_path / "moved-away.md")
    os.mkfifo(docs / "pipe.txt")
    result = _cli("clean", str(docs), "--out", str(tmp_path / "out"), "--workers", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "kept 2, rejected 5" in result.stdout
    reasons = {r["source"]: r["reason"] for r in read_jsonl(tmp_path / "out" / "rejected.jsonl")}
    assert reasons == {
        "docs/locked.txt": "unreadable file (Input/output error)",
        "docs/locked.jsonl": "unreadable file (Input/output error)",
        "docs/locked.csv": "unreadable file (Input/output error)",
        "docs/dangling.md": f"broken symlink (-> {tmp_path / 'moved-away.md'})",
        "docs/pipe.txt": "not a regular file (FIFO)",
    }
    for source, reason in reasons.items():
        assert f"skipped {source}: {reason}" in result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["inputs"][str(docs / "locked.txt")] == "error: Input/output error"


def test_unreadable_subfolder_is_reported_not_skipped(tmp_path, unprivileged):
    prefix = unprivileged
    docs = tmp_path / "docs"
    (docs / "private").mkdir(parents=True)
    (docs / "good.txt").write_text(TEXT, encoding="utf-8")
    (docs / "private" / "secret.txt").write_text(OTHER, encoding="utf-8")
    out = tmp_path / "out"
    os.chmod(docs / "private", 0)
    try:
        result = _cli("clean", str(docs), "--out", str(out), "--workers", "1", cwd=tmp_path, prefix=prefix)
    finally:
        os.chmod(docs / "private", 0o755)
    assert result.returncode == 0, result.stderr
    assert "kept 1, rejected 1" in result.stdout
    rejected = read_jsonl(out / "rejected.jsonl")
    assert [(r["source"], r["stage"], r["reason"]) for r in rejected] == [
        ("docs/private", "ingest", "unreadable folder (Permission denied)")
    ]
    assert "skipped docs/private: unreadable folder (Permission denied)" in result.stderr
