"""The feedback store: every served response and every rating/correction on it, in SQL.

SQLite by default (``sqlite:///artifacts/feedback.db``), PostgreSQL (or anything SQLAlchemy speaks) by URL.
Acknowledgement is durable: :meth:`FeedbackStore.add_feedback` returns only after the transaction has
committed, and SQLite runs with ``synchronous=FULL`` so a commit is on disk (fsynced) when it returns.
A feedback row can therefore be acknowledged to the client the moment this call returns.

Personal data is redacted before it is stored (``redact_pii=True``, the default): every PII span in the
request's message texts, the response, corrections and comments becomes its typed placeholder ([NAME],
[MOBILE]...), with the clean stage's detector (every type). A 100k-character prompt is thus kept without the
names, numbers and diagnoses in it, and a name anchored in the prompt (患者王建国) is redacted where the answer
repeats it bare. A correction or comment is redacted on its own: a bare name in it with no role or title
(患者/先生...) next to it is not recognised. Turn it off only where the store itself is inside the privacy boundary.

Migrations are versioned here by hand (a ``schema_version`` table and an ordered list of steps) rather
than with alembic: the schema is small, and this keeps the store one file with no migration folder to ship.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError

from domainlm.errors import DomainlmError

metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied", Float, nullable=False),
    Column("note", String(200), nullable=False),
)

# One row per served completion, so feedback can point at what the user actually saw.
responses = Table(
    "responses",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("created", Float, nullable=False),
    Column("model", String(200), nullable=False),
    Column("user", String(200), nullable=True),
    Column("request", Text, nullable=False),  # JSON: {"messages": [...], ...}
    Column("response", Text, nullable=False),  # the assistant text shown to the user
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("response_id", String(64), ForeignKey("responses.id"), nullable=False, index=True),
    Column("created", Float, nullable=False),
    Column("rating", String(8), nullable=True),  # "up" | "down" | None
    Column("correction", Text, nullable=True),  # "suggest a better answer"
    Column("comment", Text, nullable=True),
    Column("user", String(200), nullable=True),
    # Pairwise choice: this response was preferred over ``rejected_id`` (both answers to one request).
    Column("rejected_id", String(64), ForeignKey("responses.id"), nullable=True),
)


def _v1(conn) -> None:
    metadata.create_all(conn, tables=[responses, feedback])


def _v2(conn) -> None:
    # Export high-water marks: `domainlm flywheel` exports only feedback it has not used yet.
    conn.execute(text("CREATE TABLE IF NOT EXISTS export_marks (name VARCHAR(100) PRIMARY KEY, last_id INTEGER NOT NULL)"))


# Ordered migrations: (version, note, step). Append only; never edit a released step.
MIGRATIONS = [
    (1, "responses and feedback tables", _v1),
    (2, "export high-water marks", _v2),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]

RATINGS = ("up", "down")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers (export, metrics) run beside the writer; FULL fsyncs every commit: durable ack.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine for ``url``; a bare path is taken as a SQLite file."""
    if "://" not in url:
        url = f"sqlite:///{url}"
    try:
        if url.startswith("sqlite"):
            path = url.split("///", 1)[1] if "///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ImportError, ValueError) as exc:
        raise DomainlmError(f"feedback store '{url}': {exc}") from None
    return engine


@dataclass
class FeedbackRecord:
    """One feedback row joined with the response it is about (DESIGN.md's feedback record)."""

    id: int
    time: float
    response_id: str
    request: dict
    response: str
    rating: str | None
    correction: str | None
    comment: str | None
    model: str
    user: str | None
    rejected_response: str | None = None

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "time": self.time,
            "response_id": self.response_id,
            "request": self.request,
            "response": self.response,
            "rating": self.rating,
            "correction": self.correction,
            "comment": self.comment,
            "model": self.model,
            "user": self.user,
            "rejected_response": self.rejected_response,
        }


class UnknownResponse(DomainlmError):
    """Feedback names a response id the store has never served."""


def _redact_text(text: str | None) -> str | None:
    from domainlm.data.pii import redact_pii

    return redact_pii(text).text if text else text


def redact_exchange(request: dict, response: str) -> tuple[dict, str]:
    """A stored request (the text of its messages; tools and settings untouched) and its answer, redacted
    together: a name anchored in the prompt is redacted where the answer repeats it bare."""
    from domainlm.serve.router import redact_conversation

    messages = request.get("messages")
    if not isinstance(messages, list):
        return request, _redact_text(response)
    dicts = [m for m in messages if isinstance(m, dict)]
    redacted, (answer,) = redact_conversation(dicts, [response or ""])
    done = iter(redacted)
    return {**request, "messages": [next(done) if isinstance(m, dict) else m for m in messages]}, answer


class FeedbackStore:
    """Responses and feedback in a SQL database, migrated to :data:`SCHEMA_VERSION` on open.

    ``redact_pii``: replace personal data by typed placeholders before anything is written (see above).
    """

    redact_pii = True  # also for a store made without __init__ (tests that open an old schema by hand)

    def __init__(self, url: str, redact_pii: bool = True):
        self.url = url
        self.redact_pii = redact_pii
        self.engine = make_engine(url)
        try:
            self.migrate()
        except OperationalError as exc:
            raise DomainlmError(f"feedback store '{url}': cannot open ({exc.orig})") from None

    # -- schema -----------------------------------------------------------------------------------
    def version(self) -> int:
        with self.engine.connect() as conn:
            if not self.engine.dialect.has_table(conn, "schema_version"):
                return 0
            return conn.execute(select(schema_version.c.version).order_by(schema_version.c.version.desc())).scalar() or 0

    def migrate(self) -> int:
        """Apply every migration newer than the database, each in its own transaction."""
        with self.engine.begin() as conn:
            metadata.create_all(conn, tables=[schema_version])
        current = self.version()
        if current > SCHEMA_VERSION:
            raise DomainlmError(
                f"feedback store '{self.url}': schema version {current} is newer than this domainlm ({SCHEMA_VERSION})"
            )
        for version, note, step in MIGRATIONS:
            if version <= current:
                continue
            with self.engine.begin() as conn:
                step(conn)
                conn.execute(insert(schema_version).values(version=version, applied=time.time(), note=note))
        return self.version()

    # -- writes -----------------------------------------------------------------------------------
    def add_response(self, *, model: str, request: dict, response: str, user: str | None = None,
                     response_id: str | None = None) -> str:
        response_id = response_id or f"chatcmpl-{uuid.uuid4().hex}"
        if self.redact_pii:
            request, response = redact_exchange(request, response)
        with self.engine.begin() as conn:
            conn.execute(
                insert(responses).values(
                    id=response_id,
                    created=time.time(),
                    model=model,
                    user=user,
                    request=json.dumps(request, ensure_ascii=False),
                    response=response,
                )
            )
        return response_id

    def add_feedback(self, response_id: str, *, rating: str | None = None, correction: str | None = None,
                     comment: str | None = None, user: str | None = None, rejected_id: str | None = None) -> int:
        """Store one feedback row; returns its id only after the commit (the durable acknowledgement)."""
        if rating is not None and rating not in RATINGS:
            raise DomainlmError(f"feedback rating must be one of {RATINGS}, got {rating!r}")
        if rating is None and not correction and not comment and rejected_id is None:
            raise DomainlmError("feedback needs a rating, a correction, a comment or a pairwise choice")
        if self.redact_pii:
            correction, comment = _redact_text(correction), _redact_text(comment)
        with self.engine.begin() as conn:
            known = set(conn.execute(select(responses.c.id).where(responses.c.id.in_([response_id, rejected_id or response_id]))).scalars())
            if response_id not in known:
                raise UnknownResponse(f"unknown response id '{response_id}'")
            if rejected_id is not None and rejected_id not in known:
                raise UnknownResponse(f"unknown response id '{rejected_id}' (rejected_id)")
            try:
                result = conn.execute(
                    insert(feedback).values(
                        response_id=response_id,
                        created=time.time(),
                        rating=rating,
                        correction=correction or None,
                        comment=comment or None,
                        user=user,
                        rejected_id=rejected_id,
                    )
                )
            except IntegrityError as exc:  # a race with a deleted response, or a foreign-key failure
                raise UnknownResponse(f"feedback for '{response_id}' rejected by the store ({exc.orig})") from None
        return int(result.inserted_primary_key[0])

    # -- reads ------------------------------------------------------------------------------------
    def has_response(self, response_id: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(responses.c.id).where(responses.c.id == response_id)).first() is not None

    def get_response(self, response_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(responses).where(responses.c.id == response_id)).mappings().first()
        if row is None:
            return None
        return {**dict(row), "request": json.loads(row["request"])}

    def iter_feedback(self, since_id: int = 0) -> Iterator[FeedbackRecord]:
        """Feedback rows with id > ``since_id``, oldest first, joined with their responses."""
        rejected = responses.alias("rejected")
        query = (
            select(feedback, responses.c.request, responses.c.response, responses.c.model,
                   rejected.c.response.label("rejected_response"))
            .join(responses, feedback.c.response_id == responses.c.id)
            .outerjoin(rejected, feedback.c.rejected_id == rejected.c.id)
            .where(feedback.c.id > since_id)
            .order_by(feedback.c.id)
        )
        with self.engine.connect() as conn:
            for row in conn.execute(query).mappings():
                yield FeedbackRecord(
                    id=row["id"],
                    time=row["created"],
                    response_id=row["response_id"],
                    request=json.loads(row["request"]),
                    response=row["response"],
                    rating=row["rating"],
                    correction=row["correction"],
                    comment=row["comment"],
                    model=row["model"],
                    user=row["user"],
                    rejected_response=row["rejected_response"],
                )

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            n_resp = conn.execute(text("SELECT COUNT(*) FROM responses")).scalar() or 0
            n_fb = conn.execute(text("SELECT COUNT(*) FROM feedback")).scalar() or 0
        return {"responses": int(n_resp), "feedback": int(n_fb)}

    def export_mark(self, name: str) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(text("SELECT last_id FROM export_marks WHERE name = :n"), {"n": name}).scalar()
        return int(value or 0)

    def set_export_mark(self, name: str, last_id: int) -> None:
        with self.engine.begin() as conn:
            updated = conn.execute(text("UPDATE export_marks SET last_id = :v WHERE name = :n"), {"v": last_id, "n": name})
            if updated.rowcount == 0:
                conn.execute(text("INSERT INTO export_marks (name, last_id) VALUES (:n, :v)"), {"n": name, "v": last_id})

    def close(self) -> None:
        self.engine.dispose()

