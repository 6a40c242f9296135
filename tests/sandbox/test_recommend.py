"""The sandbox's recommendation: the fitted optimum, intervals that cover a known truth, untrusted flags when
extrapolating or short of points, and `train.lr: auto` turned into that number."""

import json

import numpy as np
import pytest

from domainlm.cli import main
from domainlm.errors import DomainlmError
from domainlm.sandbox.fit import fit_runs, loss_nd, power_law
from domainlm.sandbox.recommend import (
    FILE,
    compute_optimal_split,
    heldout_tokens_bytes,
    load_recommendation,
    loss_per_byte,
    predicted_vs_actual,
    recommend,
    recommendation_path,
    resolve_lr,
)
from domainlm.train.config import TrainConfig

pytest.importorskip("scipy")

# Chinchilla's published law as ground truth, and an optimal lr that falls with compute.
TRUE = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}
LR_A, LR_B = 2.0, -0.12


def sweep(sizes=np.geomspace(1e5, 1e7, 4), token_counts=np.geomspace(1e6, 1e8, 4), noise=0.003, seed=1) -> list[dict]:
    """Run records whose loss is the true law times a parabola in log(lr / lr*), times noise."""
    rng = np.random.default_rng(seed)
    records = []
    for n in sizes:
        for d in token_counts:
            c = 6 * n * d
            lr_star = LR_A * c**LR_B
            for k in (-2, -1, 0, 1, 2):  # lrs around the optimum, factor 2 apart, off-centre by 0.3
                lr = float(lr_star * 2.0 ** (k + 0.3))
                loss = loss_nd(TRUE, n, d) * (1 + 0.03 * np.log(lr / lr_star) ** 2) * (1 + noise * rng.standard_normal())
                records.append({"id": f"{n:.0f}-{d:.0f}-k{k}", "status": "ok", "val_loss": float(loss), "params": float(n),
                                "tokens": float(d), "flops": float(c),
                                "config": {"lr": lr, "batch_size": 32, "seq_len": 64, "base_width": 32, "mix": {"a": 1.0},
                                           "width": 1, "depth": 1}})
    return records


@pytest.fixture(scope="module")
def fitted() -> dict:
    return fit_runs(sweep(), n_boot=40, confidence=0.95, seed=0)


def test_lr_is_the_fitted_optimum_and_covers_truth(fitted):
    n, d = 3e6, 3e7  # inside the swept range
    rec = recommend(fitted, params=n, tokens=d, seq_len=64)
    c = 6 * n * d
    assert rec.lr.value == pytest.approx(power_law(fitted["fits"]["lr"]["params"], c))
    assert rec.lr.low <= LR_A * c**LR_B <= rec.lr.high
    assert rec.loss_law == "loss_nd"
    assert rec.loss.low <= loss_nd(TRUE, n, d) <= rec.loss.high
    assert rec.trusted, rec.reasons
    # batch size: the swept one; steps from the target tokens at 32 x 64-byte sequences
    assert rec.batch_bytes == 32 * 64 and rec.steps == int(d // (32 * 64))
    assert rec.swept.params == (pytest.approx(1e5), pytest.approx(1e7))


def test_lr_moved_to_the_real_width_by_the_mup_rule(fitted):
    rec = recommend(fitted, params=3e6, tokens=3e7, base_width=32, width=256)
    assert rec.lr_mup.value == pytest.approx(power_law(fitted["fits"]["lr"]["params"], 6 * 3e6 * 3e7))
    assert rec.lr.value == pytest.approx(rec.lr_mup.value / 8)
    assert rec.lr.low == pytest.approx(rec.lr_mup.low / 8) and rec.width == 256
    with pytest.raises(DomainlmError, match="--width needs the sweep's muP base_width"):
        recommend(fitted, width=256)


def test_extrapolation_is_flagged_untrusted(fitted):
    rec = recommend(fitted, params=1e9, tokens=3e7)  # 100x the largest swept size
    assert not rec.trusted
    assert any("params" in r and "extrapolating" in r for r in rec.reasons), rec.reasons


def test_compute_budget_split_matches_true_optimum(fitted):
    c = 6 * 3e6 * 3e7
    n, d = compute_optimal_split(fitted, c)
    grid = np.geomspace(1e4, 1e9, 5001)
    true_n = grid[np.argmin(loss_nd(TRUE, grid, c / (6 * grid)))]
    assert n * d * 6 == pytest.approx(c)
    assert abs(np.log(n / true_n)) < np.log(2), (n, true_n)  # within 2x: the optimum is flat in N
    rec = recommend(fitted, compute=c)
    assert rec.target.source == "compute" and rec.target.params == pytest.approx(n)


def test_point_outside_its_own_interval_untrusted(fitted):
    shifted = json.loads(json.dumps(fitted))
    for boot in shifted["fits"]["loss_nd"]["bootstrap"]:
        boot["E"] += 1.0  # every resample predicts a loss 1 nat higher than the point fit
    rec = recommend(shifted, params=3e6, tokens=3e7)
    assert not rec.trusted
    assert any("predicted loss" in r and "outside its own bootstrap interval" in r for r in rec.reasons), rec.reasons


def test_too_few_points_untrusted():
    # one token count, two sizes: no loss law at all and an lr law through two points
    records = sweep(sizes=[1e5, 1e6], token_counts=[1e7])
    rec = recommend(fit_runs(records, n_boot=10, seed=0))
    assert rec.target.source == "largest swept run"
    assert rec.loss is None and not rec.trusted
    assert any("no loss law" in r for r in rec.reasons)
    assert any("2 (compute, optimal lr) points" in r for r in rec.reasons)


def test_lr_optimum_on_edge_of_sweep_untrusted():
    records = [r for r in sweep() if r["id"].endswith(("k1", "k2"))]  # only lrs above the optimum: each
    # group's best is its lowest lr, a bound on the optimum rather than the optimum
    rec = recommend(fit_runs(records, n_boot=10, seed=0), params=3e6, tokens=3e7)
    assert any("edge of the swept lrs" in r for r in rec.reasons), rec.reasons


def test_resolve_lr_turns_auto_into_the_number(fitted, tmp_path):
    rec = recommend(fitted, params=3e6, tokens=3e7)
    (tmp_path / FILE).write_text(json.dumps(rec.model_dump(mode="json")), encoding="utf-8")
    cfg = TrainConfig(batch_size=4, lr="auto")
    resolved, used = resolve_lr(cfg, tmp_path)  # a fit folder
    assert resolved.lr == rec.lr.value and used.lr == rec.lr
    assert resolved.batch_size == 4  # the batch size is left as set (see resolve_lr)
    same, none = resolve_lr(TrainConfig(lr=1e-3), tmp_path / FILE)
    assert same.lr == 1e-3 and none is None
    assert recommendation_path(None, tmp_path) == tmp_path / "sandbox" / "fit" / FILE


def test_auto_without_recommendation_is_one_clear_error(tmp_path):
    cfg = TrainConfig(lr="auto")
    with pytest.raises(DomainlmError, match="train.lr is 'auto' but no sandbox recommendation"):
        resolve_lr(cfg, None)
    with pytest.raises(DomainlmError, match="no sandbox recommendation; run `domainlm sandbox sweep`"):
        resolve_lr(cfg, tmp_path)
    (tmp_path / FILE).write_text('{"lr": 1}', encoding="utf-8")
    with pytest.raises(DomainlmError, match="not a sandbox recommendation"):
        load_recommendation(tmp_path / FILE)


def test_predicted_vs_actual_only_compares_like_with_like(fitted):
    rec = recommend(fitted, params=3e6, tokens=3e7)
    cpt = predicted_vs_actual(rec, "cpt", eval_loss=3.0, eval_tokens=1000, eval_bytes=1500)
    assert cpt["sandbox_comparable"] and cpt["actual_eval_loss_per_byte"] == pytest.approx(2.0)
    assert cpt["eval_bytes_per_token"] == 1.5
    assert cpt["sandbox_within_interval"] == (rec.loss.low <= 2.0 <= rec.loss.high)
    sft = predicted_vs_actual(rec, "sft", eval_loss=3.0, eval_tokens=1000, eval_bytes=1500)
    assert not sft["sandbox_comparable"] and "actual_eval_loss_per_byte" not in sft
    assert not predicted_vs_actual(rec, "cpt", eval_loss=3.0)["sandbox_comparable"]
    assert loss_per_byte(2.0, 10, 40) == pytest.approx(0.5)


def test_fit_command_writes_recommendation(tmp_path, capsys):
    runs = tmp_path / "sweep" / "runs"
    runs.mkdir(parents=True)
    for record in sweep(sizes=[1e5, 1e6, 1e7], token_counts=[1e6, 1e7]):
        (runs / f"{record['id']}.json").write_text(json.dumps(record), encoding="utf-8")
    out = tmp_path / "fit"
    assert main(["sandbox", "fit", str(tmp_path / "sweep"), "--out", str(out), "--boot", "10",
                 "--params", "1e9", "--tokens", "1e8", "--width", "64"]) == 0
    rec = load_recommendation(out)
    assert rec.target.params == 1e9 and not rec.trusted
    assert rec.swept.base_width == 32 and rec.swept.seq_len == 64 and rec.lr.value == pytest.approx(rec.lr_mup.value / 2)
    assert "trusted: NO" in capsys.readouterr().out
    assert main(["sandbox", "fit", str(tmp_path / "sweep"), "--out", str(out), "--tokens", "1e8"]) == 2
    assert "give --params with --tokens" in capsys.readouterr().err


def test_heldout_tokens_bytes_counts_what_the_loss_averages_over():
    from domainlm.train.data import Example

    class Chars:  # one token per character; id 0 is a special token that decodes to nothing
        def decode(self, ids, skip_special_tokens=False):
            return "".join("" if i == 0 else chr(i) for i in ids)

    held = [Example([ord("a"), ord("海"), 0, ord("b")], [ord("a"), ord("海"), 0, ord("b")], [0, 1, 2, 3]),
            Example([ord("x"), ord("y")], [-100, -100], [0, 1])]  # no labels: not in the loss
    # predicted: 海 (3 bytes), separator (0 bytes), b (1 byte); the first token is never predicted
    assert heldout_tokens_bytes(held, Chars()) == (3, 4)


def test_real_small_sweep_gives_an_untrusted_recommendation(tmp_path, sample_dir, capsys):
    """Four real proxy runs (2 lrs x 2 widths, one token count): a recommendation is written, and it says
    it cannot be trusted (no loss law, an lr law through two points, optima on the edge of the lr sweep)."""
    pytest.importorskip("torch")
    sweep_yaml = tmp_path / "sweep.yaml"
    sweep_yaml.write_text(
        f"name: small\ndata:\n  sources:\n    industry: {{path: {sample_dir}}}\n  max_chars: 20000\n"
        "base: {width: 16, base_width: 16, depth: 1, tokens: 2000, seq_len: 16, batch_size: 4, eval_windows: 2}\n"
        "search:\n  space:\n    lr: [0.01, 0.03]\n    width: [16, 32]\nworkers: 1\nthreads: 1\n", encoding="utf-8")
    assert main(["sandbox", "sweep", "--config", str(sweep_yaml), "--out", str(tmp_path / "runs")]) == 0
    assert main(["sandbox", "fit", str(tmp_path / "runs"), "--out", str(tmp_path / "fit"), "--boot", "10"]) == 0
    rec = load_recommendation(tmp_path / "fit")
    fit = json.loads((tmp_path / "fit" / "fit.json").read_text(encoding="utf-8"))
    assert rec.target.source == "largest swept run"
    assert rec.lr.value == pytest.approx(power_law(fit["fits"]["lr"]["params"], rec.target.compute))
    assert 0.01 * (1 - 1e-9) <= rec.lr.value <= 0.03 * (1 + 1e-9)  # within the swept lrs
    assert rec.swept.base_width == 16 and rec.batch_bytes == 4 * 16
    assert not rec.trusted and any("no loss law" in r for r in rec.reasons)
    # two lrs per size: each size's best is one of them, an edge of its sweep
    assert any("2 of 2 per-size optimal lrs lie on the edge" in r for r in rec.reasons), rec.reasons


def test_train_with_lr_auto_trains_with_the_recommended_lr_and_reports_predicted_vs_actual(fitted, tmp_path,
                                                                                        sample_dir):
    from domainlm.models.testing import make_tiny_model
    from domainlm.train import train

    texts = [json.loads(line)["text"] for line in (sample_dir / "truth" / "documents.jsonl").open(encoding="utf-8")]
    model = make_tiny_model(tmp_path / "model", arch="qwen2", vocab_from=texts, vocab_size=1500, hidden_size=64,
                            num_heads=4, num_kv_heads=2, intermediate_size=192)
    rec = recommend(fitted, params=3e6, tokens=3e7, base_width=32, width=64)
    (tmp_path / "fit").mkdir()
    (tmp_path / "fit" / FILE).write_text(json.dumps(rec.model_dump(mode="json")), encoding="utf-8")
    cfg = TrainConfig(stage="cpt", seq_len=64, batch_size=4, max_steps=3, lr="auto", sandbox=str(tmp_path / "fit"),
                      eval_fraction=0.15, seed=1)
    result = train(str(model), [sample_dir / "truth" / "documents.jsonl"], tmp_path / "cpt", cfg)
    manifest = json.loads((tmp_path / "cpt" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["config"]["lr"] == pytest.approx(rec.lr.value)  # the number trained with, not "auto"
    assert result.metrics["sandbox_predicted_loss"] == pytest.approx(rec.loss.value)
    assert result.metrics["actual_eval_loss_per_byte"] > 0
    assert "sandbox" in (tmp_path / "cpt" / "report.md").read_text(encoding="utf-8")
