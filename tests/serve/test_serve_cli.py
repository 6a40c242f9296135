"""The serve/feedback/flywheel commands: real exports, clear one-line errors."""

from __future__ import annotations

import json

from domainlm.cli import main
from domainlm.serve.store import FeedbackStore


def test_feedback_export_command_writes_rows(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'fb.db'}"
    store = FeedbackStore(db)
    rid = store.add_response(model="tiny", request={"messages": [{"role": "user", "content": "邮箱 a.b@example.com 的年费？"}]},
                             response="100元")
    store.add_feedback(rid, rating="down", correction="200元")
    store.add_feedback(rid, rating="up")
    store.close()
    for fmt, n in (("kto", 1), ("dpo", 1), ("sft", 1), ("raw", 2)):
        out = tmp_path / f"{fmt}.jsonl"
        assert main(["feedback", "export", "--format", fmt, "--out", str(out), "--db", db]) == 0
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert len(rows) == n, fmt
        assert "a.b@example.com" not in out.read_text(encoding="utf-8")
    assert "rows from 2 feedback records" in capsys.readouterr().err
    dpo = json.loads((tmp_path / "dpo.jsonl").read_text(encoding="utf-8"))
    assert dpo == {"prompt": "邮箱 [EMAIL] 的年费？", "chosen": "200元", "rejected": "100元"}


def test_errors_are_one_line(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'fb.db'}"
    assert main(["feedback", "export", "--format", "orpo", "--out", str(tmp_path / "x.jsonl"), "--db", db]) == 2
    assert "error: unknown export format 'orpo'" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()

    assert main(["serve", "--db", db]) == 2
    assert "give --model M, or both --edge M_SMALL and --cloud M_BIG" in capsys.readouterr().err
    assert main(["serve", "--model", "tiny", "--edge", "a", "--cloud", "b", "--db", db]) == 2
    assert "not both" in capsys.readouterr().err

    keys = tmp_path / "keys.txt"
    keys.write_text("sk-good-123456789 alice 60\nshort\n", encoding="utf-8")
    assert main(["serve", "--model", str(tmp_path / "nope"), "--api-keys", str(keys), "--db", db]) == 2
    err = capsys.readouterr().err
    assert f"{keys}:2: API key is shorter than 8 characters" in err and len(err.strip().splitlines()) == 1

    assert main(["flywheel", "--registry", str(tmp_path / "reg"), "--rollback"]) == 2
    assert "not a model registry" in capsys.readouterr().err


def test_api_key_file_parsing(tmp_path):
    import pytest

    from domainlm.errors import DomainlmError
    from domainlm.serve.auth import parse_api_keys

    path = tmp_path / "keys.txt"
    path.write_text("# team keys\nsk-alice-1234567 alice 120\n\nsk-bob-12345678   # no name\n", encoding="utf-8")
    keys = parse_api_keys(path)
    assert [(k.key, k.name, k.rate_per_minute) for k in keys] == [("sk-alice-1234567", "alice", 120.0),
                                                                   ("sk-bob-12345678", "key2", None)]
    assert [k.role for k in keys] == ["user", "user"]
    path.write_text("sk-carol-123456 carol 60 reviewer\nsk-dave-1234567 dave admin\n", encoding="utf-8")
    keys = parse_api_keys(path)
    assert [(k.name, k.rate_per_minute, k.role) for k in keys] == [("carol", 60.0, "reviewer"), ("dave", None, "admin")]
    assert keys[1].can("reviewer") and not keys[0].can("admin") and keys[0].can("user")
    for text, message in (("sk-a-12345678 a x\n", "'x' is neither a rate"), ("sk-a-12345678 a 5 boss\n", "'boss' is neither"), ("sk-a-12345678\nsk-a-12345678\n", ":2: duplicate"),
                          ("# nothing\n", "no API keys")):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(DomainlmError, match=message):
            parse_api_keys(path)
