"""One scorer per task type: item + model output → verdict; verdicts → task metrics.

A verdict is a plain dict stored in ``predictions.jsonl``: the extracted answer, the gold, the
item's ``score`` in [0, 1], whether the output was ``unparseable``, and ``degenerate``: why the output
says nothing (empty, whitespace, punctuation only, a loop; see :mod:`domainlm.evals.degenerate`) or
None. A degenerate output earns nothing on any task type, refusals included. Each scorer also turns a
verdict into a few additive ``counts`` and computes its main score from summed counts; that is what
makes bootstrap confidence intervals for corpus-level metrics (NER span F1) a vectorised sum.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import numpy as np

from domainlm.evals import extract
from domainlm.evals.degenerate import degenerate_reason
from domainlm.evals.normalize import normalize_answer, normalize_text, units
from domainlm.parsing import extract_json, extract_tool_call

TYPES = ("mcq", "yesno", "qa", "intent", "ner", "tool_call", "json", "refusal", "generation", "agent")


def _mean(values: list[float]) -> float:
    # Plain left-to-right sum / len, the summation LawBench and most harnesses use: same floats.
    return sum(values) / len(values) if values else 0.0


class Scorer:
    """Base: a per-item score whose task score is the mean (accuracy-like)."""

    type = ""
    count_names = ("score", "n")
    # Verdict fields besides ``score`` that give credit (exact match, schema validity, ...).
    credit_fields: tuple[str, ...] = ()

    def score(self, item: dict, output: str) -> dict:
        raise NotImplementedError

    def void(self, verdict: dict, reason: str) -> dict:
        """The verdict for a degenerate output: no credit of any kind, and the reason.

        ``extracted`` goes too: "B B B B B B ..." reads as "B", but a loop that happens to start with
        the right letter has not answered (and intent's macro-F1 counts extracted labels)."""
        voided = {**verdict, "extracted": None, "score": 0.0, "degenerate": reason}
        for name in self.credit_fields:
            if name in voided:
                voided[name] = 0.0
        return voided

    def counts(self, verdict: dict) -> list[float]:
        return [verdict["score"], 1.0]

    @staticmethod
    def main(sums: np.ndarray) -> np.ndarray:
        """Main score from summed counts; ``sums`` has counts on the last axis."""
        return np.divide(sums[..., 0], sums[..., 1], out=np.zeros(sums.shape[:-1]), where=sums[..., 1] > 0)

    def metrics(self, items: list[dict], verdicts: list[dict]) -> dict[str, float]:
        return {"accuracy": _mean([v["score"] for v in verdicts])}


# ---------------------------------------------------------------------------------------------


def gold_letters(answer: Any) -> str:
    """Gold option letters, sorted: "B", ["A","C"] and "A,C" all work."""
    if isinstance(answer, list):
        answer = "".join(str(a) for a in answer)
    return "".join(sorted({ch for ch in str(answer).upper() if ch in extract.LETTERS}))


class MCQ(Scorer):
    type = "mcq"

    def score(self, item, output):
        choices = item.get("choices") or []
        got = extract.extract_choice(output, n_options=len(choices) or 4, choices=choices or None)
        gold = gold_letters(item["answer"])
        return {"extracted": got, "gold": gold, "score": float(got == gold), "unparseable": got is None}


class YesNo(Scorer):
    type = "yesno"

    def score(self, item, output):
        got = extract.extract_yes_no(output)
        gold = str(item["answer"]).strip()
        return {"extracted": got, "gold": gold, "score": float(got == gold), "unparseable": got is None}


def _golds(answer: Any) -> list[str]:
    return [str(a) for a in answer] if isinstance(answer, list) else [str(answer)]


def char_f1(prediction: str, gold: str) -> float:
    """Character-level F1 (English by word) after normalisation, as in CMRC/SQuAD."""
    pred, ref = units(prediction), units(gold)
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref:
        return float(pred == ref)
    if common == 0:
        return 0.0
    p, r = common / len(pred), common / len(ref)
    return 2 * p * r / (p + r)


class QA(Scorer):
    type = "qa"
    count_names = ("f1", "n")
    credit_fields = ("em", "contains")

    def score(self, item, output):
        golds = _golds(item["answer"])
        norm = normalize_answer(output or "")
        em = max(float(norm == normalize_answer(g)) for g in golds)
        # A short gold answer stated inside a longer sentence counts as found ("年费为100元" ⊇ "100元").
        contains = max(float(bool(normalize_answer(g)) and normalize_answer(g) in norm) for g in golds)
        f1 = max(char_f1(output or "", g) for g in golds)
        return {"extracted": output, "gold": golds[0] if len(golds) == 1 else golds, "score": f1,
                "em": em, "contains": contains, "unparseable": not norm}

    def metrics(self, items, verdicts):
        return {"f1": _mean([v["score"] for v in verdicts]), "exact_match": _mean([v.get("em", 0.0) for v in verdicts]),
                "contains": _mean([v.get("contains", 0.0) for v in verdicts])}


class Intent(Scorer):
    type = "intent"

    def score(self, item, output):
        labels = [str(c) for c in item.get("choices") or []]
        gold = str(item["answer"])
        got = extract.extract_label(output, labels or [gold])
        return {"extracted": got, "gold": gold, "score": float(got == gold), "unparseable": got is None}

    def metrics(self, items, verdicts):
        # Macro-F1 over the gold labels of this task (labels never gold do not dilute it).
        labels = sorted({v["gold"] for v in verdicts})
        f1s = []
        for label in labels:
            tp = sum(1 for v in verdicts if v["gold"] == label and v["extracted"] == label)
            fp = sum(1 for v in verdicts if v["gold"] != label and v["extracted"] == label)
            fn = sum(1 for v in verdicts if v["gold"] == label and v["extracted"] != label)
            f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
        return {"accuracy": _mean([v["score"] for v in verdicts]), "macro_f1": _mean(f1s)}


class NER(Scorer):
    """Span-level P/R/F1: a predicted (type, text) counts when it equals a gold span's type and text.

    An item with no gold entity is answered correctly only by a readable "no entities" ("[]", "无实体"):
    an unreadable or degenerate output there scores 0, not the F1 of "nothing to find, nothing found".
    F1 ignores such items, so the counts also carry ``answered`` (readable, not degenerate) and ``n``:
    a task (or a bootstrap resample) with nothing to find at all scores the share of items answered."""

    type = "ner"
    count_names = ("tp", "fp", "fn", "answered", "n")

    def score(self, item, output):
        gold_spans = item.get("entities")
        if gold_spans is None:
            gold_spans = item.get("answer") or []
        gold = Counter((normalize_text(e["type"]), normalize_text(e["text"])) for e in gold_spans)
        pairs = extract.extract_entities(output)
        pred = Counter((normalize_text(t), normalize_text(x)) for t, x in pairs or [])
        tp = sum((gold & pred).values())
        fp, fn = sum(pred.values()) - tp, sum(gold.values()) - tp
        if tp + fp + fn == 0:
            f1 = 0.0 if pairs is None else 1.0  # nothing to find: only a readable "none found" is right
        else:
            f1 = 2 * tp / (2 * tp + fp + fn)
        return {"extracted": [list(p) for p in pairs] if pairs is not None else None,
                "gold": [[e["type"], e["text"]] for e in gold_spans], "score": f1,
                "tp": tp, "fp": fp, "fn": fn, "unparseable": pairs is None}

    def void(self, verdict, reason):
        # Nothing readable was predicted: every gold span is missed, and the item is not answered.
        return {**super().void(verdict, reason), "tp": 0, "fp": 0, "fn": len(verdict.get("gold") or [])}

    def counts(self, verdict):
        answered = not verdict.get("unparseable") and not verdict.get("degenerate")
        return [verdict.get("tp", 0), verdict.get("fp", 0), verdict.get("fn", 0), float(answered), 1.0]

    @staticmethod
    def main(sums):
        tp, fp, fn, answered, n = (sums[..., i] for i in range(5))
        denom = 2 * tp + fp + fn
        share = np.divide(answered, n, out=np.zeros(sums.shape[:-1]), where=n > 0)
        return np.divide(2 * tp, denom, out=share, where=denom > 0)

    def metrics(self, items, verdicts):
        sums = np.array([self.counts(v) for v in verdicts], dtype=float).sum(axis=0) if verdicts else np.zeros(5)
        tp, fp, fn = (float(x) for x in sums[:3])
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        return {"precision": p, "recall": r, "f1": float(self.main(sums))}


def normalize_value(value: Any) -> Any:
    """JSON values compared by meaning: key order, full-width, case, "100" vs 100 do not matter."""
    if isinstance(value, dict):
        return {normalize_text(str(k)): normalize_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize_value(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    text = normalize_text(str(value))
    try:
        number = float(text.replace(",", ""))
        if math.isfinite(number):
            return number
    except ValueError:
        pass
    return text


class ToolCall(Scorer):
    type = "tool_call"
    credit_fields = ("name_match",)

    def score(self, item, output):
        gold = item["answer"]
        if isinstance(gold, str):
            gold = json.loads(gold)
        call = extract_tool_call(output)
        name_ok = bool(call) and call["name"] == gold["name"]
        args_ok = name_ok and call["arguments"] is not None and normalize_value(call["arguments"]) == normalize_value(
            gold.get("arguments", {})
        )
        return {"extracted": call, "gold": gold, "score": float(args_ok), "name_match": float(name_ok),
                "unparseable": call is None}

    def metrics(self, items, verdicts):
        return {"exact": _mean([v["score"] for v in verdicts]), "name_accuracy": _mean([v.get("name_match", 0.0) for v in verdicts])}


class JSONOutput(Scorer):
    type = "json"
    credit_fields = ("schema_valid", "exact")

    def score(self, item, output):
        import jsonschema

        gold = item["answer"]
        value = extract_json(output)
        valid = False
        if value is not None and item.get("schema"):
            valid = jsonschema.Draft202012Validator(item["schema"]).is_valid(value)
        elif value is not None:
            valid = isinstance(value, type(gold))
        if isinstance(gold, dict):
            got = normalize_value(value) if isinstance(value, dict) else {}
            want = normalize_value(gold)
            fields = [k for k in want]
            field_acc = _mean([float(k in got and got[k] == want[k]) for k in fields]) if fields else float(got == want)
        else:
            field_acc = float(value is not None and normalize_value(value) == normalize_value(gold))
        return {"extracted": value, "gold": gold, "score": field_acc, "schema_valid": float(valid),
                "exact": float(value is not None and normalize_value(value) == normalize_value(gold)),
                "unparseable": value is None}

    def metrics(self, items, verdicts):
        return {"field_accuracy": _mean([v["score"] for v in verdicts]),
                "schema_valid": _mean([v.get("schema_valid", 0.0) for v in verdicts]),
                "exact": _mean([v.get("exact", 0.0) for v in verdicts])}


def is_unanswerable(item: dict) -> bool:
    if "answerable" in item:
        return not item["answerable"]
    return item.get("answer") in ("", None, [])


class Refusal(Scorer):
    """Hallucination suppression: unanswerable items must be refused, answerable ones must not."""

    type = "refusal"

    def score(self, item, output):
        refused = extract.is_refusal(output)
        should = is_unanswerable(item)
        return {"extracted": "refused" if refused else "answered", "gold": "refuse" if should else "answer",
                "score": float(refused == should), "unparseable": False}

    def void(self, verdict, reason):
        # Neither a refusal nor an answer: it counts against refusal recall, and is no false refusal.
        return {**super().void(verdict, reason), "extracted": "degenerate"}

    def metrics(self, items, verdicts):
        should = [v for v in verdicts if v["gold"] == "refuse"]
        shouldnt = [v for v in verdicts if v["gold"] == "answer"]
        out = {"accuracy": _mean([v["score"] for v in verdicts])}
        if should:
            out["refusal_recall"] = _mean([float(v["extracted"] == "refused") for v in should])
        if shouldnt:
            out["false_refusal_rate"] = _mean([float(v["extracted"] == "refused") for v in shouldnt])
        return out


def lcs_length(a: list[str], b: list[str]) -> int:
    """Longest common subsequence length (O(len(a)·len(b)) DP, one row kept).

    Hand-written: rouge-score's tokenizer drops every non-ASCII character, so it scores Chinese as empty.
    """
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 over units (Chinese characters, English words)."""
    pred, ref = units(prediction), units(reference)
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    p, r = lcs / len(pred), lcs / len(ref)
    return 2 * p * r / (p + r)


class Generation(Scorer):
    """ROUGE-L against the reference(s); a judge score (in [0, 1]) when the item was judged replaces it."""

    type = "generation"
    # A judge may be lenient with a loop that starts well; the judge's own words stay in ``judge_output``.
    credit_fields = ("rouge_l", "judge_score")

    def score(self, item, output, judge_score: float | None = None):
        refs = _golds(item["answer"])
        rl = max(rouge_l(output or "", r) for r in refs)
        verdict = {"extracted": output, "gold": refs[0] if len(refs) == 1 else refs, "rouge_l": rl,
                   "score": rl if judge_score is None else judge_score, "unparseable": not (output or "").strip()}
        if judge_score is not None:
            verdict["judge_score"] = judge_score
        return verdict

    def metrics(self, items, verdicts):
        out = {"rouge_l": _mean([v.get("rouge_l", 0.0) for v in verdicts])}
        judged = [v["judge_score"] for v in verdicts if "judge_score" in v]
        if judged:
            out["judge"] = _mean(judged)
        return out


SCORERS: dict[str, Scorer] = {s.type: s for s in (MCQ(), YesNo(), QA(), Intent(), NER(), ToolCall(), JSONOutput(),
                                                   Refusal(), Generation())}

# The agent scorer builds on Scorer and normalize_value above, so it is imported after them.
from domainlm.evals.agent import AgentScorer  # noqa: E402

SCORERS["agent"] = AgentScorer()


def score_item(item: dict, output: str | None, **extra: Any) -> dict:
    """Verdict for one item; a scorer crash on a malformed item becomes an unparseable zero, not a dead batch.

    A degenerate output (empty, whitespace, punctuation only, a loop) scores 0 whatever the type and
    records why in ``degenerate``; every other verdict has ``degenerate: None``."""
    scorer = SCORERS[item["type"]]
    reason = degenerate_reason(output)
    try:
        if item["type"] == "generation":
            verdict = scorer.score(item, output or "", judge_score=extra.get("judge_score"))
        elif item["type"] == "agent":  # scored on the calls it made, replayed in its environment
            verdict = scorer.score(item, output or "", trajectory=extra.get("trajectory"))
        else:
            verdict = scorer.score(item, output or "")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return {"extracted": None, "gold": item.get("answer"), "score": 0.0, "unparseable": True,
                "degenerate": reason, "error": f"{type(exc).__name__}: {exc}"}
    return scorer.void(verdict, reason) if reason else {**verdict, "degenerate": None}
