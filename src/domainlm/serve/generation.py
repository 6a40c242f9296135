"""One served model: whole and streamed chat completions, stop strings across stream deltas, token counts.

The model is any backend from ``domainlm.models.load_model`` (transformers, llama.cpp, vLLM, an OpenAI-
compatible upstream), so the chat template is the model's own, the same one training used. Reading tool
calls and JSON out of the answers is ``domainlm.parsing``'s job, shared with the eval.
In-process backends run on one long-lived generation thread per model: requests queue for it. Torch work
spread over many request threads is much slower (each calling thread gets its own OpenMP team, and the
teams fight over the cores: measured 10x slower on a 16-core box), and a CPU box gains nothing from
generating two answers at once anyway. An OpenAI-compatible upstream
(vLLM's server, llama.cpp's server, a hosted API) gets requests concurrently, so it can batch them, and
its streams are passed through as they arrive.
Transformers generations (whole or streamed: one generate() call either way) report their token count and
whether max_tokens cut them (:class:`Generated`), and stop after the current decode step when their
cancel flag is set (the client went away). They are the backend that constrains decoding
(``GenParams.constraint``, see :mod:`domainlm.serve.constrained`): the route refuses a constraint for the others.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from domainlm.errors import DomainlmError
from domainlm.serve.batching import ContinuousBatcher, batchable
from domainlm.serve.constrained import Constraint


@dataclass
class GenParams:
    max_new_tokens: int = 256
    temperature: float = 0.0
    seed: int | None = None  # None: not chosen by the client (a sampled answer may then be batched)
    tools: list[dict] | None = None
    response_format: dict | None = None
    stop: list[str] | None = None
    top_p: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] | None = None
    # The grammar the answer is held to while decoding (response_format, tool_choice), transformers only.
    constraint: Constraint | None = None
    # Report each token's log-probability and this many likeliest alternatives (0-20); None: no logprobs.
    # Transformers and OpenAI-compatible upstreams, like the penalties.
    logprobs: int | None = None
    # The request's tool_choice, forwarded to an OpenAI-compatible upstream (transformers holds the answer
    # to it through ``constraint``).
    tool_choice: str | dict | None = None


# What an OpenAI-compatible upstream is asked with: every option but the grammar, which only transformers applies.
UPSTREAM_OPTIONS = ("max_new_tokens", "temperature", "seed", "tools", "tool_choice", "response_format", "stop", "top_p",
                    "presence_penalty", "frequency_penalty", "logit_bias", "logprobs")


def upstream_options(params: GenParams) -> dict:
    return {name: getattr(params, name) for name in UPSTREAM_OPTIONS}


@dataclass
class Generated:
    """What a generation reports besides its text, filled in as it ends.

    ``completion_tokens`` is counted from the generated token ids (None where the backend gives none);
    ``finish_reason`` is ``length`` when ``max_new_tokens`` cut the answer. ``logprobs`` (when asked for)
    has one entry per generated token in OpenAI's shape (``token``, ``logprob``, ``bytes``,
    ``top_logprobs``); ``lead_bytes`` is how much whitespace was stripped from the answer's start, so the
    entries can be matched to the text by byte offset (:func:`logprobs_covering`).
    """

    completion_tokens: int | None = None
    finish_reason: str = "stop"
    logprobs: list[dict] | None = None
    lead_bytes: int = field(default=0, compare=False)  # bookkeeping, not a result


class ServedModel:
    """A loaded model under a public name; local models run every call on their own generation thread."""

    def __init__(self, name: str, model, max_batch: int = 16):
        self.name = name
        self.model = model
        self.max_batch = max_batch
        self.remote = (getattr(model, "info", None) or {}).get("backend") == "openai"
        # Upstream servers batch concurrent requests themselves: they are called from the request threads.
        self._worker = None if self.remote else ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"generate-{name}")
        # Concurrent plain requests on a transformers model decode together (see domainlm.serve.batching).
        self._batcher = None
        if max_batch > 1 and self.streams_tokens and ContinuousBatcher.supports(model):
            self._batcher = ContinuousBatcher(model, max_batch)
        self._grammar_vocab = None  # llguidance's view of the tokenizer, built on the first constrained request
        self._tokens: TokenVocab | None = None  # token bytes for logprobs, built on the first request for them

    @property
    def batches(self) -> bool:
        """Whether concurrent requests are decoded together (a transformers model, ``max_batch`` > 1)."""
        return self._batcher is not None

    def close(self) -> None:
        """Let queued generations finish on their own and stop the batch; used when the model is swapped out."""
        if self._worker is not None:
            self._worker.shutdown(wait=False)
        if self._batcher is not None:
            self._batcher.close()

    @property
    def backend(self):
        """The loaded ``domainlm.models`` model, for callers that drive it themselves (the KB's model reader
        takes it as ``model=``); call them through :meth:`run` so they stay on the generation thread."""
        return self.model

    def run(self, fn: Callable, *args, **kwargs):
        """Call ``fn`` on the generation thread (inline for an upstream) and return its result."""
        if self._worker is None:
            return fn(*args, **kwargs)
        return self._worker.submit(fn, *args, **kwargs).result()

    # -- token counts (for usage and metrics) ------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is not None and hasattr(tokenizer, "encode"):
            return len(tokenizer.encode(text, add_special_tokens=False))
        # Backends without a local tokenizer (upstream HTTP, GGUF): count whitespace words and CJK
        # characters, which is within a few percent of BPE counts for Chinese and English prose.
        return len(re.findall(r"[\u4e00-\u9fff]|[^\s\u4e00-\u9fff]+", text))

    def prompt_text(self, messages: list[dict], tools: list[dict] | None) -> str:
        render = getattr(self.model, "render_chat", None)
        if render is not None:
            return render(messages, tools)
        return "\n".join(str(m.get("content") or "") for m in messages)

    @property
    def streams_tokens(self) -> bool:
        """A transformers backend: generated here token by token, with exact token counts."""
        m = self.model
        return not self.remote and hasattr(m, "tokenizer") and hasattr(m, "render_chat") and hasattr(m, "stop_ids")

    @property
    def constrains(self) -> bool:
        """Whether this model keeps answers on a grammar while decoding (the transformers backend)."""
        return self.streams_tokens

    def _grammar_processor(self, constraint: Constraint, prompt_len: int, max_new_tokens: int):
        """The logits processor for one constrained generation, built before generate() is queued."""
        from domainlm.serve.constrained import GrammarVocab, logits_processor, reserve_tokens

        m = self.model
        if self._grammar_vocab is None:  # two first requests at once may both build it: the same result
            width = max(int(m.info.get("vocab_size") or 0), len(m.tokenizer))  # the logits' width
            self._grammar_vocab = GrammarVocab(m.tokenizer, width, m.stop_ids)
        reserve = reserve_tokens(constraint, self.count_tokens)
        return logits_processor(constraint, self._grammar_vocab, reserve, prompt_len, max_new_tokens)

    # -- whole answers ---------------------------------------------------------------------------
    def complete(self, messages: list[dict], params: GenParams, generated: Generated | None = None,
                 cancel: threading.Event | None = None) -> str:
        from domainlm.models import cut_at_stop

        if self.streams_tokens:
            # The same generate() call as streaming, drained: token counts and finish_reason come with it.
            generated = generated or Generated()
            text = "".join(self._stream_transformers(messages, params, cancel or threading.Event(), generated)).rstrip()
            cut = cut_at_stop(text, params.stop)
            if cut != text:
                generated.finish_reason = "stop"
            return cut
        if self.remote:
            # The upstream samples, constrains and parses tool calls itself (written back as <tool_call>
            # text, which the agent loop reads like any model's); a replica pool picks the server.
            result = self.model.chat_results(messages, **upstream_options(params))[0]
            if generated is not None:
                generated.finish_reason, generated.completion_tokens = result.finish_reason, result.completion_tokens
                generated.logprobs = result.logprobs
            return cut_at_stop(result.text, params.stop)
        text = self.run(
            self.model.chat,
            [messages],
            max_new_tokens=params.max_new_tokens,
            temperature=params.temperature,
            tools=params.tools,
            response_format=params.response_format,
            seed=params.seed or 0,
        )[0]
        return cut_at_stop(text, params.stop)

    def complete_text(self, prompt: str, params: GenParams, generated: Generated | None = None,
                      cancel: threading.Event | None = None) -> str:
        """A plain-text continuation of ``prompt`` (no chat template), for ``/v1/completions``."""
        from domainlm.models import cut_at_stop

        generated = generated or Generated()
        if self.streams_tokens:
            text = "".join(self._stream_transformers(None, params, cancel or threading.Event(), generated, prompt=prompt))
            cut = cut_at_stop(text, params.stop)
            if cut != text:
                generated.finish_reason = "stop"
            return cut
        return self.run(self.model.generate, [prompt], max_new_tokens=params.max_new_tokens,
                        temperature=params.temperature, stop=params.stop, seed=params.seed or 0)[0]

    def stream_text(self, prompt: str, params: GenParams, cancel: threading.Event | None = None,
                    generated: Generated | None = None) -> Iterator[str]:
        """Text deltas continuing ``prompt``: token by token on transformers, one delta elsewhere."""
        cancel = cancel or threading.Event()
        generated = generated or Generated()
        if self.streams_tokens:
            yield from stop_stream(self._stream_transformers(None, params, cancel, generated, prompt=prompt), params.stop)
        else:
            yield self.complete_text(prompt, params, generated, cancel)

    # -- streamed answers ------------------------------------------------------------------------
    def stream(self, messages: list[dict], params: GenParams, cancel: threading.Event | None = None,
               generated: Generated | None = None) -> Iterator[str]:
        """Text deltas as the model produces them.

        An OpenAI-compatible upstream's stream is passed through; a transformers backend streams token by
        token through transformers' ``TextIteratorStreamer``; any other backend (llama.cpp, in-process
        vLLM) yields its whole answer as one delta (correct, but its time to first token is its latency).
        """
        cancel = cancel or threading.Event()
        generated = generated or Generated()
        if self.remote:
            yield from self._stream_upstream(messages, params, generated)
        elif self.streams_tokens:
            yield from self._stream_transformers(messages, params, cancel, generated)
        else:
            yield self.complete(messages, GenParams(**{**params.__dict__, "stop": None}))

    def _stream_upstream(self, messages: list[dict], params: GenParams, generated: Generated) -> Iterator[str]:
        """Pass an OpenAI-compatible upstream's stream through (``OpenAIModel.stream_chat``: replicas
        balanced, a failed one skipped before the first delta), with finish_reason, usage and logprobs."""
        yield from self.model.stream_chat(messages, generated, **upstream_options(params))

    def _stream_transformers(self, messages: list[dict] | None, params: GenParams, cancel: threading.Event,
                             generated: Generated, prompt: str | None = None) -> Iterator[str]:
        """One generate() call, its text streamed token by token. ``messages`` go through the chat template
        and the answer's leading whitespace is dropped; a raw ``prompt`` (text completion) is continued as is."""
        import torch
        from transformers import (
            LogitsProcessor,
            LogitsProcessorList,
            StoppingCriteria,
            StoppingCriteriaList,
            TextIteratorStreamer,
        )

        from domainlm.models import hidden_token_ids

        # This generation's own stop (its reader left early: a stop string, a closed stream), apart from the
        # request's cancel flag, which later choices of the same request (n > 1) share.
        abandoned = threading.Event()

        class Cancelled(StoppingCriteria):
            # Stops generate() when the client has gone away, so a dropped stream frees the model.
            def __call__(self, input_ids, scores, **kwargs):
                stop = cancel.is_set() or abandoned.is_set()
                return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

        class OpenAIPenalties(LogitsProcessor):
            # OpenAI's presence/frequency penalties and logit_bias, by its formula: transformers has only
            # repetition_penalty, which multiplies logits and means something else.
            def __call__(self, input_ids, scores):
                new = input_ids[:, prompt_len:]
                counts = torch.zeros_like(scores).scatter_add_(1, new, torch.ones_like(new, dtype=scores.dtype))
                scores = scores - params.frequency_penalty * counts - params.presence_penalty * (counts > 0).to(scores.dtype)
                for token, bias in (params.logit_bias or {}).items():
                    if token < scores.shape[-1]:
                        scores[:, token] += bias
                return scores

        class TokenStreamer(TextIteratorStreamer):
            # transformers' streamer releases text only at spaces, newlines and CJK characters, so an answer
            # without spaces ("ererer...", numbers, code) would arrive in one piece at the end. This one
            # releases text after every token, like OpenAI's API, holding back only an unfinished UTF-8
            # character (the decoded text then ends in U+FFFD). Its text is visible_text's: control tokens
            # never enter the cache, tool-call markers do (it decodes with skip_special_tokens=False).
            def put(self, value):
                if len(value.shape) > 1:
                    value = value[0]
                if self.skip_prompt and self.next_tokens_are_prompt:
                    self.next_tokens_are_prompt = False
                    return
                self.new_ids.extend(value.tolist())  # the usage count: token_cache is reset at the end
                if logprobs is not None:
                    logprobs.extend(token_logprobs(vocab, int(t), recorded["logp"], params.logprobs) for t in value.tolist())
                self.token_cache.extend(t for t in value.tolist() if t not in hidden)
                text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)
                if text.endswith("\ufffd") or len(text) <= self.print_len:
                    return
                printable, self.print_len = text[self.print_len :], len(text)
                self.on_finalized_text(printable)

        class RecordLogprobs(LogitsProcessor):
            # The distribution each token is drawn from, after penalties, bias and grammar and before
            # temperature and top_p (transformers applies those after the processors given here).
            def __call__(self, input_ids, scores):
                recorded["logp"] = torch.log_softmax(scores[0].float(), dim=-1)
                return scores

        m = self.model
        strip = prompt is None
        if prompt is None:
            prompt = m.render_chat(messages, params.tools)
        ids = m.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        limit = int(m.info.get("max_seq_len") or 1 << 30)
        ids = ids[-max(1, limit - params.max_new_tokens):]
        if self._batcher is not None and batchable(params):
            pieces = self._stream_batched(ids, params, cancel, generated)
            yield from (answer_start(pieces, generated) if strip else pieces)
            return
        input_ids = torch.tensor([ids], device=m.device)
        prompt_len = input_ids.shape[1]
        hidden = hidden_token_ids(m.tokenizer)
        streamer = TokenStreamer(m.tokenizer, skip_prompt=True, skip_special_tokens=False, timeout=600)
        streamer.new_ids = []
        kwargs = dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=params.max_new_tokens,
                      eos_token_id=m.stop_ids, pad_token_id=m.tokenizer.pad_token_id, streamer=streamer,
                      stopping_criteria=StoppingCriteriaList([Cancelled()]))
        processors = LogitsProcessorList()
        if params.presence_penalty or params.frequency_penalty or params.logit_bias:
            processors.append(OpenAIPenalties())
        if params.constraint is not None:
            # Last: the grammar masks what the penalties and biases left, so no bias can break the grammar.
            processors.append(self._grammar_processor(params.constraint, prompt_len, params.max_new_tokens))
        recorded: dict = {}
        logprobs = generated.logprobs = [] if params.logprobs is not None else None
        vocab = self._token_vocab() if logprobs is not None else None
        if logprobs is not None:
            processors.append(RecordLogprobs())
        if processors:
            kwargs["logits_processor"] = processors
        if params.temperature > 0:
            if params.seed is not None:  # no seed: each answer draws its own, as OpenAI's API does
                torch.manual_seed(params.seed)
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        errors: list[BaseException] = []

        def run() -> None:
            if cancel.is_set() or abandoned.is_set():  # the reader left while this waited for the generation thread
                streamer.end()
                return
            try:
                with torch.inference_mode():
                    m.model.generate(**kwargs)
            except BaseException as exc:  # surfaced to the consumer below
                errors.append(exc)
                streamer.end()

        job = self._worker.submit(run)
        try:
            yield from (answer_start(streamer, generated) if strip else streamer)
            if len(streamer.new_ids) >= params.max_new_tokens and streamer.new_ids[-1] not in m.stop_ids:
                generated.finish_reason = "length"
        finally:
            # Reached early when the client stops reading: stop generate() instead of finishing unseen.
            # The Cancelled criterion ends it after the current decode step; a job still queued never starts.
            if not job.done():
                abandoned.set()
            if not job.cancel():
                job.result()
            ended = bool(streamer.new_ids) and streamer.new_ids[-1] in m.stop_ids
            generated.completion_tokens = len(streamer.new_ids) - ended  # the end-of-turn token is not text
            if logprobs is not None:
                del logprobs[generated.completion_tokens:]
        if errors:
            raise DomainlmError(f"generation failed: {errors[0]}")


    def _stream_batched(self, ids: list[int], params: GenParams, cancel: threading.Event,
                        generated: Generated) -> Iterator[str]:
        """The text of a request decoded in the shared batch, released after every token as the exact path's
        streamer does (holding back only an unfinished UTF-8 character), with the same text (visible_text)."""
        from domainlm.models import visible_text

        tokenizer, stop_ids = self.model.tokenizer, self.model.stop_ids
        tokens: list[int] = []
        printed = 0
        steps = self._batcher.tokens(ids, params, cancel)
        try:
            for tokens in steps:
                text = visible_text(tokenizer, tokens)
                if text.endswith("\ufffd") or len(text) <= printed:
                    continue
                yield text[printed:]
                printed = len(text)
            text = visible_text(tokenizer, tokens)
            if len(text) > printed:
                yield text[printed:]
            if len(tokens) >= params.max_new_tokens and tokens[-1] not in stop_ids:
                generated.finish_reason = "length"
        finally:
            steps.close()  # a reader that left early cancels the request before the next decode step
            generated.completion_tokens = len(tokens) - (bool(tokens) and tokens[-1] in stop_ids)

    def _token_vocab(self) -> TokenVocab:
        if self._tokens is None:
            self._tokens = TokenVocab(self.model.tokenizer)
        return self._tokens


class TokenVocab:
    """Each token's bytes and text as OpenAI's logprobs report them, read from the tokenizer once a token.

    Byte-level BPE pieces (GPT-2, Qwen, Llama 3) spell each byte as one printable character; sentencepiece
    pieces spell a space as U+2581 and a raw byte as ``<0xNN>``. A token that is part of a UTF-8 character
    has text ``\\xNN`` per byte (OpenAI's convention) and its bytes exact, so a client can join them.
    """

    def __init__(self, tokenizer):
        from transformers.convert_slow_tokenizer import bytes_to_unicode

        self.tokenizer = tokenizer
        self.byte_of = {ch: b for b, ch in bytes_to_unicode().items()}
        self._cache: dict[int, tuple[str, list[int]]] = {}

    def get(self, token_id: int) -> tuple[str, list[int]]:
        found = self._cache.get(token_id)
        if found is None:
            raw = self._bytes(token_id)
            found = self._cache[token_id] = (raw.decode("utf-8", errors="backslashreplace"), list(raw))
        return found

    def _bytes(self, token_id: int) -> bytes:
        piece = self.tokenizer.convert_ids_to_tokens(token_id) or ""
        if token_id in self.tokenizer.all_special_ids:
            return piece.encode()
        match = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", piece)
        if match:
            return bytes([int(match.group(1), 16)])
        if piece and all(ch in self.byte_of for ch in piece) and "\u2581" not in piece:
            return bytes(self.byte_of[ch] for ch in piece)
        return piece.replace("\u2581", " ").encode()


def token_logprobs(vocab: TokenVocab, token_id: int, logp, top: int | None) -> dict:
    """One generated token's entry in OpenAI's ``logprobs.content``."""
    def entry(tid: int, value: float) -> dict:
        text, raw = vocab.get(tid)
        # OpenAI writes -9999.0 for a token that cannot be drawn: JSON has no -inf.
        return {"token": text, "logprob": max(float(value), -9999.0), "bytes": raw}

    out = entry(token_id, logp[token_id])
    alternatives = []
    if top:
        values, ids = logp.topk(min(top, logp.shape[-1]))
        alternatives = [entry(int(i), float(v)) for v, i in zip(values.tolist(), ids.tolist(), strict=True)]
    return {**out, "top_logprobs": alternatives}


def answer_start(pieces: Iterator[str], generated: Generated) -> Iterator[str]:
    """A chat answer's deltas from its first printable character on (streamed or whole, the same text);
    the whitespace dropped is counted in ``generated.lead_bytes`` so logprobs still line up."""
    started = False
    for piece in pieces:
        if not started:
            kept = piece.lstrip()
            generated.lead_bytes += len(piece.encode()) - len(kept.encode())
            if not kept:
                continue
            piece, started = kept, True
        yield piece


def logprobs_covering(entries: list[dict], n_bytes: int, final: bool = False) -> int:
    """How many leading ``entries`` belong to the first ``n_bytes`` of the generated text.

    While streaming, the tokens that end within them (a token split over two deltas goes with the second).
    For the final answer, the tokens that start within them and the whitespace tokens right after (the
    answer's stripped trailing whitespace was generated and counted too): only tokens from a stop string on
    are dropped.
    """
    start = 0
    for i, e in enumerate(entries):
        end = start + len(e["bytes"])
        if final:
            if start >= n_bytes and bytes(e["bytes"]).strip():
                return i
        elif end > n_bytes:
            return i
        start = end
    return len(entries)


def stop_stream(deltas: Iterator[str], stop: list[str] | None) -> Iterator[str]:
    """Deltas up to (not including) the first stop string, which may span deltas.

    Holds back the last ``len(longest stop) - 1`` characters until it knows they do not start a stop
    string; closing ``deltas`` at a stop cancels the generation behind it.
    """
    stop = [s for s in (stop or []) if s]
    if not stop:
        yield from deltas
        return
    hold = max(len(s) for s in stop) - 1
    buffer = ""
    try:
        for piece in deltas:
            buffer += piece
            cuts = [i for i in (buffer.find(s) for s in stop) if i != -1]
            if cuts:
                if min(cuts):
                    yield buffer[: min(cuts)]
                return
            if len(buffer) > hold:
                yield buffer[: len(buffer) - hold]
                buffer = buffer[len(buffer) - hold :]
        if buffer:
            yield buffer
    finally:
        close = getattr(deltas, "close", None)
        if close is not None:
            close()


def load_served_model(spec: str, name: str | None = None, max_batch: int = 16, **options) -> ServedModel:
    from domainlm.models import load_model

    model = load_model(spec, **options)
    return ServedModel(name or default_model_name(spec), model, max_batch=max_batch)


def default_model_name(spec: str) -> str:
    from pathlib import Path

    text = str(spec).rstrip("/")
    if text.startswith("openai:"):
        return text.partition("#")[2] or "default"
    if text.startswith("vllm:"):
        text = text[5:]
    return Path(text).name or text
