"""Feedback export: KTO/DPO/SFT rows with PII redacted, loadable and trainable by TRL."""

from __future__ import annotations

import json

import pytest

from domainlm.serve.export import export_feedback, feedback_rows
from domainlm.serve.store import FeedbackStore

PHONE = "13812345678"


@pytest.fixture()
def store(tmp_path):
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")
    q = {"messages": [{"role": "system", "content": "你是海港银行助手"},
                      {"role": "user", "content": f"我的手机号是{PHONE}，金卡年费多少？"}]}
    a = store.add_response(model="tiny", request=q, response="金卡年费100元。", user="alice")
    b = store.add_response(model="tiny", request=q, response="金卡年费200元，刷卡6次免年费。", user="alice")
    c = store.add_response(model="tiny", request={"messages": [{"role": "user", "content": "hi"}]}, response="hello", user="bob")
    store.add_feedback(a, rating="up", user="alice")
    store.add_feedback(a, rating="down", user="alice")  # changed her mind: the latest rating wins
    store.add_feedback(b, rating="up", user="alice")
    store.add_feedback(a, correction=f"金卡年费200元。如有疑问请致电{PHONE}。", user="alice")
    store.add_feedback(b, rejected_id=a, user="alice")  # pairwise: b preferred over a
    store.add_feedback(c, comment="fine", user="bob")  # a comment alone trains nothing
    return store


def test_rows_per_format(store):
    kto = feedback_rows(store.iter_feedback(), "kto")
    assert [(r["prompt"], r["completion"], r["label"]) for r in kto] == [
        ("我的手机号是[MOBILE]，金卡年费多少？", "金卡年费100元。", False),
        ("我的手机号是[MOBILE]，金卡年费多少？", "金卡年费200元，刷卡6次免年费。", True)]
    dpo = feedback_rows(store.iter_feedback(), "dpo")
    assert [(r["chosen"], r["rejected"]) for r in dpo] == [
        ("金卡年费200元。如有疑问请致电[MOBILE]。", "金卡年费100元。"),
        ("金卡年费200元，刷卡6次免年费。", "金卡年费100元。")]
    sft = feedback_rows(store.iter_feedback(), "sft")
    assert len(sft) == 1 and sft[0]["messages"][-1] == {"role": "assistant", "content": "金卡年费200元。如有疑问请致电[MOBILE]。"}
    assert sft[0]["messages"][0]["role"] == "system"
    raw = feedback_rows(store.iter_feedback(), "raw")
    assert len(raw) == 6 and raw[-1]["comment"] == "fine"
    # Conversational rows keep the whole conversation (system prompt included) for TRL.
    conv = feedback_rows(store.iter_feedback(), "dpo", conversational=True)
    assert [m["role"] for m in conv[0]["prompt"]] == ["system", "user"]
    assert conv[0]["chosen"] == [{"role": "assistant", "content": dpo[0]["chosen"]}]
    # PII never leaves the store: not in prompts, answers or corrections, in any format.
    for rows in (kto, dpo, sft, raw, conv):
        assert PHONE not in json.dumps(rows, ensure_ascii=False)
        assert "[MOBILE]" in json.dumps(rows, ensure_ascii=False)


def test_unknown_format_is_an_error(store):
    from domainlm.errors import DomainlmError

    with pytest.raises(DomainlmError, match="unknown export format 'orpo'"):
        feedback_rows(store.iter_feedback(), "orpo")


def test_export_since_and_counts(store, tmp_path):
    result = export_feedback(store, "raw", tmp_path / "all.jsonl")
    assert result["feedback"] == 6 and result["last_id"] == 6
    again = export_feedback(store, "raw", tmp_path / "new.jsonl", since_id=result["last_id"])
    assert again["rows"] == 0 and (tmp_path / "new.jsonl").read_text() == ""


def test_default_exports_are_what_domainlm_train_reads(store, tmp_path):
    from domainlm.train.data import load_records

    for fmt in ("sft", "dpo", "kto"):
        path = tmp_path / f"{fmt}.jsonl"
        n = export_feedback(store, fmt, path)["rows"]
        loaded = load_records([path], fmt)
        assert len(loaded.records) == n > 0 and not loaded.rejected, fmt


def test_exports_load_and_train_in_trl(store, tmp_path, tiny_dir):
    """Each format is a TRL dataset: the trainers accept it and take one optimisation step."""
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    common = dict(output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2, report_to=[],
                  save_strategy="no", logging_strategy="no", use_cpu=True, disable_tqdm=True)
    for fmt in ("sft", "dpo", "kto"):
        path = tmp_path / f"{fmt}.jsonl"
        export_feedback(store, fmt, path, conversational=True)
        ds = datasets.load_dataset("json", data_files=str(path), split="train")
        assert trl.data_utils.is_conversational(ds[0])
        model = AutoModelForCausalLM.from_pretrained(tiny_dir)
        if fmt == "sft":
            trainer = trl.SFTTrainer(model=model, args=trl.SFTConfig(**common), train_dataset=ds, processing_class=tok)
        elif fmt == "dpo":
            trainer = trl.DPOTrainer(model=model, args=trl.DPOConfig(**common), train_dataset=ds, processing_class=tok)
        else:
            trainer = trl.KTOTrainer(model=model, args=trl.KTOConfig(**common), train_dataset=ds, processing_class=tok)
        try:
            out = trainer.train()
        finally:
            # TRL's trainers leave a process-wide accelerate state behind; later in-process training
            # (the flywheel test, domainlm.train) must start from a clean one.
            from accelerate.state import AcceleratorState

            AcceleratorState._reset_state(reset_partial_state=True)
        assert out.global_step == 1, fmt


TOOLS = [{"type": "function", "function": {"name": "query_balance", "description": "查询余额",
                                            "parameters": {"type": "object", "properties": {"phone": {"type": "string"},
                                                                                            "card": {"type": "string"}}}}}]


def test_tool_call_correction_exports_with_its_tools(tmp_path):
    """A corrected tool call is trained with the schema it must follow; earlier calls and tool results stay in
    the conversation; PII inside call arguments is redacted; train's SFT loader reads the row."""
    from domainlm.train import load_records

    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")
    earlier = [{"role": "user", "content": "查一下我的余额"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "call_1", "type": "function",
                    "function": {"name": "query_balance", "arguments": json.dumps({"phone": PHONE})}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "{\"error\": \"需要卡号\"}"},
               {"role": "user", "content": "卡号尾号1234"}]
    served = json.dumps([{"name": "query_balance", "arguments": {"phone": PHONE}}], ensure_ascii=False)
    rid = store.add_response(model="tiny", request={"messages": earlier, "tools": TOOLS}, response=served, user="u")
    call = {"name": "query_balance", "arguments": {"phone": PHONE, "card": "1234"}}
    fixed = "<tool_call>\n" + json.dumps(call, ensure_ascii=False) + "\n</tool_call>"
    store.add_feedback(rid, correction=fixed, user="reviewer")

    sft = feedback_rows(store.iter_feedback(), "sft")
    assert len(sft) == 1 and sft[0]["tools"] == TOOLS
    roles = [m["role"] for m in sft[0]["messages"]]
    assert roles == ["user", "assistant", "tool", "user", "assistant"]
    last = sft[0]["messages"][-1]
    assert last["tool_calls"][0]["function"] == {"name": "query_balance", "arguments": {"phone": "[MOBILE]", "card": "1234"}}
    assert sft[0]["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"phone": "[MOBILE]"}
    assert PHONE not in json.dumps(sft, ensure_ascii=False)

    dpo = feedback_rows(store.iter_feedback(), "dpo", conversational=True)
    assert dpo[0]["tools"] == TOOLS and dpo[0]["rejected"][0]["tool_calls"][0]["function"]["arguments"] == {"phone": "[MOBILE]"}
    flat = feedback_rows(store.iter_feedback(), "dpo")
    assert flat[0]["tools"] == TOOLS and json.loads(flat[0]["chosen"])[0]["arguments"]["card"] == "1234"

    path = tmp_path / "sft.jsonl"
    export_feedback(store, "sft", path)
    loaded = load_records([path], "sft")
    assert loaded.records[0]["tools"] == TOOLS and loaded.records[0]["messages"][-1]["tool_calls"]


def test_plain_text_answers_with_tools_offered_stay_text(tmp_path):
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")
    rid = store.add_response(model="tiny", request={"messages": [{"role": "user", "content": "年费多少？"}], "tools": TOOLS},
                             response="金卡年费[200]元。", user="u")
    store.add_feedback(rid, correction="金卡年费200元。", user="u")
    sft = feedback_rows(store.iter_feedback(), "sft")
    assert sft[0]["messages"][-1] == {"role": "assistant", "content": "金卡年费200元。"} and sft[0]["tools"] == TOOLS
