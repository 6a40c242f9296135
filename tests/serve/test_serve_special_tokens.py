"""Serve keeps the special tokens that are content: DeepSeek's tool-call markers reach the parser.

DeepSeek-V3.1 writes a call as ``<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{json}…``, and
each marker is a special token. Decoded with ``skip_special_tokens=True`` only ``NAME{json}`` is left and no
call is read. The model here is the conformance matrix's DeepSeek-V3.1 family (its real template, DeepSeek's
BPE with V3's markers as special tokens, tiny random weights: ``tests/models/families.py``); its generation is
forced, through a logits processor on the real ``generate()``, to the tool-call turn the family's template
renders, so the test checks the decoding and parsing, not what a random model says.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

pytest.importorskip("torch", reason="serving a transformers model needs the train extra (torch)")
pytest.importorskip("gguf", reason="transformers reads the GGUF vocabularies with the gguf package (domainlm[test])")
# The family definitions live beside the conformance matrix (tests/models); their name is unique.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from families import FAMILIES, build_family_model, llama_cpp_models  # noqa: E402
from serve_support import KEY, LiveServer, make_state  # noqa: E402

from domainlm.serve.generation import GenParams  # noqa: E402

DEEPSEEK = next(f for f in FAMILIES if f.name == "DeepSeek-V3.1")
TOOLS = [{"type": "function", "function": {
    "name": "get_exchange_rate", "description": "查询两种货币之间的实时汇率",
    "parameters": {"type": "object", "properties": {"base": {"type": "string"}, "quote": {"type": "string"}},
                   "required": ["base", "quote"]}}}]
CALL = {"name": "get_exchange_rate", "arguments": {"base": "USD", "quote": "CNY"}}
ASK = [{"role": "user", "content": "美元兑人民币汇率是多少？"}]
MARKERS = ("<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>",
           "<｜tool▁calls▁end｜>")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    try:
        models = llama_cpp_models()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"llama.cpp's tokenizers and templates are not available offline: {exc}")
    return build_family_model(models, DEEPSEEK, tmp_path_factory.mktemp("deepseek") / "model")


@pytest.fixture(scope="module")
def tok(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def answer_ids(tok) -> list[int]:
    """The ids of the assistant's tool-call turn as the family's template renders it, its end token included
    (what a DeepSeek model trained on this format generates after the generation prompt)."""
    from domainlm.train.data import tokenize_chat

    turn = [*ASK, {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": CALL}]}]
    ids, labels = tokenize_chat(tok, turn, TOOLS)
    answer = [t for t, label in zip(ids, labels, strict=True) if label != -100]
    assert answer[-1] == tok.convert_tokens_to_ids(DEEPSEEK.eot)
    return answer


def test_visible_text_keeps_the_tool_markers_and_drops_control_tokens(tok, answer_ids):
    from domainlm.models.hf import visible_text
    from domainlm.parsing import parse_tool_calls

    user, assistant = tok.convert_tokens_to_ids(["<｜User｜>", "<｜Assistant｜>"])
    ids = [tok.bos_token_id, assistant, *answer_ids, user]
    text = visible_text(tok, ids)
    assert all(marker in text for marker in MARKERS), text
    assert not any(t in text for t in ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"))
    parsed = parse_tool_calls(text, TOOLS)
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in parsed.tool_calls] == \
        [(CALL["name"], CALL["arguments"])]
    # What skip_special_tokens=True leaves: no markers, so no call (the gap this decoder closes).
    assert not parse_tool_calls(tok.decode(ids, skip_special_tokens=True), TOOLS).tool_calls
    # Outside the markers it is skip_special_tokens=True's text.
    plain = [t for t in ids if tok.convert_ids_to_tokens(t) not in MARKERS]
    assert visible_text(tok, plain) == tok.decode(plain, skip_special_tokens=True)


def force(served, answer: list[int]) -> None:
    """Make the served model's real generate() emit ``answer`` (then stop at its end token): every other token's
    logit is -inf. The server's streamer, stop tokens and decoding run as they do for any answer."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    torch_model = served.model.model
    real = torch_model.generate

    class Forced(LogitsProcessor):
        def __init__(self, start: int):
            self.start = start

        def __call__(self, input_ids, scores):
            step = min(input_ids.shape[1] - self.start, len(answer) - 1)
            forced = torch.full_like(scores, float("-inf"))
            forced[:, answer[step]] = 0.0
            return forced

    def generate(**kwargs):
        processors = kwargs.pop("logits_processor", None) or LogitsProcessorList()
        processors.append(Forced(kwargs["input_ids"].shape[1]))
        return real(**kwargs, logits_processor=processors)

    torch_model.generate = generate


@pytest.fixture(scope="module")
def live(folder, answer_ids, tmp_path_factory):
    from domainlm.serve.server import make_asgi

    db = tmp_path_factory.mktemp("db") / "feedback.db"
    state = make_state(folder, f"sqlite:///{db}", max_batch=1)  # the exact path: generate() with its streamer
    force(state.model, answer_ids)
    with LiveServer(make_asgi(state)) as server:
        server.state = state
        yield server


def chat(live, **body) -> httpx.Response:
    return httpx.post(f"{live.url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=120,
                      json={"model": live.state.name, "messages": ASK, "max_tokens": 64, "temperature": 0, **body})


def test_a_deepseek_tool_call_comes_back_as_openai_tool_calls(live):
    r = chat(live, tools=TOOLS)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls", choice
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == CALL["name"] and json.loads(call["function"]["arguments"]) == CALL["arguments"]
    assert not choice["message"]["content"]  # the markers went into the call, none are left in the text


def test_a_streamed_deepseek_tool_call_is_a_tool_calls_delta(live):
    calls, finish = [], None
    with httpx.stream("POST", f"{live.url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                      timeout=120, json={"model": live.state.name, "messages": ASK, "max_tokens": 64,
                                         "temperature": 0, "tools": TOOLS, "stream": True}) as r:
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[6:]).get("choices", []):
                calls += choice["delta"].get("tool_calls") or []
                finish = choice["finish_reason"] or finish
    assert finish == "tool_calls"
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == \
        [(CALL["name"], CALL["arguments"])]


def test_streamed_deltas_whole_text_and_batched_decoding_agree(live, answer_ids, tok):
    """Without tools the markers are the answer's text: streamed token by token, whole, and as the batched path
    decodes the same ids, it is one text."""
    from domainlm.models.hf import visible_text

    served = live.state.model
    expected = visible_text(tok, answer_ids[:-1]).strip()
    assert all(marker in expected for marker in MARKERS)
    deltas = list(served.stream(ASK, GenParams(max_new_tokens=64)))
    assert len(deltas) > 1 and "".join(deltas).strip() == expected
    assert served.complete(ASK, GenParams(max_new_tokens=64)) == expected
    r = chat(live)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == expected

    class OneRequestBatch:
        # The continuous batcher's interface (generated ids so far, once per decode step), fed the same ids.
        def tokens(self, prompt_ids, params, cancel):
            for n in range(1, len(answer_ids) + 1):
                yield answer_ids[:n]

    served._batcher = OneRequestBatch()
    try:
        batched = list(served.stream(ASK, GenParams(max_new_tokens=64)))
    finally:
        served._batcher = None
    assert "".join(batched).strip() == expected
