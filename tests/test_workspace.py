import json
import time

import pytest

from domainlm.errors import DomainlmError
from domainlm.io import read_json, write_text
from domainlm.workspace import (
    WorkspaceConfig,
    apply_overrides,
    init_workspace,
    load_config,
    split_overrides,
    stage_run,
)


def write_config(tmp_path, text):
    path = tmp_path / "domainlm.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_validate_without_a_file():
    cfg = load_config(None)
    assert isinstance(cfg, WorkspaceConfig)
    assert cfg.train.base == "tiny"


def test_unknown_key_names_key_path_and_line(tmp_path):
    path = write_config(tmp_path, "name: bank\ntrain:\n  base: tiny\n  lrr: 0.1\n")
    with pytest.raises(DomainlmError) as err:
        load_config(path)
    assert str(err.value) == f"{path}:4: unknown key 'train.lrr'"
    assert err.value.exit_code == 2


def test_bad_type_names_key_line_and_value(tmp_path):
    path = write_config(tmp_path, "train:\n  epochs: many\n")
    with pytest.raises(DomainlmError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}:2: bad value for 'train.epochs': ")
    assert "(got 'many')" in message


def test_bad_value_in_a_list_points_at_the_item(tmp_path):
    path = write_config(tmp_path, "compress:\n  targets:\n    - int8\n    - [1, 2]\n")
    with pytest.raises(DomainlmError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}:4: bad value for 'compress.targets[1]'")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(DomainlmError, match=r"nope\.yaml: config file not found$"):
        load_config(tmp_path / "nope.yaml")
    path = write_config(tmp_path, "a: [\n")
    with pytest.raises(DomainlmError, match=r"domainlm\.yaml:2: not valid YAML"):
        load_config(path)
    path = write_config(tmp_path, "- just\n- a list\n")
    with pytest.raises(DomainlmError, match="expected a mapping"):
        load_config(path)


def test_overrides_set_nested_values_parsed_as_yaml(tmp_path):
    path = write_config(tmp_path, "train:\n  lr: 0.1\n")
    cfg = load_config(path, ["train.lr=1e-4", "train.stages=[sft]", "sources=[a, b]", "kb.chunk_chars=200"])
    assert cfg.train.lr == pytest.approx(1e-4)
    assert cfg.train.stages == ["sft"]
    assert cfg.sources == ["a", "b"]
    assert cfg.kb.chunk_chars == 200


def test_bad_override_is_reported_as_the_override():
    with pytest.raises(DomainlmError) as err:
        load_config(None, ["train.lr=abc"])
    assert str(err.value).startswith("override 'train.lr=abc': bad value for 'train.lr'")
    with pytest.raises(DomainlmError) as err:
        load_config(None, ["trian.lr=1"])
    assert str(err.value) == "override 'trian.lr=1': unknown key 'trian'"
    with pytest.raises(DomainlmError, match="is not a section"):
        apply_overrides({"name": "x"}, ["name.sub=1"])


def test_split_overrides_keeps_existing_paths(tmp_path):
    odd = tmp_path / "a=b.txt"
    odd.write_text("x")
    positional, overrides = split_overrides(["docs", "train.lr=1", str(odd), "seed=3"])
    assert positional == ["docs", str(odd)]
    assert overrides == ["train.lr=1", "seed=3"]


def test_init_writes_a_config_that_loads_and_refuses_to_overwrite(tmp_path):
    path = init_workspace(tmp_path / "ws", name="harbor")
    assert (tmp_path / "ws" / "sources" / "docs").is_dir()
    cfg = load_config(path)
    assert cfg.name == "harbor"
    assert cfg == WorkspaceConfig(name="harbor")
    with pytest.raises(DomainlmError, match="already exists"):
        init_workspace(tmp_path / "ws")


def _run_stage(out, inputs, config, force=False):
    calls = []
    with stage_run("demo", out, inputs=inputs, config=config, force=force, seed=7) as run:
        if not run.skipped:
            calls.append(1)
            write_text(run.output("result.txt"), "ok")
            run.metrics["n"] = 1
    return run, calls


def test_stage_run_caches_and_reruns_on_change(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.txt").write_text("one")
    out = tmp_path / "out"
    run, calls = _run_stage(out, [src], {"k": 1})
    assert calls == [1] and not run.skipped
    manifest = read_json(out / "manifest.json")
    assert manifest["stage"] == "demo"
    assert manifest["seed"] == 7
    assert manifest["metrics"] == {"n": 1}
    assert manifest["outputs"] == ["result.txt"]
    assert list(manifest["inputs"].values())[0] == __import__("hashlib").sha256(b"one").hexdigest()
    assert "python" in manifest["versions"]

    run, calls = _run_stage(out, [src], {"k": 1})
    assert run.skipped and calls == []
    assert run.previous.metrics == {"n": 1}

    run, calls = _run_stage(out, [src], {"k": 1}, force=True)
    assert calls == [1]

    run, calls = _run_stage(out, [src], {"k": 2})  # config changed
    assert calls == [1]

    time.sleep(0.01)
    (src / "a.txt").write_text("two")  # input changed
    run, calls = _run_stage(out, [src], {"k": 2})
    assert calls == [1]

    (out / "result.txt").unlink()  # an output went missing
    run, calls = _run_stage(out, [src], {"k": 2})
    assert calls == [1]


def test_stage_failure_leaves_no_manifest(tmp_path):
    out = tmp_path / "out"
    _run_stage(out, [], {"k": 1})
    assert (out / "manifest.json").exists()
    with pytest.raises(RuntimeError):
        with stage_run("demo", out, config={"k": 2}):
            raise RuntimeError("boom")
    assert not (out / "manifest.json").exists()
    _, calls = _run_stage(out, [], {"k": 1})
    assert calls == [1]


def test_missing_input_is_named(tmp_path):
    with pytest.raises(DomainlmError, match="nothere: no such file or folder"):
        with stage_run("demo", tmp_path / "o", inputs=[tmp_path / "nothere"]):
            pass


def test_manifest_is_valid_json_with_unicode(tmp_path):
    with stage_run("demo", tmp_path, config={"名称": "海港银行"}) as run:
        run.metrics["说明"] = "中文"
    text = (tmp_path / "manifest.json").read_text(encoding="utf-8")
    assert "海港银行" in text
    assert json.loads(text)["config"] == {"名称": "海港银行"}


def test_unreadable_inputs_are_hashed_as_errors_not_crashes(tmp_path, unreadable_file):
    import os

    from domainlm.workspace import expand_inputs, hash_inputs

    src = tmp_path / "in"
    src.mkdir()
    (src / "a.txt").write_text("one")
    bad = unreadable_file(src / "bad.txt")
    (src / "dangling.txt").symlink_to(tmp_path / "gone")
    os.mkfifo(src / "pipe.txt")  # reading it would block forever: never opened
    problems = []
    assert expand_inputs([src], problems) == [src / "a.txt", bad]
    assert problems == [(src / "dangling.txt", f"broken symlink (-> {tmp_path / 'gone'})"),
                        (src / "pipe.txt", "not a regular file (FIFO)")]
    hashes = hash_inputs([src])
    assert hashes[str(bad)] == "error: Input/output error"
    assert hashes[str(src / "dangling.txt")].startswith("error: broken symlink")
    assert hashes[str(src / "pipe.txt")] == "error: not a regular file (FIFO)"

    out = tmp_path / "out"
    run, calls = _run_stage(out, [src], {"k": 1})  # no crash: the stage runs, its ingest rejects the file
    assert calls == [1]
    assert read_json(out / "manifest.json")["inputs"][str(bad)] == "error: Input/output error"
    assert _run_stage(out, [src], {"k": 1})[0].skipped
    bad.unlink()
    bad.write_text("readable now")  # once readable, the cache changes and the stage runs again
    assert _run_stage(out, [src], {"k": 1})[1] == [1]


def test_symlinked_folders_are_followed_and_a_loop_is_reported(tmp_path):
    from domainlm.workspace import expand_inputs

    src = tmp_path / "in"
    (src / "real").mkdir(parents=True)
    (src / "real" / "a.txt").write_text("one")
    (src / "link").symlink_to(src / "real")
    (src / "real" / "up").symlink_to(src)  # points back at a folder that contains it
    (src / ".hidden").mkdir()
    (src / ".hidden" / "x.txt").write_text("not a document")
    problems = []
    assert expand_inputs([src], problems) == [src / "link" / "a.txt", src / "real" / "a.txt"]
    assert [(p.name, r) for p, r in problems] == [("up", "symlink loop (points to a folder that contains it)")] * 2
