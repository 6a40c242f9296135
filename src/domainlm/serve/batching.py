"""Concurrent requests decoded together: transformers' continuous batching behind a per-request iterator.

One request at a time leaves the model's matrix multiplies a row wide; decoding the running requests as one
batch costs little more per step than decoding one of them (measured on the tiny model, 2 cores: 16 answers
of 32 tokens in 0.35 s batched vs 1.8 s one after another). transformers ships continuous batching
(``model.init_continuous_batching()``: a paged KV cache, a scheduler that admits new requests between decode
steps, per-request temperature/top-k/top-p, cancellation), so this module only sizes it for the server and
turns its shared output queue into one token iterator per request.

What it cannot do is kept on the exact path (:meth:`ServedModel._stream_transformers`, one ``generate()``
at a time): a grammar constraint, penalties and ``logit_bias`` (per-request logits processors), logprobs, and
sampling with an explicit seed (the batch draws from one generator, so a seed could not reproduce an answer).
:func:`batchable` says which requests qualify.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Iterator

from domainlm.errors import DomainlmError

log = logging.getLogger("domainlm.serve")

# The attention kernels continuous batching runs with (transformers switches an eager model to a paged
# variant in place, which would change how the exact path's generate() runs on the same model object).
BATCHING_ATTENTION = ("sdpa", "flash_attention_2", "flash_attention_3")
NO_TOP_K = 1 << 30  # top-k off: the per-request warper clamps k to the vocabulary (0 would index out of range)


def batchable(params) -> bool:
    """Whether a request's sampling parameters can be decoded in the shared batch (see the module's doc)."""
    if params.constraint is not None or params.logprobs is not None or params.logit_bias:
        return False
    if params.presence_penalty or params.frequency_penalty:
        return False
    return params.temperature == 0 or params.seed is None


class ContinuousBatcher:
    """Runs a transformers model's continuous batching for the requests :func:`batchable` admits.

    ``max_batch`` requests decode together; more wait inside transformers' scheduler (the server's admission
    limit keeps that bounded). The KV cache holds ``kv_tokens`` tokens (default: ``max_batch`` requests of
    up to ``min(max_seq_len, 4096)`` tokens); the cache is sized here because transformers sizes it from
    free accelerator memory, which on a CPU box means most of the RAM.
    """

    PAGE = 64  # tokens per cache page

    def __init__(self, model, max_batch: int = 16, kv_tokens: int | None = None):
        self.model = model  # domainlm.models.hf model: .model (torch), .tokenizer, .stop_ids, .info
        self.max_batch = max_batch
        seq = int(model.info.get("max_seq_len") or 4096)
        self.kv_tokens = kv_tokens or max_batch * min(seq, 4096)
        self._manager = None
        self._routes: dict[str, queue.Queue] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._dispatcher: threading.Thread | None = None
        self._closed = False

    @staticmethod
    def supports(model) -> bool:
        """A transformers causal LM whose attention kernel continuous batching runs as is."""
        torch_model = getattr(model, "model", None)
        config = getattr(torch_model, "config", None)
        return hasattr(torch_model, "init_continuous_batching") and getattr(config, "_attn_implementation", None) in BATCHING_ATTENTION

    def _start(self):
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        m = self.model
        # Sampling on, with processors for temperature, top-k and top-p so each request can set its own;
        # a greedy request is top_k=1, which picks the argmax as generate(do_sample=False) does.
        generation = GenerationConfig(do_sample=True, temperature=0.7, top_k=50, top_p=0.9,
                                      eos_token_id=list(m.stop_ids), pad_token_id=m.tokenizer.pad_token_id)
        settings = ContinuousBatchingConfig(
            page_size=self.PAGE, num_blocks=-(-self.kv_tokens // self.PAGE),
            max_batch_tokens=max(512, self.max_batch * 32), max_requests_per_batch=self.max_batch,
            # Prefix sharing needs a cache laid out for it and gains little on short chat prompts.
            allow_block_sharing=False, per_request_processors=True, auto_switch_to_flash=False,
        )
        manager = m.model.init_continuous_batching(generation_config=generation, continuous_batching_config=settings)
        # transformers starts its batching thread as a non-daemon thread, which would keep the process alive
        # after the server (or a test) ends; a thread inherits daemon-ness from its creator, so start it from one.
        starter = threading.Thread(target=manager.start, daemon=True)
        starter.start()
        starter.join()
        self._manager = manager
        self._dispatcher = threading.Thread(target=self._dispatch, name="batch-dispatch", daemon=True)
        self._dispatcher.start()
        log.info("continuous batching: up to %d requests, KV cache %d tokens", self.max_batch, self.kv_tokens)

    def _dispatch(self) -> None:
        """Hand each output of the shared queue to the request it belongs to."""
        manager = self._manager
        while not self._closed:
            if not manager.is_running():
                error = manager.background_thread_status.fatal_error or "the batching thread stopped"
                for route in list(self._routes.values()):
                    route.put(DomainlmError(f"generation failed: {error}"))
                return
            out = manager.get_result(timeout=0.1)
            if out is None:
                continue
            route = self._routes.get(out.request_id)
            if route is not None:  # None: a cancelled request's last output
                route.put(out)

    def tokens(self, prompt_ids: list[int], params, cancel: threading.Event) -> Iterator[list[int]]:
        """The request's generated token ids so far, once per decode step, until it ends or ``cancel`` is set.

        Leaving the iterator early (the reader closed it) cancels the request before the next decode step.
        """
        with self._lock:
            if self._closed:
                raise DomainlmError("the model was unloaded; retry the request")
            if self._manager is None:
                self._start()
        request_id = f"r{next(self._ids)}"
        route: queue.Queue = queue.Queue()
        self._routes[request_id] = route
        sampled = params.temperature > 0
        finished = False
        try:
            self._manager.add_request(
                list(prompt_ids), request_id=request_id, max_new_tokens=params.max_new_tokens, streaming=True,
                eos_token_id=list(self.model.stop_ids),
                temperature=params.temperature if sampled else 1.0, top_k=NO_TOP_K if sampled else 1,
                top_p=params.top_p if sampled else 1.0,
            )
            while True:
                try:
                    out = route.get(timeout=0.05)
                except queue.Empty:
                    if cancel.is_set():
                        return
                    continue
                if isinstance(out, Exception):
                    raise out
                if out.error:
                    raise DomainlmError(f"generation failed: {out.error}")
                finished = out.is_finished()
                yield list(out.generated_tokens)
                if finished or cancel.is_set():
                    return
        finally:
            if not finished:
                self._manager.cancel_request(request_id)
            self._routes.pop(request_id, None)

    def close(self) -> None:
        """Stop the batching thread; requests still running get an error (used when the model is swapped)."""
        with self._lock:
            self._closed = True
            manager, self._manager = self._manager, None
        if manager is not None:
            manager.stop(block=False)
        for route in list(self._routes.values()):
            route.put(DomainlmError("the model was unloaded; retry the request"))
