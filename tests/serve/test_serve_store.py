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
