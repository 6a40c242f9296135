"""The conformance matrix: each family's real tokenizer and chat template through domainlm's own paths.

For every family of :data:`families.FAMILIES` a tiny random-weight model of its architecture is saved with
the family's tokenizer and template (see ``families.py`` for where each comes from), then:

* sft — :func:`domainlm.train.data.tokenize_chat` puts the loss on exactly each assistant turn plus the
  token that ends it, checked by decoding the masked tokens (single and multi-turn, system prompt, tool call
  and tool result, thinking blocks where the family has them);
* tool calls — the training text of a tool-call turn is the family's own format, and what the model would
  emit for it, read back by :func:`domainlm.parsing.parse_tool_calls` (what ``serve`` uses), is the same
  OpenAI call (a strict xfail where the parser does not read the family's format yet);
* eval and serve render the same prompt for the same item;
* a model trained by ``domainlm train --stage sft`` keeps the template, generation config and stop tokens
  and loads in plain transformers.

A template with its end-of-turn token removed must fail the mask check (the matrix can fail).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from families import FAMILIES, Family, build_family_model, llama_cpp_models

pytest.importorskip("gguf", reason="transformers reads the GGUF vocabularies with the gguf package (domainlm[test])")

SYSTEM = "你是一家商业银行的客服助理，回答要准确、简洁。"
Q1 = "什么是存款准备金率？"
A1 = "存款准备金率是中央银行规定的、商业银行须按存款的一定比例缴存中央银行的资金比例。"
Q2 = "下调它对市场有什么影响？"
A2 = "下调准备金率会释放银行可贷资金，通常利于降低融资成本。"
TOOLS = [{"type": "function", "function": {
    "name": "get_exchange_rate", "description": "查询两种货币之间的实时汇率",
    "parameters": {"type": "object", "properties": {"base": {"type": "string"}, "quote": {"type": "string"}},
                   "required": ["base", "quote"]}}}]
CALL = {"name": "get_exchange_rate", "arguments": {"base": "USD", "quote": "CNY"}}
TOOL_RESULT = "1 USD = 7.1 CNY"
A_TOOL = "目前 1 美元约合 7.1 元人民币。"
REASONING = "用户问的是准备金率的定义，需要给出监管含义。"


def conversations(family: Family) -> dict[str, tuple[list[dict], list | None]]:
    calls = [{"type": "function", "function": CALL}]
    cases = {
        "single": ([{"role": "user", "content": Q1}, {"role": "assistant", "content": A1}], None),
        "system+multi": ([{"role": "system", "content": SYSTEM}, {"role": "user", "content": Q1},
                          {"role": "assistant", "content": A1}, {"role": "user", "content": Q2},
                          {"role": "assistant", "content": A2}], None),
        "tools": ([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "美元兑人民币汇率是多少？"},
                   {"role": "assistant", "content": "", "tool_calls": calls},
                   {"role": "tool", "content": TOOL_RESULT}, {"role": "assistant", "content": A_TOOL}], TOOLS),
    }
    if family.thinking:
        cases["thinking"] = ([{"role": "user", "content": Q1},
                              {"role": "assistant", "content": A1, "reasoning_content": REASONING}], None)
        cases["thinking+multi"] = ([{"role": "user", "content": Q1},
                                    {"role": "assistant", "content": A1, "reasoning_content": REASONING},
                                    {"role": "user", "content": Q2},
                                    {"role": "assistant", "content": A2, "reasoning_content": REASONING}], None)
    return cases


@pytest.fixture(scope="module")
def models_dir():
    try:
        return llama_cpp_models()
    except (RuntimeError, OSError) as exc:  # no index to fetch from, or an unreadable archive
        pytest.skip(f"llama.cpp's tokenizers and templates are not available offline: {exc}")


@pytest.fixture(scope="module", params=FAMILIES, ids=[f.name for f in FAMILIES])
def family_model(request, models_dir, tmp_path_factory):
    """(family, saved folder, tokenizer loaded back from it)."""
    from transformers import AutoTokenizer

    family = request.param
    folder = build_family_model(models_dir, family, tmp_path_factory.mktemp(family.name) / "base")
    return family, folder, AutoTokenizer.from_pretrained(folder)


def masked_runs(ids: list[int], labels: list[int]) -> list[list[int]]:
    """The contiguous stretches of tokens that carry the loss."""
    runs: list[list[int]] = []
    for k, (token, label) in enumerate(zip(ids, labels, strict=True)):
        if label == -100:
            continue
        assert label == token, "a label differs from its input token"
        if k and labels[k - 1] != -100 and runs:
            runs[-1].append(token)
        else:
            runs.append([token])
    return runs


def mask_problems(family: Family, tok, messages: list[dict], tools) -> list[str]:
    """What is wrong with the loss mask of one conversation (empty: exactly each assistant turn + its end)."""
    from domainlm.train.data import tokenize_chat

    try:
        ids, labels = tokenize_chat(tok, messages, tools)
    except ValueError as exc:
        return [f"not tokenized: {exc}"]
    runs = masked_runs(ids, labels)
    turns = [m for m in messages if m["role"] == "assistant"]
    if len(runs) != len(turns):
        return [f"{len(runs)} masked stretches for {len(turns)} assistant turns: "
                + " | ".join(tok.decode(r, skip_special_tokens=False) for r in runs)]
    others = [m["content"] for m in messages if m["role"] != "assistant"]
    ends = set(family.stops) | {family.eot}
    problems = []
    for n, (run, msg) in enumerate(zip(runs, turns, strict=True)):
        text = tok.decode(run, skip_special_tokens=False)
        last = tok.convert_ids_to_tokens(run[-1])
        if last not in ends:
            problems.append(f"turn {n}: ends with {last!r}, not an end-of-turn token ({text!r})")
            continue
        body = text[: len(text) - len(tok.decode(run[-1:], skip_special_tokens=False))]
        if family.user_marker in body or any(o in body for o in others):
            problems.append(f"turn {n}: another message's text carries loss ({text!r})")
        if msg.get("tool_calls"):
            fn = msg["tool_calls"][0]["function"]
            if fn["name"] not in body or any(str(v) not in body for v in fn["arguments"].values()):
                problems.append(f"turn {n}: the tool call is not in the loss ({text!r})")
            continue
        # A plain turn: optional think block, the content, nothing else (whitespace aside).
        think = r"(?:\s*(?:<think>)?(?P<r>.*?)</think>)?"  # "<think>" may be in the generation prompt
        if not re.fullmatch(think + r"\s*" + re.escape(msg["content"]) + r"\s*", body, re.S):
            problems.append(f"turn {n}: the loss covers more or less than the content ({text!r})")
    return problems


# ---------------------------------------------------------------------------------------------------
# sft: which tokens carry the loss
# ---------------------------------------------------------------------------------------------------


def test_sft_loss_covers_exactly_each_assistant_turn_and_its_end_token(family_model):
    family, _, tok = family_model
    problems = {name: mask_problems(family, tok, messages, tools)
                for name, (messages, tools) in conversations(family).items()}
    assert not any(problems.values()), {k: v for k, v in problems.items() if v}


def test_thinking_reasoning_of_the_last_turn_is_trained_where_the_template_keeps_it(family_model):
    from domainlm.train.data import tokenize_chat

    family, _, tok = family_model
    if not family.thinking:
        pytest.skip(f"{family.name} has no thinking blocks")
    messages, _ = conversations(family)["thinking"]
    rendered = tok.apply_chat_template(messages, tokenize=False)
    ids, labels = tokenize_chat(tok, messages)
    trained = tok.decode([t for t, label in zip(ids, labels, strict=True) if label != -100], skip_special_tokens=False)
    # Where the family's template shows the reasoning of a finished turn, the model learns to write it.
    assert (REASONING in trained) == (REASONING in rendered)


def test_a_template_without_its_end_of_turn_token_fails_the_matrix(models_dir):
    from families import family_tokenizer
    from transformers import AutoTokenizer

    family = FAMILIES[0]
    tok = family_tokenizer(models_dir, family)
    assert not any(mask_problems(family, tok, m, t) for m, t in conversations(family).values())
    broken = AutoTokenizer.from_pretrained(models_dir / "tokenizers" / family.vocab)
    broken.add_special_tokens({"additional_special_tokens": list(family.special)})
    broken.chat_template = tok.chat_template.replace("<|im_end|>", "")
    problems = [p for m, t in conversations(family).values() for p in mask_problems(family, broken, m, t)]
    assert problems and all("end-of-turn" in p or "not tokenized" in p or "stretches" in p for p in problems)


# ---------------------------------------------------------------------------------------------------
# tool calls: trained in the family's format, read back by serve
# ---------------------------------------------------------------------------------------------------


def emitted_tool_turn(tok, messages: list[dict], tools) -> str:
    """What the model is trained to emit for the tool-call turn, decoded as serve and eval decode it
    (control tokens dropped, the tool-call markers a family made special tokens kept)."""
    from domainlm.models.hf import visible_text
    from domainlm.train.data import tokenize_chat

    ids, labels = tokenize_chat(tok, messages, tools)
    first = masked_runs(ids, labels)[0][:-1]  # the end token stops generation; serve never sees it
    return visible_text(tok, first)


def test_tool_call_turn_is_trained_in_the_family_format(family_model):
    from domainlm.train.data import tokenize_chat

    family, _, tok = family_model
    messages, tools = conversations(family)["tools"]
    ids, labels = tokenize_chat(tok, messages[:3], tools)
    trained = tok.decode(masked_runs(ids, labels)[0], skip_special_tokens=False)
    assert family.tool_marker in trained, trained
    assert CALL["name"] in trained and all(v in trained for v in CALL["arguments"].values())


@pytest.fixture()
def tool_case(family_model, request):
    family, _, tok = family_model
    if not family.parsed_by_serve:
        request.applymarker(pytest.mark.xfail(
            strict=True, reason=family.serve_gap or f"domainlm.parsing cannot read {family.tool_format}"))
    messages, tools = conversations(family)["tools"]
    return family, tok, messages[:4], tools


def test_tool_call_turn_is_trained_in_the_family_format_and_parsed_back_by_serve(tool_case):
    from domainlm.parsing import parse_tool_calls

    family, tok, messages, tools = tool_case
    parsed = parse_tool_calls(emitted_tool_turn(tok, messages[:3], tools), tools)  # as serve passes the offered tools
    got = [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in parsed.tool_calls]
    assert got == [(CALL["name"], CALL["arguments"])]


# ---------------------------------------------------------------------------------------------------
# eval and serve ask the same prompt
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded(family_model):
    from domainlm.models.hf import TransformersModel

    family, folder, _ = family_model
    return family, TransformersModel(folder, device="cpu", batch_size=1)


@pytest.mark.parametrize("kind", ["qa", "tool_call"])
def test_eval_and_serve_render_the_same_prompt(loaded, kind):
    from domainlm.evals.runner import TokenCounter, build_jobs
    from domainlm.evals.tasks import SuiteConfig
    from domainlm.serve.generation import ServedModel

    _, model = loaded
    item = {"id": "x1", "task": "t", "_suite": "s", "type": kind, "question": Q1 if kind == "qa" else "美元兑人民币？",
            "answer": A1 if kind == "qa" else CALL, "tools": TOOLS if kind == "tool_call" else None}
    job = build_jobs([item], {"s": SuiteConfig(few_shot=0)}, supports_logprobs=False)[0]
    eval_prompt = TokenCounter(model).chat_text(job.conversation, job.tools, chat=job.chat)
    serve_prompt = ServedModel("m", model).prompt_text(job.conversation, item["tools"])
    own = model.tokenizer.apply_chat_template(job.conversation, tools=job.tools, add_generation_prompt=True,
                                              tokenize=False)
    assert eval_prompt == serve_prompt == own  # the family's own template, asked the same way by both
    assert job.conversation[-1]["content"] in eval_prompt


# ---------------------------------------------------------------------------------------------------
# train --stage sft keeps the family's template, generation config and stop tokens
# ---------------------------------------------------------------------------------------------------


def test_sft_output_keeps_template_and_stop_tokens_and_loads_in_plain_transformers(family_model, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from domainlm.train import TrainConfig
    from domainlm.train.stage import train

    family, folder, tok = family_model
    rows = [{"messages": m, "tools": t} for m, t in conversations(family).values()]
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    cfg = TrainConfig(stage="sft", method="full", max_steps=2, batch_size=1, seq_len=384, lr=1e-4,
                      eval_fraction=0.0, seed=0)
    train(str(folder), [data], out, cfg)

    saved = AutoTokenizer.from_pretrained(out)
    assert saved.chat_template == tok.chat_template
    base_gen, out_gen = GenerationConfig.from_pretrained(folder), GenerationConfig.from_pretrained(out)
    assert out_gen.eos_token_id == base_gen.eos_token_id
    stops = {saved.convert_ids_to_tokens(i) for i in out_gen.eos_token_id}
    assert family.eot in stops or family.eot == "<|user|>" and "<|user|>" in stops
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.model_type == family.arch
    messages, _ = conversations(family)["single"]
    assert saved.apply_chat_template(messages, tokenize=False) == tok.apply_chat_template(messages, tokenize=False)
    assert Path(out, "config.json").is_file()
