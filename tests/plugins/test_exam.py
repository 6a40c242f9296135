import json
from pathlib import Path

import pytest

from domainlm.cli import main
from domainlm.errors import DomainlmError
from domainlm.kb import KBConfig, build_kb, open_kb
from domainlm.plugins.exam import (
    BLANK,
    LETTERS,
    Exam,
    ExamConfig,
    exam_tool,
    make_exam,
    normalize_numbers,
    same_value,
    supported_by,
    to_markdown,
    validate_exam,
    value_kind,
)


@pytest.fixture(scope="module")
def sample_kb(tmp_path_factory):
    """The Harbor Bank sample's documents (all five formats), BM25 only: cheap, and what exam reads."""
    from domainlm.kb.sources import iter_documents
    from domainlm.sample import generate_sample

    root = tmp_path_factory.mktemp("exam-sample")
    sample = generate_sample(root / "harbor", seed=0, size="tiny")
    build_kb(list(iter_documents([sample / "docs"], [])), root / "kb", KBConfig(embedder="none"))
    return root / "kb"


@pytest.fixture(scope="module")
def cmrc_kb(tmp_path_factory):
    """25 CMRC 2018 passages (Chinese Wikipedia prose: railways, footballers, history), BM25 only."""
    # tests/conftest.py's SHARED_BENCHMARKS, spelled here: a module-scoped fixture cannot use its fixture, and
    # `from conftest import` resolves to whichever conftest module pytest imported under that name first
    path = Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks" / "cmrc2018" / "cmrc2018_dev.json"
    if not path.is_file():
        pytest.skip(f"{path} is not beside this checkout")
    data = json.loads(path.read_text("utf-8"))["data"][:25]
    docs = [{"id": e["id"], "text": f"{e['title']}\n\n{e['paragraphs'][0]['context']}", "source": f"{e['id']}.txt",
             "meta": {}} for e in data]
    out = tmp_path_factory.mktemp("exam-cmrc") / "kb"
    build_kb(docs, out, KBConfig(embedder="none"))
    return out


@pytest.fixture(scope="module")
def sample_exam(sample_kb):
    return make_exam(sample_kb, ExamConfig(n=20, seed=0))


def _check_grounding(exam: Exam, kb) -> None:
    """The Done criterion, checked here directly rather than through validate_exam: every key is in its
    passage, every distractor is not (as written or under number normalisation) and differs from the key."""
    for item in exam.items:
        chunk = kb.chunk(item.source.chunk_id)
        start, end = item.source.span
        assert chunk["text"][start:end] == item.source.passage
        if item.type == "short":
            assert item.rubric
            assert all(p.answer in p.evidence and p.evidence in chunk["text"] for p in item.rubric)
        else:
            assert item.key in item.source.passage, item
        for d in item.distractors:
            assert d not in chunk["text"] and normalize_numbers(d) not in normalize_numbers(chunk["text"]), (item.id, d)
            assert not same_value(d, item.key)
        if item.type == "mcq":
            assert item.choices[LETTERS.index(item.answer)] == item.key
            assert len(item.choices) == 4 and len(set(item.choices)) == 4
        if item.type == "cloze":
            assert item.question.replace(BLANK, item.key) == item.source.passage
        assert 0 <= item.difficulty <= 1 and item.level in ("easy", "medium", "hard")


def test_number_normalisation():
    assert same_value("3.0%", "3％") and same_value("CNY 1,000", "CNY1000") and same_value("2万元", "20000元")
    assert same_value("三年", "3年") and same_value("二十五天", "25天") and same_value("一百零五人", "105人")
    assert not same_value("2.80%", "2.70%") and not same_value("3年", "3个月")
    assert supported_by("3.00%", "年利率为3%。") and supported_by("三年", "存期为3年。")
    assert not supported_by("2.70%", "年利率为2.80%。")
    assert value_kind("2.80%") == "percent" and value_kind("800元") == "amount" and value_kind("CNY 100") == "amount"
    assert value_kind("90 days") == "duration" and value_kind("6个") == "count"
    assert value_kind("1997年11月", "date") == "date" and value_kind("赵鹏", "person") == "person"


def test_sample_exam_keys_supported_distractors_not(sample_exam, sample_kb):
    kb = open_kb(sample_kb)
    # Measured: the tiny sample holds enough facts for 20 items (7 mcq, 7 cloze, 6 short).
    assert len(sample_exam.items) == 20 and not sample_exam.warnings
    assert {i.type for i in sample_exam.items} == {"mcq", "cloze", "short"}
    _check_grounding(sample_exam, kb)
    report = validate_exam(sample_exam, kb)
    assert report["validity"] == 1.0, report["problems"]
    # A short item over one subject has a rubric point per attribute, each from the passage.
    assert any(len(i.rubric) >= 2 for i in sample_exam.items if i.type == "short")
    assert len({(i.source.chunk_id, k) for i in sample_exam.items for k in ([p.answer for p in i.rubric] or [i.key])}) \
        == sum(len(i.rubric) or 1 for i in sample_exam.items)


def test_same_seed_same_exam(sample_exam, sample_kb):
    again = make_exam(sample_kb, ExamConfig(n=20, seed=0))
    assert again.model_dump() == sample_exam.model_dump()


def test_cmrc_passages(cmrc_kb):
    kb = open_kb(cmrc_kb)
    exam = make_exam(cmrc_kb, ExamConfig(n=20, seed=1), kb=kb)
    assert len(exam.items) >= 15
    assert sum(i.type == "mcq" for i in exam.items) >= 4
    _check_grounding(exam, kb)
    report = validate_exam(exam, kb)
    assert report["validity"] == 1.0, report["problems"]
    # Distractors are of the key's kind: a year for a year, a person for a person.
    for item in (i for i in exam.items if i.type == "mcq"):
        assert all(value_kind(d, item.kind) == item.kind or item.kind in ("person", "place", "organisation")
                   for d in item.distractors), item


def test_topic_query_keeps_to_its_passages(cmrc_kb):
    kb = open_kb(cmrc_kb)
    exam = make_exam(cmrc_kb, ExamConfig(n=6, query="铁路", query_k=5), kb=kb)
    hits = {h.chunk_id for h in kb.search("铁路", k=5)}
    assert exam.items and all(i.source.chunk_id in hits for i in exam.items)


def test_validation_catches_bad_items(sample_exam, sample_kb):
    kb = open_kb(sample_kb)
    mcq = next(i for i in sample_exam.items if i.type == "mcq")
    cloze = next(i for i in sample_exam.items if i.type == "cloze")
    # A distractor the passage states (words of the passage itself), a wrong cloze key, a repeated item.
    wrong = mcq.source.passage[:4]
    bad_mcq = mcq.model_copy(update={"id": "bad-mcq", "distractors": [wrong, *mcq.distractors[1:]],
                                     "choices": [mcq.key, wrong, *mcq.distractors[1:]], "answer": "A"})
    bad_cloze = cloze.model_copy(update={"id": "bad-cloze", "key": cloze.key + "0", "answer": cloze.key + "0"})
    exam = Exam(kb=str(sample_kb), config=sample_exam.config, items=[bad_mcq, bad_cloze, mcq])
    report = validate_exam(exam, kb)
    problems = {p["id"]: " | ".join(p["problems"]) for p in report["problems"]}
    assert "supported by the passage" in problems["bad-mcq"]
    assert "key not supported" in problems["bad-cloze"] and "refill" in problems["bad-cloze"]
    assert "again" in problems[mcq.id] or "duplicate" in problems[mcq.id]
    assert report["valid"] == 0 and report["validity"] == 0.0


def test_a_reviewers_fix_is_rebuilt_and_rechecked(sample_exam, sample_kb):
    from domainlm.plugins.exam import ItemFix, item_answer, item_prompt, review_problems, revise_item

    kb = open_kb(sample_kb)
    mcq = next(i for i in sample_exam.items if i.type == "mcq")
    others = [i for i in sample_exam.items if i is not mcq]
    chunk = kb.chunk(mcq.source.chunk_id)
    assert review_problems(mcq, chunk, others) == []  # a made item stands as made
    # Another distractor of the key's shape, one the chunk does not state: the key keeps its letter.
    pool = [v for i in sample_exam.items if i.type == "mcq" for v in [i.key, *i.distractors]]
    fresh = next(v for v in pool if v not in mcq.choices and not supported_by(v, chunk["text"]) and not any(
        v in o.question for o in others))
    fixed = revise_item(mcq, ItemFix(distractors=[fresh, *mcq.distractors[1:]]), chunk, kb)
    assert fixed.answer == mcq.answer and fixed.choices[LETTERS.index(fixed.answer)] == mcq.key
    assert sorted(fixed.choices) == sorted([mcq.key, fresh, *mcq.distractors[1:]])
    assert review_problems(fixed, chunk, others, mcq) == []
    assert item_answer(fixed) == item_answer(mcq) and f"{fixed.answer}. {mcq.key}" in item_prompt(fixed)
    # A key its passage does not state, a distractor its chunk does, a passage not in the chunk, no change.
    wrong = revise_item(mcq, ItemFix(key="999999元", distractors=[mcq.source.passage[:4]]), chunk, kb)
    problems = review_problems(wrong, chunk, others, mcq)
    assert "key not supported by its passage" in problems
    assert f"distractor {mcq.source.passage[:4]!r} is supported by the passage" in problems
    moved = revise_item(mcq, ItemFix(passage="这句话不在文中。"), chunk, kb)
    assert "passage is not the chunk's text at its span" in review_problems(moved, chunk, others, mcq)
    same = revise_item(mcq, ItemFix(key=mcq.key), chunk, kb)
    assert review_problems(same, chunk, others, mcq) == ["the fix changes nothing (accept the item instead)"]
    # A short answer's rubric point must be stated by its evidence.
    short = next(i for i in sample_exam.items if i.type == "short")
    point = short.rubric[0]
    bad = revise_item(short, ItemFix(rubric=[{"point": point.point, "answer": point.answer + "X"}]),
                      kb.chunk(short.source.chunk_id), kb)
    assert any("not supported by the passage" in p for p in review_problems(bad, kb.chunk(short.source.chunk_id), []))


def test_markdown_holds_questions_and_key(sample_exam):
    text = to_markdown(sample_exam)
    assert text.index("## 答案与解析") > max(text.index(i.question) for i in sample_exam.items)
    for item in sample_exam.items:
        assert item.question in text and item.source.passage in text
        assert all(f"{letter}. {c}" in text for letter, c in zip(LETTERS, item.choices or [], strict=False))


def test_cli_docx_json_and_errors(cmrc_kb, tmp_path, capsys):
    import docx

    assert main(["exam", str(cmrc_kb), "--n", "8", "--seed", "2", "--out", str(tmp_path / "exam.docx")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 8 and summary["validity"] == 1.0
    body = "\n".join(p.text for p in docx.Document(str(tmp_path / "exam.docx")).paragraphs)
    assert main(["exam", str(cmrc_kb), "--n", "8", "--seed", "2", "--out", str(tmp_path / "exam.json")]) == 0
    exam = Exam.model_validate_json((tmp_path / "exam.json").read_text("utf-8"))
    assert len(exam.items) == 8
    for item in exam.items:
        assert item.question in body and item.key in body and item.source.passage in body
    capsys.readouterr()
    assert main(["exam", str(tmp_path / "nokb"), "--out", str(tmp_path / "x.md")]) == 2
    assert "no such knowledge base folder" in capsys.readouterr().err
    assert main(["exam", str(cmrc_kb), "--out", str(tmp_path / "x.pdf")]) == 2
    assert "unknown exam format" in capsys.readouterr().err
    assert main(["exam", str(cmrc_kb), "--types", "essay", "--out", str(tmp_path / "x.md")]) == 2
    with pytest.raises(DomainlmError, match="no such knowledge base"):
        make_exam(tmp_path / "missing")


def test_tool(cmrc_kb):
    kb = open_kb(cmrc_kb)
    tool = exam_tool(kb)
    result = tool.run({"n": 4, "types": ["mcq"], "seed": 0})
    assert result["validation"]["validity"] == 1.0 and len(result["items"]) == 4
    assert all(item["type"] == "mcq" and item["source"]["passage"] for item in result["items"])
    assert "error" in tool.run({"n": 0})


def test_serve_offers_exam_only_over_its_kb(cmrc_kb):
    from domainlm.serve.plugins import server_tools

    kb = open_kb(cmrc_kb)
    tools = server_tools(kb, ["exam"])
    assert set(tools) == {"kb_search", "make_exam"}
    assert "make_exam" not in server_tools(kb, [])
    with pytest.raises(DomainlmError, match="needs a knowledge base"):
        server_tools(None, ["exam"])
