"""Answering one chat turn: routing, the plugin loop, the knowledge-base reader, token accounting, storage.

:func:`answer_pieces` is the one place an answer is made. It yields the answer's text in pieces and
returns the whole :class:`Answer` when it is done; the streaming route turns the pieces into SSE chunks,
the non-streaming route drains it with :func:`complete`. So routing and token counts are the same
whichever way a client asks.

Plain answers stream token by token. An answer with tools, a ``response_format`` or the knowledge base is
made whole first and then sent in small pieces: tool calls must be parsed and JSON checked before the
client sees any of it, and the KB reader answers at once. This all runs in worker threads.

Under a constraint (``GenParams.constraint``: ``response_format`` or a forced ``tool_choice`` on a
transformers model) the decoder keeps the answer on the grammar, so the JSON check below is a safety net
that should never fire; an answer ``max_tokens`` cut before its grammar closed is returned as it is with
``finish_reason`` ``length``, as OpenAI's API does, not refused.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field, replace

from domainlm.parsing import ParsedOutput, json_text
from domainlm.serve.agent import run_agent
from domainlm.serve.asgi import ApiError
from domainlm.serve.constrained import constraint_for, finite_json
from domainlm.serve.generation import Generated, GenParams, ServedModel, logprobs_covering, stop_stream
from domainlm.serve.plugins import kb_answer
from domainlm.serve.router import Decision
from domainlm.serve.state import ServeState


@dataclass
class Turn:
    """One chat completion to answer, as the route checked and translated it."""

    messages: list[dict]  # the conversation in chat-template form
    params: GenParams
    kb: bool  # answer from the knowledge base's reader instead of the model
    client_tools: set[str]  # tools the client offered: a call to one goes back to the client, never run here
    record: dict  # the request as stored with the response
    # Set when the client has gone away: the generation behind the turn stops at its next decode step.
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class Answer:
    content: str | None  # None when the answer is tool calls only
    usage: dict  # prompt_tokens, completion_tokens, total_tokens
    tool_calls: list[dict] = field(default_factory=list)  # OpenAI's shape, for the client to run
    citations: list[dict] | None = None  # knowledge-base answers only
    route: dict | None = None  # routed answers only: target, model, reason, confidence
    plugin_calls: list[dict] = field(default_factory=list)  # plugin tools the server ran on the way
    cut: bool = False  # max_tokens ended the answer
    logprobs: list[dict] | None = None  # per token, OpenAI's shape, when the request asked for them

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "length" if self.cut else "stop"

    @property
    def stored_text(self) -> str:
        """The answer as the feedback store keeps it: the text, then any tool calls as JSON."""
        if not self.tool_calls:
            return self.content or ""
        return (self.content or "") + json.dumps([c["function"] for c in self.tool_calls], ensure_ascii=False)


def last_user_text(messages: list[dict]) -> str:
    for m in reversed(messages):
        if m["role"] == "user" and m["content"].strip():
            return m["content"]
    raise ApiError(400, "messages: no user message to answer", "invalid_messages", "messages")


def text_pieces(text: str, size: int = 16) -> Iterator[str]:
    """An answer that exists already (KB reader, tool calls, checked JSON) streams in small pieces."""
    for i in range(0, len(text), size):
        yield text[i : i + size]


class LogprobFeed:
    """Hands out the token logprobs that go with each piece of text as the pieces go out.

    A token's entry goes with the piece its last byte is in (entries are matched to text by byte offset:
    a Chinese character split over two tokens goes out whole, with both entries).
    """

    def __init__(self, entries: list[dict] | None, lead_bytes: int):
        self.entries, self.lead_bytes = entries, lead_bytes
        self.sent, self.emitted = 0, 0

    def take(self, piece: str) -> list[dict] | None:
        if self.entries is None:
            return None
        self.emitted += len(piece.encode())
        n = max(self.sent, logprobs_covering(self.entries, self.lead_bytes + self.emitted))
        out, self.sent = self.entries[self.sent : n], n
        return out

    def rest(self) -> list[dict] | None:
        return None if self.entries is None else self.entries[self.sent :]


def answer_pieces(state: ServeState, turn: Turn, stream: bool) -> Generator[tuple[str, list[dict] | None], None, Answer]:
    """The answer's text in pieces, each with the logprobs of its tokens (None unless asked for); the
    return value (``StopIteration.value``) is the whole :class:`Answer`.

    ``stream`` False: the model is asked for a whole answer (the non-streaming route only wants the return
    value). Raises :class:`ApiError` when the answer breaks the ``response_format``.
    """
    params = turn.params
    whole = not stream or turn.kb or params.tools or params.response_format is not None
    parsed: ParsedOutput | None = None
    citations, plugin_calls = None, []
    generated = Generated()
    state.metrics.in_flight.inc()
    try:
        if turn.kb:
            model, decision = state.model, None
            text, citations = _read_kb(state, turn)
        else:
            model, decision = _route(state, turn)
            if whole:
                text, parsed, plugin_calls, generated = _complete_with_plugins(state, model, decision, turn)
            else:
                parts: list[str] = []
                feed = LogprobFeed(generated.logprobs, 0)
                for piece in _deltas(model, decision, turn, generated):
                    parts.append(piece)
                    # generate() fills generated.logprobs as it goes: the feed reads the list it is now.
                    feed.entries, feed.lead_bytes = generated.logprobs, generated.lead_bytes
                    yield piece, feed.take(piece)
                text = "".join(parts).rstrip()
        # Counted before the JSON check below: a refused answer still cost its tokens.
        usage = _usage(state, model, turn, text, decision, generated)
        extras = dict(citations=citations, route=_route_json(decision, model), plugin_calls=plugin_calls,
                      cut=generated.finish_reason == "length", logprobs=_final_logprobs(generated, text))
        if parsed is not None and parsed.tool_calls:
            answer = Answer(parsed.content, usage, tool_calls=parsed.tool_calls, **extras)
        else:
            # The KB reader's answer is prose (the route refuses a format with kb): no JSON check. A constrained
            # answer cut by max_tokens is the grammar's prefix: returned with finish_reason length.
            unchecked = turn.kb or (params.constraint is not None and extras["cut"])
            answer = Answer(text if unchecked else _check_json(text, params.response_format), usage, **extras)
    finally:
        state.metrics.in_flight.dec()
    if whole:
        feed = LogprobFeed(answer.logprobs, generated.lead_bytes)
        for piece in text_pieces(answer.content or ""):
            yield piece, feed.take(piece)
    return answer


def continuation_pieces(state: ServeState, prompt: str, params: GenParams, cancel: threading.Event,
                        stream: bool) -> Generator[tuple[str, list[dict] | None], None, Answer]:
    """A legacy text completion (``/v1/completions``): ``prompt`` continued as it is, without the chat
    template, the router or tools; pieces and return value as :func:`answer_pieces`."""
    model = state.model
    generated = Generated()
    state.metrics.in_flight.inc()
    try:
        if stream:
            parts: list[str] = []
            feed = LogprobFeed(None, 0)
            for piece in model.stream_text(prompt, params, cancel, generated):
                parts.append(piece)
                feed.entries = generated.logprobs
                yield piece, feed.take(piece)
            text = "".join(parts)
        else:
            text = model.complete_text(prompt, params, generated, cancel)
        prompt_tokens = model.count_tokens(prompt)
        completion_tokens = generated.completion_tokens
        if completion_tokens is None:
            completion_tokens = model.count_tokens(text)
        state.metrics.prompt_tokens.labels(model.name).inc(prompt_tokens)
        state.metrics.completion_tokens.labels(model.name).inc(completion_tokens)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        return Answer(text, usage, cut=generated.finish_reason == "length", logprobs=_final_logprobs(generated, text))
    finally:
        state.metrics.in_flight.dec()


def drain(pieces: Generator[tuple[str, list[dict] | None], None, Answer]) -> Answer:
    """The return value of a pieces generator, its pieces discarded."""
    while True:
        try:
            next(pieces)
        except StopIteration as done:
            return done.value


def complete(state: ServeState, turn: Turn) -> Answer:
    """The whole answer, for the non-streaming route."""
    pieces = answer_pieces(state, turn, stream=False)
    while True:
        try:
            next(pieces)
        except StopIteration as done:
            return done.value


def store_answer(state: ServeState, response_id: str, turn: Turn, answer: Answer, user: str) -> None:
    """Keep the exchange under its response id, so feedback can refer to it."""
    record = {**turn.record, "plugin_calls": answer.plugin_calls} if answer.plugin_calls else turn.record
    state.store.add_response(model=state.name, request=record, response=answer.stored_text, user=user,
                             response_id=response_id)


# ---------------------------------------------------------------------------------------------------
# The steps
# ---------------------------------------------------------------------------------------------------
def _route(state: ServeState, turn: Turn) -> tuple[ServedModel, Decision | None]:
    if state.router is None:
        return state.model, None
    decision = state.router.decide(turn.messages, turn.params)
    state.metrics.route.labels(decision.target, decision.reason).inc()
    return state.router.model_for(decision), decision


def _edge_answer(decision: Decision | None) -> str | None:
    """The edge's answer when the router already generated it while deciding and the edge is to answer."""
    if decision is not None and decision.target == "edge":
        return decision.edge_answer
    return None


def _deltas(model: ServedModel, decision: Decision | None, turn: Turn, generated: Generated) -> Iterator[str]:
    ready = _edge_answer(decision)
    if ready is not None:
        return text_pieces(ready)
    return stop_stream(model.stream(turn.messages, turn.params, turn.cancel, generated), turn.params.stop)


def _after_first_round(params: GenParams) -> GenParams:
    """The options of the loop's later rounds: a forced ``tool_choice`` ("required" or a named function)
    holds for the first round only, as agent frameworks reset it after a call; kept, it would force a call
    in every round and the loop could only end at ``max_steps``. A ``response_format`` still holds."""
    if params.tool_choice in (None, "auto", "none"):
        return params
    constraint = params.constraint  # None where an OpenAI-compatible upstream holds the answer to it
    if constraint is not None:
        constraint = constraint_for(params.response_format, params.tools, "auto")
    return replace(params, tool_choice="auto", constraint=constraint)


def _complete_with_plugins(state: ServeState, model: ServedModel, decision: Decision | None,
                           turn: Turn) -> tuple[str, ParsedOutput | None, list[dict], Generated]:
    """The model's whole answer, its calls to the client's tools, the server's tool calls made on the way
    (``agent.run_agent``: at most ``state.max_steps`` rounds, ``state.tool_timeout`` per call), and the
    last round's token count and finish reason.

    The server runs a call when it holds the tool and the request offered it (``"plugins": true`` adds the
    server's tools to the prompt) and the client did not offer a tool of the same name."""
    offered = {t.get("function", {}).get("name") for t in turn.params.tools or ()}
    tools = {}
    if offered:  # a request without tools never reaches the server's tools
        tools = {name: tool for name, tool in state.tools.items() if name in offered and name not in turn.client_tools}
    last = [Generated()]
    later = _after_first_round(turn.params)

    def generate(conversation: list[dict], step: int) -> str:
        ready = _edge_answer(decision) if step == 0 else None
        last[0] = Generated()
        params = turn.params if step == 0 else later
        return ready if ready is not None else model.complete(conversation, params, last[0], turn.cancel)

    def meter(record: dict, kind: str | None) -> None:
        if kind != "not_run":
            state.metrics.plugin_calls.labels(record["name"]).inc()
            state.metrics.plugin_seconds.labels(record["name"]).observe(record["ms"] / 1000)
        if kind is not None:
            state.metrics.plugin_errors.labels(record["name"], kind).inc()

    result = run_agent(generate, turn.messages, turn.params.tools, tools, state.max_steps, state.tool_timeout, meter)
    return result.text, result.parsed, result.calls, last[0]


def _read_kb(state: ServeState, turn: Turn) -> tuple[str, list[dict]]:
    """The knowledge base's grounded answer and its citations (read by the model, or extractively)."""
    question = last_user_text(turn.messages)
    if state.kb_reader == "model":
        result = state.model.run(kb_answer, state.kb, question, model=state.model.backend)
    else:
        result = kb_answer(state.kb, question, model=None)
    return result["answer"], result["citations"]


def _usage(state: ServeState, model: ServedModel, turn: Turn, text: str, decision: Decision | None,
           generated: Generated) -> dict:
    """Usage counts and metrics for one answer, and the router's savings when the edge answered.

    Completion tokens are the generated token ids where the backend reports them (transformers); other
    backends, the router's edge answer and the KB reader's text are counted by re-tokenizing the text.
    """
    prompt_tokens = model.count_tokens(model.prompt_text(turn.messages, turn.params.tools))
    completion_tokens = generated.completion_tokens
    if completion_tokens is None:
        completion_tokens = model.count_tokens(text)
    state.metrics.prompt_tokens.labels(model.name).inc(prompt_tokens)
    state.metrics.completion_tokens.labels(model.name).inc(completion_tokens)
    if decision is not None and decision.target == "edge":
        state.metrics.cloud_tokens_saved.inc(prompt_tokens + completion_tokens)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _final_logprobs(generated: Generated, text: str) -> list[dict] | None:
    """The logprobs of the tokens that made the answer's text (none past a stop string or the end-of-turn)."""
    if generated.logprobs is None:
        return None
    return generated.logprobs[: logprobs_covering(generated.logprobs, generated.lead_bytes + len(text.encode()), final=True)]


def _route_json(decision: Decision | None, model: ServedModel) -> dict | None:
    if decision is None:
        return None
    return {"target": decision.target, "model": model.name, "reason": decision.reason, "confidence": decision.confidence}


def _check_json(text: str, response_format: dict | None) -> str:
    """Honour response_format: the answer must be JSON (and match the schema when one is given)."""
    if response_format is None:
        return text
    found = json_text(text)
    if found is None:
        raise ApiError(502, "the model's answer is not valid JSON although response_format asked for JSON",
                       "invalid_model_output", "response_format")
    if not finite_json(found):
        raise ApiError(502, "the model's JSON has a number too large for a float (read as infinity)",
                       "invalid_model_output", "response_format")
    problem = _schema_problem(found, response_format)
    if problem:
        raise ApiError(502, f"the model's JSON does not match the response_format schema: {problem}",
                       "invalid_model_output", "response_format")
    return found


def _schema_problem(text: str, response_format: dict) -> str | None:
    """An error message when ``text`` breaks the response_format's JSON schema, else None."""
    schema = (response_format.get("json_schema") or {}).get("schema")
    if not schema:
        return None
    import jsonschema  # only requests that send a schema pay for the import

    try:
        jsonschema.validate(json.loads(text), schema)
    except jsonschema.ValidationError as exc:
        return exc.message
    return None
