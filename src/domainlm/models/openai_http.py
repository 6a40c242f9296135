"""The OpenAI-compatible HTTP backend: ``openai:http://host:port/v1#model-name``.

Works with `domainlm serve`, vLLM, llama.cpp's server, Ollama and hosted APIs. Several servers of one
model (vLLM replicas on N boxes) go in one spec, comma-separated:
``openai:http://h1:8000/v1,http://h2:8000/v1#qwen``. Each request goes to the replica with the fewest
requests in flight (ties take turns). A replica that refuses the connection, drops it, times out or
answers 5xx is left out for ``cooloff`` seconds and the request is sent once more to another replica, as
long as none of its answer has been passed on yet; when every replica is left out, a request fails at
once with one line naming each replica and its last error. :attr:`OpenAIModel.replicas` shows the
per-replica counts (for ``/metrics``).

The request body carries every sampling option the caller set (:meth:`OpenAIModel.request_body`): vLLM's
and llama.cpp's servers honour ``tools``, ``tool_choice``, ``response_format`` (vLLM turns a json_schema
into guided decoding), ``top_p``, the penalties, ``logit_bias``, ``seed``, ``logprobs``, ``n`` and
``stop``. Options left at OpenAI's defaults are not sent, so a server that lacks one is not bothered.

Uses the standard library's HTTP client (JSON POSTs and a line-by-line SSE read need no extra dependency);
batch requests run concurrently in threads and come back in order. The API key, when needed, is read from
``$OPENAI_API_KEY``.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from domainlm.errors import DomainlmError
from domainlm.models.base import LanguageModel, cut_at_stop


def format_tool_calls(tool_calls: list[dict]) -> str:
    """Tool calls as the text a ChatML model writes, so every backend's output is scored the same way."""
    parts = []
    for call in tool_calls:
        fn = call.get("function", call)
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                pass
        parts.append("<tool_call>\n" + json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False)
                     + "\n</tool_call>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------------
# Replicas
# ---------------------------------------------------------------------------------------------------
@dataclass(eq=False)  # compared by identity: a replica is one server
class Replica:
    """One upstream server and what it has been through (readable while requests run, for /metrics)."""

    url: str
    in_flight: int = 0  # requests sent to it and not finished (a stream counts until it ends)
    requests: int = 0  # requests sent to it, ever
    failures: int = 0  # refused or dropped connections, timeouts, 5xx answers
    down_until: float = 0.0  # time.monotonic() before which it gets no requests
    last_error: str = ""

    def up(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) >= self.down_until


class ReplicaFailure(DomainlmError):
    """The replica failed, not the request (no connection, a dropped one, a timeout, a 5xx answer):
    another replica may well answer it."""


class ReplicaPool:
    """Least-in-flight choice over replicas, round-robin among equals, with a cool-off after a failure."""

    def __init__(self, urls: list[str], cooloff: float = 10.0):
        if not urls:
            raise DomainlmError("an OpenAI-compatible model needs at least one server URL")
        self.replicas = [Replica(url) for url in urls]
        self.cooloff = cooloff
        self._lock = threading.Lock()
        self._turn = 0  # where the next tie-break starts

    def acquire(self, exclude: Sequence[Replica] = ()) -> Replica:
        """The replica for the next request, its in-flight count already taken; raises when none is up."""
        with self._lock:
            now = time.monotonic()
            n = len(self.replicas)
            order = [self.replicas[(self._turn + i) % n] for i in range(n)]
            live = [r for r in order if r.up(now) and r not in exclude]
            if not live:
                raise DomainlmError(self._down_message(now))
            chosen = min(live, key=lambda r: r.in_flight)  # the first of the least busy, from the turn on
            self._turn = (self.replicas.index(chosen) + 1) % n
            chosen.in_flight += 1
            chosen.requests += 1
            return chosen

    def release(self, replica: Replica, error: str | None = None) -> None:
        """The request on ``replica`` ended; ``error`` (a replica failure) leaves it out for the cool-off."""
        with self._lock:
            replica.in_flight -= 1
            if error is not None:
                replica.failures += 1
                replica.last_error = error
                replica.down_until = time.monotonic() + self.cooloff

    def _down_message(self, now: float) -> str:
        parts = [f"{r.last_error or r.url} (left out for another {max(r.down_until - now, 0):.0f} s)"
                 for r in self.replicas]
        what = "the server is" if len(self.replicas) == 1 else f"all {len(self.replicas)} replicas are"
        return f"{what} down: " + "; ".join(parts)


# ---------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------
@dataclass
class ChatResult:
    """One answer from the upstream: its text, tool calls and what OpenAI's API reports with them.

    ``logprobs`` are OpenAI's ``logprobs.content`` entries (``token``, ``logprob``, ``bytes``,
    ``top_logprobs``); ``prompt_tokens`` / ``completion_tokens`` are the upstream's own ``usage`` (None
    when it sent none; with ``n`` > 1 they cover all choices, as OpenAI reports them).
    """

    content: str = ""
    tool_calls: list[dict] = field(default_factory=list)
    finish_reason: str = "stop"
    logprobs: list[dict] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    replica: str = ""  # the server that answered

    @property
    def text(self) -> str:
        """The content with any tool calls written after it as ``<tool_call>`` blocks, the text a ChatML
        model writes: what the eval scores and ``domainlm.parsing.parse_tool_calls`` reads back."""
        if not self.tool_calls:
            return self.content.strip()
        return ((self.content + "\n" if self.content else "") + format_tool_calls(self.tool_calls)).strip()


class OpenAIModel(LanguageModel):
    supports_logprobs = False  # loglikelihood() needs prompt logprobs, which chat servers do not give

    def __init__(self, base_url: str | list[str], model_name: str, *, timeout: float = 300.0,
                 concurrency: int | None = None, cooloff: float = 10.0):
        urls = base_url.split(",") if isinstance(base_url, str) else list(base_url)
        self.urls = [u.strip().rstrip("/") for u in urls if u.strip()]
        self.pool = ReplicaPool(self.urls, cooloff)
        self.base_url = self.urls[0]
        self.model_name = model_name
        self.timeout = timeout
        # Batch calls (eval, synth) keep every replica busy: 4 requests in flight per replica by default.
        self.concurrency = concurrency if concurrency is not None else 4 * len(self.urls)
        self.info = {"spec": f"openai:{','.join(self.urls)}#{model_name}", "backend": "openai", "params": None,
                     "n_layers": None, "hidden_size": None, "vocab_size": None, "max_seq_len": None}

    @property
    def replicas(self) -> list[Replica]:
        """Per-replica in-flight counts, requests, failures and cool-off, for /metrics."""
        return self.pool.replicas

    # -- the request -----------------------------------------------------------------------------
    def request_body(self, messages: list[dict] | None = None, *, prompt: str | None = None,
                     max_new_tokens: int = 128, temperature: float = 0.0, seed: int | None = 0,
                     stop: list[str] | None = None, top_p: float | None = None, presence_penalty: float | None = None,
                     frequency_penalty: float | None = None, logit_bias: dict | None = None,
                     logprobs: int | None = None, n: int = 1, tools: list[dict] | None = None,
                     tool_choice: str | dict | None = None, response_format: dict | None = None,
                     stream: bool = False) -> dict:
        """The JSON body for ``/chat/completions`` (``messages``) or ``/completions`` (``prompt``).

        Options are copied as given; one left at OpenAI's default (None, top_p 1, penalties 0, n 1, no
        stop) is left out. ``logprobs`` is how many alternatives to report per token (0 for none, None for
        no logprobs at all): chat's ``logprobs: true`` + ``top_logprobs``, or the legacy ``logprobs: k``.
        """
        body: dict[str, Any] = {"model": self.model_name}
        if (messages is None) == (prompt is None):
            raise DomainlmError("request_body: give messages (chat) or prompt (text completion), not both")
        if messages is not None:
            body["messages"] = [_wire_message(m) for m in messages]
        else:
            body["prompt"] = prompt
        body["max_tokens"] = max_new_tokens
        body["temperature"] = temperature
        optional = {"seed": seed, "stop": stop or None, "top_p": None if top_p == 1.0 else top_p,
                    "presence_penalty": presence_penalty or None, "frequency_penalty": frequency_penalty or None,
                    "logit_bias": logit_bias or None, "n": n if n != 1 else None, "tools": tools or None,
                    # OpenAI's API refuses a tool_choice without tools (serve clears tools for "none").
                    "tool_choice": tool_choice if tools else None, "response_format": response_format}
        body.update({k: v for k, v in optional.items() if v is not None})
        if logprobs is not None:
            if messages is not None:
                body["logprobs"] = True
                if logprobs:
                    body["top_logprobs"] = logprobs
            else:
                body["logprobs"] = logprobs
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}  # the usage comes in a last chunk
        return body

    # -- whole answers ---------------------------------------------------------------------------
    def chat_results(self, messages: list[dict], **sampling) -> list[ChatResult]:
        """One whole chat answer per choice (``n``), tool calls as the upstream sent them (OpenAI's shape:
        ``id``, ``type``, ``function.name``, ``function.arguments`` as a JSON string)."""
        data, replica = self._post("/chat/completions", self.request_body(messages, **sampling))
        usage = data.get("usage") or {}
        results = []
        try:
            for choice in data["choices"]:
                message = choice["message"]
                results.append(ChatResult(
                    content=message.get("content") or "", tool_calls=list(message.get("tool_calls") or []),
                    finish_reason=choice.get("finish_reason") or "stop",
                    logprobs=(choice.get("logprobs") or {}).get("content"),
                    prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens"),
                    replica=replica))
        except (KeyError, TypeError, AttributeError):
            raise DomainlmError(f"{replica}/chat/completions: unexpected answer {str(data)[:200]}") from None
        if not results:
            raise DomainlmError(f"{replica}/chat/completions: the answer has no choices")
        return results

    def generate(self, prompts, *, max_new_tokens=128, temperature=0.0, stop=None, seed=0):
        def one(prompt: str) -> str:
            body = self.request_body(prompt=prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                                     stop=stop, seed=seed)
            data, replica = self._post("/completions", body)
            try:
                return cut_at_stop(data["choices"][0]["text"] or "", stop)
            except (KeyError, IndexError, TypeError):
                raise DomainlmError(f"{replica}/completions: unexpected answer {str(data)[:200]}") from None

        return self._map(one, list(prompts))

    def chat(self, conversations, *, max_new_tokens=128, temperature=0.0, tools=None, response_format=None, seed=0):
        """Answers as text, tool calls written as ``<tool_call>`` blocks (the eval scores every backend's
        text the same way); :meth:`chat_results` keeps them apart."""
        def one(messages: list[dict]) -> str:
            return self.chat_results(messages, max_new_tokens=max_new_tokens, temperature=temperature,
                                     tools=tools, response_format=response_format, seed=seed)[0].text

        return self._map(one, list(conversations))

    # -- streamed answers ------------------------------------------------------------------------
    def stream_chat(self, messages: list[dict], report: Any = None, **sampling) -> Iterator[str]:
        """The answer's text deltas as the upstream sends them; returns the whole :class:`ChatResult`.

        ``report`` (a :class:`ChatResult`, or any object with ``finish_reason``, ``completion_tokens`` and
        ``logprobs``, such as serve's ``Generated``) is kept up to date as the stream goes: logprobs entries
        are appended as they arrive, finish_reason and completion_tokens set when the upstream sends them.
        Closing the generator closes the connection (vLLM then aborts the generation).
        """
        report = report if report is not None else ChatResult()
        body = self.request_body(messages, stream=True, **sampling)
        result = ChatResult()

        def read(replica: Replica, response) -> Iterator[str]:
            nonlocal result
            # A retried request starts its report over: the failed attempt passed no text on.
            result = ChatResult(replica=replica.url)
            report.finish_reason, report.completion_tokens = "stop", None
            report.logprobs = result.logprobs = [] if sampling.get("logprobs") is not None else None
            finished = False
            for event in _sse_events(response, replica.url):
                if event.get("error"):
                    error = event["error"]
                    raise DomainlmError(f"{replica.url}: {error.get('message') if isinstance(error, dict) else error}")
                usage = event.get("usage") or {}
                if usage.get("completion_tokens") is not None:
                    result.prompt_tokens = usage.get("prompt_tokens")
                    result.completion_tokens = report.completion_tokens = usage["completion_tokens"]
                for choice in event.get("choices") or []:
                    if choice.get("index", 0) != 0:
                        continue  # n > 1 streams interleave choices: this stream is the first one's
                    if choice.get("finish_reason"):
                        finished = True
                        result.finish_reason = report.finish_reason = choice["finish_reason"]
                    entries = (choice.get("logprobs") or {}).get("content")
                    if entries and report.logprobs is not None:
                        report.logprobs.extend(entries)  # the same list as result.logprobs
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        result.content += piece
                        yield piece
            if not finished:
                # A server that dies mid-answer may just close the connection: that is not an answer.
                raise ReplicaFailure(f"{replica.url}: the stream ended before the answer did (no finish_reason)")

        yield from self._exchange("/chat/completions", body, read)
        return result

    # -- HTTP, over the replicas -----------------------------------------------------------------
    def _post(self, route: str, payload: dict) -> tuple[dict, str]:
        """The upstream's JSON answer and the replica that gave it."""
        def read(replica: Replica, response) -> Iterator[tuple[dict, str]]:
            raw = _read_all(response, replica.url + route)
            try:
                yield json.loads(raw.decode("utf-8")), replica.url
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise DomainlmError(f"{replica.url}{route}: the server did not answer with JSON") from None

        # Drained, so the replica is released before this returns.
        return list(self._exchange(route, payload, read))[0]

    def _exchange(self, route: str, payload: dict, read: Callable[[Replica, Any], Iterator]) -> Iterator:
        """``read(replica, response)``'s items, from the least busy replica; when that replica fails before
        an item was passed on, once more from another one. Releases the replica however it ends."""
        # The first replica and its failure, when it failed before passing anything on.
        first: Replica | None = None
        failure: ReplicaFailure | None = None
        while True:
            if failure is None:
                replica = self.pool.acquire()
            else:
                try:
                    replica = self.pool.acquire(exclude=[first])
                except DomainlmError:
                    raise failure from None  # no other replica to try: the first failure is the news
            error, passed = None, False
            try:
                with self._open(replica, route, payload) as response:
                    items = read(replica, response)
                    try:
                        for item in items:
                            passed = True
                            yield item
                    finally:
                        items.close()
                return
            except ReplicaFailure as exc:
                error = str(exc)
                if passed:
                    raise
                if failure is not None:
                    raise ReplicaFailure(f"{failure}; retried on another replica: {exc}") from None
                failure, first = exc, replica
            finally:
                self.pool.release(replica, error)

    def _open(self, replica: Replica, route: str, payload: dict):
        headers = {"Content-Type": "application/json"}
        if os.environ.get("OPENAI_API_KEY"):
            headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
        url = replica.url + route
        request = urllib.request.Request(url, data=json.dumps(payload).encode("utf-8"), headers=headers, method="POST")
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            body = exc.read().decode("utf-8", "replace")[:200]
            exc.close()
            # 5xx: the server is in trouble (overloaded, restarting, out of memory); 4xx: the request is wrong
            # and would be wrong on every replica.
            error = ReplicaFailure if exc.code >= 500 else DomainlmError
            raise error(f"{url}: HTTP {exc.code} {body}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise ReplicaFailure(f"{url}: cannot reach the server ({reason})") from None

    def _map(self, fn, items: list) -> list:
        if len(items) <= 1 or self.concurrency <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(fn, items))


def _wire_message(message: dict) -> dict:
    """A chat message as OpenAI's API takes it: tool-call arguments as a JSON string.

    domainlm keeps them decoded (chat templates write them as JSON themselves, see
    ``serve.schemas.to_messages``); vLLM's server refuses an object there.
    """
    calls = message.get("tool_calls")
    if not calls or all(isinstance((c.get("function") or {}).get("arguments", ""), str) for c in calls):
        return message
    wired = []
    for call in calls:
        fn = call.get("function") or {}
        args = fn.get("arguments", "")
        wired.append({**call, "function": {**fn, "arguments": args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)}})
    return {**message, "tool_calls": wired}


def _read_all(response, where: str) -> bytes:
    try:
        return response.read()
    except (OSError, http.client.HTTPException) as exc:  # a dropped connection or a read timeout
        raise ReplicaFailure(f"{where}: the connection broke while reading the answer ({exc})") from None


def _sse_events(response, where: str) -> Iterator[dict]:
    """The JSON events of a server-sent event stream, up to ``data: [DONE]``."""
    while True:
        try:
            line = response.readline()
        except (OSError, http.client.HTTPException) as exc:
            raise ReplicaFailure(f"{where}: the stream broke ({exc})") from None
        if not line:
            return
        text = line.decode("utf-8", "replace").strip()
        if not text.startswith("data:"):
            continue  # blank separators, comments, event names
        data = text[len("data:") :].strip()
        if data == "[DONE]":
            return
        try:
            yield json.loads(data)
        except json.JSONDecodeError:
            raise DomainlmError(f"{where}: a stream event is not JSON: {data[:200]}") from None
