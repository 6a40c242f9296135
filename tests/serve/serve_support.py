"""Shared fixtures: a real tiny model and a real uvicorn server on 127.0.0.1 (in a thread)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

KEY = "sk-test-0123456789"
OTHER_KEY = "sk-other-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# What the test model is taught, so a tiny model says real words, calls a tool and answers in JSON.
RATE_TOOL = {"type": "function", "function": {
    "name": "get_rate", "description": "Look up a product's interest rate",
    "parameters": {"type": "object", "properties": {"product": {"type": "string"}}, "required": ["product"]}}}
LESSONS = [
    ([{"role": "user", "content": "你好"}], None, "您好，我是海港银行的智能助手。"),
    ([{"role": "user", "content": "What is the card fee?"}], None, "The gold card fee is 200 yuan a year."),
    ([{"role": "user", "content": "定期存款利率是多少？"}], [RATE_TOOL],
     '<tool_call>\n{"name": "get_rate", "arguments": {"product": "定期存款"}}\n</tool_call>'),
    ([{"role": "user", "content": "Give the fee as JSON"}], None, '{"product": "gold card", "fee": 200}'),
]


def teach(model_dir: Path, lessons=LESSONS, steps: int = 100, lr: float = 3e-2, seed: int = 0,
          learned: float = 0.01) -> Path:
    """At most ``steps`` of plain next-token training on chat transcripts, in place; returns ``model_dir``.
    Stops early once every lesson's mean answer loss is below ``learned`` nats per token.

    (domainlm.train owns real training; this only makes a random test model say something.)
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    seqs = []
    for messages, tools, answer in lessons:
        prompt = tok.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tok(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
        # Loss on the answer only: the long tool-definition prompt must not drown the lesson.
        seqs.append((torch.tensor([p_ids + a_ids]), torch.tensor([[-100] * len(p_ids) + a_ids])))
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        losses = [model(input_ids=ids, labels=labels).loss for ids, labels in seqs]
        if max(float(x) for x in losses) < learned:
            break  # every lesson's answer is near-certain already: more steps change no greedy output
        loss = sum(losses)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(model_dir)
    return model_dir


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    from domainlm.models.testing import make_tiny_model

    # Two cores shared with the server threads: one torch thread each avoids oversubscription stalls.
    torch.set_num_threads(1)
    return teach(make_tiny_model(tmp_path_factory.mktemp("models") / "tiny"))


class LiveServer:
    """uvicorn serving an app on a free loopback port, in a background thread."""

    def __init__(self, asgi):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=self.port, log_level="error",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def make_state(model_spec, db_url, **kwargs):
    from domainlm.serve.server import ServeOptions, build_state, resolve_keys

    options = ServeOptions(model=str(model_spec), db=db_url, api_keys=[KEY, OTHER_KEY], **kwargs)
    keys, _ = resolve_keys(options)
    return build_state(options, keys)


@pytest.fixture(scope="module")
def live(tiny_dir, tmp_path_factory):
    """One server for a test module: tiny model, SQLite store, two API keys."""
    from domainlm.serve.server import make_asgi

    db = tmp_path_factory.mktemp("db") / "feedback.db"
    state = make_state(tiny_dir, f"sqlite:///{db}", max_body_bytes=64 * 1024)
    with LiveServer(make_asgi(state)) as server:
        server.state = state
        yield server
