"""Task files of the sample domain: knowledge QA, refusals, intents, entities, tool calls, JSON extraction
and multiple choice, split into train and eval.

Every question kind has several phrasing templates per language; the eval split only uses templates
that the train split never uses, so a model is measured on phrasings it has not seen.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from domainlm.sample import pii
from domainlm.sample.phrasings import (
    CUSTOMER_MESSAGES,
    CUSTOMER_SCHEMA,
    ENTITY_TYPES,
    INTENT_PRODUCTS,
    INTENTS,
    JSON_INSTRUCTIONS,
    MCQ,
    NER_TEMPLATES,
    PREFIX,
    QA,
    TOOL_TEMPLATES,
    TOOLS,
)
from domainlm.sample.world import (
    CITIES,
    MISSING_ATTRS,
    PRODUCT_ATTRS,
    Entity,
    World,
    distractor_values,
)

SPLITS = ("train", "eval")

TAXONOMY = {
    "knowledge": {c: ["knowledge_qa", "mcq"] for c in ("deposit", "loan", "card", "wealth", "insurance", "service", "branch")},
    "hallucination": {"nonexistent_product": ["unanswerable"], "nonexistent_attribute": ["unanswerable"]},
    "understanding": {"intent_recognition": ["intent"], "entity_extraction": ["ner"]},
    "agent": {"tool_calling": ["tool_call"], "structured_output": ["json_extract"]},
}

# ------------------------------------------------------------------------------------------ slot filling

_SURNAMES = "王李张刘陈杨赵黄周吴徐孙马朱胡郭何林"
_GIVEN = ["芳", "伟", "敏", "静", "磊", "洋", "艳", "勇", "军", "杰", "娜", "涛", "晓明", "海燕", "建国", "思远", "雨桐"]
_EN_NAMES = ["Li Wei", "Zhang Min", "Amy Chen", "Tom Wu", "Wang Fang", "David Liu", "Sarah Lin", "Kevin Zhou", "Lucy Ma"]
_AMOUNTS = [500, 800, 1000, 1500, 2000, 3000, 5000, 8000, 10000, 20000, 30000, 50000, 80000, 100000, 200000]
_MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
              "November", "December")


def _amount_text(n: int, lang: str) -> str:
    if lang == "en":
        return f"CNY {n:,}"
    return f"{n // 10000}万元" if n >= 10000 and n % 10000 == 0 else f"{n}元"


class Filler:
    """Fills ``{slot}`` templates, remembering each slot's surface text, offsets and structured value."""

    def __init__(self, world: World, rng: random.Random):
        self.world, self.rng = world, rng

    def value(self, slot: str, lang: str, context: dict) -> tuple[str, object]:
        rng, zh = self.rng, lang == "zh"
        if slot == "person":
            name = rng.choice(_SURNAMES) + rng.choice(_GIVEN) if zh else rng.choice(_EN_NAMES)
            return name, name
        if slot == "phone":
            v = pii.mobile(rng)
            return v, v
        if slot == "card":
            v = pii.bank_card(rng)
            return v, v
        if slot == "last4":
            v = f"{rng.randint(0, 9999):04d}"
            return v, v
        if slot == "amount":
            n = rng.choice(_AMOUNTS)
            return _amount_text(n, lang), n
        if slot == "product":
            entity = context.pop("entity", None) or rng.choice(context.get("products") or self.world.products)
            return entity.name(lang), entity.name(lang)
        if slot == "attr":
            spec = rng.choice(list(context["attr_of"].specs.values()))
            return spec.label(lang), spec.key
        if slot == "branch":
            b = rng.choice(self.world.branches)
            return b.name(lang), b.name(lang)
        if slot == "city":
            c = rng.choice(CITIES)
            return (c[0] if zh else c[2]), (c[0] if zh else c[2])
        if slot == "date":
            m, d = rng.randint(1, 12), rng.randint(1, 28)
            text = f"{m}月{d}日" if zh else f"{_MONTHS_EN[m - 1]} {d}"
            return text, text
        if slot == "term":
            n = rng.choice([6, 12, 24, 36, 60])
            return (f"{n}个月" if zh else f"{n} months"), n
        if slot == "days":
            n = rng.choice([7, 15, 30, 90])
            return (f"{n}天" if zh else f"{n} days"), n
        if slot == "acct":
            key = rng.choice(["savings", "credit_card"])
            return {"savings": ("储蓄卡", "savings account"), "credit_card": ("信用卡", "credit card")}[key][0 if zh else 1], key
        if slot == "cardtype":
            key = rng.choice(["debit", "credit"])
            return {"debit": ("借记卡", "debit card"), "credit": ("信用卡", "credit card")}[key][0 if zh else 1], key
        raise KeyError(f"unknown slot {slot}")

    def fill(self, template: str, lang: str, products: list[Entity] | None = None) -> tuple[str, list[dict]]:
        """The filled text and its slots: [{"slot","text","start","end","value"}] (offsets into the text)."""
        out, slots, pos, context = [], [], 0, {"products": products}
        if "{attr}" in template:  # the attribute belongs to the product, wherever the two slots stand
            context["entity"] = context["attr_of"] = self.rng.choice(products or self.world.products)
        for part in re.split(r"(\{[a-z0-9]+\})", template):
            if part.startswith("{") and part.endswith("}"):
                text, value = self.value(part[1:-1], lang, context)
                slots.append({"slot": part[1:-1], "text": text, "start": pos, "end": pos + len(text), "value": value})
            else:
                text = part
            out.append(text)
            pos += len(text)
        return "".join(out), slots


# ------------------------------------------------------------------------------------------ generators


def _unique(make: Callable[[], dict | None], n: int, seen: set[str], key: Callable[[dict], str]) -> list[dict]:
    """Call ``make`` until n items with distinct keys exist (or it clearly cannot make more)."""
    items: list[dict] = []
    attempts = 0
    while len(items) < n and attempts < 40 * n + 100:
        attempts += 1
        item = make()
        if item is None or key(item) in seen:
            continue
        seen.add(key(item))
        items.append(item)
    return items


def _rounds(rng: random.Random, facts: list[dict], templates: dict[str, list[str]]) -> list[tuple[dict, str]]:
    """Every fact with one template, then every fact with another, ...: covers all facts before repeating.

    ``templates`` maps a language to its templates (the same number per language).
    """
    out = []
    order = {f["id"]: rng.sample(templates[f["lang"]], len(templates[f["lang"]])) for f in facts}
    for r in range(max(len(t) for t in templates.values())):
        batch = [(f, order[f["id"]][r]) for f in facts if r < len(order[f["id"]])]
        rng.shuffle(batch)
        out.extend(batch)
    return out


def knowledge_qa(facts: list[dict], rng: random.Random, split: str, n: int) -> list[dict]:
    items, seen = [], set()
    for fact, template in _rounds(rng, facts, {lang: QA[lang][split] for lang in QA}):
        if len(items) >= n:
            break
        question = template.format(name=fact["product"], label=fact["attribute_label"], q=fact["zh_q"])
        if question in seen:
            continue
        seen.add(question)
        items.append({"task": "knowledge_qa", "category": "knowledge", "subcategory": fact["category"], "type": "qa",
                      "question": question, "choices": None, "answer": fact["value"], "doc_id": fact["doc_id"],
                      "evidence": fact["sentence"], "fact_id": fact["id"], "lang": fact["lang"]})
    return items


def mcq(facts: list[dict], specs: dict, rng: random.Random, split: str, n: int) -> list[dict]:
    usable = [f for f in facts if len({specs[f["id"]].format(r, f["lang"]) for r in specs[f["id"]].pool}) >= 4]
    items, seen = [], set()
    for fact, template in _rounds(rng, usable, {lang: MCQ[lang][split] for lang in MCQ}):
        if len(items) >= n:
            break
        question = template.format(name=fact["product"], label=fact["attribute_label"])
        if question in seen:
            continue
        seen.add(question)
        spec = specs[fact["id"]]
        choices = distractor_values(spec, fact["raw"], fact["lang"], rng, avoid=fact["sentence"]) + [fact["value"]]
        if len(choices) < 4:  # a table row states most of the pool: no three wrong values are left to offer
            continue
        rng.shuffle(choices)
        items.append({"task": "mcq", "category": "knowledge", "subcategory": fact["category"], "type": "mcq",
                      "question": question, "choices": choices, "answer": "ABCD"[choices.index(fact["value"])],
                      "doc_id": fact["doc_id"], "evidence": fact["sentence"], "fact_id": fact["id"], "lang": fact["lang"]})
    return items


def unanswerable(world: World, doc_texts: list[str], rng: random.Random, split: str, n: int) -> list[dict]:
    corpus = "\n".join(doc_texts)
    # Train and eval ask about different made-up products and different missing attributes, so refusing in
    # eval cannot be learned by memorising which names were refused in train.
    part = SPLITS.index(split)
    fake = [(cat, zh, en) for cat, zh, en in world.unused_names[part::2] if zh not in corpus and en not in corpus]
    missing = {cat: [a for a in attrs[part::2] if a[0] not in corpus and a[1] not in corpus]
               for cat, attrs in MISSING_ATTRS.items()}
    products = [p for p in world.products if missing[p.category]]

    def make() -> dict | None:
        if rng.random() < 0.5 and fake:
            cat, zh, en = rng.choice(fake)
            lang = rng.choice(["zh", "zh", "en"])
            spec = rng.choice(PRODUCT_ATTRS[cat])
            name, label, q, what = (zh if lang == "zh" else en), spec.label(lang), spec.zh_q, "product"
        elif products:
            p = rng.choice(products)
            lang = p.lang
            attr = rng.choice(missing[p.category])
            name, label, q, what, cat = p.name(lang), attr[0 if lang == "zh" else 1], "多少", "attribute", p.category
        else:
            return None
        question = rng.choice(QA[lang][split]).format(name=name, label=label, q=q)
        return {"task": "unanswerable", "category": "hallucination", "subcategory": f"nonexistent_{what}",
                "type": "refusal", "question": question, "choices": None, "answer": "", "product": name,
                "attribute": label, "missing": what, "product_category": cat, "lang": lang}

    return _unique(make, n, set(), lambda it: it["question"])


def intent(world: World, filler: Filler, rng: random.Random, split: str, n: int) -> list[dict]:
    labels = list(INTENTS)

    def make() -> dict:
        name = rng.choice(labels)
        lang = rng.choice(["zh", "zh", "en"])
        products = [p for p in world.products if p.category in INTENT_PRODUCTS.get(name, ())] or None
        template = rng.choice(INTENTS[name][2][lang][split])
        prefix = rng.choice(PREFIX[lang])
        if prefix and lang == "en" and template[0] != "{" and template.split()[0] not in ("I", "I'd", "I'm"):
            template = template[0].lower() + template[1:]  # "Hi, how do I ..." (names and "I" keep their capital)
        text, _ = filler.fill(template, lang, products=products)
        return {"task": "intent", "category": "understanding", "subcategory": "intent_recognition", "type": "intent",
                "question": prefix + text, "choices": labels, "answer": name, "lang": lang}

    return _unique(make, n, set(), lambda it: it["question"])


def ner(world: World, filler: Filler, rng: random.Random, split: str, n: int) -> list[dict]:
    def make() -> dict:
        lang = rng.choice(["zh", "zh", "en"])
        text, slots = filler.fill(rng.choice(NER_TEMPLATES[lang][split]), lang)
        entities = [{"type": ENTITY_TYPES[s["slot"]], "text": s["text"], "start": s["start"], "end": s["end"]}
                    for s in slots]
        return {"task": "ner", "category": "understanding", "subcategory": "entity_extraction", "type": "ner",
                "question": text, "choices": sorted(set(ENTITY_TYPES.values())), "answer": entities,
                "entities": entities, "lang": lang}

    return _unique(make, n, set(), lambda it: it["question"])


def _tool_args(tool: str, slots: list[dict]) -> dict:
    v = {s["slot"]: s["value"] for s in slots}
    mapping = {
        "check_balance": {"account_type": "acct", "card_last4": "last4"},
        "transfer": {"payee_name": "person", "payee_card": "card", "amount": "amount"},
        "report_lost_card": {"card_last4": "last4", "card_type": "cardtype"},
        "query_product": {"product_name": "product", "attribute": "attr"},
        "find_branch": {"city": "city"},
        "repay_credit_card": {"amount": "amount", "card_last4": "last4"},
        "apply_loan": {"product_name": "product", "amount": "amount", "term_months": "term"},
        "list_transactions": {"card_last4": "last4", "days": "days"},
    }[tool]
    return {arg: v[slot] for arg, slot in mapping.items() if slot in v}


def tool_call(world: World, filler: Filler, rng: random.Random, split: str, n: int) -> list[dict]:
    tools = [{"type": "function", "function": t} for t in TOOLS]
    loans = [p for p in world.products if p.category == "loan"] or None

    def make() -> dict:
        name = rng.choice(list(TOOL_TEMPLATES))
        lang = rng.choice(["zh", "zh", "en"])
        text, slots = filler.fill(rng.choice(TOOL_TEMPLATES[name][lang][split]), lang,
                                  products=loans if name == "apply_loan" else None)
        return {"task": "tool_call", "category": "agent", "subcategory": "tool_calling", "type": "tool_call",
                "question": text, "choices": None, "tools": tools,
                "answer": {"name": name, "arguments": _tool_args(name, slots)}, "lang": lang}

    return _unique(make, n, set(), lambda it: it["question"])


def json_extract(world: World, facts: list[dict], filler: Filler, rng: random.Random, split: str, n: int) -> list[dict]:
    by_doc: dict[str, list[dict]] = {}
    for f in facts:
        if f["kind"] == "product":
            by_doc.setdefault(f["doc_id"], []).append(f)
    sheets = list(by_doc.values())

    def make() -> dict:
        lang = rng.choice(["zh", "zh", "en"])
        if rng.random() < 0.5:  # a customer message -> a service ticket
            request, template = rng.choice(CUSTOMER_MESSAGES[lang][split])
            context, slots = filler.fill(template, lang)
            v = {s["slot"]: s["value"] for s in slots}
            answer = {"name": v["person"], "phone": v["phone"], "card_last4": v.get("last4"), "request": request,
                      "amount": v.get("amount")}
            schema, sub = CUSTOMER_SCHEMA, "customer_ticket"
        else:  # a product description -> the product's attributes
            sheet = [f for f in rng.choice(sheets)]
            lang = sheet[0]["lang"]
            rng.shuffle(sheet)
            context = ("" if lang == "zh" else " ").join(f["sentence"] for f in sheet)
            props = {"product_name": {"type": "string"}}
            props.update({f["attribute"]: {"type": "string", "description": f["attribute_label"]} for f in sheet})
            schema = {"type": "object", "properties": props, "required": list(props)}
            answer = {"product_name": sheet[0]["product"], **{f["attribute"]: f["value"] for f in sheet}}
            sub = "product_sheet"
        return {"task": "json_extract", "category": "agent", "subcategory": "structured_output", "type": "json",
                "question": rng.choice(JSON_INSTRUCTIONS[lang][split]), "context": context, "schema": schema,
                "choices": None, "answer": answer, "source": sub, "lang": lang}

    return _unique(make, n, set(), lambda it: it["question"] + "\n" + it["context"])


def build_tasks(world: World, facts: list[dict], specs: dict, doc_texts: list[str], rng: random.Random,
                counts: dict[str, dict[str, int]]) -> dict[str, dict[str, list[dict]]]:
    """{split: {task: items}} with ids ``sample/<task>/<split>/<n>``."""
    filler = Filler(world, rng)
    out: dict[str, dict[str, list[dict]]] = {}
    for split in SPLITS:
        c = counts[split]
        tasks = {
            "knowledge_qa": knowledge_qa(facts, rng, split, c["knowledge_qa"]),
            "unanswerable": unanswerable(world, doc_texts, rng, split, c["default"]),
            "intent": intent(world, filler, rng, split, c["default"]),
            "ner": ner(world, filler, rng, split, c["default"]),
            "tool_call": tool_call(world, filler, rng, split, c["default"]),
            "json_extract": json_extract(world, facts, filler, rng, split, c["default"]),
            "mcq": mcq(facts, specs, rng, split, c["default"]),
        }
        for task, items in tasks.items():
            for i, item in enumerate(items, start=1):
                ordered = {"id": f"sample/{task}/{split}/{i:04d}"}
                ordered.update(item)
                items[i - 1] = ordered
        out[split] = tasks
    return out


def intents_table() -> list[dict]:
    return [{"name": k, "zh": v[0], "en": v[1]} for k, v in INTENTS.items()]


def tools_table() -> list[dict]:
    return [{"type": "function", "function": t} for t in TOOLS]
