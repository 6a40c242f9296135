"""Every TRL standard data format is read by `domainlm train`, one fixture file per format per stage
(tests/train/data/formats/<stage>/<format>.jsonl): the records load, and the loss lands on exactly the
tokens each format says it does. sft is tokenized here; dpo/kto rows go to TRL, which renders them with
the chat template itself, so for those the test renders them as TRL does. One real run per stage trains
on a non-default format."""

import json
from pathlib import Path

import pytest

from domainlm.models.testing import make_tiny_model
from domainlm.train import TrainConfig, train
from domainlm.train.data import load_records, tokenize_record

FORMATS = Path(__file__).parent / "data" / "formats"
WEATHER_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "%s"}}\n</tool_call><|im_end|>'


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    texts = [line for path in sorted(FORMATS.rglob("*.jsonl")) for line in path.read_text(encoding="utf-8").splitlines()]
    return make_tiny_model(tmp_path_factory.mktemp("formats") / "qwen", vocab_from=texts, vocab_size=600)


@pytest.fixture(scope="module")
def tok(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture()
def clean_accelerate():
    """TRL's trainers leave a process-wide accelerate state behind; later in-process training must start
    from a clean one (as in tests/serve/test_serve_export.py)."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def load(stage: str, name: str):
    loaded = load_records([FORMATS / stage / f"{name}.jsonl"], stage)
    assert loaded.rejected == [], loaded.rejected
    return loaded.records


def learned(tok, record) -> list[str]:
    """The decoded runs of tokens that carry the loss."""
    ids, labels = tokenize_record(tok, record)
    runs, current = [], []
    for token, label in zip(ids, labels, strict=True):
        if label != -100:
            current.append(token)
        elif current:
            runs, current = [*runs, current], []
    return [tok.decode(run) for run in [*runs, current] if run]


def test_sft_language_modeling_learns_every_token_of_each_row(tok):
    for record in load("sft", "text"):
        ids, labels = tokenize_record(tok, record)
        # the row alone, no chat template, ended by eos; every token learned but the first, which nothing in
        # its own row predicts (in a packed block the token before it belongs to another row)
        assert tok.decode(ids) == record["text"] + tok.eos_token
        assert labels[0] == -100 and labels[1:] == ids[1:]


def test_sft_prompt_completion_learns_only_the_completion(tok):
    records = load("sft", "prompt_completion")
    assert [learned(tok, r) for r in records] == [["一百摄氏度。<|endoftext|>"], ["长江。<|endoftext|>"],
                                                  [" Paris.<|endoftext|>"]]
    ids, _ = tokenize_record(tok, records[0])
    assert tok.decode(ids) == "问：水的沸点是多少？\n答：一百摄氏度。" + tok.eos_token  # plain text, no template


def test_sft_conversational_formats_learn_assistant_turns_through_the_chat_template(tok):
    chats = load("sft", "messages")
    assert [learned(tok, r) for r in chats] == [
        ["约六千三百公里。<|im_end|>"], [WEATHER_CALL % "北京", "北京明天晴。<|im_end|>"], ["About 5,460 km.<|im_end|>"]]
    pairs = load("sft", "prompt_completion_conversational")
    # the prompt's own assistant turn is context; the tool result inside the completion is not the model's
    assert [learned(tok, r) for r in pairs] == [
        ["约五千四百六十公里。<|im_end|>"], [WEATHER_CALL % "上海", "上海今天有小雨。<|im_end|>"],
        ["100 °C at sea level.<|im_end|>"]]
    ids, _ = tokenize_record(tok, pairs[1])
    rendered = tok.decode(ids)
    assert "# Tools" in rendered and '"name": "get_weather"' in rendered  # the row's tools reach the template


def trl_texts(rows, stage, tok) -> list[dict]:
    """The rows as TRL's trainers read them (from the Dataset prefs.py builds), rendered as TRL renders
    conversational rows: (prompt with the generation prompt, each answer)."""
    from trl.data_utils import apply_chat_template, is_conversational

    from domainlm.train.prefs import preference_dataset

    out = []
    for row in preference_dataset(rows, stage):
        assert is_conversational(row)
        tools = row.pop("tools")
        out.append(apply_chat_template(row, tok, tools=tools))
    return out


def test_dpo_standard_conversational_and_implicit_prompt_rows_reach_trl(tok):
    from domainlm.train.data import Loaded
    from domainlm.train.prefs import preference_rows

    rows = {name: preference_rows(Loaded(records=load("dpo", name)), "dpo")
            for name in ("standard", "conversational", "implicit_prompt")}
    # a string pair is one user turn and one assistant turn; an implicit prompt is the turns both share
    assert rows["standard"][0] == rows["implicit_prompt"][0] == {
        "prompt": [{"role": "user", "content": "长江有多长？"}], "chosen": [{"role": "assistant", "content": "约六千三百公里。"}],
        "rejected": [{"role": "assistant", "content": "不知道。"}], "tools": None}
    assert [m["role"] for m in rows["implicit_prompt"][1]["prompt"]] == ["system", "user"]
    assert rows["implicit_prompt"][1]["chosen"] == [{"role": "assistant", "content": "五。"}]

    texts = trl_texts(rows["conversational"], "dpo", tok)
    assert texts[0]["prompt"] == "<|im_start|>system\n你是地理老师。<|im_end|>\n<|im_start|>user\n长江有多长？<|im_end|>\n<|im_start|>assistant\n"
    assert (texts[0]["chosen"], texts[0]["rejected"]) == ("约六千三百公里。<|im_end|>\n", "不知道。<|im_end|>\n")
    # the tool call keeps exactly its own arguments (no other row's keys), and the tools reach the template
    assert texts[1]["chosen"] == WEATHER_CALL % "广州" + "\n"
    assert texts[1]["rejected"] == WEATHER_CALL.replace("city", "town") % "广州" + "\n"
    assert "# Tools" in texts[1]["prompt"] and "# Tools" not in texts[0]["prompt"]


def test_kto_standard_conversational_and_feedback_rows_reach_trl(tok):
    from domainlm.train.data import Loaded
    from domainlm.train.prefs import preference_rows

    rows = {name: preference_rows(Loaded(records=load("kto", name)), "kto")
            for name in ("standard", "conversational", "feedback")}
    assert [r["label"] for r in rows["standard"]] == [True, False, True, False]
    assert [r["label"] for r in rows["feedback"]] == [True, False, True]
    assert rows["standard"][0] == rows["feedback"][0]  # the same question and answer, whichever shape it came in
    texts = trl_texts(rows["conversational"], "kto", tok)
    assert [t["label"] for t in texts] == [True, False, True, False, False]
    assert texts[0]["prompt"].startswith("<|im_start|>system\n你是地理老师。")
    assert texts[1]["completion"] == "不知道。<|im_end|>\n"
    # two calls with different argument names in one column: each keeps exactly its own
    assert texts[2]["completion"] == WEATHER_CALL % "广州" + "\n" and "# Tools" in texts[2]["prompt"]
    assert texts[3]["completion"] == WEATHER_CALL.replace("city", "town") % "广州" + "\n"


BAD = {
    "sft": [
        ({"prompt": [{"role": "user", "content": "q"}], "completion": "a"},
         "completion: expected a list of messages, as the prompt is one"),
        ({"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
          "completion": [{"role": "assistant", "content": "b"}]},
         "prompt[1].role: a prompt ends with a user or tool turn, got 'assistant'"),
        ({"prompt": "q"}, "completion: missing"),
        ({"text": " "}, "text: empty"),
    ],
    "dpo": [
        ({"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
          "rejected": [{"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]},
         "prompt: missing, and chosen and rejected share no leading turn to take it from"),
        ({"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "user", "content": "x"}],
          "rejected": [{"role": "assistant", "content": "y"}]},
         "chosen[0].role: the answer starts with an assistant turn, got 'user'"),
        ({"prompt": "q", "chosen": "x", "rejected": [{"role": "assistant", "content": "y"}]},
         "rejected: expected a string, as the prompt is one"),
    ],
    "kto": [
        ({"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "a"}], "label": "yes"},
         "label: expected true or false, got 'yes'"),
        ({"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": 3}], "label": True},
         "completion[0].content: expected a string"),
        ({"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "a"}],
          "label": True, "tools": {"name": "f"}}, "tools: expected a list"),
    ],
}


@pytest.mark.parametrize("stage", sorted(BAD))
def test_bad_rows_name_file_line_and_field(tmp_path, stage):
    good = (FORMATS / stage / ("text.jsonl" if stage == "sft" else "standard.jsonl")).read_text(encoding="utf-8")
    path = tmp_path / "mixed.jsonl"
    path.write_text(good.splitlines()[0] + "\n" + "".join(json.dumps(row, ensure_ascii=False) + "\n" for row, _ in BAD[stage]),
                    encoding="utf-8")
    loaded = load_records([path], stage)
    assert len(loaded.records) == 1
    assert loaded.rejected == [{"where": f"{path}:{i + 2}", "reason": why} for i, (_, why) in enumerate(BAD[stage])]


def test_a_file_of_bad_rows_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from domainlm.cli import main

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": [{"role": "user", "content": "q"}], "completion": "a", "label": True}) + "\n",
                    encoding="utf-8")
    code = main(["train", "--base", "tiny", "--data", str(path), "--out", str(tmp_path / "out"), "--stage", "kto"])
    err = capsys.readouterr().err
    assert code != 0
    assert f"{path}:1: completion: expected a list of messages, as the prompt is one (no usable kto record" in err
    assert not (tmp_path / "out").exists()


def test_sft_trains_on_conversational_prompt_completion_rows(tmp_path, model_dir):
    cfg = TrainConfig(stage="sft", batch_size=2, max_steps=2, seq_len=256, eval_fraction=0, lr=1e-3)
    metrics = train(str(model_dir), [FORMATS / "sft" / "prompt_completion_conversational.jsonl"], tmp_path / "sft", cfg).metrics
    assert metrics["steps"] == 2 and metrics["records"] == 3 and metrics["rejected"] == 0
    assert metrics["train_loss"] > 0 and (tmp_path / "sft" / "model.safetensors").is_file()


def test_dpo_trains_on_conversational_rows_with_tools(tmp_path, model_dir, clean_accelerate):
    cfg = TrainConfig(stage="dpo", batch_size=2, max_steps=2, seq_len=256, lr=1e-3)
    metrics = train(str(model_dir), [FORMATS / "dpo" / "conversational.jsonl"], tmp_path / "dpo", cfg).metrics
    assert metrics["steps"] == 2 and metrics["records"] == 3 and metrics["rejected"] == 0
    assert "rewards_margins" in metrics


def test_kto_trains_on_the_conversational_feedback_export(tmp_path, model_dir, monkeypatch, clean_accelerate):
    """`domainlm feedback export --format kto --conversational` writes rows `domainlm train` reads: the
    whole conversation (system prompt, earlier tool call and result) and the request's tools."""
    from domainlm.cli import main
    from domainlm.serve.export import export_feedback
    from domainlm.serve.store import FeedbackStore

    tools = json.loads((FORMATS / "sft" / "messages.jsonl").read_text(encoding="utf-8").splitlines()[1])["tools"]
    store = FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")
    system = {"role": "system", "content": "你是地理老师。"}
    for question, good, bad in [("长江有多长？", "约六千三百公里。", "不知道。"), ("黄河有多长？", "约五千四百六十公里。", "一百米。")]:
        request = {"messages": [system, {"role": "user", "content": question}]}
        store.add_feedback(store.add_response(model="m", request=request, response=good, user="a"), rating="up", user="a")
        store.add_feedback(store.add_response(model="m", request=request, response=bad, user="a"), rating="down", user="a")
    earlier = [{"role": "user", "content": "广州天气如何？"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"广州\"}"}}]},
               {"role": "tool", "tool_call_id": "c1", "content": "{\"天气\": \"晴\"}"}]
    rid = store.add_response(model="m", request={"messages": earlier, "tools": tools}, response="广州今天晴。", user="b")
    store.add_feedback(rid, rating="up", user="b")
    data = tmp_path / "kto.jsonl"
    assert export_feedback(store, "kto", data, conversational=True)["rows"] == 5

    loaded = load_records([data], "kto")
    assert loaded.rejected == [] and [r["label"] for r in loaded.records] == [True, False, True, False, True]
    assert loaded.records[4]["tools"] == tools and [m["role"] for m in loaded.records[4]["prompt"]] == ["user", "assistant", "tool"]

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "kto"
    code = main(["train", "--base", str(model_dir), "--data", str(data), "--out", str(out), "--stage", "kto",
                 "--method", "lora", "--max-steps", "2", "--batch-size", "2", "--seq-len", "256", "--lr", "1e-3"])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["metrics"]["steps"] == 2 and manifest["metrics"]["records"] == 5
    assert (out / "adapter" / "adapter_config.json").is_file()
