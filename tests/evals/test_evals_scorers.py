"""Every scorer on hand-checked items, and the metric arithmetic behind the task scores."""

import numpy as np
import pytest

from domainlm.evals.scorers import SCORERS, char_f1, normalize_value, rouge_l, score_item
from domainlm.evals.scoring import score_predictions, summarize


def test_mcq_and_yesno():
    item = {"type": "mcq", "choices": ["a", "b", "c", "d"], "answer": "B"}
    assert score_item(item, "答案不是A，而是B")["score"] == 1.0
    v = score_item(item, "不知道")
    assert v["score"] == 0.0 and v["unparseable"]
    multi = {"type": "mcq", "choices": ["a", "b", "c", "d"], "answer": ["C", "A"]}
    assert score_item(multi, "答案是A、C")["score"] == 1.0
    assert score_item(multi, "答案是A")["score"] == 0.0
    assert score_item({"type": "yesno", "answer": "否"}, "这个说法不正确")["score"] == 1.0


def test_qa_exact_match_and_char_f1_with_chinese_normalisation():
    item = {"type": "qa", "answer": "100元"}
    v = score_item(item, "１００元。")  # full-width digits, trailing punctuation
    assert v["em"] == 1.0 and v["score"] == 1.0
    # Units: 年 费 100 元 vs 100 元 (a number is one unit) → P=2/4, R=2/2, F1=2/3
    v = score_item(item, "年费100元")
    assert v["em"] == 0.0 and v["score"] == pytest.approx(2 / 3) and v["contains"] == 1.0
    assert score_item({"type": "qa", "answer": "the savings account"}, "Savings account.")["em"] == 1.0
    assert char_f1("理財產品", "理财产品") == 1.0  # traditional → simplified
    assert score_item({"type": "qa", "answer": ["50元", "五十元"]}, "五十元")["em"] == 1.0


def test_intent_accuracy_and_macro_f1():
    items = [{"type": "intent", "choices": ["查余额", "转账"], "answer": a} for a in ["查余额", "查余额", "转账"]]
    verdicts = [score_item(i, o) for i, o in zip(items, ["查余额", "转账", "转账"], strict=True)]
    metrics = SCORERS["intent"].metrics(items, verdicts)
    # 查余额: tp1 fn1 → F1 2/3; 转账: tp1 fp1 → F1 2/3
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["macro_f1"] == pytest.approx(2 / 3)


def test_ner_span_level_prf():
    item = {"type": "ner", "answer": None, "entities": [
        {"type": "PER", "text": "张三", "start": 0, "end": 2}, {"type": "ORG", "text": "海港银行", "start": 3, "end": 7}]}
    v = score_item(item, '[{"type": "PER", "text": "张三"}, {"type": "ORG", "text": "银行"}]')
    assert (v["tp"], v["fp"], v["fn"]) == (1, 1, 1)
    assert v["score"] == pytest.approx(0.5)
    metrics = SCORERS["ner"].metrics([item], [v])
    assert metrics == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert SCORERS["ner"].main(np.array([0.0, 0.0, 0.0])) == 1.0  # nothing to find, nothing found


def test_tool_call_argument_match_after_json_normalisation():
    item = {"type": "tool_call", "answer": {"name": "transfer", "arguments": {"amount": 100, "to": "张三"}}}
    ok = score_item(item, '{"name": "transfer", "arguments": "{\\"to\\": \\"张三\\", \\"amount\\": \\"100\\"}"}')
    assert ok["score"] == 1.0 and ok["name_match"] == 1.0
    wrong_arg = score_item(item, '{"name": "transfer", "arguments": {"amount": 200, "to": "张三"}}')
    assert wrong_arg["score"] == 0.0 and wrong_arg["name_match"] == 1.0
    assert score_item(item, "我来帮你转账")["unparseable"]
    assert normalize_value({"Ａ": "1,000"}) == {"a": 1000.0}


def test_json_schema_validity_and_field_accuracy():
    schema = {"type": "object", "properties": {"product": {"type": "string"}, "fee": {"type": "number"}},
              "required": ["product", "fee"]}
    item = {"type": "json", "schema": schema, "answer": {"product": "海港金卡", "fee": 100}}
    v = score_item(item, '{"product": "海港金卡", "fee": "100"}')
    assert v["schema_valid"] == 0.0  # "100" is a string: schema says number
    assert v["score"] == 1.0  # but both fields carry the right values
    v = score_item(item, '{"product": "海港银卡", "fee": 100}')
    assert v["schema_valid"] == 1.0 and v["score"] == 0.5


def test_refusal_scoring_both_directions():
    unanswerable = {"type": "refusal", "answer": ""}
    answerable = {"type": "refusal", "answer": "100元"}
    assert score_item(unanswerable, "文档中没有相关信息。")["score"] == 1.0
    assert score_item(unanswerable, "年费为200元。")["score"] == 0.0  # hallucinated
    assert score_item(answerable, "年费为100元。")["score"] == 1.0
    assert score_item(answerable, "无法回答。")["score"] == 0.0  # over-refusal
    metrics = SCORERS["refusal"].metrics([], [score_item(unanswerable, "无法回答"), score_item(answerable, "无法回答")])
    assert metrics == {"accuracy": 0.5, "refusal_recall": 1.0, "false_refusal_rate": 1.0}


def test_generation_rouge_l_and_judge_override():
    # LCS of 海港金卡年费100元 / 海港金卡年费为100元: units 海港金卡年费 + 100 + 元 → P=8/8, R=8/9
    assert rouge_l("海港金卡年费100元", "海港金卡年费为100元") == pytest.approx(2 * (8 / 9) / (1 + 8 / 9))
    assert rouge_l("The fee is 100 yuan", "fee 100 yuan") == pytest.approx(2 * 1 * 0.75 / 1.75)
    item = {"type": "generation", "answer": "年费100元"}
    assert score_item(item, "年费100元")["score"] == 1.0
    judged = score_item(item, "年费100元", judge_score=0.25)
    assert judged["score"] == 0.25 and judged["rouge_l"] == 1.0


def test_malformed_item_does_not_kill_the_batch():
    items = [{"id": "a", "task": "t", "type": "tool_call", "answer": "not json", "category": "c", "subcategory": "s"},
             {"id": "b", "task": "t", "type": "tool_call", "answer": {"name": "f", "arguments": {}},
              "category": "c", "subcategory": "s"}]
    records = score_predictions(items, {"a": {"id": "a", "output": "{}"}, "b": {"id": "b", "output": '{"name": "f"}'}})
    assert records[0]["unparseable"] and "error" in records[0]
    assert records[1]["score"] == 1.0
    results = summarize(items, records)
    assert results["tasks"]["t"]["score"] == 0.5 and results["tasks"]["t"]["n"] == 2


class _FixedJudge:
    """A judge whose replies are given: checks prompt filling and score parsing, not a model."""

    def __init__(self, replies):
        self.replies, self.seen = replies, []

    def chat(self, conversations, **kwargs):
        self.seen.extend(c[0]["content"] for c in conversations)
        return self.replies[: len(conversations)]


def test_judge_scores_map_one_to_five_onto_unit_interval():
    from domainlm.evals.runner import judge_generations

    items = [{"id": "a", "type": "generation", "question": "介绍金卡", "answer": "年费100元"},
             {"id": "b", "type": "generation", "question": "介绍银卡", "answer": "年费50元"},
             {"id": "c", "type": "qa", "question": "q", "answer": "x"}]
    preds = {"a": {"id": "a", "output": "金卡年费100元"}, "b": {"id": "b", "output": "不知道"}, "c": {"id": "c", "output": "x"}}
    judge = _FixedJudge(["4分", "无法评分"])
    judge_generations(judge, items, preds, "问题：{question}\n参考答案：{reference}\n回答：{output}\n分数：")
    assert judge.seen[0] == "问题：介绍金卡\n参考答案：年费100元\n回答：金卡年费100元\n分数："
    assert preds["a"]["judge_score"] == 0.75 and preds["a"]["judge_output"] == "4分"
    assert preds["b"]["judge_score"] == 0.0  # unreadable judgement does not vouch for the answer
    assert "judge_score" not in preds["c"]
    assert score_item(items[0], preds["a"]["output"], judge_score=preds["a"]["judge_score"])["score"] == 0.75
