"""Internal consistency of the sample domain: every answer, span and personal-data item is where the
ground truth says, checked against the real files with real readers (python-docx, pypdf)."""

import html
import itertools
import json
import re

import docx
import pypdf
import pytest

from domainlm.io import read_jsonl
from domainlm.sample.pii import valid_id_number, valid_luhn
from domainlm.sample.web import NOISE_TYPES
from domainlm.sample.world import BRANCH_ATTRS, PRODUCT_ATTRS, SERVICE_ATTRS

TASKS = ("knowledge_qa", "unanswerable", "intent", "ner", "tool_call", "json_extract", "mcq")


def load(root, rel):
    return read_jsonl(root / rel)


def items(root, split, task):
    return read_jsonl(root / f"tasks/{split}/{task}.jsonl")


def squash(text):
    return re.sub(r"\s+", "", text)


def test_facts_are_stated_in_their_documents(tiny_sample):
    docs = {d["id"]: d for d in load(tiny_sample, "truth/documents.jsonl")}
    facts = load(tiny_sample, "truth/facts.jsonl")
    assert len(facts) >= 30
    for f in facts:
        doc = docs[f["doc_id"]]
        assert f["sentence"] in doc["text"], f
        assert f["value"] in f["sentence"], f
        raw = tiny_sample / doc["path"]
        if f["table_row"]:  # a table cell: its row line is what the ingest readers write (see test_tables_read_back)
            assert f["sentence"].startswith(f"【{f['table_row']}】") and f["value"] in f["sentence"]
        elif doc["format"] in ("md", "txt"):
            assert f["sentence"] in raw.read_text(encoding="utf-8")
        elif doc["format"] == "html":
            assert f["sentence"] in html.unescape(raw.read_text(encoding="utf-8"))


def test_tables_read_back_row_by_row(tiny_sample):
    # The fee schedules (HTML, DOCX) and the rate table (PDF), with merged cells and two-row headers: the ingest
    # readers give back every row line of the ground truth, and every table fact's row.
    from domainlm.data.ingest import Unit, read_unit
    from domainlm.data.tables import ROW_LINE

    docs = [d for d in load(tiny_sample, "truth/documents.jsonl") if d["tables"]]
    assert sorted(d["format"] for d in docs) == ["docx", "html", "pdf"]
    facts = load(tiny_sample, "truth/facts.jsonl")
    for doc in docs:
        text = read_unit(Unit(doc["path"], 0, str(tiny_sample / doc["path"])))[0]
        rows = [line for line in doc["text"].splitlines() if ROW_LINE.match(line)]
        assert rows and [line for line in text.splitlines() if ROW_LINE.match(line)] == rows, (doc["id"], text)
        stated = [f for f in facts if f["doc_id"] == doc["id"]]
        assert stated and all(f["table_row"] and f["sentence"] in rows for f in stated)


def test_docx_and_pdf_extraction_contains_key_facts(tiny_sample):
    docs = {d["id"]: d for d in load(tiny_sample, "truth/documents.jsonl")}
    facts = load(tiny_sample, "truth/facts.jsonl")
    checked = set()
    for f in facts:
        doc = docs[f["doc_id"]]
        path = tiny_sample / doc["path"]
        if f["table_row"]:
            continue  # a table cell: python-docx paragraphs and pypdf do not give rows (test_tables_read_back_row_by_row)
        if doc["format"] == "docx":
            extracted = "\n".join(p.text for p in docx.Document(str(path)).paragraphs)
            assert f["sentence"] in extracted
            assert doc["title"] in extracted
        elif doc["format"] == "pdf":
            extracted = "".join(page.extract_text() for page in pypdf.PdfReader(str(path)).pages)
            # PDF text comes back with line breaks where the layout wrapped; compare without whitespace
            assert squash(f["sentence"]) in squash(extracted), (f["sentence"], extracted)
        else:
            continue
        checked.add(doc["format"] + doc["lang"])
    assert {"docx", "pdf"} <= {c[:-2] for c in checked}


def test_chinese_and_english_pdf_text_comes_back(tmp_path):
    # reportlab's built-in STSong-Light CID font must give pypdf extractable Chinese text
    import random

    from domainlm.sample.documents import manual, render_pdf
    from domainlm.sample.world import build_world

    world = build_world(random.Random(5), 5, 1)
    for lang in ("zh", "en"):
        product = world.products[0]
        product.lang = lang
        doc = manual("m", product, random.Random(1))
        doc.fmt = "pdf"
        data = render_pdf(doc)
        assert data == render_pdf(doc)  # invariant mode: no dates or random IDs in the bytes
        path = tmp_path / f"{lang}.pdf"
        path.write_bytes(data)
        extracted = squash("".join(p.extract_text() for p in pypdf.PdfReader(str(path)).pages))
        for fact in doc.facts:
            assert squash(fact["sentence"]) in extracted, (lang, fact["sentence"])


def test_knowledge_answers_are_supported_by_the_cited_document(tiny_sample):
    docs = {d["id"]: d["text"] for d in load(tiny_sample, "truth/documents.jsonl")}
    n = 0
    for split in ("train", "eval"):
        for item in items(tiny_sample, split, "knowledge_qa"):
            text = docs[item["doc_id"]]
            assert item["type"] == "qa" and item["answer"]
            assert item["evidence"] in text and item["answer"] in item["evidence"], item
            n += 1
        for item in items(tiny_sample, split, "mcq"):
            assert item["type"] == "mcq" and len(item["choices"]) == 4 and len(set(item["choices"])) == 4
            correct = item["choices"]["ABCD".index(item["answer"])]
            assert correct in item["evidence"] and item["evidence"] in docs[item["doc_id"]]
            wrong = [c for c in item["choices"] if c != correct]
            assert not any(w in item["evidence"] for w in wrong), item
    assert n >= 30


def test_unanswerable_questions_ask_about_things_no_document_states(tiny_sample):
    corpus = "\n".join(d["text"] for d in load(tiny_sample, "truth/documents.jsonl"))
    web = "\n".join(w["clean_text"] for w in load(tiny_sample, "truth/web.jsonl"))
    kinds = set()
    for split in ("train", "eval"):
        for item in items(tiny_sample, split, "unanswerable"):
            assert item["type"] == "refusal" and item["answer"] == ""
            missing = item[item["missing"]]  # the product name or the attribute label
            assert missing in item["question"]
            assert missing not in corpus and missing not in web, item
            kinds.add(item["missing"])
    assert kinds == {"product", "attribute"}
    # eval refusals are about other made-up products and other missing attributes than train's
    for what in ("product", "attribute"):
        asked = [{i[what] for i in items(tiny_sample, split, "unanswerable") if i["missing"] == what}
                 for split in ("train", "eval")]
        assert asked[0] and asked[1] and not asked[0] & asked[1], what


def decoded_pages(root):
    web = load(root, "truth/web.jsonl")
    return web, {w["path"]: (root / w["path"]).read_bytes().decode(w["encoding"]) for w in web}


def test_noise_spans_are_exactly_where_the_truth_says(tiny_sample):
    web, pages = decoded_pages(tiny_sample)
    noise = load(tiny_sample, "truth/noise.jsonl")
    assert {r["type"] for r in noise} == set(NOISE_TYPES)
    for r in noise:
        assert pages[r["path"]][r["start"]:r["end"]] == r["text"], r
        if r["type"] == "mojibake":
            assert r["original"].encode("utf-8").decode("gbk") == r["text"]
            assert r["original"] in next(w["clean_text"] for w in web if w["path"] == r["path"])
        if r["type"] == "pinyin":
            assert re.fullmatch(r".\([a-zāáǎàēéěèīíǐìōóǒòūúǔù]+\)", r["text"]), r
        if r["type"] == "censor":
            assert r["text"] == "***"
        if r["type"] in ("spam", "censor"):  # spliced into a sentence, never into a number
            page = pages[r["path"]]
            assert not page[r["start"] - 1].isdigit() and not page[r["end"]].isdigit(), r
    # no two spans of one page overlap
    by_page = {}
    for r in noise:
        by_page.setdefault(r["path"], []).append((r["start"], r["end"]))
    for spans in by_page.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


def test_clean_text_is_the_page_without_its_noise(tiny_sample):
    web, pages = decoded_pages(tiny_sample)
    noise = load(tiny_sample, "truth/noise.jsonl")
    docs = {d["id"]: d["text"] for d in load(tiny_sample, "truth/documents.jsonl")}
    checked = 0
    for w in web:
        text = pages[w["path"]]
        for r in sorted((r for r in noise if r["path"] == w["path"]), key=lambda r: -r["start"]):
            text = text[:r["start"]] + r.get("original", "") + text[r["end"]:]
        if w["path"].endswith(".html"):
            text = html.unescape(re.sub(r"<[^>]+>", "", text.split("<body>", 1)[1]))
        lines = [line for line in text.split("\n") if line.strip()]
        assert lines == w["clean_text"].split("\n"), w["path"]
        if w["encoding"] != "big5" and not w["near_duplicate_of"]:
            # the copy keeps the whole source document (plus possibly an editor's contact line)
            assert w["clean_text"].startswith(docs[w["source_doc"]])
        checked += 1
    assert checked == len(web)


def test_duplicates(tiny_sample):
    web = load(tiny_sample, "truth/web.jsonl")
    for w in web:
        if w["duplicate_of"]:
            assert (tiny_sample / w["path"]).read_bytes() == (tiny_sample / w["duplicate_of"]).read_bytes()
        if w["near_duplicate_of"]:
            other = next(o for o in web if o["path"] == w["near_duplicate_of"])
            assert w["clean_text"] != other["clean_text"]
            a, b = set(w["clean_text"].split("\n")), set(other["clean_text"].split("\n"))
            assert len(a & b) / len(a | b) >= 0.6


def test_personal_data_spans_are_valid_and_exact(tiny_sample):
    _, pages = decoded_pages(tiny_sample)
    pii = load(tiny_sample, "truth/pii.jsonl")
    assert {r["type"] for r in pii} == {"id_card", "mobile", "bank_card", "email", "address"}
    for r in pii:
        assert pages[r["path"]][r["start"]:r["end"]] == r["text"], r
        if r["type"] == "id_card":
            assert valid_id_number(r["text"]), r
        elif r["type"] == "bank_card":
            assert valid_luhn(r["text"]) and len(r["text"]) in (16, 19), r
        elif r["type"] == "mobile":
            assert re.fullmatch(r"1[3-9]\d{9}", r["text"])
        elif r["type"] == "email":
            assert re.fullmatch(r"[\w.]+@[\w.]+\.\w+", r["text"])


def test_check_digit_validators_on_known_numbers():
    assert valid_id_number("11010519491231002X")  # the GB 11643 worked example
    assert not valid_id_number("110105194912310021")
    for card in ("4111111111111111", "5555555555554444", "378282246310005"):  # published test card numbers
        assert valid_luhn(card)
    assert not valid_luhn("4111111111111112") and not valid_luhn("5555555555554443")


def test_values_of_one_attribute_are_never_substrings_of_each_other():
    # answers are scored by substring: 5元 must not be found inside 15元
    specs = [s for v in PRODUCT_ATTRS.values() for s in v] + [x[2] for x in SERVICE_ATTRS] + BRANCH_ATTRS
    for spec in specs:
        for lang in ("zh", "en"):
            values = [spec.format(raw, lang) for raw in spec.pool]
            assert len(set(values)) == len(values)
            assert not [(a, b) for a in values for b in values if a != b and a in b], (spec.key, lang)


def test_train_and_eval_never_share_a_question(tiny_sample):
    def keys(split, task):
        return {i["question"] + "\n" + i.get("context", "") for i in items(tiny_sample, split, task)}

    for task in TASKS:
        train, evaluation = keys("train", task), keys("eval", task)
        assert train and evaluation
        assert not train & evaluation, task


def test_task_items_are_well_formed(tiny_sample):
    taxonomy = json.loads((tiny_sample / "tasks/taxonomy.json").read_text(encoding="utf-8"))
    tools = {t["function"]["name"]: t["function"] for t in json.loads((tiny_sample / "tasks/tools.json").read_text())}
    intents = [i["name"] for i in json.loads((tiny_sample / "tasks/intents.json").read_text(encoding="utf-8"))]
    ids = set()
    for split in ("train", "eval"):
        for task in TASKS:
            for item in items(tiny_sample, split, task):
                assert item["id"] not in ids
                ids.add(item["id"])
                assert item["task"] == task
                assert task in taxonomy[item["category"]][item["subcategory"]]
                assert {"question", "choices", "answer", "type"} <= set(item)
                if task == "intent":
                    assert item["choices"] == intents and item["answer"] in intents
                elif task == "ner":
                    assert item["entities"]
                    for e in item["entities"]:
                        assert item["question"][e["start"]:e["end"]] == e["text"]
                elif task == "tool_call":
                    spec = tools[item["answer"]["name"]]["parameters"]
                    args = item["answer"]["arguments"]
                    assert set(spec["required"]) <= set(args) <= set(spec["properties"]), item
                    for name, value in args.items():
                        kind = spec["properties"][name]["type"]
                        assert isinstance(value, {"string": str, "number": (int, float), "integer": int}[kind])
                        if "enum" in spec["properties"][name]:
                            assert value in spec["properties"][name]["enum"]
                        elif kind == "string":  # names, cities, card numbers are copied from the request
                            assert value in item["question"], (name, value, item["question"])
                        else:
                            assert value > 0
                elif task == "json_extract":
                    assert set(item["answer"]) == set(item["schema"]["properties"])
                    for key, value in item["answer"].items():
                        prop = item["schema"]["properties"][key]
                        if "enum" in prop:
                            assert value in prop["enum"]
                        elif isinstance(value, str):
                            assert value in item["context"], (key, value)
                        else:
                            assert value is None or value > 0


def test_intent_products_fit_the_intent(small_files):
    # "how do I buy <an insurance product>" must never be labelled buy_wealth_product
    from domainlm.sample.tasks import INTENT_PRODUCTS

    files = small_files
    category = {f["product"]: f["category"] for f in files["truth/facts.jsonl"] if f["category"] in PRODUCT_ATTRS}
    checked = 0
    for split in ("train", "eval"):
        for item in files[f"tasks/{split}/intent.jsonl"]:
            named = [c for name, c in category.items() if name in item["question"]]
            if item["answer"] in INTENT_PRODUCTS and named:
                assert set(named) <= set(INTENT_PRODUCTS[item["answer"]]), item
                checked += 1
    assert checked >= 20


@pytest.mark.slow
@pytest.mark.parametrize("size,seed", [("small", 11), ("medium", 5)])
def test_every_consistency_check_holds_for_bigger_sizes(tmp_path, size, seed):
    from domainlm.sample import generate_sample

    root = generate_sample(tmp_path / size, seed=seed, size=size)
    checks = [test_facts_are_stated_in_their_documents, test_docx_and_pdf_extraction_contains_key_facts,
              test_knowledge_answers_are_supported_by_the_cited_document,
              test_unanswerable_questions_ask_about_things_no_document_states,
              test_noise_spans_are_exactly_where_the_truth_says, test_clean_text_is_the_page_without_its_noise,
              test_duplicates, test_personal_data_spans_are_valid_and_exact,
              test_train_and_eval_never_share_a_question, test_task_items_are_well_formed]
    for check in checks:
        check(root)


def test_table_questions_answered_from_the_row(tiny_sample, tmp_path):
    # The sample's table questions (a cell of the fee schedules or the rate table) through the knowledge base's
    # extractive reader: the gold value in the answer, and the answer citing exactly the row that states it.
    from domainlm.kb import KBConfig, answer, build_kb, open_kb
    from domainlm.kb.sources import iter_documents

    asked = [i for split in ("train", "eval") for i in items(tiny_sample, split, "knowledge_qa")
             if i["doc_id"].startswith("table-")]
    assert len(asked) >= 3 and len({i["doc_id"] for i in asked}) >= 2  # tiny asks a few, from more than one table
    build_kb(list(iter_documents([tiny_sample / "docs"])), tmp_path / "kb", KBConfig(embedder="none"))
    kb = open_kb(tmp_path / "kb")
    for item in asked:
        reply = answer(kb, item["question"])
        assert not reply.refused and item["answer"] in reply.answer, (item["question"], reply.reason)
        assert reply.citations[0].text == item["evidence"], (item["question"], reply.citations[0].text)
