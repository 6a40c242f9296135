"""The server-side agent loop: model → tool calls → tool results → model, bounded.

The model's output is read with :func:`domainlm.parsing.parse_tool_calls` (the parser eval uses). Calls to
tools the server holds are run here; each result — or its error, its timeout, its bad arguments — goes back
to the model as the ``tool`` message, so a failing tool is something the model can answer about, never a
500. After ``max_steps`` rounds of tools the model is asked once more; calls it still makes are recorded as
not run and the turn ends with the text it wrote around them.

Every call is recorded: ``name``, ``arguments`` (the JSON text the model wrote), ``result`` (the text the
model was given; None when the call was not run), ``error``, ``ms``, ``step`` and the tool's ``source``.

A tool runs in its own daemon thread and is waited for ``tool_timeout`` seconds. Python cannot stop a
thread, so a tool that overruns keeps running in the background until it returns; OpenAPI tools pass the
timeout to httpx as well, so their request is abandoned at the same time.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from domainlm.parsing import ParsedOutput, decode_arguments, parse_tool_calls

# What the model is given back from one call at most: a tool that returns megabytes must not fill the context.
MAX_RESULT_CHARS = 16_000


@dataclass
class AgentResult:
    text: str  # the last output, without the server calls it made when those were not run
    parsed: ParsedOutput | None  # the last output's calls to the client's tools (None: no tools offered)
    calls: list[dict] = field(default_factory=list)
    steps: int = 0  # rounds of tools run
    exhausted: bool = False  # max_steps ended the loop while the model still called tools


def _result_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + f"\n…(cut: the tool returned {len(text)} characters)"
    return text


def call_tool(tool, arguments: str | dict, timeout: float) -> dict:
    """Run one call; ``{"result": text}`` or ``{"error": message, "kind": ...}`` with ``ms``, never a raise.

    ``kind``: invalid_arguments (not a JSON object, or against the tool's schema), timeout, error."""
    import jsonschema

    started = time.perf_counter()

    def done(**out) -> dict:
        return {**out, "ms": round((time.perf_counter() - started) * 1000, 1)}

    args = decode_arguments(arguments)
    if not isinstance(args, dict):
        return done(error="the arguments are not a JSON object", kind="invalid_arguments")
    try:
        jsonschema.validate(args, tool.parameters)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return done(error=f"invalid arguments{' at ' + where if where else ''}: {exc.message}", kind="invalid_arguments")
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = tool.run(args)
        except Exception as exc:  # the tool's failure is the model's to read, not the server's to raise
            box["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    thread = threading.Thread(target=work, name=f"tool-{tool.name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return done(error=f"the tool did not answer within {timeout:g}s", kind="timeout")
    if "error" in box:
        return done(error=box["error"], kind="error")
    return done(result=_result_text(box.get("result")))


def run_agent(generate: Callable[[list[dict], int], str], messages: list[dict], offered: list[dict] | None,
              tools: dict, max_steps: int, tool_timeout: float,
              on_call: Callable[[dict, str | None], None] | None = None) -> AgentResult:
    """The loop. ``generate(conversation, step)`` is the model's whole output for a conversation;
    ``offered`` the tools in the prompt (parsed against); ``tools`` the server's tools by name — a call to
    any other offered tool is the client's, and ends the turn. ``on_call(record, kind)`` sees each record
    as it is made (``kind`` None for a call that answered)."""
    conversation = list(messages)
    calls: list[dict] = []
    step = 0
    while True:
        text = generate(conversation, step)
        parsed = parse_tool_calls(text, offered) if offered else None
        found = parsed.tool_calls if parsed else []
        server = [c for c in found if c["function"]["name"] in tools]
        client = [c for c in found if c["function"]["name"] not in tools]
        if not server:
            return AgentResult(text, parsed, calls, step)
        # Server calls beside a client call, or past the last step, are not run: the turn ends here.
        reason = ("the same answer called a client tool" if client else
                  f"max_steps ({max_steps}) reached" if step >= max_steps else None)
        if reason:
            for call in server:
                record = {"name": call["function"]["name"], "arguments": call["function"]["arguments"], "result": None,
                          "error": f"not run: {reason}", "ms": 0.0, "step": step + 1,
                          "source": tools[call["function"]["name"]].source}
                calls.append(record)
                if on_call is not None:
                    on_call(record, "not_run")
            kept = ParsedOutput(parsed.content, client)
            return AgentResult(text if client else (parsed.content or ""), kept, calls, step, exhausted=not client)
        step += 1
        conversation.append({"role": "assistant", "content": parsed.content or "", "tool_calls": [
            {**c, "function": {**c["function"], "arguments": decode_arguments(c["function"]["arguments"])}} for c in server]})
        for call in server:
            name, arguments = call["function"]["name"], call["function"]["arguments"]
            tool = tools[name]
            outcome = call_tool(tool, arguments, tool_timeout)
            error = outcome.get("error")
            # The model reads an error as JSON, the way the built-in tools always answered one.
            message = outcome["result"] if error is None else json.dumps({"error": error}, ensure_ascii=False)
            record = {"name": name, "arguments": arguments, "result": message if error is None else None,
                      "error": error, "ms": outcome["ms"], "step": step, "source": tool.source}
            calls.append(record)
            if on_call is not None:
                on_call(record, outcome.get("kind"))
            conversation.append({"role": "tool", "tool_call_id": call["id"], "name": name, "content": message})
