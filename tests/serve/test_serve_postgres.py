"""The feedback store on a real PostgreSQL server (a throwaway cluster started for the test).

Needs PostgreSQL's server binaries (Debian: `apt-get install postgresql`) and `psycopg`; skipped without them.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest
from serve_support import free_port

INITDB = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or ([shutil.which("initdb")] if shutil.which("initdb") else [])
pytestmark = pytest.mark.skipif(not INITDB, reason="needs PostgreSQL server binaries (apt-get install postgresql)")


def _as_postgres_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no 'postgres' user to run the server as")
    return ["runuser", "-u", "postgres", "--"]


@pytest.fixture(scope="module")
def pg_url():
    pytest.importorskip("psycopg")
    bindir = os.path.dirname(INITDB[-1])
    root = tempfile.mkdtemp(prefix="domainlm-pg-")
    os.chmod(root, 0o777)
    data, port, prefix = os.path.join(root, "data"), free_port(), _as_postgres_user()
    subprocess.run(prefix + [INITDB[-1], "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run(prefix + [os.path.join(bindir, "pg_ctl"), "-D", data, "-w", "-l", os.path.join(root, "log"), "-o",
                             f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(prefix + [os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_store_on_postgresql(pg_url, tmp_path):
    from domainlm.errors import DomainlmError
    from domainlm.serve.export import export_feedback
    from domainlm.serve.store import SCHEMA_VERSION, FeedbackStore, UnknownResponse

    store = FeedbackStore(pg_url)
    assert store.version() == SCHEMA_VERSION
    assert FeedbackStore(pg_url).version() == SCHEMA_VERSION  # reopening migrates nothing twice
    rid = store.add_response(model="tiny", request={"messages": [{"role": "user", "content": "金卡年费？"}]},
                             response="100元", user="alice")
    other = store.add_response(model="tiny", request={"messages": [{"role": "user", "content": "金卡年费？"}]},
                               response="200元", user="alice")
    store.add_feedback(rid, rating="down", correction="200元", user="alice")
    store.add_feedback(other, rejected_id=rid, user="alice")
    with pytest.raises(UnknownResponse):
        store.add_feedback("chatcmpl-nope", rating="up")
    rows = list(store.iter_feedback())
    assert [(r.response, r.correction, r.rejected_response) for r in rows] == [("100元", "200元", None), ("200元", None, "100元")]
    assert export_feedback(store, "dpo", tmp_path / "dpo.jsonl")["rows"] == 2
    store.set_export_mark("flywheel:x", 2)
    store.set_export_mark("flywheel:x", 5)
    assert store.export_mark("flywheel:x") == 5
    with pytest.raises(DomainlmError, match="cannot open"):
        FeedbackStore(pg_url.rsplit(":", 1)[0] + ":1/postgres")


def test_audit_log_on_postgresql_cannot_be_changed(pg_url):
    import sqlalchemy

    from domainlm.serve.audit import AuditLog

    log = AuditLog(pg_url)
    first = log.record("cli:ops", "export", "/tmp/sft.jsonl", rows=3)
    with log.engine.begin() as conn:  # PostgreSQL rules turn both into no-ops
        conn.execute(sqlalchemy.text("UPDATE audit SET actor = 'someone else'"))
        conn.execute(sqlalchemy.text("DELETE FROM audit"))
    entry = next(e for e in log.entries() if e["id"] == first)
    assert entry["actor"] == "cli:ops" and entry["detail"] == {"rows": 3}
