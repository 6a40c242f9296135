import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from domainlm.cli import main
from domainlm.errors import DomainlmError
from domainlm.io import read_jsonl
from domainlm.kb import KBConfig, build_kb, remove_documents
from domainlm.synth import SynthConfig, synthesize
from domainlm.synth.facts import find_facts

DOCS = [
    {"id": "card", "source": "card.md", "meta": {}, "text": "海港青春信用卡产品说明书\n\n海港青春信用卡的年费为88元。海港青春信用卡的最长免息期为50天。\n"},
    {"id": "loan", "source": "loan.md", "meta": {}, "text": "海港安居房贷\n\n海港安居房贷的年利率为3.85%。海港安居房贷的最长期限为30年。\n"},
    {"id": "dep", "source": "dep.txt", "meta": {}, "text": "Harbor Tide Deposit\n\nThe annual interest rate of Harbor Tide Deposit is 2.80%.\nThe minimum deposit of Harbor Tide Deposit is CNY 100.\n"},
]


@pytest.fixture(scope="module")
def kb_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("kb")
    build_kb(DOCS, out, KBConfig(embedder="none"))
    return out


def test_find_facts_in_both_languages():
    zh = find_facts("海港青春信用卡的年费为88元。其他说明。", "zh")
    assert [(f.subject, f.attribute, f.value) for f in zh] == [("海港青春信用卡", "年费", "88元")]
    en = find_facts("The annual interest rate of Harbor Tide Deposit is 2.80%. Apply online.", "en")
    assert [(f.subject, f.attribute, f.value) for f in en] == [("Harbor Tide Deposit", "annual interest rate", "2.80%")]


def test_items_are_grounded_disjoint_and_refusals_unanswerable(kb_dir, tmp_path):
    result = synthesize(kb_dir, tmp_path, SynthConfig(seed=3, eval_only_fraction=0.34))
    train = read_jsonl(tmp_path / "train" / "synth_knowledge_qa.jsonl")
    evaluation = read_jsonl(tmp_path / "eval" / "synth_knowledge_qa.jsonl")
    refusals = read_jsonl(tmp_path / "train" / "synth_unanswerable.jsonl") + read_jsonl(tmp_path / "eval" / "synth_unanswerable.jsonl")
    assert len(evaluation) == 6  # one eval question per fact
    texts = {d["id"]: d["text"] for d in DOCS}
    for item in train + evaluation:
        assert item["type"] == "qa"
        assert item["answer"] in item["evidence"] and item["evidence"] in texts[item["doc_id"]]
    assert not {i["question"] for i in train} & {i["question"] for i in evaluation}
    eval_only = [i for i in evaluation if not i["meta"]["seen_in_train"]]
    assert len(eval_only) == 2
    trained_facts = {(i["meta"]["subject"], i["meta"]["attribute"]) for i in train}
    assert all((i["meta"]["subject"], i["meta"]["attribute"]) not in trained_facts for i in eval_only)
    assert refusals and all(i["type"] == "refusal" and i["answer"] == "" for i in refusals)
    corpus = "\n".join(texts.values())
    for item in refusals:
        subject, attribute = item["meta"]["subject"], item["meta"]["attribute"]
        if item["subcategory"] == "unknown_product":
            assert subject not in corpus
        else:
            assert not any(subject in t and attribute in t for t in texts.values())
    assert result.counts["eval/synth_knowledge_qa"] == 6


def test_same_seed_same_bytes(kb_dir, tmp_path):
    synthesize(kb_dir, tmp_path / "a", SynthConfig(seed=1))
    synthesize(kb_dir, tmp_path / "b", SynthConfig(seed=1))
    for name in ("train/synth_knowledge_qa.jsonl", "eval/synth_knowledge_qa.jsonl", "eval/synth_unanswerable.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_empty_kb_is_a_clear_error(tmp_path):
    build_kb(DOCS[:1], tmp_path / "kb", KBConfig(embedder="none"))
    remove_documents(tmp_path / "kb", ["card"])
    with pytest.raises(DomainlmError, match="knowledge base is empty"):
        synthesize(tmp_path / "kb", tmp_path / "out")


def test_cli_writes_then_skips(kb_dir, tmp_path, capsys):
    assert main(["synth", str(kb_dir), "--out", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "manifest.json").is_file()
    assert main(["synth", str(kb_dir), "--out", str(tmp_path / "s")]) == 0
    assert "up to date" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "nokb"), "--out", str(tmp_path / "x")]) == 2


class TeacherHandler(BaseHTTPRequestHandler):
    """An OpenAI-compatible teacher that answers with one grounded and one made-up pair."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        if "2.80%" in prompt:
            pairs = [{"question": "What is the annual interest rate of Harbor Tide Deposit?", "answer": "2.80%"}]
        else:
            grounded = "88元" if "88元" in prompt else "3.85%"
            pairs = [{"question": "这项产品的费用是多少？", "answer": grounded}, {"question": "年费是多少？", "answer": grounded}]
        pairs.append({"question": "编造的费用是多少？", "answer": "999元"})
        content = json.dumps(pairs, ensure_ascii=False)
        reply = {"id": "x", "object": "chat.completion", "model": "teacher", "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_teacher_items_are_kept_only_when_grounded(kb_dir, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), TeacherHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        spec = f"openai:http://127.0.0.1:{server.server_port}/v1#teacher"
        result = synthesize(kb_dir, tmp_path, SynthConfig(teacher=spec))
    finally:
        server.shutdown()
    train = read_jsonl(tmp_path / "train" / "synth_knowledge_qa.jsonl")
    from_teacher = [i for i in train if i["meta"]["generator"].startswith("teacher:")]
    assert from_teacher and all(i["answer"] != "999元" for i in from_teacher)
    rejected = read_jsonl(tmp_path / "rejected.jsonl")
    assert result.rejected == len(rejected) >= 1
    # Every pair is held to the checks rule items pass: the made-up answer is not in the chunk, and a
    # question that leans on a pronoun ("这项产品") cannot stand alone.
    reasons = {r["output"]["question"]: r["checks"] for r in rejected}
    assert "answer is not a span of the passage" in reasons["编造的费用是多少？"]
    assert reasons["这项产品的费用是多少？"] == ["question leans on a pronoun"]
    assert {i["question"] for i in from_teacher} == {"年费是多少？", "What is the annual interest rate of Harbor Tide Deposit?"}
    quality = json.loads((tmp_path / "quality.json").read_text(encoding="utf-8"))
    assert quality["teacher_cost"]["requests"] >= 3 and quality["dropped"]["teacher: answer is not a span of the passage"] >= 1


def test_reading_items_can_only_be_answered_from_their_passages(tmp_path):
    """Counterfactual reading items: the reply is a value swapped into one passage (another product's value
    of the same attribute), never the true value, and never about an eval-only fact."""
    docs = [{"id": f"card{i}", "source": f"card{i}.md", "meta": {}, "text": f"海港{name}卡\n\n海港{name}卡的年费为{fee}元。"
             f"海港{name}卡的最长免息期为{days}天。\n"} for i, (name, fee, days) in
            enumerate([("青春", 88, 50), ("白金", 600, 56), ("商务", 300, 45), ("金", 200, 40)])]
    build_kb(docs, tmp_path / "kb", KBConfig(embedder="none"))
    result = synthesize(tmp_path / "kb", tmp_path / "out", SynthConfig(seed=1, eval_only_fraction=0.25, reading_per_fact=2))
    rows = read_jsonl(tmp_path / "out" / "train" / "synth_reading.jsonl")
    assert result.counts["train/synth_reading"] == len(rows) > 0
    evaluation = read_jsonl(tmp_path / "out" / "eval" / "synth_knowledge_qa.jsonl")
    eval_only = {(i["meta"]["subject"], i["meta"]["attribute"]) for i in evaluation if not i["meta"]["seen_in_train"]}
    truth = {(f.subject, f.attribute): f.value for d in docs for f in find_facts(d["text"], "zh")}
    for row in rows:
        prompt, reply = row["messages"][0]["content"], row["messages"][1]["content"]
        assert prompt.startswith("参考资料：\n[1] ") and "[3] " in prompt  # rendered like a +kb eval prompt
        (subject, attribute), = [key for key in truth if key[0] in prompt.split("\n")[-2] and key[1] in prompt.split("\n")[-2]]
        assert (subject, attribute) not in eval_only
        assert reply != truth[(subject, attribute)]
        assert f"{subject}的{attribute}为{reply}" in prompt  # the swapped value is in the passages ...
        assert f"{subject}的{attribute}为{truth[(subject, attribute)]}" not in prompt  # ... the true one is not
    off = synthesize(tmp_path / "kb", tmp_path / "off", SynthConfig(seed=1, reading_passages=0))
    assert off.counts["train/synth_reading"] == 0


def test_a_small_kb_swaps_in_values_of_the_same_shape(tmp_path):
    """Where no other product states the same attribute (a small KB), the swapped value comes from another
    attribute with the same shape: a fee for a fee-like amount, a rate for a rate, never a different kind."""
    docs = [{"id": "d1", "source": "d1.md", "meta": {}, "text": "海港青春卡\n\n海港青春卡的年费为88元。海港青春卡的取现手续费率为0.50%。\n"},
            {"id": "d2", "source": "d2.md", "meta": {}, "text": "海港安居贷\n\n海港安居贷的评估费为300元。海港安居贷的年利率为3.85%。\n"},
            {"id": "d3", "source": "d3.md", "meta": {}, "text": "海港明珠存款\n\n海港明珠存款的起存金额为50元。海港明珠存款的存期为3年。\n"}]
    build_kb(docs, tmp_path / "kb", KBConfig(embedder="none"))
    result = synthesize(tmp_path / "kb", tmp_path / "out", SynthConfig(seed=0, eval_only_fraction=0.0))
    rows = read_jsonl(tmp_path / "out" / "train" / "synth_reading.jsonl")
    assert result.counts["train/synth_reading"] == len(rows) > 0
    replies = {row["messages"][1]["content"] for row in rows}
    assert replies <= {"88元", "300元", "50元", "0.50%", "3.85%"}  # "3年" has no other value of its shape
    for row in rows:
        prompt, reply = row["messages"][0]["content"], row["messages"][1]["content"]
        question = prompt.split("\n")[-2]
        truth = {f.attribute: f.value for d in docs for f in find_facts(d["text"], "zh") if f.subject in question}
        (attribute, value), = [(a, v) for a, v in truth.items() if a in question]
        assert reply != value and reply[-1] == value[-1]  # same shape: 元 for 元, % for %
