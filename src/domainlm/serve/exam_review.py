"""Exam review over HTTP: a reviewer makes an exam from the server's KB, accepts, fixes or rejects its items,
and every accepted or fixed item becomes a feedback record, so the flywheel trains on it.

Routes (each needs a ``reviewer`` key: a reviewed item is training data, as a correction is; and a server
started with ``--kb KB --plugin exam``):

- ``POST /v1/exams`` ``{"n", "types", "query", "seed"}``: an exam made by ``domainlm.plugins.exam`` over the
  server's KB, kept in the feedback store's database; answers the exam as ``GET`` does.
- ``GET /v1/exams/{exam_id}``: the items, each with its validation problems (empty when valid) and its review.
- ``POST /v1/exams/{exam_id}/items/{item_id}/review`` ``{"verdict": "accept"|"fix"|"reject", "item": {fixed
  fields}, "comment"}``: a fix is rebuilt (``revise_item``) and re-checked as a made item is (key in its
  passage, no distractor supported by its chunk, letter, cloze, rubric; no clash with the other items kept);
  an invalid fix is a 400 listing the problems, and nothing is stored. One verdict per item: a second is a 409.
- ``GET /v1/exams/{exam_id}/export?format=md|docx|json``: the reviewed paper, accepted and fixed items only
  (fixes as fixed), written by the exam plugin's own export.

The feedback record of a reviewed item (``store.add_response`` + ``store.add_feedback``, PII redacted there):
the request is the item as a question (``item_prompt``: the question, an mcq's options) tagged ``"task":
"exam"`` with the exam, item, verdict and source passage; the response is the item's original answer
(``item_answer``: "B. 3.20%", the key); a fix's correction is the fixed item's answer. The rating is ``up``
for an accept and for a fix that keeps the answer (a reworded question, other distractors), ``down`` for a
fix that changes it. So ``feedback export`` writes an accept as a KTO positive, a changed answer as a DPO
pair and an SFT row, and the flywheel trains on them. A reject teaches nothing about the answer and stays in
the review table only.

The exams and reviews are two tables of their own in the feedback store's database (created on first use,
as the audit log is), so one backup holds them with the feedback they produced.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Literal

from fastapi import Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Column, Float, ForeignKey, Integer, MetaData, String, Table, Text, delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from domainlm.errors import DomainlmError
from domainlm.plugins import (
    Exam,
    ExamConfig,
    ExamItem,
    ItemFix,
    ItemType,
    exam_docx,
    exam_markdown,
    item_answer,
    item_prompt,
    make_exam,
    review_problems,
    revise_item,
    validate_exam,
)
from domainlm.serve.app import authorize, require_role, serve_state
from domainlm.serve.asgi import ApiError, error_body
from domainlm.serve.auth import ApiKey
from domainlm.serve.state import ServeState

VERDICTS = ("accept", "fix", "reject")
FEEDBACK_MODEL = "domainlm-exam"  # the responses row's model: the exam maker wrote the answer, not the served model

_metadata = MetaData()
exams = Table(
    "exams",
    _metadata,
    Column("id", String(64), primary_key=True),
    Column("created", Float, nullable=False),
    Column("user", String(200), nullable=True),
    Column("exam", Text, nullable=False),  # JSON: the Exam as made
)
exam_reviews = Table(
    "exam_reviews",
    _metadata,
    Column("exam_id", String(64), ForeignKey("exams.id"), primary_key=True),
    Column("item_id", String(64), primary_key=True),  # one verdict per item: the key refuses a second
    Column("created", Float, nullable=False),
    Column("reviewer", String(200), nullable=True),
    Column("verdict", String(8), nullable=False),
    Column("item", Text, nullable=True),  # JSON: the item as reviewed (as made for accept, fixed for fix)
    Column("comment", Text, nullable=True),
    Column("feedback_id", Integer, nullable=True),  # the feedback record it became (None: reject)
)


class ExamRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(10, ge=1, le=50)
    types: list[ItemType] | None = None
    query: str | None = None
    seed: int = 0


class ReviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Literal["accept", "fix", "reject"]
    item: ItemFix | None = None  # fix: the fields changed
    comment: str | None = None


class AlreadyReviewed(DomainlmError):
    pass


class ExamBook:
    """Exams and their reviews in SQL (the feedback store's engine)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        with engine.begin() as conn:
            _metadata.create_all(conn, tables=[exams, exam_reviews])

    def add(self, exam: Exam, user: str) -> str:
        exam_id = f"exam-{uuid.uuid4().hex[:20]}"
        with self.engine.begin() as conn:
            conn.execute(insert(exams).values(id=exam_id, created=time.time(), user=user,
                                              exam=json.dumps(exam.model_dump(mode="json"), ensure_ascii=False)))
        return exam_id

    def get(self, exam_id: str) -> tuple[Exam, dict] | None:
        """The exam and its reviews by item id, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(exams).where(exams.c.id == exam_id)).mappings().first()
            if row is None:
                return None
            reviews = {r["item_id"]: dict(r) for r in
                       conn.execute(select(exam_reviews).where(exam_reviews.c.exam_id == exam_id)).mappings()}
        return Exam.model_validate_json(row["exam"]), reviews

    def claim(self, exam_id: str, item_id: str, reviewer: str, verdict: str, item: ExamItem | None,
              comment: str | None) -> None:
        """Write the verdict before its feedback: the primary key makes a second verdict (two reviewers at
        once) fail here, before anything reaches the feedback store."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(exam_reviews).values(
                    exam_id=exam_id, item_id=item_id, created=time.time(), reviewer=reviewer, verdict=verdict,
                    item=None if item is None else json.dumps(item.model_dump(mode="json"), ensure_ascii=False),
                    comment=comment))
        except IntegrityError:
            raise AlreadyReviewed(f"item {item_id} of {exam_id} is already reviewed") from None

    def settle(self, exam_id: str, item_id: str, feedback_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(exam_reviews).where(exam_reviews.c.exam_id == exam_id, exam_reviews.c.item_id == item_id)
                         .values(feedback_id=feedback_id))

    def release(self, exam_id: str, item_id: str) -> None:
        """Undo a claim whose feedback could not be stored: the item may be reviewed again."""
        with self.engine.begin() as conn:
            conn.execute(delete(exam_reviews).where(exam_reviews.c.exam_id == exam_id, exam_reviews.c.item_id == item_id))


# ---------------------------------------------------------------------------------------------------
# Logic: data in, data out
# ---------------------------------------------------------------------------------------------------
def reviewed_item(item: ExamItem, review: dict | None) -> ExamItem | None:
    """The item as it stands after review: as made (accept), as fixed (fix); None when rejected or unreviewed."""
    if review is None or review["verdict"] == "reject":
        return None
    return ExamItem.model_validate_json(review["item"]) if review["verdict"] == "fix" else item


def kept_items(exam: Exam, reviews: dict, skip: str | None = None) -> list[ExamItem]:
    """The items a paper would hold now: reviewed ones as they stand, unreviewed ones as made (not rejected)."""
    out = []
    for item in exam.items:
        if item.id == skip:
            continue
        review = reviews.get(item.id)
        if review is None:
            out.append(item)
        elif review["verdict"] != "reject":
            out.append(reviewed_item(item, review))
    return out


def reviewed_exam(exam: Exam, reviews: dict) -> Exam:
    """The paper of accepted and fixed items only, in the exam's order."""
    items = [r for r in (reviewed_item(i, reviews.get(i.id)) for i in exam.items) if r is not None]
    return exam.model_copy(update={"items": items})


def exam_view(exam_id: str, exam: Exam, reviews: dict, kb) -> dict:
    """The exam as the API answers it: every item with its validation problems and its review."""
    problems = {p["id"]: p["problems"] for p in validate_exam(exam, kb)["problems"]}
    items = []
    for index, item in enumerate(exam.items):
        review = reviews.get(item.id)
        shown = None
        if review is not None:
            fixed = json.loads(review["item"]) if review["verdict"] == "fix" else None
            shown = {"verdict": review["verdict"], "reviewer": review["reviewer"], "comment": review["comment"],
                     "feedback_id": review["feedback_id"], "item": fixed}
        items.append({"index": index, **item.model_dump(mode="json"), "problems": problems.get(item.id, []),
                      "review": shown})
    counts = {v: sum(1 for r in reviews.values() if r["verdict"] == v) for v in VERDICTS}
    return {"id": exam_id, "object": "exam", "kb": exam.kb, "config": exam.config.model_dump(mode="json"),
            "warnings": exam.warnings, "items": items, "reviewed": {**counts, "open": len(exam.items) - len(reviews)}}


def feedback_for(exam_id: str, original: ExamItem, reviewed: ExamItem, verdict: str, comment: str | None,
                 redact: bool) -> dict:
    """The feedback record of an accepted or fixed item: ``add_response`` and ``add_feedback`` arguments."""
    passage = reviewed.source.passage
    if redact:  # the store redacts the messages and answers; the tag's passage is redacted here, as they are
        from domainlm.data.pii import redact_pii

        passage = redact_pii(passage).text
    source = {**reviewed.source.model_dump(mode="json"), "passage": passage}
    request = {"messages": [{"role": "user", "content": item_prompt(reviewed)}], "task": "exam",
               "exam": {"id": exam_id, "item_id": original.id, "type": original.type, "verdict": verdict,
                        "source": source}}
    answer, fixed = item_answer(original), item_answer(reviewed)
    rating = "up" if verdict == "accept" or fixed == answer else "down"
    note = f"exam review: {verdict}" + (f": {comment.strip()}" if comment and comment.strip() else "")
    return {"request": request, "response": answer, "rating": rating,
            "correction": fixed if verdict == "fix" else None, "comment": note}


# ---------------------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------------------
_BOOK_LOCK = threading.Lock()


def exam_book(request: Request) -> ExamBook:
    """The app's ExamBook (opened once, on first use: opening creates the tables), and the facts cache the
    exam maker keeps between exams on the server's KB."""
    app_state = request.app.state
    with _BOOK_LOCK:
        if getattr(app_state, "exam_book", None) is None:
            app_state.exam_book = ExamBook(serve_state(request).store.engine)
            app_state.exam_cache = {}
    return app_state.exam_book


def _reviewer(state: ServeState, key: ApiKey, what: str) -> None:
    require_role(key, "reviewer", what)
    if "make_exam" not in state.tools or state.kb is None:
        raise ApiError(404, "this server makes no exams (start it with --kb KB --plugin exam)", "no_exam_plugin")


def _load(book: ExamBook, exam_id: str) -> tuple[Exam, dict]:
    found = book.get(exam_id)
    if found is None:
        raise ApiError(404, f"unknown exam '{exam_id}'", "exam_not_found", "exam_id")
    return found


def create_exam(body: ExamRequest, request: Request, state: ServeState = Depends(serve_state),
                key: ApiKey = Depends(authorize)):
    _reviewer(state, key, "making an exam for review")
    book = exam_book(request)
    fields = {"n": body.n, "seed": body.seed, "query": body.query, "max_chunks": 500}  # as the make_exam tool reads
    if body.types:
        fields["types"] = body.types
    try:
        exam = make_exam(state.kb.path, ExamConfig(**fields), kb=state.kb, cache=request.app.state.exam_cache)
    except DomainlmError as exc:
        raise ApiError(400, str(exc).splitlines()[0], "invalid_request") from None
    if not exam.items:
        raise ApiError(400, "; ".join(exam.warnings) or "no items", "no_items")
    exam_id = book.add(exam, key.name)
    return exam_view(exam_id, exam, {}, state.kb)


def get_exam(exam_id: str, request: Request, state: ServeState = Depends(serve_state), key: ApiKey = Depends(authorize)):
    _reviewer(state, key, "exam review")
    exam, reviews = _load(exam_book(request), exam_id)
    return exam_view(exam_id, exam, reviews, state.kb)


def review_item(exam_id: str, item_id: str, body: ReviewRequest, request: Request,
                state: ServeState = Depends(serve_state), key: ApiKey = Depends(authorize)):
    _reviewer(state, key, "exam review")
    book = exam_book(request)
    exam, reviews = _load(book, exam_id)
    original = next((i for i in exam.items if i.id == item_id), None)
    if original is None:
        raise ApiError(404, f"exam '{exam_id}' has no item '{item_id}'", "item_not_found", "item_id")
    if item_id in reviews:
        raise ApiError(409, f"item {item_id} is already reviewed ({reviews[item_id]['verdict']})", "already_reviewed")
    if (body.verdict == "fix") != (body.item is not None):
        raise ApiError(400, "'item' (the fixed fields) goes with verdict 'fix', and only with it", "invalid_request", "item")
    chunk = state.kb.chunk(original.source.chunk_id)
    item = original
    if body.verdict == "fix":
        item = revise_item(original, body.item, chunk, state.kb)
    if body.verdict != "reject":
        problems = review_problems(item, chunk, kept_items(exam, reviews, skip=item_id),
                                   original if body.verdict == "fix" else None)
        if problems:  # the reviewer sees why; nothing is stored
            error = error_body(400, f"the {'fixed ' if body.verdict == 'fix' else ''}item is not valid: "
                               + "; ".join(problems), "invalid_item", "item")
            error["error"]["problems"] = problems
            error["error"]["item"] = item.model_dump(mode="json")
            return JSONResponse(error, status_code=400)
    try:
        book.claim(exam_id, item_id, key.name, body.verdict, None if body.verdict == "reject" else item, body.comment)
    except AlreadyReviewed as exc:
        raise ApiError(409, str(exc), "already_reviewed") from None
    feedback_id = None
    if body.verdict != "reject":
        record = feedback_for(exam_id, original, item, body.verdict, body.comment, state.store.redact_pii)
        try:
            response_id = state.store.add_response(model=FEEDBACK_MODEL, request=record["request"],
                                                   response=record["response"], user=key.name)
            feedback_id = state.store.add_feedback(response_id, rating=record["rating"], correction=record["correction"],
                                                   comment=record["comment"], user=key.name)
        except Exception:
            book.release(exam_id, item_id)  # not acknowledged: the item stays open for review
            raise
        book.settle(exam_id, item_id, feedback_id)
        state.metrics.feedback.labels("exam").inc()
    return {"object": "exam.review", "exam_id": exam_id, "item_id": item_id, "verdict": body.verdict,
            "valid": True, "problems": [], "item": item.model_dump(mode="json"), "feedback_id": feedback_id,
            "stored": feedback_id is not None}


EXPORT_TYPES = {"md": "text/markdown; charset=utf-8", "json": "application/json",
                "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}


def export_exam(exam_id: str, request: Request, fmt: Literal["md", "docx", "json"] = Query("md", alias="format"),
                state: ServeState = Depends(serve_state), key: ApiKey = Depends(authorize)):
    _reviewer(state, key, "exam export")
    exam, reviews = _load(exam_book(request), exam_id)
    paper = reviewed_exam(exam, reviews)
    if not paper.items:
        raise ApiError(409, f"exam '{exam_id}' has no accepted or fixed item yet", "nothing_reviewed")
    if fmt == "md":
        data = exam_markdown(paper).encode("utf-8")
    elif fmt == "json":
        data = json.dumps(paper.model_dump(mode="json"), ensure_ascii=False, indent=1).encode("utf-8")
    else:
        with tempfile.TemporaryDirectory(prefix="domainlm-exam-") as tmp:
            data = exam_docx(paper, Path(tmp) / "exam.docx").read_bytes()
    return Response(data, media_type=EXPORT_TYPES[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{exam_id}.{fmt}"',
                             "X-Exam-Items": str(len(paper.items))})


def register_exam_routes(app) -> None:
    """Add the exam review routes to the app (called by ``app.create_app``)."""
    app.post("/v1/exams")(create_exam)
    app.get("/v1/exams/{exam_id}")(get_exam)
    app.post("/v1/exams/{exam_id}/items/{item_id}/review")(review_item)
    app.get("/v1/exams/{exam_id}/export")(export_exam)
