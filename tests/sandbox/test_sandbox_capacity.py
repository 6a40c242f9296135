"""Knowledge capacity: the synthetic set is deterministic, and stored bits grow with exposures."""

import numpy as np
import pytest

from domainlm.sandbox.capacity import (
    ATTRIBUTES,
    TEMPLATES,
    CapacityConfig,
    knowledge_bits_possible,
    make_people,
    render_bio,
    run_capacity,
    training_rows,
)


def test_people_are_deterministic_unique_and_uniform():
    a, b = make_people(300, seed=3, lang="zh"), make_people(300, seed=3, lang="zh")
    assert [(p.name, p.facts) for p in a] == [(p.name, p.facts) for p in b]
    assert len({p.name for p in a}) == 300
    assert make_people(5, seed=4, lang="en")[0].name != make_people(5, seed=3, lang="en")[0].name
    years = [p.facts["birth_year"] for p in a]
    assert min(years) >= 0 and max(years) < len(ATTRIBUTES["birth_year"][0])
    # 6 + 5 * 4 bits per person: 64 years, 16 values for the other five attributes
    assert knowledge_bits_possible(10) == pytest.approx(10 * 26)


def test_bio_states_every_fact_with_paraphrases():
    person = make_people(1, seed=0, lang="en")[0]
    rng = np.random.default_rng(0)
    bios = {render_bio(person, "en", rng) for _ in range(20)}
    assert len(bios) > 10  # paraphrases and order vary between exposures
    for bio in bios:
        for attr, (values, _) in ATTRIBUTES.items():
            assert values[person.facts[attr]] in bio
    assert all(len(t) >= 3 for t in TEMPLATES["zh"].values())


def test_training_rows_mix_in_other_text():
    people = make_people(5, seed=0, lang="zh")
    other = np.full(5000, 7, dtype=np.int64)  # a byte that never occurs in the knowledge text
    cfg = CapacityConfig(people=5, seq_len=32)
    pure = training_rows(people, cfg, 4, None)
    mixed = training_rows(people, cfg, 4, other, mix_fraction=0.5)
    share = float((mixed == 7).mean())
    assert (pure == 7).sum() == 0 and 0.4 < share < 0.6
    with pytest.raises(ValueError, match="needs other text"):
        training_rows(people, cfg, 4, None, mix_fraction=0.5)
    with pytest.raises(ValueError, match="must be in"):
        CapacityConfig(mix_fractions=[0.0, 1.0])


def test_capacity_is_measured_and_monotone_in_exposures():
    pytest.importorskip("torch")
    cfg = CapacityConfig(people=8, lang="en", exposures=[2, 16, 64], width=32, lr=0.03, seq_len=64, batch_size=8)
    results = run_capacity(cfg)
    bits = [r["bits"] for r in results]
    print("bits by exposures", bits)
    assert all(0 <= r["bits"] <= r["bits_possible"] for r in results)
    assert bits == sorted(bits) and bits[-1] > bits[0] + 10, bits
    assert results[-1]["bits_per_param"] == pytest.approx(results[-1]["bits"] / results[-1]["params_total"], rel=1e-3)
    assert results[-1]["accuracy"] > results[0]["accuracy"]
    assert [r["steps"] for r in results] == sorted(r["steps"] for r in results)


def test_capacity_cli_with_mixing(tmp_path, sample_dir, capsys):
    pytest.importorskip("torch")
    from domainlm.cli import main

    out = tmp_path / "cap"
    args = ["sandbox", "capacity", "--out", str(out), "people=3", "lang=zh", "width=16", "depth=1", "seq_len=32",
            "batch_size=4", "--exposures", "1,2", "--mix-fractions", "0,0.5", "--other", str(sample_dir)]
    assert main(args) == 0
    import json

    saved = json.loads((out / "capacity.json").read_text(encoding="utf-8"))
    assert [(r["mix_fraction"], r["exposures"]) for r in saved["results"]] == [(0.0, 1), (0.0, 2), (0.5, 1), (0.5, 2)]
    # mixing in other text: more training tokens for the same exposures
    by = {(r["mix_fraction"], r["exposures"]): r for r in saved["results"]}
    assert by[(0.5, 2)]["train_tokens"] > 1.5 * by[(0.0, 2)]["train_tokens"]
    assert "2 bits/param" in (out / "report.html").read_text(encoding="utf-8")
    assert main(args) == 0 and "up to date" in capsys.readouterr().err
    assert main(["sandbox", "capacity", "--out", str(out), "--mix-fractions", "0.5"]) == 2
    assert "--other" in capsys.readouterr().err
    assert main(["sandbox", "capacity", "--out", str(out), "peeple=3"]) == 2
    assert "peeple" in capsys.readouterr().err
