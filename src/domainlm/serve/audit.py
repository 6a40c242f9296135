"""An append-only audit log of what changes data or models: exports, promotions, rollbacks.

Kept in the feedback store's own database (SQLite or PostgreSQL), in its own ``audit`` table, so one backup
holds both and an auditor needs one connection. Append-only by construction: this module has no update or
delete, and the database refuses them too (a SQLite trigger, a PostgreSQL rule), so a row once written stays
as written. Each row says who (an API key's name, or the operating-system user of a command), what, on
what, and when.
"""

from __future__ import annotations

import getpass
import json
import time

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, insert, select, text
from sqlalchemy.engine import Engine

from domainlm.serve.store import make_engine

ACTIONS = ("export", "promote", "rollback", "refuse")

_metadata = MetaData()
audit = Table(
    "audit",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(40), nullable=False),
    Column("target", String(1000), nullable=False),
    Column("detail", Text, nullable=False),
)

_APPEND_ONLY = {
    "sqlite": [
        "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
        "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE RULE audit_no_update AS ON UPDATE TO audit DO INSTEAD NOTHING",
        "CREATE OR REPLACE RULE audit_no_delete AS ON DELETE TO audit DO INSTEAD NOTHING",
    ],
}


def command_actor() -> str:
    """Who runs a command: the operating-system user (``cli:alice``)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "cli:unknown"


class AuditLog:
    """``record()`` appends; ``entries()`` reads. Give a store URL or an existing engine."""

    def __init__(self, url_or_engine: str | Engine):
        self.engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        with self.engine.begin() as conn:
            _metadata.create_all(conn, tables=[audit])
            for statement in _APPEND_ONLY.get(self.engine.dialect.name, []):
                conn.execute(text(statement))

    def record(self, actor: str, action: str, target: str, **detail) -> int:
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action '{action}' (expected one of {', '.join(ACTIONS)})")
        row = {"time": time.time(), "actor": actor, "action": action, "target": str(target),
               "detail": json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str)}
        with self.engine.begin() as conn:
            return int(conn.execute(insert(audit).values(**row)).inserted_primary_key[0])

    def entries(self, since_id: int = 0, action: str | None = None) -> list[dict]:
        query = select(audit).where(audit.c.id > since_id).order_by(audit.c.id)
        if action:
            query = query.where(audit.c.action == action)
        with self.engine.connect() as conn:
            return [{**row, "detail": json.loads(row["detail"])} for row in conn.execute(query).mappings()]
