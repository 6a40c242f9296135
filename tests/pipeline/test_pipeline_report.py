"""The line report's sandbox section: predicted vs actual loss for stages trained with ``train.lr: auto``."""

from __future__ import annotations

from domainlm.pipeline.report import _sandbox_section


def _summary(**stages) -> dict:
    return {"stages": {name: {"wall_time_s": 1.0, "metrics": metrics} for name, metrics in stages.items()}}


def test_a_stage_trained_from_the_sandbox_shows_prediction_interval_and_actual():
    html = _sandbox_section(_summary(
        **{"train-cpt": {"steps": 38, "sandbox_lr": 0.0016, "sandbox_trusted": False, "sandbox_predicted_loss": 0.6876,
                         "sandbox_predicted_low": 0.6044, "sandbox_predicted_high": 1.016,
                         "actual_eval_loss_per_byte": 1.9543, "sandbox_within_interval": False},
           "train-sft": {"steps": 40, "sandbox_lr": 0.0016, "sandbox_trusted": False, "sandbox_predicted_loss": 0.6876,
                         "sandbox_not_comparable": "an sft loss covers answer tokens only"},
           "kb": {"chunks": 208}}))
    assert "0.688 [0.604, 1.016]" in html and "1.954" in html
    assert "not comparable: an sft loss covers answer tokens only" in html
    assert html.count("<tr>") == 3  # the header and the two train stages, not the kb


def test_no_section_when_no_stage_used_the_sandbox():
    assert _sandbox_section(_summary(**{"train-cpt": {"steps": 38, "train_loss": 5.1}})) == ""
