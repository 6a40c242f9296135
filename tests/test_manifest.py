import json
import time

import pytest

from domainlm.errors import DomainlmError
from domainlm.io import read_json, write_text
from domainlm.manifest import read_result, stage_run


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

    from domainlm.io import expand_inputs
    from domainlm.manifest import hash_inputs

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


def test_named_outputs_come_back_from_a_cached_run_and_from_disk(tmp_path):
    def stage(force=False):
        with stage_run("demo", tmp_path / "out", config={"k": 1}, force=force) as run:
            if not run.skipped:
                write_text(run.output("model/weights.txt", key="model"), "w")
                run.name_output("base", tmp_path / "elsewhere")
                run.metrics["steps"] = 3
        return run.result()

    first, cached = stage(), stage()
    assert not first.skipped and cached.skipped
    assert first.outputs == cached.outputs == {"model": tmp_path / "out" / "model/weights.txt", "base": tmp_path / "elsewhere"}
    assert cached.metrics == {"steps": 3}
    assert read_result(tmp_path / "out").outputs == first.outputs
    assert read_result(tmp_path / "nothing") is None


def test_a_manifest_from_before_named_outputs_reruns_once(tmp_path):
    run, calls = _run_stage(tmp_path / "o", [], {"k": 1})
    manifest = read_json(tmp_path / "o" / "manifest.json")
    manifest.pop("format")
    manifest.pop("named_outputs")
    (tmp_path / "o" / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert read_result(tmp_path / "o") is None  # its outputs are unknown, so it is not a result to build on
    assert _run_stage(tmp_path / "o", [], {"k": 1})[1] == [1]
    assert _run_stage(tmp_path / "o", [], {"k": 1})[1] == []
