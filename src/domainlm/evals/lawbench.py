"""LawBench scoring rules, re-implemented from their documented behaviour (not copied).

Used to show scorer parity: re-scoring LawBench's published predictions reproduces its published
``results.csv`` exactly. The rules are deliberately LawBench's own (substring matching, abstention
when no option occurs) — not domainlm's extractors, which read answers more carefully.
Tasks covered: 1-2 (JEC-QA knowledge, accuracy), 2-3 (marriage-dispute labels, set F1),
2-4 (consultation topic, accuracy).
"""

from __future__ import annotations

import json
from pathlib import Path

from domainlm.errors import DomainlmError

MARRIAGE_LABELS = [
    "婚后有子女", "限制行为能力子女抚养", "有夫妻共同财产", "支付抚养费", "不动产分割", "婚后分局", "二次起诉离婚",
    "按月给付抚养费", "准予离婚", "有夫妻共同债务", "婚前个人财产", "法定离婚", "不履行家庭义务", "存在非婚生子",
    "适当帮助", "不履行离婚协议", "损害赔偿", "感情不和分居满二年", "子女随非抚养权人生活", "婚后个人财产",
]
TOPIC_LABELS = [
    "婚姻家庭", "劳动纠纷", "交通事故", "债权债务", "刑事辩护", "合同纠纷", "房产纠纷", "侵权", "公司法", "医疗纠纷",
    "拆迁安置", "行政诉讼", "建设工程", "知识产权", "综合咨询", "人身损害", "涉外法律", "海事海商", "消费权益", "抵押担保",
]
TASKS = ("1-2", "2-3", "2-4")


def multi_choice_judge(prediction: str, options: list[str], answer: str) -> tuple[float, bool]:
    """(score, abstained): an option is chosen when it occurs anywhere in the raw prediction;
    score 1 only if the gold option is the one and only option chosen."""
    present = [opt for opt in options if opt in prediction]
    if not present:
        return 0.0, True
    return float(present == [answer]), False


def score_item(task: str, prediction: str, refr: str) -> tuple[float, bool]:
    if task == "1-2":
        return multi_choice_judge(prediction, ["A", "B", "C", "D"], refr[5])  # refr is "正确答案：X。"
    if task == "2-3":
        gold = set(refr[3:-1].split("、"))  # refr is "类别:x、y。"
        predicted = {label for label in MARRIAGE_LABELS if label in prediction}
        if not predicted:
            return 0.0, True
        tp = len(gold & predicted)
        p, r = tp / len(predicted), tp / len(gold)
        return (2 * p * r / (p + r) if p + r else 0.0), False
    if task == "2-4":
        return multi_choice_judge(prediction, TOPIC_LABELS, refr)
    raise DomainlmError(f"LawBench task '{task}' is not supported (supported: {', '.join(TASKS)})")


def score_file(task: str, path: str | Path) -> dict:
    """Score one LawBench prediction file (a JSON object keyed "0".."n-1")."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DomainlmError(f"{path}: not a readable LawBench prediction file ({exc})") from None
    scores, abstained = [], 0
    for i in range(len(data)):
        row = data.get(str(i))
        if row is None or "prediction" not in row or "refr" not in row:
            raise DomainlmError(f"{path}: record '{i}' is missing or has no 'prediction'/'refr'")
        score, abstain = score_item(task, row["prediction"], row["refr"])
        scores.append(score)
        abstained += abstain
    # Left-to-right sum / len over keys 0..n-1: the same float LawBench reports.
    return {"task": task, "n": len(scores), "score": sum(scores) / len(scores), "abstention_rate": abstained / len(scores)}
