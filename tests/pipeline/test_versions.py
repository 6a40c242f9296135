"""The version ledger: every model the line or the flywheel made, with parameters counted from its weights, its
compute per token, its scores and its knowledge density; `domainlm versions` and the line report's plot.

Real calls throughout: tiny random models written to disk, items in Chinese scored by the eval's own scorers
(stored predictions where a test needs a known score, a live model where it needs measured FLOPs), torchao
int8 quantization, a flywheel registry made by ``init_registry``."""

import json

import pytest
from PIL import Image

from domainlm.cli import main
from domainlm.errors import DomainlmError
from domainlm.evals import EvalConfig, Variant, evaluate, score
from domainlm.io import read_json, write_json, write_jsonl
from domainlm.models.testing import make_tiny_model
from domainlm.pipeline.report import write_line_report
from domainlm.pipeline.versions import (
    LEDGER,
    append_versions,
    count_weights,
    latest,
    read_ledger,
    record_line_versions,
    registry_versions,
    version_record,
)
from domainlm.serve.flywheel import init_registry
from domainlm.workspace import load_workspace

# A bank exam's multiple-choice questions (the benchmark's "金融知识" dimension) and reading questions over
# general prose (the general-ability panel): answers a scorer can check exactly.
BANK = [
    {"question": "1999年，首先获准开办国家助学贷款业务的银行是（）。",
     "choices": ["中国农业银行", "中国工商银行", "中国银行", "中国建设银行"], "answer": "B"},
    {"question": "商业银行的核心资本不包括（）。", "choices": ["实收资本", "资本公积", "盈余公积", "次级债务"], "answer": "D"},
    {"question": "我国的中央银行是（）。", "choices": ["中国人民银行", "国家开发银行", "中国银行", "中信银行"], "answer": "A"},
    {"question": "存款保险的最高偿付限额是人民币（）万元。", "choices": ["20", "50", "100", "30"], "answer": "B"},
]
GENERAL = [
    {"question": "《红楼梦》的作者通常认为是谁？", "answer": "曹雪芹"},
    {"question": "长江最终注入哪一片海域？", "answer": "东海"},
    {"question": "水在标准大气压下的沸点是多少摄氏度？", "answer": "100摄氏度"},
    {"question": "中国古代四大发明中用于指示方向的是什么？", "answer": "指南针"},
]


def _suites(root):
    bank, general = root / "suites" / "bank", root / "suites" / "general"
    write_jsonl(bank / "exam.jsonl", [{"id": f"exam-{i}", "task": "bank_exam", "category": "金融知识",
                                       "subcategory": "银行从业资格", "type": "mcq", **item} for i, item in enumerate(BANK)])
    write_jsonl(general / "reading.jsonl", [{"id": f"gen-{i}", "task": "general_qa", "category": "通用能力",
                                             "subcategory": "常识", "type": "qa", **item} for i, item in enumerate(GENERAL)])
    (bank / "suite.yaml").write_text("name: bank\nmax_new_tokens: 4\n", encoding="utf-8")
    (general / "suite.yaml").write_text("name: general\nmax_new_tokens: 4\n", encoding="utf-8")
    return bank, general


def _stored(root, name, right, empty=()):
    """Scores from stored predictions: items in ``right`` answered with the gold answer, those in ``empty``
    left empty, the rest answered wrongly."""
    bank, general = _suites(root)
    rows = []
    for i, item in enumerate(BANK):
        wrong = next(c for c in "ABCD" if c != item["answer"])
        out = "" if f"exam-{i}" in empty else (item["answer"] if f"exam-{i}" in right else wrong)
        rows.append({"id": f"exam-{i}", "output": out})
    for i, item in enumerate(GENERAL):
        out = "" if f"gen-{i}" in empty else (item["answer"] if f"gen-{i}" in right else "我不知道这个问题")
        rows.append({"id": f"gen-{i}", "output": out})
    path = root / f"{name}.predictions.jsonl"
    write_jsonl(path, rows)
    return score(None, [bank, general], predictions=path, general={"general"}).results


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("versions-models")
    small = make_tiny_model(root / "small", hidden_size=32, num_layers=2)
    large = make_tiny_model(root / "large", hidden_size=64, num_layers=3, num_heads=4, intermediate_size=128)
    return root, small, large


def test_parameters_are_counted_from_the_weights(models):
    import torch
    from transformers import AutoModelForCausalLM

    _, small, large = models
    for folder in (small, large):
        weights = count_weights(folder)
        loaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        # tied embeddings: the LM head is the embedding matrix, counted once (as model.parameters() does)
        assert weights["params"] == sum(p.numel() for p in loaded.parameters())
        assert weights["tie_embeddings"] is True and weights["bytes"] == (folder / "model.safetensors").stat().st_size
        assert weights["bits_per_param"] == pytest.approx(32, abs=1)  # float32, plus the header
        record = version_record("v0001", source="line", model=folder)
        assert record["compute"]["flops_per_token"] == 2 * weights["params"]
    with pytest.raises(DomainlmError, match="no local weights to count"):
        count_weights(models[0] / "nothing-here")


def test_a_quantized_version_keeps_its_parameters_and_shows_its_bits(models, tmp_path):
    from domainlm.compress.quantize import quantize

    _, small, _ = models
    int8 = quantize(small, tmp_path / "int8", bits=8, device="cpu")
    source, quantized = count_weights(small), count_weights(int8)
    assert quantized["params"] == source["params"]  # quantization changes the storage, not the parameters
    assert quantized["quant_bits"] == 8 and quantized["quantization"] == "torchao:Int8WeightOnlyConfig"
    assert quantized["bytes"] < source["bytes"] and quantized["bits_per_param"] < source["bits_per_param"]


def test_density_orders_versions_and_the_plot_is_a_png(models, tmp_path):
    root, small, large = models
    everything = {f"exam-{i}" for i in range(4)} | {f"gen-{i}" for i in range(4)}
    small_results = _stored(tmp_path, "small", right=everything)
    large_results = _stored(tmp_path, "large", right={"exam-0", "exam-1", "gen-0", "gen-1"})
    assert small_results["overall"]["score"] == 1.0 and large_results["overall"]["score"] == 0.5
    ledger = tmp_path / LEDGER
    eval_results = {"variants": {"base": {**large_results, "model": str(large)},
                                 "tuned": {**small_results, "model": str(small)},
                                 "tuned+kb": {**small_results, "model": str(small), "kb": str(tmp_path / "kb")}}}
    added = record_line_versions(ledger, eval_results)
    assert [(r["version"], r["name"]) for r in added] == [("v0001", "base"), ("v0002", "tuned")]  # +kb is no model
    base, tuned = latest(read_ledger(ledger))
    assert tuned["scores"]["with_kb"] == 1.0
    assert set(tuned["scores"]["categories"]) == {"金融知识", "通用能力"}
    assert tuned["scores"]["general_retention"] == pytest.approx(1.0 / 0.5)  # against the base's general panel
    # fewer parameters and a higher score: denser, per parameter and per FLOP of a token
    assert tuned["weights"]["params"] < base["weights"]["params"]
    assert tuned["density"]["score_per_bparam"] > base["density"]["score_per_bparam"]
    assert tuned["density"]["score_per_gflop_token"] > base["density"]["score_per_gflop_token"]
    assert tuned["density"]["score_per_bparam"] == pytest.approx(1.0 / (tuned["weights"]["params"] / 1e9))
    assert any("items (< 30)" in note for note in tuned["trust"])  # 8 items: flagged
    # the same weights and scores again: nothing new
    assert record_line_versions(ledger, eval_results) == []
    # the same weights scored again (a worse run): the same version, superseded; new weights: a new version
    rescored = {"variants": {"tuned": {**large_results, "model": str(small)}}}
    assert [r["version"] for r in record_line_versions(ledger, rescored)] == ["v0002"]
    assert [r["scores"]["overall"] for r in latest(read_ledger(ledger))] == [0.5, 0.5]
    weights = small / "model.safetensors"
    weights.write_bytes(weights.read_bytes())  # retrained into the same folder
    assert [r["version"] for r in record_line_versions(ledger, eval_results)] == ["v0003"]
    assert len(read_ledger(ledger)) == 4
    from domainlm.pipeline.versions import plot_versions

    png = plot_versions(latest(read_ledger(ledger)), tmp_path / "versions.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        image.verify()


def test_mostly_empty_outputs_are_flagged(tmp_path, models):
    _, small, _ = models
    results = _stored(tmp_path, "silent", right={"exam-0"}, empty={f"gen-{i}" for i in range(4)} | {"exam-1"})
    record = version_record("v0001", source="line", model=small, results=results)
    assert "5 of 8 outputs empty or degenerate" in record["trust"]
    unscored = version_record("v0002", source="line", model=small)
    assert unscored["trust"] == ["not scored"] and unscored["density"]["score_per_bparam"] is None


def test_the_line_report_records_versions_and_plots_density(models, tmp_path, capsys):
    _, small, large = models
    bank, general = _suites(tmp_path)
    config = tmp_path / "domainlm.yaml"
    config.write_text(f"name: t\nsources: [docs]\ntasks:\n  train: []\n  eval: [{bank}, {general}]\n"
                      f"synth: {{enabled: false}}\ntrain:\n  base: {large}\n  stages: []\ncompress: {{targets: []}}\n",
                      encoding="utf-8")
    ws = load_workspace(config)
    # the eval stage, live: two models answer the items (4 new tokens each), their FLOPs measured
    evaluate(EvalConfig(suites=[str(bank), str(general)], general=[str(general)], limit=2,
                        variants=[Variant(name="base", model=str(large)), Variant(name="tuned", model=str(small))]),
             ws.layout.eval)
    result = write_line_report(ws)
    records = read_ledger(ws.layout.artifacts / LEDGER)
    assert [r["name"] for r in records] == ["base", "tuned"] and {r["source"] for r in records} == {"line"}
    assert all(r["density"]["score_per_tflop"] is not None or r["scores"]["overall"] == 0 for r in records)
    assert all(r["scores"]["n"] == 4 for r in records)  # 2 items per task, 2 tasks
    html = result.outputs["report"].read_text(encoding="utf-8")
    assert "Versions: knowledge density across models" in html and "data:image/png;base64," in html
    summary = read_json(result.outputs["summary"])
    assert [row["version"] for row in summary["versions"]] == ["v0001", "v0002"]
    # the command reads the same ledger, adds nothing (already recorded), prints one row per version
    assert main(["versions", "-c", str(config), "--plot", str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["version", "name", "source"] and len(out) == 3
    assert out[1].split()[:3] == ["v0001", "base", "line"]
    assert len(read_ledger(ws.layout.artifacts / LEDGER)) == 2
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_registry_versions_new_and_old(models, tmp_path, capsys):
    _, small, _ = models
    registry = tmp_path / "registry"
    init_registry(registry, str(small))
    (first,) = read_ledger(registry / LEDGER)
    assert first["version"] == "v0001" and first["scores"] is None and first["trust"] == ["not scored"]
    assert first["weights"]["params"] == count_weights(small)["params"]
    # a gate scored v0001 later: the new line supersedes the first for that version
    scored = _stored(tmp_path, "v1", right={"exam-0", "gen-0"})
    append_versions(registry / LEDGER, [version_record("v0001", source="flywheel", model=registry / "versions" / "v0001",
                                                       results=scored, run="run-0001", name="init")])
    (current,) = registry_versions(registry)
    assert current["scores"]["overall"] == 0.25 and current["run"] == "run-0001"

    # a registry from before the ledger: registry.json's history alone
    old = tmp_path / "old-registry"
    for version in ("v0001", "v0002"):
        (old / "versions" / version).mkdir(parents=True)
        for name in ("model.safetensors", "config.json"):
            (old / "versions" / version / name).write_bytes((small / name).read_bytes())
    write_json(old / "registry.json", {"current": "v0002", "history": [
        {"version": "v0001", "time": 1.0, "run": None, "source": "tiny"},
        {"version": "v0002", "time": 2.0, "run": "run-0001", "score": 0.4, "previous": "v0001"}]})
    v1, v2 = registry_versions(old)
    assert (v1["version"], v1["scores"], v1["trust"]) == ("v0001", None, ["not scored"])
    assert v2["scores"]["overall"] == 0.4 and v2["weights"]["params"] == count_weights(small)["params"]
    assert v2["density"]["score_per_bparam"] == pytest.approx(0.4 / (v2["weights"]["params"] / 1e9))
    assert "item counts unknown" in v2["trust"][0]
    assert main(["versions", "--registry", str(old)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in table] == ["version", "v0001", "v0002"]
    assert table[2].startswith("v0002 *") and not table[1].startswith("v0001 *")  # v0002 serves


def test_a_bad_ledger_line_is_one_error_naming_file_and_line(models, tmp_path, capsys):
    _, small, _ = models
    registry = tmp_path / "registry"
    init_registry(registry, str(small))
    ledger = registry / LEDGER
    good = ledger.read_text(encoding="utf-8")
    ledger.write_text(good + json.dumps({"source": "flywheel", "time": 1.0}) + "\n", encoding="utf-8")
    with pytest.raises(DomainlmError, match=r"versions\.jsonl:2: not a version record: 'version' field required"):
        read_ledger(ledger)
    ledger.write_text(good + "{not json\n", encoding="utf-8")
    assert main(["versions", "--registry", str(registry)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{ledger}:2: not valid JSON" in err[0]
    with pytest.raises(DomainlmError, match="source 'elsewhere'"):
        version_record("v0009", source="elsewhere", model=small)
