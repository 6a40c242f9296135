import json

import pytest

from domainlm.errors import DomainlmError
from domainlm.kb import answer
from domainlm.kb.answer import REFUSAL


def _squash(text: str) -> str:
    # PDF extraction wraps lines: compare facts without whitespace.
    return "".join(text.split())


def _items(sample_dir, task):
    return [json.loads(line) for line in (sample_dir / "tasks" / "eval" / f"{task}.jsonl").read_text("utf-8").splitlines()]


def test_answerable_questions_retrieve_and_cite_the_fact(sample_kb, sample_dir):
    items = _items(sample_dir, "knowledge_qa")
    assert items
    for item in items:
        hits = sample_kb.search(item["question"], k=5, mode="hybrid")
        assert any(_squash(item["evidence"]) in _squash(h.text) for h in hits), item["question"]
        ans = answer(sample_kb, item["question"])
        assert not ans.refused, (item["question"], ans.reason)
        assert item["answer"] in ans.answer
        assert any(_squash(item["evidence"]) in _squash(c.text) for c in ans.citations)
        for c in ans.citations:  # every citation is a real chunk of the KB, with its provenance
            chunk = next(x for x in sample_kb.chunks if x["id"] == c.chunk_id)
            assert chunk["text"] == c.text and (chunk["start"], chunk["end"]) == (c.start, c.end)
        assert f"[{ans.citations[0].n}]" in ans.answer and ans.language == item["lang"]


def test_unanswerable_questions_are_refused_in_their_language(sample_kb, sample_dir):
    items = _items(sample_dir, "unanswerable")
    assert items
    for item in items:
        ans = answer(sample_kb, item["question"])
        assert ans.refused, (item["question"], ans.answer)
        assert ans.answer == REFUSAL[item["lang"]] and ans.reason and ans.citations == []


class ScriptedModel:
    """A stand-in with the model interface's chat(); returns a fixed reply and records the prompt."""

    supports_logprobs = False

    def __init__(self, reply):
        self.reply, self.prompts = reply, []

    def chat(self, conversations, **kwargs):
        self.prompts += conversations
        return [self.reply for _ in conversations]


def test_model_answer_unsupported_sentences_dropped(sample_kb, sample_dir):
    item = next(i for i in _items(sample_dir, "knowledge_qa") if i["lang"] == "zh")
    hits = sample_kb.search(item["question"], k=5)
    n = next(h.rank for h in hits if _squash(item["evidence"]) in _squash(h.text))
    model = ScriptedModel(f"{item['evidence']}[{n}] 此外该产品年化收益高达99.99%[{n}]。")
    ans = answer(sample_kb, item["question"], model)
    assert not ans.refused and ans.mode == "model" and ans.reason == "dropped_unsupported_sentences"
    assert item["answer"] in ans.answer and "99.99" not in ans.answer
    kept = [s for s in ans.sentences if s.kept]
    assert len(kept) == 1 and kept[0].support >= 0.6 and [s.support for s in ans.sentences if not s.kept] == [0.0]
    assert _squash(item["evidence"]) in _squash(ans.citations[0].text)
    assert "[1]" in model.prompts[0][1]["content"] and item["question"] in model.prompts[0][1]["content"]


def test_model_answer_uncited_sentence_credited_to_best_chunk(sample_kb, sample_dir):
    item = next(i for i in _items(sample_dir, "knowledge_qa") if i["lang"] == "en")
    ans = answer(sample_kb, item["question"], ScriptedModel(item["evidence"]))
    assert not ans.refused and ans.sentences[0].citations == [1]
    assert _squash(item["evidence"]) in _squash(ans.citations[0].text)


def test_model_answers_that_are_refusals_or_unsupported(sample_kb, sample_dir):
    item = next(i for i in _items(sample_dir, "knowledge_qa") if i["lang"] == "zh")
    made_up = answer(sample_kb, item["question"], ScriptedModel("月球上的分行每天营业25小时[1]。"))
    assert made_up.refused and made_up.reason.startswith("unsupported") and made_up.answer == REFUSAL["zh"]
    declined = answer(sample_kb, item["question"], ScriptedModel(REFUSAL["zh"]))
    assert declined.refused and declined.reason.startswith("model_refused")
    # an unanswerable question never reaches the model
    model = ScriptedModel("whatever")
    un = _items(sample_dir, "unanswerable")[0]
    assert answer(sample_kb, un["question"], model).refused and model.prompts == []


def test_real_tiny_model_never_gives_an_unsupported_answer(sample_kb, sample_dir, tmp_path):
    pytest.importorskip("transformers")
    from domainlm.models import load_model
    from domainlm.models.testing import make_tiny_model

    model = load_model(str(make_tiny_model(tmp_path / "tiny")))
    for item in _items(sample_dir, "knowledge_qa")[:1]:
        ans = answer(sample_kb, item["question"], model, max_new_tokens=16)
        assert ans.mode == "model"
        # a random model writes noise: either refused, or only sentences its citations support
        assert ans.refused or all(s.support >= 0.6 for s in ans.sentences if s.kept)


def test_bad_questions(sample_kb, tmp_path):
    long = answer(sample_kb, "存款利率" * 30_000)
    assert long.refused and long.reason.startswith("question_too_long")
    garbage = bytes(range(256)).decode("latin-1") * 4
    ans = answer(sample_kb, garbage)
    assert ans.refused and ans.citations == []
    with pytest.raises(DomainlmError, match="empty question"):
        answer(sample_kb, "  ")
