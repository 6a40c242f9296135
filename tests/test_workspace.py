import pytest

from domainlm.errors import DomainlmError
from domainlm.workspace import WorkspaceConfig, init_workspace, load_workspace, load_workspace_config


def test_init_writes_a_config_that_loads_and_refuses_to_overwrite(tmp_path):
    path = init_workspace(tmp_path / "ws", name="harbor")
    assert (tmp_path / "ws" / "sources" / "docs").is_dir()
    cfg = load_workspace_config(path)
    assert cfg.name == "harbor"
    assert cfg == WorkspaceConfig(name="harbor")
    with pytest.raises(DomainlmError, match="already exists"):
        init_workspace(tmp_path / "ws")


def test_the_template_leaves_out_keys_the_line_sets(tmp_path):
    text = (init_workspace(tmp_path / "ws")).read_text(encoding="utf-8")
    assert "retrieval:" in text and "lora_r:" in text
    assert "kb_k:" not in text and "reading_passages:" not in text and "variants:" not in text


def test_layout_names_every_artifact_and_the_line_models_are_found_by_name(tmp_path):
    from domainlm.manifest import stage_run

    ws = load_workspace(init_workspace(tmp_path / "ws"))
    layout = ws.layout
    assert layout.clean_jsonl == tmp_path / "ws" / "artifacts" / "clean" / "clean.jsonl"
    assert (layout.model("sft"), layout.compressed("int8")) == (layout.artifacts / "models" / "sft",
                                                                 layout.artifacts / "compressed" / "int8")
    assert ws.base_model() == "tiny" and ws.tuned_model() == layout.model("sft")  # nothing trained yet
    with stage_run("train-cpt", layout.model("cpt"), config={}) as run:
        run.name_output("base", tmp_path / "built-tiny")
    # sft made no model (no data): the tuned model is cpt's, and 'base' is what cpt started from.
    assert ws.trained_stages() == ["cpt"]
    assert ws.tuned_model() == layout.model("cpt") and ws.base_model() == str(tmp_path / "built-tiny")
    assert ws.compressed_artifact("int8") is None
