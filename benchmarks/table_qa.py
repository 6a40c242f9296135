"""Table QA on the sample: every knowledge_qa item (train + eval) whose answer is a table cell, answered by the
extractive reader from a KB built (a) from the raw documents and (b) from `clean` output. Right = the value is in
the answer (as the eval scorer counts it); cited = the answer's first citation is the row that states it."""
import json
import sys
import tempfile
from pathlib import Path

from domainlm.kb import KBConfig, answer, build_kb, open_kb
from domainlm.kb.sources import iter_documents
from domainlm.sample import generate_sample

seed, size = int(sys.argv[1]), sys.argv[2]
tmp = Path(tempfile.mkdtemp())
# An optional third argument: a sample folder generated before (to run older readers on the same files).
folder = [a for a in sys.argv[3:] if not a.startswith("--")]
root = Path(folder[0]) if folder else generate_sample(tmp / "sample", seed=seed, size=size)
items = [json.loads(line) for split in ("train", "eval")
         for line in (root / "tasks" / split / "knowledge_qa.jsonl").read_text("utf-8").splitlines()]
table_items = [i for i in items if i["doc_id"].startswith("table-")]

def measure(kb_dir, docs):
    build_kb(docs, kb_dir, KBConfig() if "--dense" in sys.argv else KBConfig(embedder="none"))
    kb = open_kb(kb_dir)
    right = cited = 0
    for item in table_items:
        reply = answer(kb, item["question"])
        ok = not reply.refused and item["answer"] in reply.answer
        right += ok
        cited += ok and bool(reply.citations) and item["evidence"] in reply.citations[0].text
    return right, cited

raw = measure(tmp / "kb-raw", list(iter_documents([root / "docs"])))
try:
    from domainlm.data import clean
    clean([root / "docs"], tmp / "clean", {"workers": 2})
    cleaned = measure(tmp / "kb-clean", list(iter_documents([tmp / "clean" / "clean.jsonl"])))
except Exception as exc:  # noqa: BLE001
    cleaned = (f"clean failed: {exc}",)
n = len(table_items)
print(f"seed {seed} size {size}: {n} table questions")
print(f"raw docs -> kb:   right {raw[0]}/{n} ({raw[0] / n:.1%}), right with the row cited {raw[1]}/{n} ({raw[1] / n:.1%})")
if len(cleaned) == 2:
    print(f"clean -> kb:      right {cleaned[0]}/{n} ({cleaned[0] / n:.1%}), right with the row cited {cleaned[1]}/{n} ({cleaned[1] / n:.1%})")
else:
    print(cleaned[0])

result = {"seed": seed, "size": size, "dense": "--dense" in sys.argv, "table_questions": n,
          "raw": {"right": raw[0], "row_cited": raw[1]},
          "clean": {"right": cleaned[0], "row_cited": cleaned[1]} if len(cleaned) == 2 else {"error": cleaned[0]}}
if not folder:  # a run on the current readers' own sample: keep it
    out = Path(__file__).resolve().parent / "results" / "table_qa.json"
    out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"-> {out}")
