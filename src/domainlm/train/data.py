"""Training data: read records, check them, turn them into token sequences.

Formats (JSONL, one object a line; a folder means every ``*.jsonl`` under it). Every TRL standard format
(https://huggingface.co/docs/trl/dataset_formats) is read, plus this project's own rows; the table of what
each one learns is in docs/train.md ("Data formats").

* cpt — Document rows ``{"id", "text", ...}`` (e.g. the clean stage's ``clean.jsonl``).
* sft — conversational language modeling ``{"messages": [...], "tools"?}``; task items (DESIGN.md:
  ``{"id", "type", "question", "choices"?, "context"?, "tools"?, "answer", ...}``, made a user turn and an
  assistant turn by :func:`task_to_messages`); prompt-completion, standard ``{"prompt": str, "completion": str}``
  or conversational ``{"prompt": [...], "completion": [...], "tools"?}``; language modeling ``{"text"}``.
* dpo — ``{"prompt", "chosen", "rejected", "tools"?}``, standard (strings) or conversational (message lists);
  conversational with an implicit prompt ``{"chosen": [...], "rejected": [...]}`` (the turns both share).
* kto — ``{"prompt", "completion", "label": bool, "tools"?}``, standard or conversational, or feedback rows
  ``{"request", "response", "rating": "up|down"}``.

A record that does not fit its format is rejected with ``file:line: field: reason`` (written to
``rejected.jsonl`` by the caller) and never stops the others; a file with no usable record is an error.
"""

from __future__ import annotations

import bisect
import json
import os
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from domainlm.errors import DomainlmError
from domainlm.io import expand_inputs, jsonl_lines
from domainlm.prompts import CONTEXT_TYPES, TEMPLATES, render_answer, render_prompt

ROLES = {"system", "user", "assistant", "tool"}


@dataclass
class Loaded:
    """Records that passed, and ``(where, reason)`` for those that did not."""

    records: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def data_files(paths: Sequence[str | Path]) -> list[Path]:
    """The files to read: each file named directly (whatever its name), and every ``*.jsonl`` under a named
    folder, sorted, leaving out hidden names inside the folder (``.git``, editor backups). The folder's own
    path may be anything: ``../tasks`` or a workspace under ``~/.cache`` is read like any other."""
    files: list[Path] = []
    for item in map(Path, paths):
        problems: list[tuple[Path, str]] = []
        found = expand_inputs([item], problems)  # raises for a path that does not exist
        if item.is_dir():
            found = [p for p in found if _is_data_file(p)]
            problems = [(p, why) for p, why in problems if _is_data_file(p)]
        if problems:  # a data file that cannot be read (broken symlink, FIFO) is an error, not a silent gap
            path, why = problems[0]
            raise DomainlmError(f"{path}: cannot read ({why})")
        files.extend(found)
    if not files:
        raise DomainlmError(f"{', '.join(map(str, paths))}: no .jsonl files found")
    return files


def _is_data_file(path: Path) -> bool:
    # expand_inputs already leaves out hidden names inside a folder; a hidden or relative (``..``) part of
    # the folder's own path is the user's choice of where the data lives, not a file to skip.
    return path.suffix == ".jsonl"


# ---------------------------------------------------------------------------------------------------
# Checking and converting one record. Each returns the normalised record or raises ValueError("field: why").
# ---------------------------------------------------------------------------------------------------


def _text_field(obj: dict, key: str, allow_empty: bool = False) -> str:
    if key not in obj:
        raise ValueError(f"{key}: missing")
    value = obj[key]
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise ValueError(f"{key}: empty")
    return value


def check_document(obj: dict) -> dict:
    return {"id": obj.get("id"), "text": _text_field(obj, "text")}


def _check_turns(messages, name: str) -> None:
    """A non-empty list of chat messages; errors name the field as ``name[i].key``."""
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{name}: expected a non-empty list of messages")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise ValueError(f"{name}[{i}]: expected an object")
        role = msg.get("role")
        if role not in ROLES:
            raise ValueError(f"{name}[{i}].role: expected one of {sorted(ROLES)}, got {role!r}")
        content = msg.get("content")
        if content is not None and not isinstance(content, str):
            raise ValueError(f"{name}[{i}].content: expected a string")
        if role != "assistant" and not isinstance(content, str):
            raise ValueError(f"{name}[{i}].content: missing")
        if role == "assistant" and not content and not msg.get("tool_calls"):
            raise ValueError(f"{name}[{i}].content: empty assistant turn")
        for j, call in enumerate(msg.get("tool_calls") or []):
            fn = call.get("function", call) if isinstance(call, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise ValueError(f"{name}[{i}].tool_calls[{j}].name: missing")


def _check_tools(tools) -> None:
    if tools is not None and not isinstance(tools, list):
        raise ValueError("tools: expected a list")


def _check_messages(messages, tools) -> None:
    _check_turns(messages, "messages")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("messages: no assistant turn to learn from")
    _check_tools(tools)


def _check_prompt_turns(prompt) -> None:
    """A conversational prompt: it must end where the model speaks next (a user turn or a tool result), as
    TRL renders it with the generation prompt."""
    _check_turns(prompt, "prompt")
    last = prompt[-1]["role"]
    if last not in ("user", "tool"):
        raise ValueError(f"prompt[{len(prompt) - 1}].role: a prompt ends with a user or tool turn, got {last!r}")


def _check_answer_turns(answer, name: str) -> None:
    """A conversational completion (or chosen/rejected answer): the model's reply, so it opens with an
    assistant turn."""
    _check_turns(answer, name)
    if answer[0]["role"] != "assistant":
        raise ValueError(f"{name}[0].role: the answer starts with an assistant turn, got {answer[0]['role']!r}")


def _prompt_and_answers(obj: dict, answers: tuple[str, ...]) -> dict:
    """``prompt`` and the ``answers`` fields of a TRL prompt-completion or preference row, all strings
    (standard) or all message lists (conversational), checked; plus ``tools``."""
    prompt = obj.get("prompt")
    if isinstance(prompt, list):
        _check_prompt_turns(prompt)
        for name in answers:
            if name not in obj:
                raise ValueError(f"{name}: missing")
            if not isinstance(obj[name], list):
                raise ValueError(f"{name}: expected a list of messages, as the prompt is one")
            _check_answer_turns(obj[name], name)
    else:
        _text_field(obj, "prompt")
        for name in answers:
            if isinstance(obj.get(name), list):
                raise ValueError(f"{name}: expected a string, as the prompt is one")
            _text_field(obj, name)
    _check_tools(obj.get("tools"))
    return {"prompt": prompt, **{name: obj[name] for name in answers}, "tools": obj.get("tools")}


def implicit_prompt(chosen: list[dict], rejected: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """(prompt, chosen, rejected) of a conversational pair whose prompt is implicit: the leading turns both
    share, as TRL's ``extract_prompt`` splits it (written here so that reading data needs no torch)."""
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0:
        raise ValueError("prompt: missing, and chosen and rejected share no leading turn to take it from")
    if shared == len(chosen) or shared == len(rejected):
        raise ValueError("rejected: no turn differs from chosen")
    return chosen[:shared], chosen[shared:], rejected[shared:]


def task_to_messages(item: dict, retrieved: list[str] | None = None) -> tuple[list[dict], list[dict] | None]:
    """A DESIGN.md task item as (messages, tools): the user turn rendered by :mod:`domainlm.prompts` exactly
    as ``domainlm eval`` asks it (with ``retrieved`` passages as a ``--kb`` variant shows them), the
    reference answer as the assistant turn."""
    kind = item.get("type") or "qa"
    if kind not in TEMPLATES["zh"]:
        raise ValueError(f"type: unknown task type {kind!r} (expected one of {', '.join(TEMPLATES['zh'])})")
    _text_field(item, "question")
    answer = item.get("answer")
    tools = item.get("tools") if kind == "tool_call" else None
    if kind in ("mcq", "intent") and not item.get("choices"):
        raise ValueError(f"choices: missing for an {kind} item")
    user = render_prompt(item, retrieved=retrieved)

    if kind == "tool_call":
        if not isinstance(answer, dict) or not isinstance(answer.get("name"), str):
            raise ValueError("answer: expected {\"name\", \"arguments\"} for a tool_call item")
        if tools is not None and not isinstance(tools, list):
            raise ValueError("tools: expected a list")
        assistant: dict = {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": answer["name"], "arguments": answer.get("arguments") or {}}}]}
    else:
        if kind == "ner" and not isinstance(item.get("entities", answer), list):
            raise ValueError("entities: expected a list for a ner item")
        if kind not in ("ner", "refusal") and (answer is None or (isinstance(answer, str) and not answer.strip())):
            raise ValueError("answer: missing or empty")
        assistant = {"role": "assistant", "content": render_answer(item)}
    return [{"role": "user", "content": user}, assistant], tools


def check_chat(obj: dict) -> dict:
    """An sft record. Chat rows, task items and conversational prompt-completion rows become
    ``{"id", "messages", "tools", "learn_from"?}`` (a task item is kept under ``item`` for its
    retrieval-augmented copy; ``learn_from`` is the index of the first completion turn: the prompt's own
    assistant turns are context, not targets). Standard prompt-completion rows stay ``{"id", "prompt",
    "completion"}`` and language-modeling rows ``{"id", "text"}``: plain text, no chat template."""
    if "messages" in obj:
        messages, tools = obj["messages"], obj.get("tools")
    elif "question" in obj:
        messages, tools = task_to_messages(obj)
    elif "prompt" in obj or "completion" in obj:
        row = _prompt_and_answers(obj, ("completion",))
        if isinstance(row["prompt"], str):
            return {"id": obj.get("id"), "prompt": row["prompt"], "completion": row["completion"]}
        return {"id": obj.get("id"), "messages": row["prompt"] + row["completion"], "tools": row["tools"],
                "learn_from": len(row["prompt"])}
    elif "text" in obj:
        return {"id": obj.get("id"), "text": _text_field(obj, "text")}
    else:
        raise ValueError("messages: missing (expected chat rows {\"messages\"}, task items {\"question\", \"answer\"}, "
                         "{\"prompt\", \"completion\"} or {\"text\"})")
    _check_messages(messages, tools)
    record = {"id": obj.get("id"), "messages": messages, "tools": tools}
    if "messages" not in obj:
        record["item"] = obj
    return record


def with_passages(records: list[dict], retrieve: Callable[[str], list[str]]) -> list[dict]:
    """Retrieval-augmented copies of the task items whose prompt has room for reading material: the same
    item asked with the passages ``retrieve`` finds for its question, as a ``--kb`` variant is asked at
    evaluation. Trained beside the closed-book originals, they teach a model to read passages (and to
    refuse when the passages do not say), which no amount of closed-book training does."""
    copies = []
    for record in records:
        item = record.get("item")
        if item is None or (item.get("type") or "qa") not in CONTEXT_TYPES:
            continue
        passages = retrieve(str(item.get("question", "")))
        if passages:
            messages, tools = task_to_messages(item, passages)
            copies.append({"id": f"{record.get('id')}+kb", "messages": messages, "tools": tools})
    return copies


def check_preference(obj: dict) -> dict:
    """A dpo pair ``{"prompt", "chosen", "rejected", "tools"}``: strings, or message lists (an implicit
    prompt split off the shared leading turns)."""
    if "prompt" not in obj and isinstance(obj.get("chosen"), list) and isinstance(obj.get("rejected"), list):
        _check_turns(obj["chosen"], "chosen")
        _check_turns(obj["rejected"], "rejected")
        prompt, chosen, rejected = implicit_prompt(obj["chosen"], obj["rejected"])
        obj = {**obj, "prompt": prompt, "chosen": chosen, "rejected": rejected}
    return _prompt_and_answers(obj, ("chosen", "rejected"))


def check_kto(obj: dict) -> dict:
    """A kto row ``{"prompt", "completion", "label", "tools"}``: strings or message lists, or a feedback row."""
    if "rating" in obj or "request" in obj:  # the serving issue's feedback export
        rating = obj.get("rating")
        if rating not in ("up", "down"):
            raise ValueError(f"rating: expected 'up' or 'down', got {rating!r}")
        request = obj.get("request")
        if isinstance(request, dict) and isinstance(request.get("messages"), list):
            # a stored chat request: its last user message is the prompt
            users = [m.get("content") for m in request["messages"] if isinstance(m, dict) and m.get("role") == "user"]
            request = users[-1] if users else None
        if not isinstance(request, str) or not request.strip():
            raise ValueError("request: expected a non-empty string or a chat request with a user message")
        return {"prompt": request, "completion": _text_field(obj, "response"), "label": rating == "up", "tools": None}
    label = obj.get("label")
    if not isinstance(label, bool):
        raise ValueError(f"label: expected true or false, got {label!r}")
    return {**_prompt_and_answers(obj, ("completion",)), "label": label}


def record_texts(record: dict) -> list[str]:
    """Every text a checked record holds (strings and message contents): what a fresh ``tiny`` tokenizer
    learns from."""
    texts = []
    for key in ("text", "prompt", "completion", "chosen", "rejected", "messages"):
        value = record.get(key)
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, list):
            texts += [m["content"] for m in value if isinstance(m.get("content"), str) and m["content"]]
    return texts


CHECKS = {"cpt": check_document, "sft": check_chat, "dpo": check_preference, "kto": check_kto}


def load_records(paths: Sequence[str | Path], stage: str) -> Loaded:
    """Read and check every record of ``paths`` for ``stage``; bad records are collected, not raised."""
    check = CHECKS[stage]
    out = Loaded(files=data_files(paths))
    for path in out.files:
        for no, obj, error in jsonl_lines(path):
            where = f"{path}:{no}"
            if error is None:
                try:
                    out.records.append(check(obj))
                    continue
                except ValueError as exc:
                    error = str(exc)
            out.rejected.append({"where": where, "reason": error})
    if not out.records:
        first = out.rejected[0] if out.rejected else {"where": str(out.files[0]), "reason": "no records"}
        raise DomainlmError(f"{first['where']}: {first['reason']} (no usable {stage} record in the data)")
    return out


# ---------------------------------------------------------------------------------------------------
# Tokenizing and packing
# ---------------------------------------------------------------------------------------------------


@dataclass
class Example:
    """One packed training sequence: labels are -100 where no loss is taken; positions restart per example."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]


def document_separator(tokenizer) -> int:
    for token_id in (tokenizer.eos_token_id, tokenizer.pad_token_id):
        if token_id is not None:
            return token_id
    raise DomainlmError("the tokenizer has no eos or pad token to separate documents")


def pack_documents(texts: Iterable[str], tokenizer, seq_len: int) -> list[Example]:
    """cpt packing (as in GPT pre-training): documents joined by the separator token and cut into
    ``seq_len`` blocks, no padding. A document may span two blocks; position ids run 0..seq_len-1."""
    sep = document_separator(tokenizer)
    stream: list[int] = []
    for text in texts:
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        stream.append(sep)
    if len(stream) < seq_len:  # too little text for one full block: train on what there is
        blocks = [stream] if len(stream) > 1 else []
    else:
        blocks = [stream[i : i + seq_len] for i in range(0, len(stream) - seq_len + 1, seq_len)]
    return [Example(b, list(b), list(range(len(b)))) for b in blocks]


def end_of_turn_tokens(tokenizer) -> list[str]:
    """The tokens that end an assistant turn: the tokenizer's eos, the stop tokens of the model folder's
    ``generation_config.json`` (where the tokenizer was loaded from one), and ChatML's ``<|im_end|>``
    (which the transformers backend also stops on). GLM ends a turn with the next role token
    (``<|user|>``, ``<|observation|>``), which only its generation config names."""
    ids: list = []
    config = Path(str(getattr(tokenizer, "name_or_path", "") or "")) / "generation_config.json"
    if config.is_file():
        try:
            eos = json.loads(config.read_text(encoding="utf-8")).get("eos_token_id")
        except (OSError, ValueError):
            eos = None
        ids = eos if isinstance(eos, list) else [eos]
    tokens = [tokenizer.eos_token] + [tokenizer.convert_ids_to_tokens(i) for i in ids if isinstance(i, int)]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")  # not get_vocab(): that copies the whole vocabulary
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        tokens.append("<|im_end|>")
    return [t for i, t in enumerate(tokens) if t and t not in tokens[:i]]


def _close_turn(full: str, start: int, end: int, ends: list[str]) -> tuple[str, int]:
    """(rendered text, end of the turn's span) with the span ending right after its end-of-turn token.

    The loss belongs on the token that ends the turn (the model must learn to stop) and not on what the
    template writes after it (Qwen's newline after ``<|im_end|>`` belongs to the next turn's header). A
    template whose turn has no end token of its own (GLM) is ended by the end token that follows it (the
    next role token), or, at the end of the conversation, by the eos token appended to the text."""
    text = full[start:end]
    closing = max((text.rfind(t) + len(t) for t in ends if t in text), default=-1)
    if closing > 0 and not text[closing:].strip():
        return full, start + closing
    rest = full[end:]
    following = next((t for t in ends if rest.lstrip().startswith(t)), None)
    if following is not None:
        return full, end + rest.index(following) + len(following)
    if not rest.strip() and ends:  # the last turn, and the template wrote no end for it
        return full[:end] + ends[0], end + len(ends[0])
    return full, end


def chat_assistant_spans(tokenizer, messages: list[dict], tools, first: int = 0) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns from message ``first`` on,
    each ending with its end-of-turn token (see :func:`_close_turn`).

    Uses the tokenizer's own chat template: the text of turn i is what rendering ``messages[:i+1]`` adds
    to ``messages[:i]`` with the generation prompt, so any template that renders prefixes stably works
    (no generation markers needed in the template). Templates that render the last turn differently from
    an earlier one (Qwen3 shows a think block only after the last user turn) are read from the whole
    conversation instead: turn i runs from its generation prompt to the first end-of-turn token."""
    render = tokenizer.apply_chat_template
    full = render(messages, tools=tools, tokenize=False)
    ends = end_of_turn_tokens(tokenizer)
    spans = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant" or i < first:
            continue
        before = render(messages[:i], tools=tools, tokenize=False, add_generation_prompt=True) if i else ""
        upto = render(messages[: i + 1], tools=tools, tokenize=False)
        if not full.startswith(before):
            # The generation prompt opens what a finished turn writes otherwise (Qwen3.5 prompts "<think>\n",
            # then shows an earlier turn without a think block): the turn starts where the two part, if
            # that is inside the generation prompt.
            start = len(os.path.commonprefix([full, before]))
            plain = render(messages[:i], tools=tools, tokenize=False)
            if not full.startswith(plain) or start < len(plain):
                raise ValueError(f"messages[{i}]: the chat template does not render this conversation's prefixes stably")
            before = full[:start]
        if full.startswith(upto) and len(upto) > len(before):
            end = len(upto)
        else:  # this turn renders differently once later turns follow: find its end in the whole text
            found = [full.find(t, len(before)) for t in ends]
            found = [at + len(t) for at, t in zip(found, ends, strict=True) if at != -1]
            if not found:
                raise ValueError(f"messages[{i}]: the chat template does not render this conversation's prefixes stably")
            end = min(found)
        full, end = _close_turn(full, len(before), end, ends)
        spans.append((len(before), end))
    return full, spans


def tokenize_chat(tokenizer, messages: list[dict], tools=None, first: int = 0) -> tuple[list[int], list[int]]:
    """Token ids and labels of one conversation: loss only on assistant tokens (their end token included),
    of the turns from message ``first`` on (a prompt-completion row's completion)."""
    full, spans = chat_assistant_spans(tokenizer, messages, tools, first)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    labels = [-100] * len(ids)
    for k, (start, end) in enumerate(enc["offset_mapping"]):
        if any(s <= start < e for s, e in spans) and end > start:
            labels[k] = ids[k]
    return ids, labels


def tokenize_text(tokenizer, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """Token ids and labels of a standard (plain-text, no chat template) row, as TRL's SFTTrainer makes
    them: ``prompt + completion`` tokenized with the tokenizer's own special tokens (a Llama BOS) and the
    eos appended so the model learns to stop; loss on the completion and the eos (a token that straddles
    the boundary counts as completion, as TRL's common-prefix split has it). A language-modeling row is an
    empty prompt: loss on every token but the first, which nothing in its row predicts (in a packed block
    the token before it is the previous row's)."""
    enc = tokenizer(prompt + completion, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = [i if end > len(prompt) and end > start else -100  # special tokens have empty offsets
              for i, (start, end) in zip(ids, enc["offset_mapping"], strict=True)]
    eos = document_separator(tokenizer)
    if ids and ids[-1] == eos:  # a tokenizer that appends its eos itself
        labels[-1] = eos
    else:
        ids.append(eos)
        labels.append(eos)
    labels[0] = -100
    return ids, labels


def tokenize_record(tokenizer, record: dict) -> tuple[list[int], list[int]]:
    """Token ids and labels of one checked sft record, whatever its format (see :func:`check_chat`)."""
    if "messages" in record:
        return tokenize_chat(tokenizer, record["messages"], record.get("tools"), record.get("learn_from", 0))
    if "text" in record:
        return tokenize_text(tokenizer, "", record["text"])
    return tokenize_text(tokenizer, record["prompt"], record["completion"])


def pack_examples(pairs: Iterable[tuple[list[int], list[int]]], seq_len: int) -> tuple[list[Example], int]:
    """sft packing: whole conversations side by side in ``seq_len`` blocks, position ids restarting at
    each one so attention stays inside a conversation (transformers builds the block mask from them).

    Best-fit decreasing: the longest conversation first, each into the fullest block it still fits. Filling
    blocks in reading order wastes a third of the compute on padding when conversations are long (a 280-token
    intent prompt leaves no room in a 384-token block for the next one); this wastes a few percent. A
    conversation longer than ``seq_len`` is cut; one with no answer token left is dropped. Returns the blocks
    (in a deterministic order) and how many conversations were cut."""
    kept: list[tuple[list[int], list[int]]] = []
    truncated = 0
    for ids, labels in pairs:
        if len(ids) > seq_len:
            ids, labels, truncated = ids[:seq_len], labels[:seq_len], truncated + 1
        if all(x == -100 for x in labels[1:]):
            continue  # nothing to learn after the cut
        kept.append((ids, labels))
    blocks: list[Example] = []
    room: list[tuple[int, int]] = []  # (free tokens, block index), sorted
    for index in sorted(range(len(kept)), key=lambda i: (-len(kept[i][0]), i)):
        ids, labels = kept[index]
        at = bisect.bisect_left(room, (len(ids), -1))
        if at == len(room):
            blocks.append(Example([], [], []))
            free, block = seq_len, len(blocks) - 1
        else:
            free, block = room.pop(at)
        target = blocks[block]
        target.input_ids += ids
        target.labels += labels
        target.position_ids += list(range(len(ids)))
        if free - len(ids) > 0:
            bisect.insort(room, (free - len(ids), block))
    return blocks, truncated


def split_holdout(examples: list[Example], fraction: float, most: int, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, held-out): a seeded random share of the sequences, at least one left for training."""
    if fraction <= 0 or most <= 0 or len(examples) < 4:
        return examples, []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n = min(most, max(1, int(len(examples) * fraction)))
    held = set(order[:n])
    return [e for i, e in enumerate(examples) if i not in held], [examples[i] for i in sorted(held)]


def collate(examples: Sequence[Example], pad_id: int):
    """A batch of packed sequences, right-padded to the longest. No attention mask is needed: with
    causal attention real tokens never see the padding after them, and pad labels are -100."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    pos = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        pos[row, :n] = torch.tensor(e.position_ids)
        pos[row, n:] = torch.arange(width - n)  # the padding is its own "sequence"
    return {"input_ids": ids, "labels": labels, "position_ids": pos}
