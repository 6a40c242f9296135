import json
from pathlib import Path

import pytest

from domainlm.errors import DomainlmError
from domainlm.prompts import REFUSAL
from domainlm.train.data import (
    data_files,
    load_records,
    pack_documents,
    pack_examples,
    task_to_messages,
    tokenize_chat,
)
from domainlm.train.loop import step_indices


def write_lines(path, lines):
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)) + "\n" for x in lines),
                    encoding="utf-8")
    return path


def test_every_sample_task_item_becomes_a_chat(sample_dir):
    loaded = load_records([sample_dir / "tasks" / "train"], "sft")
    assert loaded.rejected == [] and len(loaded.records) >= 100
    by_type = {}
    for path in sorted((sample_dir / "tasks" / "train").glob("*.jsonl")):
        item = json.loads(path.open(encoding="utf-8").readline())
        by_type[item["type"]] = task_to_messages(item)
    messages, tools = by_type["tool_call"]
    assert tools and messages[1]["tool_calls"][0]["function"]["name"]
    mcq_user = by_type["mcq"][0][0]["content"]
    assert "A. " in mcq_user and "D. " in mcq_user and by_type["mcq"][0][1]["content"] in "ABCD"
    refusal = by_type["refusal"][0][1]["content"]
    assert refusal in REFUSAL.values()
    ner = json.loads(by_type["ner"][0][1]["content"])
    assert all(set(e) == {"type", "text"} for e in ner)
    assert isinstance(json.loads(by_type["json"][0][1]["content"]), dict)


def test_refusal_answers_are_recognised_by_the_eval_scorer():
    from domainlm.evals.scorers import score_item

    for lang, text in REFUSAL.items():
        item = {"id": "x", "type": "refusal", "question": "?", "answer": ""}
        assert score_item(item, text)["score"] == 1.0, lang


def test_bad_records_are_rejected_with_file_line_and_field(tmp_path):
    path = write_lines(tmp_path / "chat.jsonl", [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        "{not json",
        {"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]},
        {"messages": [{"role": "user", "content": "only a question"}]},
        {"question": "mcq without choices", "type": "mcq", "answer": "A"},
        {"body": "neither a chat, a task, a prompt-completion nor a text row"},
    ])
    loaded = load_records([path], "sft")
    assert len(loaded.records) == 1
    reasons = {r["where"]: r["reason"] for r in loaded.rejected}
    assert reasons[f"{path}:2"].startswith("not valid JSON")
    assert reasons[f"{path}:3"].startswith("messages[1].role: expected one of")
    assert reasons[f"{path}:4"] == "messages: no assistant turn to learn from"
    assert reasons[f"{path}:5"] == "choices: missing for an mcq item"
    assert reasons[f"{path}:6"].startswith("messages: missing")


def test_a_file_without_usable_records_is_one_clear_error(tmp_path):
    path = write_lines(tmp_path / "docs.jsonl", [{"id": "a", "body": "no text key"}])
    with pytest.raises(DomainlmError, match=r"docs\.jsonl:1: text: missing \(no usable cpt record"):
        load_records([path], "cpt")
    with pytest.raises(DomainlmError, match="no such file"):
        load_records([tmp_path / "absent"], "cpt")


def test_feedback_rows_and_kto_rows(tmp_path):
    path = write_lines(tmp_path / "feedback.jsonl", [
        {"id": "1", "request": "年费多少？", "response": "首年免年费。", "rating": "up"},
        {"id": "2", "request": {"messages": [{"role": "user", "content": "利率？"}]}, "response": "不知道", "rating": "down"},
        {"prompt": "hi", "completion": "hello", "label": True},
        {"id": "3", "request": "x", "response": "y", "rating": "meh"},
    ])
    loaded = load_records([path], "kto")
    assert [r["label"] for r in loaded.records] == [True, False, True]
    assert loaded.records[1]["prompt"] == "利率？"
    assert loaded.rejected[0]["reason"] == "rating: expected 'up' or 'down', got 'meh'"


def test_loss_only_on_assistant_turns_multi_turn_and_tools(sample_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sample_model)
    messages = [
        {"role": "system", "content": "你是海港银行助理。"},
        {"role": "user", "content": "查余额"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "check_balance", "arguments": {"a": 1}}}]},
        {"role": "tool", "content": "{\"balance\": 100}"},
        {"role": "assistant", "content": "余额100元。"},
    ]
    tools = [{"type": "function", "function": {"name": "check_balance", "parameters": {"type": "object"}}}]
    ids, labels = tokenize_chat(tok, messages, tools)
    learned = tok.decode([i for i, y in zip(ids, labels, strict=True) if y != -100])
    # each turn up to and with its end token; the newline after <|im_end|> belongs to the next header
    assert learned == '<tool_call>\n{"name": "check_balance", "arguments": {"a": 1}}\n</tool_call><|im_end|>余额100元。<|im_end|>'
    assert tok.decode(ids) == tok.apply_chat_template(messages, tools=tools, tokenize=False)


def _learned_turns(tok, messages):
    ids, labels = tokenize_chat(tok, messages)
    turns, current = [], []
    for token, label in zip(ids, labels, strict=True):
        if label != -100:
            current.append(token)
        elif current:
            turns, current = [*turns, current], []
    return [tok.decode(t) for t in [*turns, current] if t]


def test_a_turn_without_an_end_token_learns_the_next_role_token_or_eos(sample_model, tmp_path):
    """GLM's template closes an assistant turn with the next role token (its generation config's stop
    tokens), and closes the last one with nothing: the model must still learn to stop."""
    import shutil

    from transformers import AutoTokenizer, GenerationConfig

    folder = tmp_path / "glm_like"
    shutil.copytree(sample_model, folder)
    tok = AutoTokenizer.from_pretrained(folder)
    role = tok.convert_tokens_to_ids("<|im_start|>")
    GenerationConfig(eos_token_id=[tok.eos_token_id, role]).save_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}{% endfor %}"
                         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    messages = [{"role": "user", "content": "查余额"}, {"role": "assistant", "content": "余额100元。"},
                {"role": "user", "content": "谢谢"}, {"role": "assistant", "content": "不客气。"}]
    assert _learned_turns(tok, messages) == ["余额100元。<|im_start|>", "不客气。" + tok.eos_token]


def test_a_template_that_renders_the_last_turn_differently_is_read_from_the_whole_text(sample_model):
    """Qwen3 writes a think block only after the last user turn: earlier turns are learned as rendered
    in the whole conversation (no think block), not rejected as unstable."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sample_model)
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n"
        "{% if m.role == 'assistant' and loop.last %}<think>\n\n</think>\n\n{% endif %}{{ m.content }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    messages = [{"role": "user", "content": "查余额"}, {"role": "assistant", "content": "余额100元。"},
                {"role": "user", "content": "谢谢"}, {"role": "assistant", "content": "不客气。"}]
    assert _learned_turns(tok, messages) == ["余额100元。<|im_end|>", "<think>\n\n</think>\n\n不客气。<|im_end|>"]


def test_a_generation_prompt_that_opens_a_think_block_starts_the_turn_inside_it(sample_model):
    """Qwen3.5 prompts "<|im_start|>assistant\\n<think>\\n" but shows an earlier turn without a think block:
    the earlier turn is learned from where the two part, not rejected."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sample_model)
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n"
        "{% if m.role == 'assistant' and loop.last %}<think>\n\n</think>\n\n{% endif %}{{ m.content }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}")
    messages = [{"role": "user", "content": "查余额"}, {"role": "assistant", "content": "余额100元。"},
                {"role": "user", "content": "谢谢"}, {"role": "assistant", "content": "不客气。"}]
    assert _learned_turns(tok, messages) == ["余额100元。<|im_end|>", "\n</think>\n\n不客气。<|im_end|>"]


def test_template_that_is_not_prefix_stable_is_reported(sample_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sample_model)
    # a template that prints the number of messages first: every prefix renders differently
    tok.chat_template = "{{ messages|length }}{% for m in messages %}{{ m.content }}{% endfor %}"
    with pytest.raises(ValueError, match=r"messages\[1\]: the chat template does not render"):
        tokenize_chat(tok, [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])


def test_packing_keeps_conversations_whole_and_positions_restart():
    pairs = [([1, 2, 3], [-100, 2, 3]), ([4, 5], [-100, 5]), ([6, 7, 8, 9, 10, 11], [-100] * 3 + [9, 10, 11]),
             ([12] * 9, [-100] + [12] * 8)]
    blocks, cut = pack_examples(pairs, seq_len=6)
    assert cut == 1
    # longest first, each into the fullest block with room: [4, 5] joins [1, 2, 3]
    assert [b.input_ids for b in blocks] == [[6, 7, 8, 9, 10, 11], [12] * 6, [1, 2, 3, 4, 5]]
    assert blocks[2].position_ids == [0, 1, 2, 0, 1]


def test_packing_fills_blocks_far_better_than_reading_order():
    import random

    rng = random.Random(0)
    # lengths like the sample's tasks at seq_len 384: 280-token prompts among 40-200-token ones
    lengths = [rng.choice([44, 81, 87, 163, 191, 205, 274, 288]) for _ in range(2000)]
    pairs = [(list(range(n)), [-100] + list(range(1, n))) for n in lengths]
    blocks, _ = pack_examples(pairs, seq_len=384)
    assert sum(len(b.input_ids) for b in blocks) == sum(lengths)  # nothing lost
    assert all(len(b.input_ids) <= 384 for b in blocks)
    fill = sum(lengths) / (384 * len(blocks))
    assert fill > 0.95, fill
    assert pack_examples(pairs, seq_len=384)[0] == blocks  # deterministic


def test_documents_pack_into_full_blocks(sample_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sample_model)
    blocks = pack_documents(["海港银行定期存款。" * 20, "Harbor Bank deposits." * 20], tok, seq_len=32)
    assert len(blocks) >= 3 and all(len(b.input_ids) == 32 for b in blocks)
    assert tok.eos_token_id in sum((b.input_ids for b in blocks), [])


def test_data_order_is_a_function_of_seed_and_step():
    first_epoch = step_indices(0, 10, 5, seed=1) + step_indices(1, 10, 5, seed=1)
    assert sorted(first_epoch) == list(range(10))
    assert step_indices(3, 10, 5, seed=1) == step_indices(3, 10, 5, seed=1)
    assert step_indices(0, 10, 5, seed=1) != step_indices(0, 10, 5, seed=2)
    assert len(step_indices(0, 3, 8, seed=0)) == 8  # a step larger than the data wraps into the next epoch


def test_training_asks_exactly_what_evaluation_asks(sample_dir):
    """The user turn of every sample item is the eval's prompt for it, with and without KB passages."""
    from domainlm.evals.aggregate import all_items
    from domainlm.evals.runner import build_jobs
    from domainlm.evals.tasks import load_suite

    suite = load_suite(sample_dir / "tasks" / "eval")
    items = all_items([suite])
    passages = ["海港明珠定期存款的存期为3年。", "Harbor Tide Time Deposit pays 2.80%."]
    checked = set()
    for retrieve in (None, lambda question: passages):
        jobs = build_jobs(items, {suite.name: suite.config}, supports_logprobs=False, retrieve=retrieve)
        for job in jobs:
            messages, _ = task_to_messages(job.item, job.retrieved)
            assert messages[0]["content"] == job.conversation[-1]["content"], job.item["id"]
            checked.add((job.item["type"], job.retrieved is not None))
    assert {kind for kind, _ in checked} == {"intent", "json", "qa", "mcq", "ner", "tool_call", "refusal"}
    assert {kind for kind, kb in checked if kb} == {"json", "qa", "mcq", "refusal"}


def test_retrieval_copies_carry_the_passages_and_the_same_reply(sample_dir):
    from domainlm.prompts import REFUSAL
    from domainlm.train.data import with_passages

    loaded = load_records([sample_dir / "tasks" / "train"], "sft")
    asked = []

    def retrieve(question):
        asked.append(question)
        return ["海港明珠定期存款的存期为3年。"]

    copies = with_passages(loaded.records, retrieve)
    originals = {r["id"]: r for r in loaded.records}
    kinds = {originals[c["id"].removesuffix("+kb")]["item"]["type"] for c in copies}
    assert kinds == {"qa", "mcq", "json", "refusal"}  # intent, ner and tool_call prompts have no context slot
    assert len(asked) == len(copies)
    for copy in copies:
        original = originals[copy["id"].removesuffix("+kb")]
        assert "参考资料：\n[1] 海港明珠定期存款的存期为3年。" in copy["messages"][0]["content"] or \
            "Passages:\n[1] 海港明珠定期存款的存期为3年。" in copy["messages"][0]["content"]
        assert copy["messages"][0]["content"].endswith(original["messages"][0]["content"].split("\n")[-1])
        assert copy["messages"][1] == original["messages"][1]
    refusals = [c for c in copies if originals[c["id"].removesuffix("+kb")]["item"]["type"] == "refusal"]
    assert refusals and all(c["messages"][1]["content"] in REFUSAL.values() for c in refusals)
    # no passages found: no copy
    assert with_passages(loaded.records, lambda q: []) == []


def test_data_under_a_hidden_or_relative_folder_is_found_and_hidden_names_inside_are_not(tmp_path, monkeypatch):
    folder = tmp_path / ".cache" / "workspace" / "tasks"  # e.g. a workspace kept under ~/.cache
    (folder / ".git").mkdir(parents=True)
    for name in ("a.jsonl", ".backup.jsonl", ".git/b.jsonl", "notes.txt"):
        (folder / name).write_text("{}\n", encoding="utf-8")
    assert data_files([folder]) == [folder / "a.jsonl"]
    (folder.parent / "run").mkdir()
    monkeypatch.chdir(folder.parent / "run")
    assert data_files(["../tasks"]) == [Path("../tasks/a.jsonl")]
