"""Where a training run reports: plain progress lines off a terminal, and the trackers of ``report_to``
(TensorBoard, MLflow read back from what they wrote; a missing package is one line before training)."""

import importlib.util
import io
import json
import re

import pytest
from rich.console import Console

from domainlm.train import TrainConfig, train
from domainlm.train.progress import TRACKERS, TrainProgress, wandb_settings

LINE = re.compile(r"^(?P<label>[\w ]+): step (?P<step>\d+)/(?P<total>\d+) loss (?P<loss>\d+\.\d{4})"
                  r"(?: tok/s (?P<tps>[\d,]+))? elapsed \d+:\d\d:\d\d(?: eta \d+:\d\d:\d\d)?$")


def plain_console() -> Console:
    return Console(file=io.StringIO())  # a file, not a terminal: what CI, nohup and `| tee` give


def lines(console: Console) -> list[re.Match]:
    text = console.file.getvalue()
    found = [LINE.match(line) for line in text.splitlines()]
    assert all(found), text  # nothing but progress lines
    return found


def test_off_a_terminal_a_line_at_the_first_every_nth_and_the_last_step():
    console = plain_console()
    with TrainProgress(total=25, console=console, label="cpt full", every=10) as progress:
        for step in range(1, 26):
            progress.update(step, 3.0 - step / 10, 1234.5)
    found = lines(console)
    assert [int(m["step"]) for m in found] == [1, 10, 20, 25]
    assert found[1]["label"] == "cpt full" and found[1]["loss"] == "2.0000" and found[1]["tps"] == "1,234"
    assert all(m["total"] == "25" for m in found)
    assert " eta " in found[0].group(0) and found[-1].group(0).endswith("eta 0:00:00")


def test_a_line_when_a_multiple_is_passed_between_updates_and_none_without_tokens_per_s():
    # TRL calls update on its logging steps only (here every 3rd), which need not fall on multiples of 5
    console = plain_console()
    with TrainProgress(total=16, start=1, console=console, label="dpo lora", every=5) as progress:
        for step in (3, 6, 9, 12, 15, 16):
            progress.update(step, 0.5, None)
    found = lines(console)
    assert [int(m["step"]) for m in found] == [3, 6, 12, 15, 16]
    assert all(m["tps"] is None for m in found)


def test_on_a_terminal_a_bar_and_other_processes_print_nothing():
    terminal = Console(file=io.StringIO(), force_terminal=True, width=120)
    with TrainProgress(total=3, console=terminal, every=1) as progress:
        for step in (1, 2, 3):
            progress.update(step, 1.0, 10.0)
    assert "step 1/3" not in terminal.file.getvalue() and "3/3" in terminal.file.getvalue()
    quiet = plain_console()
    with TrainProgress(total=3, console=quiet, enabled=False, every=1) as progress:
        progress.update(1, 1.0, 10.0)
    assert quiet.file.getvalue() == ""


def test_report_to_takes_a_list_or_a_comma_string():
    assert TrainConfig(report_to="TensorBoard, mlflow,mlflow").report_to == ["tensorboard", "mlflow"]
    assert TrainConfig(report_to="none").report_to == [] and TrainConfig().report_to == []
    assert TrainConfig(report_to=["wandb"]).report_to == ["wandb"]
    with pytest.raises(ValueError, match="'tensorboard', 'wandb' or 'mlflow'"):
        TrainConfig(report_to="tb")


def test_wandb_logs_offline_into_the_output_only_when_the_environment_says_nothing(tmp_path, monkeypatch):
    for name in ("WANDB_MODE", "WANDB_DIR", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.org login x password y\n", encoding="utf-8")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    out = tmp_path / "model"
    assert wandb_settings(out, "run") == {"name": "run", "dir": str(out.resolve()), "mode": "offline"}
    # `wandb login` keeps the key in ~/.netrc for the W&B host: then the run goes online as usual
    netrc.write_text("machine api.wandb.ai login user password k\n", encoding="utf-8")
    assert "mode" not in wandb_settings(out, "run")
    netrc.unlink()
    monkeypatch.setenv("WANDB_API_KEY", "k")
    assert "mode" not in wandb_settings(out, "run")
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))
    assert wandb_settings(out, "run") == {"name": "run"}


def missing_trackers() -> list[str]:
    return [name for name, (modules, _) in TRACKERS.items() if not any(importlib.util.find_spec(m) for m in modules)]


@pytest.mark.parametrize("value, expected", [
    ("tensorboard,tb", "error: --report-to: Input should be 'tensorboard', 'wandb' or 'mlflow' (got 'tb')"),
    ("missing", "error: report_to {name}: the '{name}' package is not installed (pip install {name}, or pip install "
                "'domainlm[track]')"),
])
def test_cli_stops_in_one_line_before_training(tmp_path, sample_dir, monkeypatch, capsys, value, expected):
    from domainlm.cli import main

    if value == "missing":
        if not missing_trackers():
            pytest.skip("every tracker is installed here: no missing package to report")
        value = missing_trackers()[0]
        expected = expected.format(name=TRACKERS[value][1])
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    code = main(["train", "--base", "tiny", "--data", str(sample_dir / "truth" / "documents.jsonl"), "--out", str(out),
                 "--stage", "cpt", "--max-steps", "1", "--report-to", value])
    assert code != 0
    assert capsys.readouterr().err.strip().splitlines() == [expected]
    assert not out.exists()


def installed(name: str) -> bool:
    return name not in missing_trackers()


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory, sample_model, sample_dir):
    trackers = [name for name in ("tensorboard", "mlflow") if installed(name)]
    if not trackers:
        pytest.skip("neither tensorboard nor mlflow is installed")
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)  # the run keeps its own store under the output
    mp.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    try:
        out = tmp_path_factory.mktemp("tracked") / "model"
        console = plain_console()
        cfg = TrainConfig(stage="cpt", seq_len=64, batch_size=4, max_steps=7, lr=3e-3, eval_fraction=0.15,
                          progress_every=3, report_to=trackers)
        result = train(str(sample_model), [sample_dir / "truth" / "documents.jsonl"], out, cfg, console=console)
        log = [json.loads(line) for line in (out / "train_log.jsonl").open(encoding="utf-8")]
        yield out, result.metrics, log, console
    finally:
        mp.undo()


def test_a_run_off_a_terminal_prints_its_progress_lines(tracked_run):
    _, metrics, log, console = tracked_run
    found = lines(console)
    assert [int(m["step"]) for m in found] == [1, 3, 6, 7] and metrics["steps"] == 7
    losses = {h["step"]: h["loss"] for h in log}
    assert [m["loss"] for m in found] == [f"{losses[int(m['step'])]:.4f}" for m in found]
    assert all(m["label"] == "cpt full" and int(m["tps"].replace(",", "")) > 0 for m in found)


def test_tensorboard_gets_every_step_the_held_out_loss_and_the_config(tracked_run):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, metrics, log, _ = tracked_run
    (run,) = (out / "runs").iterdir()
    assert run.name.startswith("model-cpt-")
    events = EventAccumulator(str(run))
    events.Reload()
    loss = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert [step for step, _ in loss] == [h["step"] for h in log] == list(range(1, 8))
    assert [value for _, value in loss] == pytest.approx([h["loss"] for h in log], rel=1e-6)
    assert [e.value for e in events.Scalars("train/lr")] == pytest.approx([h["lr"] for h in log], rel=1e-6)
    assert all(e.value > 0 for e in events.Scalars("train/tokens_per_s"))
    held_out = [(e.step, e.value) for e in events.Scalars("eval/loss")]
    assert held_out == [(0, pytest.approx(metrics["eval_loss_start"], rel=1e-4)),
                        (7, pytest.approx(metrics["eval_loss_end"], rel=1e-4))]
    (hparams,) = run.glob("*/hparams.yml")  # accelerate keeps the run config beside the events
    assert "lr: 0.003" in hparams.read_text(encoding="utf-8")


def test_mlflow_gets_every_step_and_the_config_in_a_store_under_the_output(tracked_run):
    pytest.importorskip("mlflow", reason="mlflow is not installed")
    from mlflow.tracking import MlflowClient

    out, metrics, log, _ = tracked_run
    client = MlflowClient(f"sqlite:///{out.resolve() / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("domainlm")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name.startswith("model-cpt-") and run.info.status == "FINISHED"
    loss = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/loss"))
    assert [step for step, _ in loss] == list(range(1, 8))
    assert [value for _, value in loss] == pytest.approx([h["loss"] for h in log], rel=1e-6)
    held_out = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "eval/loss"))
    assert held_out == [(0, pytest.approx(metrics["eval_loss_start"])), (7, pytest.approx(metrics["eval_loss_end"]))]
    assert run.data.params["lr"] == "0.003" and run.data.params["stage"] == "cpt"
    assert run.data.params["report_to"] == ",".join(name for name in ("tensorboard", "mlflow") if installed(name))


def test_a_run_resumes_its_checkpoint_with_a_tracker_added(tmp_path, sample_model, sample_dir):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = [sample_dir / "truth" / "documents.jsonl"]
    cfg = TrainConfig(stage="cpt", seq_len=32, batch_size=2, max_steps=4, save_every=2, lr=2e-3, eval_fraction=0.0)
    out = tmp_path / "model"
    assert train(str(sample_model), data, out, cfg, stop_after=2, console=plain_console()).metrics["interrupted"]
    console = plain_console()
    resumed = train(str(sample_model), data, out, cfg.model_copy(update={"report_to": ["tensorboard"]}), console=console)
    assert resumed.metrics["steps"] == 4
    assert [int(m["step"]) for m in lines(console)] == [3, 4]  # went on from step 2, not from scratch
    (run,) = (out / "runs").iterdir()
    events = EventAccumulator(str(run))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [3, 4]


def test_a_finished_run_is_not_retrained_for_a_new_tracker(tmp_path, sample_model, sample_dir):
    data = [sample_dir / "truth" / "documents.jsonl"]
    cfg = TrainConfig(stage="cpt", seq_len=32, batch_size=2, max_steps=2, eval_fraction=0.0)
    first = train(str(sample_model), data, tmp_path / "m", cfg, console=plain_console())
    again = train(str(sample_model), data, tmp_path / "m", cfg.model_copy(update={"report_to": ["tensorboard"],
                                                                                "progress_every": 1}))
    assert not first.skipped and again.skipped and not (tmp_path / "m" / "runs").exists()
