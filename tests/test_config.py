import pytest

from domainlm.config import apply_overrides, split_overrides, with_options
from domainlm.errors import DomainlmError
from domainlm.workspace import WorkspaceConfig, load_workspace_config


def write_config(tmp_path, text):
    path = tmp_path / "domainlm.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_validate_without_a_file():
    cfg = load_workspace_config(None)
    assert isinstance(cfg, WorkspaceConfig)
    assert cfg.train.base == "tiny"


def test_unknown_key_names_key_path_and_line(tmp_path):
    path = write_config(tmp_path, "name: bank\ntrain:\n  base: tiny\n  lrr: 0.1\n")
    with pytest.raises(DomainlmError) as err:
        load_workspace_config(path)
    assert str(err.value) == f"{path}:4: unknown key 'train.lrr'"
    assert err.value.exit_code == 2


def test_bad_type_names_key_line_and_value(tmp_path):
    path = write_config(tmp_path, "train:\n  epochs: many\n")
    with pytest.raises(DomainlmError) as err:
        load_workspace_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}:2: bad value for 'train.epochs': ")
    assert "(got 'many')" in message


def test_bad_value_in_a_list_points_at_the_item(tmp_path):
    path = write_config(tmp_path, "compress:\n  targets:\n    - int8\n    - [1, 2]\n")
    with pytest.raises(DomainlmError) as err:
        load_workspace_config(path)
    assert str(err.value).startswith(f"{path}:4: bad value for 'compress.targets[1]'")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(DomainlmError, match=r"nope\.yaml: config file not found$"):
        load_workspace_config(tmp_path / "nope.yaml")
    path = write_config(tmp_path, "a: [\n")
    with pytest.raises(DomainlmError, match=r"domainlm\.yaml:2: not valid YAML"):
        load_workspace_config(path)
    path = write_config(tmp_path, "- just\n- a list\n")
    with pytest.raises(DomainlmError, match="expected a mapping"):
        load_workspace_config(path)


def test_overrides_set_nested_values_parsed_as_yaml(tmp_path):
    path = write_config(tmp_path, "train:\n  lr: 0.1\n")
    cfg = load_workspace_config(path, ["train.lr=1e-4", "train.stages=[sft]", "sources=[a, b]", "kb.chunk_chars=200"])
    assert cfg.train.lr == pytest.approx(1e-4)
    assert cfg.train.stages == ["sft"]
    assert cfg.sources == ["a", "b"]
    assert cfg.kb.chunk_chars == 200


def test_bad_override_is_reported_as_the_override():
    with pytest.raises(DomainlmError) as err:
        load_workspace_config(None, ["train.lr=abc"])
    assert str(err.value).startswith("override 'train.lr=abc': bad value for 'train.lr'")
    with pytest.raises(DomainlmError) as err:
        load_workspace_config(None, ["trian.lr=1"])
    assert str(err.value) == "override 'trian.lr=1': unknown key 'trian'"
    with pytest.raises(DomainlmError, match="is not a section"):
        apply_overrides({"name": "x"}, ["name.sub=1"])


def test_split_overrides_keeps_existing_paths(tmp_path):
    odd = tmp_path / "a=b.txt"
    odd.write_text("x")
    positional, overrides = split_overrides(["docs", "train.lr=1", str(odd), "seed=3"])
    assert positional == ["docs", str(odd)]
    assert overrides == ["train.lr=1", "seed=3"]


def test_a_key_the_line_sets_names_where_it_comes_from(tmp_path):
    path = write_config(tmp_path, "train:\n  lr: 0.001\n  kb_k: 2\n")
    with pytest.raises(DomainlmError, match=r"domainlm.yaml:1: 'train.kb_k' is set by the line \(retrieval.k\)"):
        load_workspace_config(path)
    with pytest.raises(DomainlmError, match=r"override 'synth.seed=3': 'synth.seed' is set by the line"):
        load_workspace_config(None, ["synth.seed=3"])


def test_every_stage_setting_is_a_yaml_key_and_the_line_builds_stage_configs_from_it():
    cfg = load_workspace_config(None, ["train.lora_r=4", "train.sft.lr=0.01", "retrieval.k=5", "seed=9",
                                       "compress.group_size=64", "eval.limit=7", "kb.k1=1.2"])
    sft = cfg.train.stage_config("sft", seed=cfg.seed, kb="kb", kb_k=cfg.retrieval.k)
    assert (sft.lora_r, sft.lr, sft.kb_k, sft.seed, sft.stage, sft.min_steps) == (4, 0.01, 5, 9, "sft", 50)
    cpt = cfg.train.stage_config("cpt", seed=cfg.seed, kb=None, kb_k=cfg.retrieval.k)
    assert cpt.lr == cfg.train.lr == 5e-4
    gate = cfg.compress.stage_config("int4", seed=1, suites=["s"], data=[], batch_size=2, eval_limit=cfg.eval.limit)
    assert (gate.group_size, gate.gate_limit, gate.target) == (64, 7, "int4")  # gate_limit defaults to eval.limit
    assert cfg.kb.k1 == 1.2


def test_with_options_merges_only_given_options_and_validates_them():
    section = load_workspace_config(None).clean
    assert with_options(section, "clean", recipe=None, workers=None) is section
    merged = with_options(section, "clean", workers=3)
    assert (merged.workers, merged.recipe) == (3, section.recipe)
    with pytest.raises(DomainlmError, match=r"^--engine: String should match pattern .* \(got 'spark'\)"):
        with_options(section, "clean", engine="spark")


def test_retrieval_settings_feed_every_stage_that_retrieves():
    on = load_workspace_config(None, ["retrieval.k=5"])
    assert on.retrieval.training_passages == 5  # synth's reading items and sft's augmented copies
    assert on.eval.stage_config(suites=[], variants=[], kb_k=on.retrieval.k).kb_k == 5
    off = load_workspace_config(None, ["retrieval.train=false"])
    assert off.retrieval.training_passages == 0  # closed-book training: no reading items, no augmented copies
    assert off.synth.stage_config(seed=0, reading_passages=off.retrieval.training_passages).reading_passages == 0
