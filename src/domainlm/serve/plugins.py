"""Plugins: knowledge-base search and ChatFile, offered to the model as tools and to clients as endpoints.

Both are thin adapters over the knowledge-base stage (``domainlm.kb``): this module only turns its
results into JSON for the API and describes the tools in OpenAI function format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from domainlm.errors import DomainlmError

KB_SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "kb_search",
        "description": "Search the organisation's knowledge base; returns the most relevant passages with their sources.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "What to look for"},
                           "k": {"type": "integer", "description": "How many passages", "default": 5}},
            "required": ["query"],
        },
    },
}

PLUGIN_TOOLS = {"kb_search": KB_SEARCH_TOOL}


def _field(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def hit_json(hit: Any) -> dict:
    """One search hit or citation as plain JSON (the KB may return dicts or dataclasses)."""
    if hasattr(hit, "to_dict"):
        return hit.to_dict()
    if isinstance(hit, dict):
        return dict(hit)
    import dataclasses

    if dataclasses.is_dataclass(hit):
        return dataclasses.asdict(hit)
    return {"text": str(hit)}


def open_knowledge_base(path: str | Path):
    from domainlm.kb import open_kb

    return open_kb(path)


def kb_search(kb, query: str, k: int = 5, mode: str = "hybrid") -> list[dict]:
    if not query.strip():
        raise DomainlmError("kb search: empty query")
    return [hit_json(h) for h in kb.search(query, k=k, mode=mode)]


def kb_answer(kb, question: str, model=None) -> dict:
    """``{"answer", "citations", "refused"}`` from the KB's grounded reader (``model`` None: extractive)."""
    from domainlm.kb import answer

    result = answer(kb, question, model=model)
    return {
        "answer": _field(result, "answer", "") or "",
        "citations": [hit_json(c) for c in (_field(result, "citations", []) or [])],
        "refused": bool(_field(result, "refused", False)),
    }


def run_plugin_tool(name: str, arguments: str | dict, kb) -> str:
    """Execute a plugin tool call; the result is the JSON text given back to the model."""
    try:
        args = json.loads(arguments) if isinstance(arguments, str) else dict(arguments)
    except (json.JSONDecodeError, TypeError, ValueError):
        return json.dumps({"error": "arguments are not a JSON object"})
    if name == "kb_search":
        if kb is None:
            return json.dumps({"error": "no knowledge base is loaded"})
        query = str(args.get("query") or "")
        k = args.get("k", 5)
        k = k if isinstance(k, int) and 1 <= k <= 20 else 5
        try:
            return json.dumps({"results": kb_search(kb, query, k)}, ensure_ascii=False, default=str)
        except DomainlmError as exc:
            return json.dumps({"error": str(exc)}, ensure_ascii=False)
    return json.dumps({"error": f"unknown plugin tool '{name}'"})
