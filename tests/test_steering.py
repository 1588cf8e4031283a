"""The steering experiment's pieces (docs/method.md §12): the prompt sets, the fluency
against a direct computation, the conditions as values, the config's checks. The
whole harness on a model where the answer is known: tests/test_planted.py."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import CORPUS, tiny_model, tiny_tokenizer
from lingua_franca import steering
from lingua_franca.activations import tokenize
from lingua_franca.config import ConfigError, load_config
from lingua_franca.interventions import Intervention

ROOT = Path(__file__).resolve().parents[1]


def test_prompted_sets_cycle_through_the_other_languages():
    samples = {
        lang: [{"item": f"{lang}{i}", "text": f"{lang} {i}"} for i in range(3)] for lang in "abc"
    }
    sets = steering.prompt_sets(samples, ["a", "b", "c"], ["a", "c"], 5, start_id=7)
    assert [p["item"] for p in sets["prompted"]["a"]] == ["b0", "c0", "b1", "c1", "b2"]
    assert [p["language"] for p in sets["prompted"]["c"]] == ["a", "b", "a", "b", "a"]
    assert sets["unconditional"]["a"] == [{"item": None, "text": "", "ids": [7]}] * 5
    with pytest.raises(ValueError, match="need 4 prompts of each other language, 'b' has 3"):
        steering.prompt_sets(samples, ["a", "b", "c"], ["a"], 7, start_id=7)


def test_fluency_is_the_continuations_nll_under_the_model():
    model, tokenizer = tiny_model("gpt2"), tiny_tokenizer()  # absolute positions
    prompts = tokenize(tokenizer, [CORPUS[0], "le chat"])
    continuations = [[5, 6, 7], [8, 9]]
    got = steering.continuation_nll(model, prompts, continuations, batch_size=2, pad_id=0)
    for p, c, value in zip(prompts, continuations, got):
        ids = torch.tensor([list(p) + c])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0]
        direct = F.cross_entropy(logits[len(p) - 1 : -1], ids[0, len(p) :], reduction="sum")
        assert value == pytest.approx(direct.item(), rel=1e-5)


def test_conditions_are_values_with_their_controls():
    widths = [8, 8]
    regions = {"ap": {"en": {1.0: {0: np.array([1, 2])}, 0.5: {0: np.array([1])}}}}
    median = {"en": {0: np.arange(8, dtype=np.float32), 1: np.zeros(8, np.float32)}}
    mean = {"en": {0: np.full(8, 2.0, np.float32), 1: np.zeros(8, np.float32)}}
    settings = steering.SteeringSettings(alpha=3.0, seed=1)
    out = steering.conditions(regions, median, mean, widths, settings)
    assert [(c.condition, c.fraction, c.size) for c in out] == [
        ("forced", 1.0, 2),
        ("add", 1.0, 2),
        ("random", 1.0, 2),
        ("forced", 0.5, 1),
        ("random", 0.5, 1),
    ]
    forced, add, control = (c.interventions[0] for c in out[:3])
    assert forced.op == "set" and forced.values[0].tolist() == [1.0, 2.0]
    assert add.op == "add" and add.alpha == 3.0 and add.values[0].tolist() == [2.0, 2.0]
    assert control.op == "set" and not set(control.neurons[0]) & {1, 2}
    assert control.values[0].tolist() == control.neurons[0].astype(np.float32).tolist()
    assert all(isinstance(i, Intervention) for c in out for i in c.interventions)


def test_an_ap_region_shrinks_for_the_sweep():
    table = pd.DataFrame(
        {
            "language": ["en"] * 4,
            "layer": [0, 0, 1, 1],
            "neuron": [1, 2, 3, 4],
            "score": [0.9, 0.8, 0.7, 0.6],
            "direction": ["top", "top", "bottom", "bottom"],
            "rank_top": np.array([1, 2, 0, 0], dtype=np.int32),
            "rank_bottom": np.array([0, 0, 1, 2], dtype=np.int32),
            "ap_high": [0.9, 0.8, 0.1, 0.1],
            "ap_low": [0.1, 0.1, 0.7, 0.6],
        }
    )
    got = steering.regions({"ap": table}, ["en", "fr"], [8, 8], sweep=(0.5,))
    assert list(got["ap"]) == ["en"]  # fr has no region
    half = got["ap"]["en"][0.5]
    assert {m: v.tolist() for m, v in half.items()} == {0: [1], 1: [3]}
    assert sum(len(v) for v in got["ap"]["en"][1.0].values()) == 4


@pytest.fixture
def demo():
    return yaml.safe_load((ROOT / "workflow_config.yaml").read_text())


def test_steered_models_must_exist_and_prompts_suffice(demo):
    demo["analysis"]["steering"] = {"enabled": True, "models": ["toy-bloom-x"]}
    with pytest.raises(ConfigError, match=r"analysis.steering.models: \['toy-bloom-x'\]"):
        load_config(demo)
    demo["analysis"]["steering"] = {"enabled": True, "samples": 100}
    demo["analysis"]["generation"] = {"samples": 12}
    with pytest.raises(ConfigError, match="13 of each; analysis.generation.samples is 12"):
        load_config(demo)
    demo["analysis"]["generation"] = {"samples": 13}
    cfg = load_config(demo)
    assert cfg.steered("toy-bloom-m") and cfg.steered("toy-llama-s")  # models: null
    demo["analysis"]["steering"] = {"enabled": False, "samples": 100}
    assert not load_config(demo).steered("toy-bloom-m")


def test_the_summary_draws_only_the_families_that_were_steered(tmp_path):
    """An unsteered checkpoint's steering.json says so; its family gets no figure."""
    from lingua_franca.steering import steering_summary_names, write_steering_summary

    records = []
    for model, family, doc in (
        ("big", "fam-a", {"settings": {"samples": 30}, "methods": {}}),
        ("other", "fam-b", {"steered": False}),
    ):
        path = tmp_path / f"{model}.json"
        path.write_text(json.dumps({**doc, "source": {"model": model, "checkpoint": "step-1"}}))
        records.append(
            {"model": model, "family": family, "checkpoint": "step-1", "step": 1, "steering": path}
        )
    names = steering_summary_names([("big", "fam-a", "step-1")], True)
    assert names == ["steering.csv", "steering_evolution_fam-a.png"]
    out = write_steering_summary(records, {n: tmp_path / "out" / n for n in names}, True)
    assert sorted(p.name for p in out.values()) == sorted(names)
    assert (tmp_path / "out" / "steering_evolution_fam-a.png").exists()
    assert not (tmp_path / "out" / "steering_evolution_fam-b.png").exists()
