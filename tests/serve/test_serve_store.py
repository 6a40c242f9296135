"""The feedback store: migrations, durable writes, joins, errors."""

from __future__ import annotations

import sqlite3

import pytest

from domainlm.errors import DomainlmError
from domainlm.serve.store import SCHEMA_VERSION, FeedbackStore, UnknownResponse


def test_new_store_is_migrated_and_reopening_is_a_no_op(tmp_path):
    url = f"sqlite:///{tmp_path / 'fb.db'}"
    store = FeedbackStore(url)
    assert store.version() == SCHEMA_VERSION
    store.close()
    again = FeedbackStore(url)
    assert again.version() == SCHEMA_VERSION
    rows = sqlite3.connect(tmp_path / "fb.db").execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert [r[0] for r in rows] == list(range(1, SCHEMA_VERSION + 1))  # each step recorded exactly once


def test_a_version_1_database_is_upgraded_in_place_keeping_its_rows(tmp_path):
    from domainlm.serve import store as store_mod

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = store_mod.MIGRATIONS
    try:
        store_mod.MIGRATIONS = old[:1]  # what an earlier domainlm shipped
        old_store = store_mod.FeedbackStore.__new__(store_mod.FeedbackStore)
        old_store.url, old_store.engine = url, store_mod.make_engine(url)
        old_store.migrate()
        rid = old_store.add_response(model="m", request={"messages": []}, response="a")
        assert old_store.version() == 1
    finally:
        store_mod.MIGRATIONS = old
    upgraded = FeedbackStore(url)
    assert upgraded.version() == SCHEMA_VERSION
    assert upgraded.has_response(rid)
    upgraded.set_export_mark("flywheel", 7)  # a table added by migration 2
    assert upgraded.export_mark("flywheel") == 7


def test_a_newer_database_is_refused(tmp_path):
    path = tmp_path / "new.db"
    FeedbackStore(f"sqlite:///{path}").close()
    con = sqlite3.connect(path)
    con.execute("INSERT INTO schema_version VALUES (99, 0, 'future')")
    con.commit()
    con.close()
    with pytest.raises(DomainlmError, match="newer than this domainlm"):
        FeedbackStore(f"sqlite:///{path}")


def test_feedback_rows_join_their_response_and_validate(tmp_path):
    store = FeedbackStore(str(tmp_path / "bare-path.db"))  # a bare path means SQLite
    a = store.add_response(model="tiny", request={"messages": [{"role": "user", "content": "q"}]}, response="A", user="u")
    b = store.add_response(model="tiny", request={"messages": [{"role": "user", "content": "q"}]}, response="B", user="u")
    f1 = store.add_feedback(a, rating="up", user="u")
    f2 = store.add_feedback(b, correction="C", rating="down")
    f3 = store.add_feedback(a, rejected_id=b)
    assert f1 < f2 < f3
    rows = list(store.iter_feedback())
    assert [(r.response, r.rating, r.correction, r.rejected_response) for r in rows] == [
        ("A", "up", None, None), ("B", "down", "C", None), ("A", None, None, "B")]
    assert [r.id for r in store.iter_feedback(since_id=f1)] == [f2, f3]
    assert rows[0].request == {"messages": [{"role": "user", "content": "q"}]}
    with pytest.raises(UnknownResponse, match="unknown response id 'nope'"):
        store.add_feedback("nope", rating="up")
    with pytest.raises(UnknownResponse, match="rejected_id"):
        store.add_feedback(a, rejected_id="nope")
    with pytest.raises(DomainlmError, match="rating must be one of"):
        store.add_feedback(a, rating="meh")
    with pytest.raises(DomainlmError, match="needs a rating"):
        store.add_feedback(a)
    assert store.counts() == {"responses": 2, "feedback": 3}


def test_bad_url_is_one_clear_error():
    with pytest.raises(DomainlmError, match="feedback store 'nosuchdb://x'"):
        FeedbackStore("nosuchdb://x")


def test_personal_data_is_redacted_before_it_is_stored(tmp_path):
    """A long prompt full of one patient's data is kept without it; corrections and comments too."""
    import json
    import time

    filler = "出院后应低盐低脂饮食，规律服药，定期复查血脂和心电图。" * 3800  # ~100k characters
    patient = "患者王建国，男，56岁，诊断为冠心病，住院号ZY20230412，手机13812345678。"
    prompt = filler[:50_000] + patient + filler[50_000:]
    assert len(prompt) > 100_000
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")
    started = time.perf_counter()
    rid = store.add_response(model="tiny", request={"messages": [{"role": "user", "content": prompt}],
                                                    "tools": [{"type": "function", "function": {"name": "王建国"}}]},
                             response="王建国出院后应规律服药。")
    took = time.perf_counter() - started
    store.add_feedback(rid, rating="down", correction="请王先生联系13812345678复诊", comment="患者王建国的答案不对")
    row = store.get_response(rid)
    kept = row["request"]["messages"][0]["content"]
    assert "王建国" not in kept and "13812345678" not in kept and "冠心病" not in kept and "ZY20230412" not in kept
    assert "患者[NAME]，男，56岁，诊断为[MEDICAL]，住院号[RECORD_NO]，手机[MOBILE]。" in kept
    assert len(kept) > 100_000 - 40  # the rest of the prompt is kept as it was
    assert row["request"]["tools"][0]["function"]["name"] == "王建国"  # tool schemas are not text to redact
    assert row["response"] == "[NAME]出院后应规律服药。"  # the name anchored in the prompt, bare in the answer
    (fb,) = list(store.iter_feedback())
    kept_feedback = [fb.request["messages"], fb.response, fb.correction, fb.comment]
    assert "王建国" not in json.dumps(kept_feedback, ensure_ascii=False)
    assert fb.correction == "请[NAME]先生联系[MOBILE]复诊" and fb.comment == "患者[NAME]的答案不对"
    assert took < 30, f"redacting a 100k-character prompt took {took:.1f}s"


def test_redaction_can_be_turned_off(tmp_path):
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}", redact_pii=False)
    rid = store.add_response(model="tiny", request={"messages": [{"role": "user", "content": "手机13812345678"}]},
                             response="A")
    assert store.get_response(rid)["request"]["messages"][0]["content"] == "手机13812345678"
