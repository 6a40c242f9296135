"""The audit log: exports (and promotions, rollbacks) are recorded with who and when; rows cannot be changed."""

from __future__ import annotations

import json

import pytest
import sqlalchemy

from domainlm.cli import main
from domainlm.serve.audit import AuditLog
from domainlm.serve.store import FeedbackStore


def test_export_is_audited_and_the_log_is_append_only(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'fb.db'}"
    store = FeedbackStore(url)
    rid = store.add_response(model="m", request={"messages": [{"role": "user", "content": "年费多少？"}]},
                             response="一百元。", user="u")
    store.add_feedback(rid, correction="二百元。", user="reviewer")
    store.close()
    out = tmp_path / "sft.jsonl"
    assert main(["feedback", "export", "--format", "sft", "--out", str(out), "--db", url]) == 0
    capsys.readouterr()
    assert main(["feedback", "audit", "--db", url]) == 0
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(entries) == 1
    entry = entries[0]
    assert entry["action"] == "export" and entry["target"] == str(out) and entry["actor"].startswith("cli:")
    assert entry["detail"]["rows"] == 1 and entry["detail"]["format"] == "sft" and entry["time"] > 0

    log = AuditLog(url)
    log.record("key:alice", "promote", "registry", version="v0002")
    assert [e["action"] for e in log.entries()] == ["export", "promote"]
    assert [e["actor"] for e in log.entries(action="promote")] == ["key:alice"]
    with pytest.raises(ValueError, match="unknown audit action"):
        log.record("x", "delete_everything", "t")
    for statement in ("UPDATE audit SET actor = 'someone else'", "DELETE FROM audit"):
        with pytest.raises(sqlalchemy.exc.DatabaseError, match="append-only"), log.engine.begin() as conn:
            conn.execute(sqlalchemy.text(statement))
    assert [e["actor"] for e in log.entries()][0].startswith("cli:") and len(log.entries()) == 2
