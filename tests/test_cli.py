import subprocess
import sys

from domainlm.cli import main

LIGHT_CHECK = """
import sys
from domainlm.cli import main
code = main(["--help"])
heavy = sorted(m for m in ("torch", "transformers", "peft", "trl", "accelerate") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
sys.exit(code)
"""


def test_import_and_help_do_not_import_torch():
    proc = subprocess.run([sys.executable, "-c", LIGHT_CHECK], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stdout
    assert "Usage" in proc.stdout


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "init" in out and "config" in out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip().startswith("domainlm ")


def test_init_then_config_with_overrides(tmp_path, capsys, monkeypatch):
    assert main(["init", str(tmp_path / "ws"), "--name", "harbor"]) == 0
    monkeypatch.chdir(tmp_path / "ws")
    # A new workspace has no documents yet: config names what the build would miss, with exit 2.
    assert main(["config"]) == 2
    assert "problem: sources: no documents in sources/docs" in capsys.readouterr().err
    (tmp_path / "ws" / "sources" / "docs" / "a.txt").write_text("海港银行的客服热线为400-818-2368。\n", encoding="utf-8")
    assert main(["config", "train.lr=0.002", "kb.chunk_chars=300"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "name: harbor" in out and "lr: 0.002" in out and "chunk_chars: 300" in out
    assert "synthesized tasks only" in captured.err  # the empty task folders are optional, and it says so
    assert main(["config", "train.base=/no/such/model"]) == 2  # a model folder that is not there is named too
    assert "problem: train.base: model spec '/no/such/model'" in capsys.readouterr().err


def test_config_errors_are_one_line_with_exit_2(tmp_path, capsys, monkeypatch):
    (tmp_path / "domainlm.yaml").write_text("train:\n  epochs: many\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("error: ") and "domainlm.yaml:2: bad value for 'train.epochs'" in err
    assert main(["init", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_console_script_exit_code(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "domainlm", "config", "-c", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {tmp_path / 'missing.yaml'}: config file not found"
