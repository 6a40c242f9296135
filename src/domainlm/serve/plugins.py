"""Plugins: the tools the server runs for the model, and ChatFile.

:func:`server_tools` gathers what a server offers the model: ``kb_search`` over its knowledge base, and the
tools registered with ``serve --plugin`` (built-in scenario tools, ``domainlm.plugins`` entry points) and
``serve --openapi`` (see ``domainlm.plugins.registry``); ``agent`` runs their calls. ``kb_search`` and
ChatFile are thin adapters over the knowledge-base stage (``domainlm.kb``): this module only turns its
results into JSON for the API.
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



def kb_search_tool(kb):
    """``kb_search`` as a registered tool over ``kb``: ``{"results": [hits]}``, k kept within 1..20."""
    from domainlm.plugins import Tool

    def run(arguments: dict) -> dict:
        k = arguments.get("k", 5)
        k = k if isinstance(k, int) and 1 <= k <= 20 else 5
        return {"results": kb_search(kb, str(arguments.get("query") or ""), k)}

    fn = KB_SEARCH_TOOL["function"]
    return Tool(fn["name"], fn["description"], fn["parameters"], run, source="builtin (--kb)")


def server_tools(kb=None, plugins: list[str] = (), openapi: list[str] = (), timeout: float = 10.0) -> dict:
    """The tools a server runs for the model, by name: ``kb_search`` when there is a knowledge base, then
    the ``plugins`` (built-in tool or entry-point names, or ``all``) and the ``openapi`` spec files."""
    from domainlm.plugins import index_tools, load_tools

    plugins = list(plugins)
    tools = [kb_search_tool(kb)] if kb is not None else []
    # make_exam reads the server's KB: offered only with --kb, and only when asked for (or "all").
    if "exam" in plugins and kb is None:
        raise DomainlmError("plugin 'exam' needs a knowledge base (--kb)")
    if kb is not None and ("exam" in plugins or "all" in plugins):
        from domainlm.plugins import exam_tool

        tools.append(exam_tool(kb))
    return index_tools([*tools, *load_tools([p for p in plugins if p != "exam"], openapi, timeout)])


def _field(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def hit_json(hit: Any) -> dict:
    """One search hit or citation as plain JSON (the KB may return dicts or dataclasses)."""
    if hasattr(hit, "model_dump"):
        return hit.model_dump(mode="json")
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


# Uploaded documents ChatFile can read (the KB stage's readers decide how to parse each kind).
CHATFILE_SUFFIXES = {".txt", ".md", ".html", ".htm", ".docx", ".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff"}


def chatfile_run(filename: str, data: bytes, question: str | None, model=None, recipe: str | None = None,
                 structure: str | None = None) -> dict:
    """Summarise an uploaded document (``structure`` ``court`` or ``meeting``: a structured summary whose
    items cite their spans), or answer ``question`` from it with citations.

    The upload goes through the clean recipe first (``recipe``, default the workspace's ``clean.recipe``),
    PII redaction included, exactly as ``domainlm chatfile`` and ``clean`` read a file."""
    import tempfile

    from domainlm.kb import ask_file, structured_markdown, summarize_file, summarize_structure
    from domainlm.workspace import workspace_config_or_defaults

    recipe = recipe or workspace_config_or_defaults().clean.recipe

    suffix = Path(filename).suffix.lower()
    if suffix not in CHATFILE_SUFFIXES:
        raise DomainlmError(f"{filename}: unsupported file type (use one of {', '.join(sorted(CHATFILE_SUFFIXES))})")
    if not data:
        raise DomainlmError(f"{filename}: the file is empty")
    with tempfile.TemporaryDirectory(prefix="domainlm-upload-") as tmp:
        # Only the suffix of the client's name is used: no path from a request ever reaches the disk.
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        if question and question.strip() and structure:
            raise DomainlmError(f"{filename}: give a question or a summary structure, not both")
        if structure:
            # Citations name the client's file, not the temporary copy; offsets are into the text as read.
            result = summarize_structure(path, structure, model, recipe=recipe, label=filename)
            return {"object": "chatfile.structured_summary", "filename": filename, **result.model_dump(mode="json"),
                    "markdown": structured_markdown(result)}
        if question and question.strip():
            result = ask_file(path, question, model, recipe=recipe)
            return {"object": "chatfile.answer", "filename": filename, "answer": result.answer, "refused": result.refused,
                    "citations": [hit_json(c) for c in result.citations]}
        summary = summarize_file(path, model, recipe=recipe)
        return {"object": "chatfile.summary", "filename": filename, "summary": summary.summary, "mode": summary.mode,
                "citations": []}


def run_plugin_tool(name: str, arguments: str | dict, kb, timeout: float = 10.0) -> str:
    """One call of a built-in server tool outside the agent loop; the JSON text the model would be given."""
    from domainlm.serve.agent import call_tool

    tools = server_tools(kb)
    if name not in tools:
        return json.dumps({"error": f"unknown plugin tool '{name}'" if kb is not None or name != "kb_search"
                           else "no knowledge base is loaded"})
    outcome = call_tool(tools[name], arguments, timeout)
    return outcome["result"] if "result" in outcome else json.dumps({"error": outcome["error"]}, ensure_ascii=False)
