"""Suites: folders of task JSONL with an optional ``suite.yaml`` and ``taxonomy.json``.

Item format (DESIGN.md): ``{"id", "task", "category", "subcategory", "type", "question", "choices",
"answer", ...}``. Rows without ``type`` (Fin-Eva) get one inferred: options → ``mcq``, a 是/否 answer
→ ``yesno``. Category and subcategory fall back to the suite's taxonomy, then to the task name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from domainlm.config import load_config
from domainlm.errors import DomainlmError
from domainlm.evals.agent import check_agent_item
from domainlm.evals.scorers import TYPES
from domainlm.io import numbered_jsonl


class JudgeSpec(BaseModel):
    """A pinned model judge for ``generation`` tasks; its prompt is saved with the results."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(description="Model spec of the judge (pin a local dir or a served model name).")
    prompt: str = Field(
        "请按 1 到 5 分评价回答与参考答案的一致程度，只输出一个数字。\n问题：{question}\n参考答案：{reference}\n回答：{output}\n分数：",
        description="Template with {question}, {reference}, {output}.",
    )


class SuiteConfig(BaseModel):
    """``suite.yaml``: how a suite is prompted and scored."""

    model_config = ConfigDict(extra="forbid")
    name: str = ""
    few_shot: int = Field(0, ge=0, description="Examples from the same task shown before each item.")
    templates: dict[str, str] = Field(default_factory=dict, description="Prompt template per type.")
    max_new_tokens: int = Field(128, ge=1)
    mcq_mode: str = Field("auto", pattern="^(auto|generate|loglikelihood)$",
                          description="auto: log-likelihood where the backend gives log-probs.")
    chat: bool = Field(True, description="Prompt through the model's chat template; false for base models "
                       "(raw completion prompts '问：…\\n答：').")
    judge: JudgeSpec | None = None


@dataclass
class Suite:
    name: str
    path: Path
    config: SuiteConfig
    items: list[dict] = field(default_factory=list)

    def tasks(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for item in self.items:
            out.setdefault(item["task"], []).append(item)
        return out


def _taxonomy_lookup(path: Path) -> dict[str, tuple[str, str]]:
    """task → (category, subcategory) from either taxonomy.json shape.

    Sample domain: ``{category: {subcategory: [task, ...]}}``; Fin-Eva:
    ``{"categories": {category: {"subcategories": {subcategory: {"task": ...}}}}}``.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DomainlmError(f"{path}: not a readable taxonomy JSON ({exc})") from None
    lookup: dict[str, tuple[str, str]] = {}
    if isinstance(data.get("categories"), dict):
        for category, body in data["categories"].items():
            for sub, info in (body.get("subcategories") or {}).items():
                if isinstance(info, dict) and "task" in info:
                    lookup[info["task"]] = (category, sub)
        return lookup
    for category, subs in data.items():
        if not isinstance(subs, dict):
            continue
        for sub, tasks in subs.items():
            for task in tasks if isinstance(tasks, list) else []:
                lookup[str(task)] = (category, sub)
    return lookup


def infer_type(record: dict) -> str | None:
    if record.get("choices"):
        return "mcq"
    if str(record.get("answer", "")).strip() in ("是", "否"):
        return "yesno"
    return None


def _read_items(path: Path, taxonomy: dict[str, tuple[str, str]]) -> list[dict]:
    items = []
    for line_no, record in numbered_jsonl(path, required=["id"]):
        where = f"{path}:{line_no}"
        if "answer" not in record and record.get("type") != "agent":
            raise DomainlmError(f"{where}: item '{record['id']}' has no 'answer'")
        kind = record.get("type") or infer_type(record)
        if kind not in TYPES:
            got = record.get("type")
            raise DomainlmError(
                f"{where}: item '{record['id']}' has "
                + (f"unknown type '{got}'" if got else "no 'type' and none can be inferred")
                + f" (expected one of {', '.join(TYPES)})"
            )
        record["type"] = kind
        if kind == "agent":
            try:
                check_agent_item(record)
            except ValueError as exc:
                raise DomainlmError(f"{where}: item '{record['id']}': {exc}") from None
        record.setdefault("task", path.stem)
        category, sub = taxonomy.get(record["task"], (None, None))
        record["category"] = record.get("category") or category or record["task"]
        record["subcategory"] = record.get("subcategory") or sub or record["task"]
        record["_where"] = where
        items.append(record)
    return items


def load_suite(path: str | Path) -> Suite:
    """A suite from a folder (``*.jsonl`` + optional ``suite.yaml``, ``taxonomy.json``) or one JSONL file."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        folder = path
    elif path.is_file():
        files, folder = [path], path.parent
    else:
        raise DomainlmError(f"{path}: no such suite folder or file")
    if not files:
        raise DomainlmError(f"{path}: no *.jsonl task files in this suite folder")
    config = SuiteConfig()
    if (folder / "suite.yaml").is_file():
        config = load_config(folder / "suite.yaml", model=SuiteConfig)
    for kind in config.templates:
        if kind not in TYPES:
            raise DomainlmError(f"{folder / 'suite.yaml'}: templates: unknown type '{kind}'")
    # The sample domain keeps taxonomy.json one level up (tasks/taxonomy.json beside tasks/eval/).
    taxonomy_file = next((f for f in (folder / "taxonomy.json", folder.parent / "taxonomy.json") if f.is_file()), None)
    taxonomy = _taxonomy_lookup(taxonomy_file) if taxonomy_file else {}
    items: list[dict] = []
    for file in files:
        items.extend(_read_items(file, taxonomy))
    seen: dict[str, str] = {}
    for item in items:
        if item["id"] in seen:
            raise DomainlmError(f"{item['_where']}: duplicate id '{item['id']}' (first at {seen[item['id']]})")
        seen[item["id"]] = item["_where"]
    return Suite(name=config.name or path.name, path=path, config=config, items=items)
