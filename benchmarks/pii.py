"""PII detection on regulated Chinese text: recall and precision per type, domainlm vs data-juicer vs Presidio.

Data: tests/data/fixtures/pii_labelled.jsonl -- sentences written in the style of bank, hospital and court
documents, with hand-labelled spans of personal data and hard negatives (company, place and product names,
public figures, masked names 张某, amounts, article numbers 第十二条, hotlines, order numbers, phone-like
counts). Business addresses and phone numbers of branches, courts and hospitals are *not* labelled: they are
not personal data, so a detector that takes them loses precision.

A predicted span counts as correct when it overlaps a gold span of an accepted type (one-to-one); "exact"
also requires the same boundaries. Types a tool has no detector for are reported as not covered (None).

Peers, each run in this process on the same sentences:

  data-juicer  pii_redaction_mapper (its Chinese mobile and ID-card patterns, e-mails, ...) and
               clean_email_mapper / clean_ip_mapper, called through their process functions; the spans are
               where their output differs from the input (difflib), typed by the placeholder written.
  presidio     presidio-analyzer's pattern recognizers called directly with nlp_artifacts=None: EmailRecognizer,
               PhoneRecognizer(supported_regions=["CN"]), CreditCardRecognizer. Its AnalyzerEngine needs a spaCy
               model (en_core_web_lg by default, zh_core_web_* for Chinese) and there is no offline copy here, so
               its NER (PERSON, LOCATION) cannot run; it has no Chinese ID, plate or case-number recogniser.

Run: python benchmarks/pii.py     (pip install py-data-juicer presidio-analyzer first; a missing one is
skipped with a line saying so). Writes benchmarks/results/pii.json.
"""

from __future__ import annotations

import difflib
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LABELLED = ROOT / "tests" / "data" / "fixtures" / "pii_labelled.jsonl"
OUT = ROOT / "benchmarks" / "results" / "pii.json"
sys.path.insert(0, str(ROOT / "src"))


def load(path: Path = LABELLED) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def score(rows: list[dict], predictions: list[list[tuple[int, int, str]]], accepts: dict[str, set[str]] | None = None,
          covered: set[str] | None = None) -> dict:
    """Per-type recall/precision. ``accepts[pred_type]``: the gold types a predicted type may match (default:
    itself); ``covered``: the gold types the tool tries to detect (others get recall None)."""
    accepts = accepts or {}
    stats: dict[str, dict] = {}

    def bucket(kind: str) -> dict:
        return stats.setdefault(kind, {"gold": 0, "pred": 0, "tp": 0, "tp_exact": 0})

    for row, preds in zip(rows, predictions, strict=True):
        gold = [(s["start"], s["end"], s["type"]) for s in row["spans"]]
        for _, _, kind in gold:
            bucket(kind)["gold"] += 1
        used: set[int] = set()
        for start, end, kind in preds:
            ok_types = accepts.get(kind, {kind})
            hit = next((i for i, g in enumerate(gold)
                        if i not in used and g[2] in ok_types and g[0] < end and start < g[1]), None)
            # A hit is credited to the gold type (recall) and to the predicted type (precision).
            bucket(kind)["pred"] += 1
            if hit is not None:
                used.add(hit)
                bucket(kind)["tp"] += 1
                bucket(gold[hit][2])["found"] = bucket(gold[hit][2]).get("found", 0) + 1
                exact = (start, end) == gold[hit][:2]
                bucket(kind)["tp_exact"] += exact
                bucket(gold[hit][2])["found_exact"] = bucket(gold[hit][2]).get("found_exact", 0) + exact
    table = {}
    for kind, s in sorted(stats.items()):
        in_scope = covered is None or kind in covered
        table[kind] = {
            "gold": s["gold"],
            "predicted": s["pred"],
            "recall": round(s.get("found", 0) / s["gold"], 3) if s["gold"] and in_scope else None,
            "precision": round(s["tp"] / s["pred"], 3) if s["pred"] else None,
            "recall_exact": round(s.get("found_exact", 0) / s["gold"], 3) if s["gold"] and in_scope else None,
        }
    return table


PHONE = {"mobile": "phone", "landline": "phone"}


def phone_row(rows: list[dict], predictions: list[list[tuple[int, int, str]]]) -> dict:
    """Mobile and landline together, so tools with one "phone" type compare with domainlm's two."""
    merged = [{**r, "spans": [{**s, "type": PHONE.get(s["type"], s["type"])} for s in r["spans"]]} for r in rows]
    preds = [[(a, b, PHONE.get(k, k)) for a, b, k in p] for p in predictions]
    return score(merged, preds)["phone"]


def errors(rows: list[dict], predictions: list[list[tuple[int, int, str]]]) -> list[dict]:
    """Missed and spurious spans (exact), for reading what a detector gets wrong."""
    out = []
    for row, preds in zip(rows, predictions, strict=True):
        gold = {(s["start"], s["end"], s["type"]) for s in row["spans"]}
        pred = set(preds)
        for start, end, kind in sorted(gold - pred):
            out.append({"missed": kind, "span": row["text"][start:end], "text": row["text"]})
        for start, end, kind in sorted(pred - gold):
            out.append({"spurious": kind, "span": row["text"][start:end], "text": row["text"]})
    return out


# -- the detectors ----------------------------------------------------------------------------------
def domainlm_predict(texts: list[str], types=None) -> list[list[tuple[int, int, str]]]:
    from domainlm.data.pii import PLACEHOLDERS, find_pii

    types = tuple(types or PLACEHOLDERS)
    return [[(s.start, s.end, s.type) for s in find_pii(t, types)] for t in texts]


def _diff_spans(before: str, after: str, placeholders: dict[str, str]) -> list[tuple[int, int, str]]:
    """Where ``after`` replaced text of ``before``, typed by the placeholder it wrote there. difflib may
    align a character of the original with one of the placeholder ("lihua_1988" vs "[EMAIL_REDACTED]"),
    so changes split by up to 2 equal characters are one replacement."""
    changes: list[list[int]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        if changes and i1 - changes[-1][1] <= 2 and j1 - changes[-1][3] <= 2:
            changes[-1][1], changes[-1][3] = i2, j2
        else:
            changes.append([i1, i2, j1, j2])
    spans = []
    for i1, i2, j1, j2 in changes:
        if i2 > i1:
            written = after[j1:j2]
            kind = next((k for p, k in placeholders.items() if p in written), "other")
            spans.append((i1, i2, kind))
    return spans


def data_juicer_predict(texts: list[str]) -> list[list[tuple[int, int, str]]]:
    from data_juicer.ops.mapper.clean_email_mapper import CleanEmailMapper
    from data_juicer.ops.mapper.clean_ip_mapper import CleanIpMapper
    from data_juicer.ops.mapper.pii_redaction_mapper import PiiRedactionMapper

    pii = PiiRedactionMapper()
    email = CleanEmailMapper(repl="[DJ_EMAIL]")
    ip = CleanIpMapper(repl="[DJ_IP]")
    placeholders = {"[PHONE_REDACTED]": "phone", "[ID_CARD_REDACTED]": "id_card", "[EMAIL_REDACTED]": "email",
                    "[DJ_EMAIL]": "email", "[IP_REDACTED]": "ip", "[DJ_IP]": "ip"}
    out = []
    for text in texts:
        redacted = pii.process_single({"text": text})["text"]
        spans = _diff_spans(text, redacted, placeholders)
        for op in (email, ip):  # each on the original text: their spans add to pii_redaction_mapper's
            after = op.process_batched({"text": [text]})["text"][0]
            spans += [s for s in _diff_spans(text, after, placeholders)
                      if not any(s[0] < e and b < s[1] for b, e, _ in spans)]
        out.append(sorted(spans))
    return out


def presidio_predict(texts: list[str]) -> list[list[tuple[int, int, str]]]:
    from presidio_analyzer.predefined_recognizers import CreditCardRecognizer, EmailRecognizer, PhoneRecognizer

    recognizers = [(EmailRecognizer(), "EMAIL_ADDRESS"), (PhoneRecognizer(supported_regions=["CN"]), "PHONE_NUMBER"),
                   (CreditCardRecognizer(), "CREDIT_CARD")]
    names = {"EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "CREDIT_CARD": "bank_card"}
    out = []
    for text in texts:
        spans = []
        for rec, entity in recognizers:
            for r in rec.analyze(text, [entity], nlp_artifacts=None):
                if r.score >= 0.4 and not any(r.start < e and b < r.end for b, e, _ in spans):
                    spans.append((r.start, r.end, names[r.entity_type]))
        out.append(sorted(spans))
    return out


def presidio_engine_status() -> str:
    """What Presidio's full AnalyzerEngine (with NER) does here, in one line."""
    try:
        from presidio_analyzer import AnalyzerEngine

        AnalyzerEngine()
        return "AnalyzerEngine loaded"
    except BaseException as exc:  # spaCy's download attempt ends in SystemExit when offline
        return f"AnalyzerEngine() fails offline: {type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200]}"


SHARED = ROOT / ".." / "shared" / "benchmarks"


def public_text() -> dict:
    """Over-redaction on real public text nobody wrote for this: what domainlm finds in LawBench's court
    sentences and CMRC 2018's Wikipedia passages (per type, per 10k characters), with every name found in
    LawBench listed for reading by hand."""
    from domainlm.data.pii import find_pii

    corpora = {}
    law = SHARED / "lawbench" / "data" / "zero_shot"
    if law.exists():
        corpora["lawbench"] = [r["question"] for f in ("1-2", "2-3", "2-4")
                               for r in json.loads((law / f"{f}.json").read_text(encoding="utf-8"))]
    cmrc = SHARED / "cmrc2018" / "cmrc2018_dev.json"
    if cmrc.exists():
        corpora["cmrc2018"] = [p["context"] for d in json.loads(cmrc.read_text(encoding="utf-8"))["data"]
                               for p in d["paragraphs"]]
    out = {}
    for name, texts in corpora.items():
        found = [(s, t) for t in texts for s in find_pii(t)]
        chars = sum(map(len, texts))
        counts: dict[str, int] = {}
        for s, _ in found:
            counts[s.type] = counts.get(s.type, 0) + 1
        out[name] = {"texts": len(texts), "chars": chars, "spans": counts,
                     "per_10k_chars": {k: round(v * 10_000 / chars, 2) for k, v in counts.items()}}
        if name == "lawbench":
            out[name]["names"] = [{"name": s.text, "context": t[max(0, s.start - 10) : s.end + 6]}
                                  for s, t in found if s.type == "name"]
    return out


PEERS = {
    # tool: (predict, accepts: predicted type -> gold types it may match, covered gold types)
    "data-juicer": (data_juicer_predict, {"phone": {"mobile", "landline"}}, {"mobile", "landline", "id_card", "email"}),
    "presidio-patterns": (presidio_predict, {"phone": {"mobile", "landline"}},
                          {"mobile", "landline", "email", "bank_card"}),
}


def main() -> None:
    # Presidio's EmailRecognizer asks tldextract for the public-suffix list (no network here: it falls back to
    # its bundled copy, with a traceback per try); its engine logs every recognizer it loads.
    logging.getLogger("tldextract").setLevel(logging.CRITICAL)
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    rows = load()
    texts = [r["text"] for r in rows]
    results: dict = {"data": str(LABELLED.relative_to(ROOT)), "sentences": len(rows),
                     "gold_spans": sum(len(r["spans"]) for r in rows), "tools": {}}
    from domainlm.data.pii import DEFAULT_TYPES, PLACEHOLDERS

    t0 = time.perf_counter()
    domainlm_predict(["患者王建国。"])  # loads jieba's dictionary and tagger (a one-off cost per process)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    preds = domainlm_predict(texts)
    elapsed = time.perf_counter() - t0
    results["tools"]["domainlm"] = {"types": list(PLACEHOLDERS), "load_seconds": round(load_s, 3),
                                    "seconds": round(elapsed, 3),
                                    "per_type": {**score(rows, preds), "phone": phone_row(rows, preds)},
                                    "per_split": {split: score([r for r in rows if r["split"] == split],
                                                               [p for r, p in zip(rows, preds, strict=True)
                                                                if r["split"] == split])
                                                  for split in ("dev", "heldout")},
                                    "errors": errors(rows, preds)}
    default_preds = domainlm_predict(texts, DEFAULT_TYPES)
    results["tools"]["domainlm-default"] = {"types": list(DEFAULT_TYPES),
                                            "per_type": score(rows, default_preds, covered=set(DEFAULT_TYPES))}
    for tool, (predict, accepts, covered) in PEERS.items():
        try:
            t0 = time.perf_counter()
            preds = predict(texts)  # imports and builds the operators too: not a fair speed comparison
        except ImportError as exc:
            print(f"{tool}: not installed ({exc.name}); skipped")
            results["tools"][tool] = {"skipped": f"not installed: {exc.name}"}
            continue
        per_type = score(rows, preds, accepts, covered)
        per_type.pop("other", None)  # what the tool redacts that is no PII type here (paths, secrets)
        per_type["phone"] = phone_row(rows, preds)
        results["tools"][tool] = {"seconds": round(time.perf_counter() - t0, 3), "per_type": per_type}
    results["public_text"] = public_text()
    try:
        results["presidio_analyzer_engine"] = presidio_engine_status()
    except ImportError:
        results["presidio_analyzer_engine"] = "presidio-analyzer not installed"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print_table(results)


def print_table(results: dict) -> None:
    tools = [t for t in results["tools"] if "per_type" in results["tools"][t]]
    kinds = sorted({k for r in results["tools"].values() for k in r.get("per_type", {})})
    print(f"{results['sentences']} sentences, {results['gold_spans']} gold spans; recall / precision (overlap)")
    print(f"{'type':<11}{'gold':>5}  " + "  ".join(f"{t:>20}" for t in tools))
    for kind in kinds:
        cells = []
        for tool in tools:
            row = results["tools"][tool]["per_type"].get(kind)
            if row is None:
                cells.append(f"{'-':>20}")
                continue
            r = "n/a" if row["recall"] is None else f"{row['recall']:.2f}"
            p = "n/a" if row["precision"] is None else f"{row['precision']:.2f}"
            cells.append(f"{r + ' / ' + p:>20}")
        gold = max(results["tools"][t]["per_type"].get(kind, {}).get("gold", 0) for t in tools)
        print(f"{kind:<11}{gold:>5}  " + "  ".join(cells))
    for corpus, r in results.get("public_text", {}).items():
        print(f"{corpus}: {r['texts']} texts, {r['chars']} chars; spans per 10k chars: {r['per_10k_chars']}")
    print(results.get("presidio_analyzer_engine", ""))


if __name__ == "__main__":
    main()
