"""Knowledge capacity: how many bits of knowledge a model stores per parameter.

Following Allen-Zhu & Li, "Physics of Language Models: Part 3.3, Knowledge Capacity Scaling Laws" (2024),
who measured about 2 bits per parameter for GPT-2-style models trained to saturation (1000 exposures):

1. a synthetic knowledge set is generated from a seed: fictional people, each with attributes drawn
   uniformly from fixed value sets (birth year, city, university, major, employer, hobby), written as
   short biographies with several paraphrases per attribute (every exposure is a fresh rendering);
2. a model is trained for one pass over ``exposures`` renderings of every biography, optionally mixed
   with other text (each of ``mix_fractions`` of the training tokens: how mixing changes capacity);
3. for every person and attribute the model scores each candidate value after a probe prefix; with q the
   model's probability of the true value renormalised over the candidates and q̄ its mean over all people
   (the model's name-independent prior), the information it holds about that person is
   ``log2 q(true) - log2 q̄(true)`` bits (0 when it answers the same for everyone; about log2 K when it is
   certain and right). Summed over people (and floored at 0 per attribute) this is the stored knowledge.

Uniform random attributes make the true entropy exactly ``log2 K`` per fact, which is what allows a
bits count; that is why the set is synthetic and not the user's corpus. Written by hand: no library
generates such a set or measures it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from domainlm.sandbox import tokenizer

PUBLISHED_BITS_PER_PARAM = 2.0  # Allen-Zhu & Li 2024, Part 3.3: ~2 bits/param at 1000 exposures

_SYL_EN = ["ka", "lo", "mi", "ra", "ten", "vo", "zu", "bel", "dor", "fen", "gal", "hes", "jun", "kir", "lan", "mor",
           "nel", "pas", "quin", "ros", "sal", "tor", "ul", "ven", "wim", "xan", "yor", "zel"]
_SURNAME_ZH = list("赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张孔曹严华金魏陶姜")
_GIVEN_ZH = list("安柏辰德恩帆光海华嘉景康朗乐明宁鹏琪瑞森涛伟欣雅逸远哲志子悦宇泽晨")

# attribute -> (English values, Chinese values); sizes are powers of two so each fact is whole bits
_CITIES_EN = ["Aldmere", "Brisport", "Calvarra", "Dunholt", "Elmsreach", "Fernwick", "Galemoor", "Hollowford",
              "Ironvale", "Juniper Bay", "Kestrel Point", "Larkfield", "Mistral Cove", "Northgale", "Oakenshaw", "Pinecrest"]
_CITIES_ZH = ["云岚", "青石", "澜湾", "松岭", "白沙", "金川", "雁门", "鹤州", "临溪", "望海", "枫桥", "星河", "墨林", "晴川", "潮安", "岚山"]
_UNIS_EN = [f"{c} University" for c in ["Arden", "Belmont", "Corwin", "Delacroix", "Everly", "Fairhaven", "Greystone", "Harrow",
                                          "Ivywood", "Jasper", "Kingsley", "Lockhart", "Montague", "Norwood", "Osric", "Pembrook"]]
_UNIS_ZH = [f"{c}大学" for c in ["云岚", "青石", "澜湾", "松岭", "白沙", "金川", "雁门", "鹤州", "临溪", "望海", "枫桥", "星河", "墨林", "晴川", "潮安", "岚山"]]
_MAJORS_EN = ["astronomy", "botany", "chemistry", "economics", "geology", "history", "law", "linguistics", "mathematics",
              "medicine", "music", "nursing", "philosophy", "physics", "sculpture", "zoology"]
_MAJORS_ZH = ["天文学", "植物学", "化学", "经济学", "地质学", "历史学", "法学", "语言学", "数学", "医学", "音乐", "护理学", "哲学", "物理学", "雕塑", "动物学"]
_EMPLOYERS_EN = [f"{c} {s}" for c in ["Azure", "Copper", "Harbor", "Summit"] for s in ["Labs", "Bank", "Foods", "Motors"]]
_EMPLOYERS_ZH = [f"{c}{s}" for c in ["蔚蓝", "铜山", "海港", "峰顶"] for s in ["科技", "银行", "食品", "汽车"]]
_HOBBIES_EN = ["archery", "baking", "chess", "cycling", "fishing", "gardening", "hiking", "knitting", "painting",
               "poetry", "rowing", "sailing", "skating", "surfing", "tennis", "yoga"]
_HOBBIES_ZH = ["射箭", "烘焙", "下棋", "骑行", "钓鱼", "园艺", "徒步", "编织", "绘画", "写诗", "划船", "航海", "滑冰", "冲浪", "网球", "瑜伽"]
_YEARS = [str(y) for y in range(1950, 2014)]  # 64 values

ATTRIBUTES = {
    "birth_year": (_YEARS, _YEARS),
    "city": (_CITIES_EN, _CITIES_ZH),
    "university": (_UNIS_EN, _UNIS_ZH),
    "major": (_MAJORS_EN, _MAJORS_ZH),
    "employer": (_EMPLOYERS_EN, _EMPLOYERS_ZH),
    "hobby": (_HOBBIES_EN, _HOBBIES_ZH),
}

# Paraphrases: (text before the value, text after it). The first one is also the probe.
TEMPLATES = {
    "en": {
        "birth_year": [("{name} was born in ", "."), ("{name} came into the world in ", "."), ("The birth year of {name} is ", ".")],
        "city": [("{name} was born in the city of ", "."), ("{name} grew up in ", "."), ("The hometown of {name} is ", ".")],
        "university": [("{name} studied at ", "."), ("{name} graduated from ", "."), ("The alma mater of {name} is ", ".")],
        "major": [("{name} majored in ", "."), ("At university {name} studied ", "."), ("The field of study of {name} was ", ".")],
        "employer": [("{name} works for ", "."), ("{name} is employed by ", "."), ("The employer of {name} is ", ".")],
        "hobby": [("{name} enjoys ", "."), ("In free time {name} likes ", "."), ("The favourite pastime of {name} is ", ".")],
    },
    "zh": {
        "birth_year": [("{name}出生于", "年。"), ("{name}生于", "年。"), ("{name}的出生年份是", "年。")],
        "city": [("{name}的家乡是", "。"), ("{name}在", "长大。"), ("{name}出生在", "。")],
        "university": [("{name}毕业于", "。"), ("{name}就读于", "。"), ("{name}的母校是", "。")],
        "major": [("{name}的专业是", "。"), ("{name}在大学学习", "。"), ("{name}主修", "。")],
        "employer": [("{name}就职于", "。"), ("{name}在", "工作。"), ("{name}的雇主是", "。")],
        "hobby": [("{name}的爱好是", "。"), ("{name}喜欢", "。"), ("{name}业余时间爱好", "。")],
    },
}


@dataclass
class Person:
    name: str
    facts: dict[str, int]  # attribute -> index into its value list


def value_sets(lang: str) -> dict[str, list[str]]:
    return {attr: (en if lang == "en" else zh) for attr, (en, zh) in ATTRIBUTES.items()}


def make_people(n: int, seed: int, lang: str = "zh") -> list[Person]:
    """``n`` fictional people with unique names and uniformly random attributes (deterministic in seed)."""
    rng = np.random.default_rng(seed)
    names: set[str] = set()
    people = []
    values = value_sets(lang)
    limit = (len(_SURNAME_ZH) * len(_GIVEN_ZH) ** 2) if lang == "zh" else len(_SYL_EN) ** 4
    if n > limit // 2:
        raise ValueError(f"at most {limit // 2} people for lang={lang}")
    while len(people) < n:
        if lang == "zh":
            name = _SURNAME_ZH[rng.integers(len(_SURNAME_ZH))] + "".join(_GIVEN_ZH[i] for i in rng.integers(0, len(_GIVEN_ZH), 2))
        else:
            first = "".join(_SYL_EN[i] for i in rng.integers(0, len(_SYL_EN), 2)).capitalize()
            last = "".join(_SYL_EN[i] for i in rng.integers(0, len(_SYL_EN), 2)).capitalize()
            name = f"{first} {last}"
        if name in names:
            continue
        names.add(name)
        people.append(Person(name, {attr: int(rng.integers(len(v))) for attr, v in values.items()}))
    return people


def render_bio(person: Person, lang: str, rng: np.random.Generator) -> str:
    """One exposure: every fact once, in random order, each with a randomly chosen paraphrase."""
    values, templates = value_sets(lang), TEMPLATES[lang]
    sentences = []
    for attr in rng.permutation(list(person.facts)):
        before, after = templates[attr][rng.integers(len(templates[attr]))]
        sentences.append(before.format(name=person.name) + values[attr][person.facts[attr]] + after)
    return (" " if lang == "en" else "").join(sentences)


def knowledge_bits_possible(n_people: int, lang: str = "zh") -> float:
    return n_people * sum(math.log2(len(v)) for v in value_sets(lang).values())


class CapacityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    people: int = Field(200, ge=1, description="Fictional people in the knowledge set.")
    lang: str = Field("zh", pattern="^(zh|en)$")
    exposures: list[int] = Field(default_factory=lambda: [1, 10, 100], min_length=1)
    mix_fractions: list[float] = Field(default_factory=lambda: [0.0], min_length=1,
                                       description="Shares of training tokens that are other text (each in [0, 1)).")
    width: int = Field(64, ge=8)
    depth: int = Field(2, ge=1)
    n_heads: int = Field(4, ge=1)
    lr: float = Field(0.01, gt=0)
    batch_size: int = Field(16, ge=1)
    seq_len: int = Field(128, ge=16)
    warmup_frac: float = Field(0.05, ge=0, le=1)
    decay_frac: float = Field(0.2, ge=0, le=1)
    seed: int = 0

    @field_validator("mix_fractions")
    @classmethod
    def _fractions(cls, values: list[float]) -> list[float]:
        for value in values:
            if not 0 <= value < 1:
                raise ValueError(f"mix fraction {value} must be in [0, 1)")
        return values


def training_rows(people: list[Person], cfg: CapacityConfig, exposures: int, other: np.ndarray | None,
                  mix_fraction: float = 0.0) -> np.ndarray:
    """Token rows (seq_len+1 each) for one pass: ``exposures`` renderings of every biography, shuffled,
    interleaved with windows of other text so that ``mix_fraction`` of the tokens are not knowledge."""
    rng = np.random.default_rng(cfg.seed + 1000 * exposures)
    pieces = [tokenizer.encode(render_bio(p, cfg.lang, rng), eot=True) for _ in range(exposures) for p in people]
    knowledge_tokens = sum(len(p) for p in pieces)
    if mix_fraction > 0:
        if other is None or len(other) < 2 * cfg.seq_len:
            raise ValueError("mix_fraction > 0 needs other text")
        want = int(knowledge_tokens * mix_fraction / (1 - mix_fraction))
        piece_len = max(16, knowledge_tokens // len(pieces))
        for _ in range(max(1, want // piece_len)):
            start = int(rng.integers(0, len(other) - piece_len))
            pieces.append(np.asarray(other[start : start + piece_len], dtype=np.int64))
    order = rng.permutation(len(pieces))
    stream = np.concatenate([pieces[i] for i in order])
    n_rows = max(1, (len(stream) - 1) // cfg.seq_len)
    stream = np.append(stream, np.full(n_rows * cfg.seq_len + 1 - len(stream), tokenizer.EOT)) if len(stream) < n_rows * cfg.seq_len + 1 else stream
    return np.stack([stream[i * cfg.seq_len : i * cfg.seq_len + cfg.seq_len + 1] for i in range(n_rows)])


def measure_bits(model, people: list[Person], lang: str, device: str = "cpu", batch_size: int = 256) -> dict:
    """Stored knowledge in bits (see module docstring) and top-1 accuracy over the candidates."""
    import torch
    import torch.nn.functional as F

    values, templates = value_sets(lang), TEMPLATES[lang]
    model.eval()
    per_attr_bits, correct, total = {}, 0, 0
    with torch.no_grad():
        for attr, vals in values.items():
            before, after = templates[attr][0]
            seqs, spans = [], []
            for person in people:
                prefix = tokenizer.encode(before.format(name=person.name))
                for value in vals:
                    cont = tokenizer.encode(value + after)
                    seqs.append(np.concatenate([[tokenizer.EOT], prefix, cont]))
                    spans.append((1 + len(prefix), len(cont)))
            logliks = np.empty(len(seqs))
            for start in range(0, len(seqs), batch_size):
                chunk = seqs[start : start + batch_size]
                width = max(len(s) for s in chunk)
                ids = torch.full((len(chunk), width), tokenizer.EOT, dtype=torch.long)
                for row, s in enumerate(chunk):
                    ids[row, : len(s)] = torch.as_tensor(s)
                ids = ids.to(device)
                logp = F.log_softmax(model(ids[:, :-1]).float(), dim=-1)
                token_logp = logp.gather(-1, ids[:, 1:, None])[..., 0].cpu().numpy()
                for row, (begin, length) in enumerate(spans[start : start + batch_size]):
                    logliks[start + row] = token_logp[row, begin - 1 : begin - 1 + length].sum()
            scores = logliks.reshape(len(people), len(vals))
            log_q = scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)
            # The model's name-independent prior: its mean prediction over all people. Measuring against
            # it (not against uniform) keeps knowledge of value *frequencies* in a small set from counting
            # as knowledge about people; for a perfect model it gives N * H(empirical values) <= N log2 K,
            # so the estimate is conservative.
            log_prior = np.logaddexp.reduce(log_q, axis=0) - math.log(len(people))
            truth = np.array([p.facts[attr] for p in people])
            rows = np.arange(len(people))
            bits = float((log_q[rows, truth] - log_prior[truth]).sum()) / math.log(2)
            per_attr_bits[attr] = max(0.0, bits)  # a model cannot hold negative knowledge
            correct += int((scores.argmax(axis=1) == truth).sum())
            total += len(people)
    model.train()
    return {"bits": sum(per_attr_bits.values()), "bits_by_attribute": per_attr_bits, "accuracy": correct / total}


def run_capacity(cfg: CapacityConfig, other_text: np.ndarray | None = None, device: str = "cpu", on_progress=None) -> list[dict]:
    """Train one model per (mix fraction, exposure count), same people; measure the knowledge each holds."""
    import torch

    from domainlm.sandbox.trainer import RunConfig, build_model, train_batches

    people = make_people(cfg.people, cfg.seed, cfg.lang)
    possible = knowledge_bits_possible(cfg.people, cfg.lang)
    results = []
    for mix_fraction, exposures in ((m, e) for m in cfg.mix_fractions for e in cfg.exposures):
        rows = training_rows(people, cfg, exposures, other_text, mix_fraction)
        steps = max(1, math.ceil(len(rows) / cfg.batch_size))
        run_cfg = RunConfig(width=cfg.width, depth=cfg.depth, n_heads=cfg.n_heads, base_width=cfg.width, lr=cfg.lr,
                            batch_size=cfg.batch_size, seq_len=cfg.seq_len, tokens=steps * cfg.batch_size * cfg.seq_len,
                            warmup_frac=cfg.warmup_frac, decay_frac=cfg.decay_frac, seed=cfg.seed)
        torch.manual_seed(cfg.seed)
        model = build_model(run_cfg, device=device)
        cursor = iter(range(steps))

        # Bound as defaults: the function is used within this iteration, with this iteration's rows.
        def next_batch(cursor=cursor, steps=steps, rows=rows):
            i = next(cursor) % steps
            batch = rows[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            return batch if len(batch) else rows[: cfg.batch_size]

        status = train_batches(model, run_cfg, next_batch, device)["status"]
        measured = measure_bits(model, people, cfg.lang, device)
        params_total = model.num_params(non_embedding=False)
        result = {
            "exposures": exposures, "mix_fraction": mix_fraction, "status": status,
            "params": model.num_params(), "params_total": params_total, "train_tokens": int(rows.size - len(rows)),
            "steps": steps, "bits": round(measured["bits"], 2), "bits_possible": round(possible, 2),
            "bits_per_param": measured["bits"] / params_total, "accuracy": round(measured["accuracy"], 4),
            "bits_by_attribute": {k: round(v, 2) for k, v in measured["bits_by_attribute"].items()},
            "published_bits_per_param": PUBLISHED_BITS_PER_PARAM,
        }
        results.append(result)
        if on_progress:
            on_progress(result)
    return results
