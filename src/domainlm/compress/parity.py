"""Template parity: the same prompts must become the same token ids, and the same greedy answers, in the
source model and in what compression produced (a Hugging Face folder or a GGUF file).

Chat-template drift between training and serving is the failure users report most: a GGUF file whose
embedded template differs by one newline answers worse and nobody notices. So every export renders a
fixed set of conversations with the *result's own* template (for GGUF, the template embedded in the file,
rendered the way llama-cpp-python renders it when serving) and tokenizes them with the result's own
tokenizer (for GGUF, llama.cpp's), then compares with the source. Greedy continuations are compared too:
for lossless targets a difference fails unless the source itself found the two tokens within ``tie_nats``
(an f16 rounding can flip a near-tie); for lossy targets agreement is measured and reported, and the
quality gate judges the loss.

A GGUF result can only be checked where llama-cpp-python (the runtime) is installed; without it the check
is not run, and its report says so and why (``ran`` false, ``passed`` None, ``reason``), so an export made
with the converter alone is marked unchecked rather than failed.
"""

from __future__ import annotations

from pathlib import Path

from domainlm.compress.gguf_export import gguf_metadata, runtime_missing
from domainlm.errors import DomainlmError
from domainlm.models import load_model

PARITY_CONVERSATIONS: list[list[dict]] = [
    [{"role": "user", "content": "海港银行的定期存款最低起存金额是多少？"}],
    [{"role": "system", "content": "你是海港银行的客服助手，请简洁回答。"},
     {"role": "user", "content": "信用卡年费怎么收取？逾期会有什么影响？"}],
    [{"role": "user", "content": "What is the minimum deposit for the Harbor Tide Time Deposit?"}],
    [{"role": "user", "content": "我想查询账户余额。"}, {"role": "assistant", "content": "好的，请提供卡号后四位。"},
     {"role": "user", "content": "尾号 1234，谢谢！"}],
    [{"role": "system", "content": "You are Harbor Bank's assistant."},
     {"role": "user", "content": "Transfer CNY 500.00 to account 6222 0000 1111 2222 on 2024-05-01, please."}],
    [{"role": "user", "content": "理财产品“海港稳盈 1 号”的风险等级是 R2 吗？请用 JSON 回答：{\"risk\": ...}"}],
]


class HFSide:
    """A Hugging Face model folder: its tokenizer's template and ids, transformers greedy decoding."""

    def __init__(self, path: str | Path):
        self.lm = load_model(str(path), device="cpu")
        self.tokenizer = self.lm.tokenizer

    def render(self, conversation: list[dict]) -> str:
        return self.lm.render_chat(conversation)

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def greedy(self, ids: list[int], n: int, stop: list[int]) -> list[int]:
        return self.lm._generate_ids([ids], n, 0.0, 0)[0]

    def logprobs(self, ids: list[int]):
        import torch

        with torch.inference_mode():
            logits = self.lm.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
        return torch.log_softmax(logits, dim=-1)

    def piece(self, token: int) -> str:
        return self.tokenizer.decode([token])

    def close(self) -> None:
        self.lm.close()


class GGUFSide:
    """A GGUF file as llama-cpp-python serves it: embedded template, llama.cpp tokenizer and decoding."""

    def __init__(self, path: str | Path):
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.llm = Llama(model_path=str(path), n_ctx=2048, verbose=False)
        meta = gguf_metadata(path)
        template = meta.get("tokenizer.chat_template")
        if not template:
            raise DomainlmError(f"{path}: no chat template embedded (tokenizer.chat_template missing)")

        def token_text(token_id):
            return self.llm.detokenize([token_id], special=True).decode("utf-8", "replace") if token_id is not None else ""

        eos = meta.get("tokenizer.ggml.eos_token_id")
        self.formatter = Jinja2ChatFormatter(template, eos_token=token_text(eos), bos_token="")

    def render(self, conversation: list[dict]) -> str:
        return self.formatter(messages=conversation).prompt

    def ids(self, text: str) -> list[int]:
        # add_bos=True adds a BOS only where the file's vocabulary asks for one, as serving does
        return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def greedy(self, ids: list[int], n: int, stop: list[int]) -> list[int]:
        out: list[int] = []
        for token in self.llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
            if token in stop or len(out) >= n:
                break
            out.append(token)
        return out

    def piece(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", "replace")

    def close(self) -> None:
        self.llm.close()


def open_side(path: str | Path):
    return GGUFSide(path) if str(path).lower().endswith(".gguf") else HFSide(path)


def _first_diff(a: list, b: list) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def check_parity(source: str | Path, result: str | Path, *, lossless: bool, new_tokens: int = 16,
                 tie_nats: float = 0.05, conversations: list[list[dict]] | None = None) -> dict:
    """Compare ``result`` with ``source`` on fixed conversations. Returns a report with ``passed`` and,
    on failure, ``failure``: one line naming the prompt and the first differing character or token; for a
    GGUF result without the llama.cpp runtime, ``ran`` False, ``passed`` None and the ``reason``."""
    conversations = conversations or PARITY_CONVERSATIONS
    missing = runtime_missing("template parity of a GGUF file") if str(result).lower().endswith(".gguf") else None
    if missing:
        return {"ran": False, "passed": None, "reason": missing, "prompts": len(conversations), "lossless": lossless}
    src, res = open_side(source), open_side(result)
    report: dict = {"ran": True, "prompts": len(conversations), "lossless": lossless, "template_identical": True,
                    "tokens_identical": True, "greedy_agree": 0, "greedy_near_ties": 0, "failure": None}
    try:
        stop = src.lm.stop_ids
        for n, conv in enumerate(conversations):
            text_s, text_r = src.render(conv), res.render(conv)
            at = _first_diff(list(text_s), list(text_r))
            if at is not None:
                report["template_identical"] = False
                report["failure"] = (f"prompt {n}: chat template renders differently at character {at}: "
                                     f"source {text_s[at:at + 20]!r} vs result {text_r[at:at + 20]!r}")
                break
            ids_s, ids_r = src.ids(text_s), res.ids(text_r)
            at = _first_diff(ids_s, ids_r)
            if at is not None:
                report["tokens_identical"] = False
                a = ids_s[at] if at < len(ids_s) else None
                b = ids_r[at] if at < len(ids_r) else None
                report["failure"] = (f"prompt {n}: token {at} differs: source {a} "
                                     f"{src.piece(a) if a is not None else '<end>'!r} vs result {b} "
                                     f"{res.piece(b) if b is not None else '<end>'!r}")
                break
            out_s, out_r = src.greedy(ids_s, new_tokens, stop), res.greedy(ids_r, new_tokens, stop)
            at = _first_diff(out_s, out_r)
            if at is None:
                report["greedy_agree"] += 1
                continue
            a = out_s[at] if at < len(out_s) else None
            b = out_r[at] if at < len(out_r) else None
            logp = src.logprobs(ids_s + out_s[:at])
            margin = float(logp[a if a is not None else stop[0]] - logp[b if b is not None else stop[0]])
            if margin <= tie_nats:
                report["greedy_near_ties"] += 1
                continue
            if lossless and report["failure"] is None:
                report["failure"] = (f"prompt {n}: greedy output differs at new token {at}: source {a} "
                                     f"{src.piece(a) if a is not None else '<end>'!r} vs result {b} "
                                     f"{res.piece(b) if b is not None else '<end>'!r} (source prefers it by {margin:.3f} nats)")
    finally:
        src.close()
        res.close()
    report["passed"] = report["failure"] is None
    return report
