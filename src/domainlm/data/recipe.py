"""Recipes: an ordered list of operators with parameters, in YAML.

```yaml
name: my-recipe
operators:
  - op: remove_spam
    extra_words: [代办信用卡]
  - op: quality
    threshold: 0.6
  - op: dedup
    threshold: 0.8
```

Built-in recipes live in ``domainlm/data/recipes/<name>.yaml``. Parameters are checked against the
operator function's signature, so a typo is an error naming the file, the step and the key.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from domainlm.data import noise, normalize, pii, quality
from domainlm.data.dedup import DedupParams
from domainlm.data.edits import OpResult
from domainlm.errors import DomainlmError

RECIPES_DIR = Path(__file__).parent / "recipes"


def _spam(
    text: str,
    words: list[str] | None = None,
    extra_words: list[str] = (),
    topic_words: list[str] = noise.SPAM_TOPIC_ZH,
    promo_words: list[str] = noise.SPAM_PROMO_ZH,
    glue_words: list[str] = noise.SPAM_GLUE_ZH,
    clause_share: float = 0.5,
    except_words: list[str] = noise.SPAM_EXCEPT_ZH,
) -> OpResult:
    base = tuple(words) if words is not None else noise.SPAM_WORDS_ZH + noise.SPAM_WORDS_EN
    return noise.remove_spam(
        text,
        base + tuple(extra_words),
        tuple(topic_words),
        tuple(promo_words),
        tuple(glue_words),
        clause_share,
        tuple(except_words),
    )


def _furniture(
    text: str,
    extra_patterns: list[list[str]] = (),
    max_line_chars: int = 200,
    inline_patterns: list[list[str]] = noise.INLINE_PATTERNS,
) -> OpResult:
    return noise.remove_furniture(
        text,
        noise.FURNITURE_PATTERNS + tuple(tuple(p) for p in extra_patterns),
        max_line_chars,
        tuple(tuple(p) for p in inline_patterns),
    )


def _markup(text: str, tags: list[str] = noise.MARKUP_TAGS) -> OpResult:
    return noise.remove_markup(text, tuple(tags))


def _tail(text: str, extra_headers: list[str] = (), min_position: float = 0.3, max_overlap: float = 0.1) -> OpResult:
    return noise.remove_offtopic_tail(text, noise.TAIL_HEADERS + tuple(extra_headers), min_position, max_overlap)


def _cjk(text: str, codecs: list[str] = ("gbk", "big5")) -> OpResult:
    return normalize.repair_cjk_mojibake(text, tuple(codecs))


def _pii(text: str, types: list[str] = pii.DEFAULT_TYPES) -> OpResult:
    unknown = set(types) - set(pii.PLACEHOLDERS)
    if unknown:
        raise ValueError(f"unknown PII types {sorted(unknown)}; known: {list(pii.PLACEHOLDERS)}")
    return pii.redact_pii(text, tuple(types))


def _language(text: str, keep: list[str] = ("zh", "en"), min_confidence: float = 0.0) -> OpResult:
    return quality.language_filter(text, keep, min_confidence)


@dataclass(frozen=True)
class OpSpec:
    fn: Callable[..., Any]  # text, **params -> OpResult (for dedup: the parameters class)
    what: str

    def parameters(self) -> list[inspect.Parameter]:
        params = list(inspect.signature(self.fn).parameters.values())
        return params if self.fn is DedupParams else params[1:]


OPERATORS: dict[str, OpSpec] = {
    "normalize": OpSpec(
        normalize.normalize_unicode,
        "Unicode NFC, drop invisible/control characters, half-width letters and digits; Chinese punctuation kept",
    ),
    "fix_mojibake": OpSpec(
        normalize.repair_latin_mojibake,
        "repair UTF-8-read-as-Latin-1/cp1252 mojibake (ftfy, encoding fixes only)",
    ),
    "fix_cjk_mojibake": OpSpec(_cjk, "repair UTF-8-read-as-GBK/Big5 islands; flag islands whose bytes did not survive"),
    "remove_markup": OpSpec(_markup, 'remove HTML tags left in the text ("银行?</span>的"), decode entities'),
    "remove_pinyin": OpSpec(
        noise.remove_pinyin, "remove pinyin annotations after Han characters (and a stray ? they left)"
    ),
    "to_simplified": OpSpec(normalize.to_simplified, "convert traditional to simplified Chinese (OpenCC)"),
    "remove_spam": OpSpec(_spam, "cut lottery/gambling/ad inserts out of sentences, keep the sentence"),
    "remove_furniture": OpSpec(
        _furniture,
        "remove disclaimers, comment sections, image placeholders/captions, gallery navigation, photo credits, "
        "END marks, share bars",
    ),
    "remove_repeats": OpSpec(noise.remove_repeats, "remove paragraphs repeated inside a document"),
    "remove_offtopic_tail": OpSpec(_tail, "cut off-topic tails (相关阅读, 猜你喜欢, related articles)"),
    "flag_censor": OpSpec(noise.flag_censor, "flag censor marks (***, □□, [已屏蔽])"),
    "redact_pii": OpSpec(_pii, "replace personal data by typed placeholders: ID numbers, mobiles, landlines, bank "
                               "cards, emails, addresses, plates, admission/policy/contract numbers, names and diagnoses "
                               "next to a person (case numbers only when listed in types)"),
    "language": OpSpec(_language, "identify the language; drop documents not in `keep`"),
    "quality": OpSpec(
        quality.quality_filter, "score quality (heuristics, optional learned scorer); drop under threshold"
    ),
    "tidy": OpSpec(normalize.tidy_whitespace, "strip trailing spaces, collapse blank lines"),
    # Dedup compares documents with each other: the engine runs it after the per-document steps, with
    # these parameters.
    "dedup": OpSpec(
        DedupParams, "drop exact and near duplicates (MinHash-LSH on Chinese-aware shingles), first copy kept"
    ),
}


@dataclass
class Step:
    op: str
    params: dict[str, Any] = field(default_factory=dict)

    def run(self, text: str) -> OpResult:
        return OPERATORS[self.op].fn(text, **self.params)


@dataclass
class Recipe:
    name: str
    steps: list[Step]
    description: str = ""
    source: str = ""

    @property
    def doc_steps(self) -> list[Step]:
        return [s for s in self.steps if s.op != "dedup"]

    @property
    def dedup(self) -> Step | None:
        return next((s for s in self.steps if s.op == "dedup"), None)

    def to_dict(self) -> dict:
        return {"name": self.name, "operators": [{"op": s.op, **s.params} for s in self.steps]}

    def explain(self) -> str:
        lines = [f"recipe {self.name} ({self.source})" + (f": {self.description}" if self.description else "")]
        for i, step in enumerate(self.steps, start=1):
            params = _effective_params(step)
            shown = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
            lines.append(f"{i:2d}. {step.op}: {OPERATORS[step.op].what}" + (f"\n      {shown}" if shown else ""))
        return "\n".join(lines)


def _effective_params(step: Step) -> dict:
    params = {p.name: p.default for p in OPERATORS[step.op].parameters() if p.default is not inspect.Parameter.empty}
    params.update(step.params)
    return params


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return f"[{len(value)} items]" if len(value) > 6 else "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def builtin_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A built-in recipe by name (``default-zh``) or a YAML file."""
    path = Path(name_or_path)
    if not path.suffix and (RECIPES_DIR / f"{name_or_path}.yaml").is_file():
        path = RECIPES_DIR / f"{name_or_path}.yaml"
    elif not path.is_file():
        raise DomainlmError(f"recipe '{name_or_path}': not a built-in ({', '.join(builtin_recipes())}) nor a file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DomainlmError(f"{path}:{mark.line + 1 if mark else '?'}: not valid YAML") from None
    return parse_recipe(data, str(path))


def parse_recipe(data: Any, source: str = "recipe") -> Recipe:
    if not isinstance(data, dict) or not isinstance(data.get("operators"), list):
        raise DomainlmError(f"{source}: expected a mapping with an 'operators' list")
    unknown = set(data) - {"name", "description", "operators"}
    if unknown:
        raise DomainlmError(f"{source}: unknown key '{sorted(unknown)[0]}'")
    steps = []
    for i, item in enumerate(data["operators"]):
        where = f"{source}: operators[{i}]"
        if not isinstance(item, dict) or "op" not in item:
            raise DomainlmError(f"{where}: expected a mapping with 'op'")
        op = item["op"]
        if op not in OPERATORS:
            raise DomainlmError(f"{where}: unknown operator '{op}' (known: {', '.join(OPERATORS)})")
        params = {k: v for k, v in item.items() if k != "op"}
        allowed = [p.name for p in OPERATORS[op].parameters()]
        for key in params:
            if key not in allowed:
                raise DomainlmError(f"{where} ({op}): unknown parameter '{key}' (allowed: {', '.join(allowed)})")
        steps.append(Step(op, params))
    dedups = [i for i, s in enumerate(steps) if s.op == "dedup"]
    if dedups and dedups != [len(steps) - 1]:
        raise DomainlmError(f"{source}: 'dedup' compares whole documents and must be the last operator")
    return Recipe(str(data.get("name") or Path(source).stem), steps, str(data.get("description") or ""), source)
