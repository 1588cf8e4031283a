"""The config schema: defaults, and one clear message per kind of mistake."""

import copy
from pathlib import Path

import pytest
import yaml
from lingua_franca.config import ConfigError, load_config, load_config_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo():
    return yaml.safe_load((ROOT / "workflow_config.yaml").read_text())


def fails(config, *fragments):
    with pytest.raises(ConfigError) as info:
        load_config(config)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    return str(info.value)


def test_demo_config_loads_with_defaults():
    cfg = load_config_file(ROOT / "workflow_config.yaml")
    assert cfg.languages == ["en", "zh", "fr", "es", "pt", "ar", "vi", "hi", "id"]
    assert cfg.analysis["add_special_tokens"] is False  # a default, filled in
    model = cfg.models["toy-bloom-s"]
    assert model.trust_remote_code is False
    assert model.dtype == "float32"
    ckpt = cfg.checkpoint("toy-bloom-s", "step-300")
    assert ckpt.step == 300 and ckpt.is_local
    assert ckpt.location == "results/toy/toy-bloom-s/step-300"
    assert {m.family for m in cfg.models.values()} == {"toy-bloom", "toy-llama"}


def test_unknown_key_is_named(demo):
    demo["analysis"]["z_treshold"] = 3
    fails(demo, "unknown key analysis.z_treshold", "z_threshold")


def test_unknown_key_in_a_model_is_named(demo):
    demo["models"]["toy-bloom-s"]["dtpye"] = "float16"
    fails(demo, "models.toy-bloom-s.dtpye")


def test_wrong_type_is_named(demo):
    demo["analysis"]["batch_size"] = "sixteen"
    fails(demo, "analysis.batch_size", "is not of type 'integer'")


def test_bad_enum_is_named(demo):
    demo["models"]["toy-bloom-s"]["dtype"] = "float8"
    fails(demo, "models.toy-bloom-s.dtype", "float8")


def test_missing_required_entry_is_named(demo):
    del demo["data"]["probe"]["source"]
    fails(demo, "missing required entry data.probe.source")
    del demo["languages"]
    fails(demo, "missing required entry languages")


def test_every_problem_is_listed(demo):
    demo["analysis"]["batch_size"] = 0
    demo["analysis"]["extra"] = 1
    message = fails(demo, "analysis.batch_size", "analysis.extra")
    assert "2 problem(s)" in message


def test_unknown_language_is_named(demo):
    demo["languages"] = ["en", "xx"]
    fails(demo, "languages.1", "unknown language code 'xx'")


def test_story_languages_are_their_own_list(demo):
    cfg = load_config(copy.deepcopy(demo))
    assert cfg.data["xstorycloze"]["languages"] is None  # every language the source holds
    demo["data"]["xstorycloze"]["languages"] = ["en", "sw", "eu"]  # not probe languages
    assert load_config(copy.deepcopy(demo)).data["xstorycloze"]["languages"] == ["en", "sw", "eu"]
    demo["data"]["xstorycloze"]["languages"] = ["en", "xx"]
    fails(demo, "data.xstorycloze.languages.1", "unknown language code 'xx'")


def test_generation_prompts_cover_every_language(demo):
    assert load_config(copy.deepcopy(demo)).analysis["generation"]["prompts"] is None
    prompts = {lang: [f"{lang} prompt"] for lang in demo["languages"]}
    demo["analysis"]["generation"] = {"prompts": prompts}
    assert load_config(copy.deepcopy(demo)).analysis["generation"]["prompts"] == prompts
    del prompts["vi"], prompts["hi"]
    fails(demo, "analysis.generation.prompts: no prompts for ['vi', 'hi']")
    demo["analysis"]["generation"] = {"prompts": {"en": []}}
    fails(demo, "analysis.generation.prompts.en")


def test_model_needs_exactly_one_source(demo):
    demo["models"]["real"] = {"hub_id": "bigscience/bloom-560m", "path": "/models/bloom"}
    fails(demo, "models.real", "exactly one of 'hub_id', 'path' or 'toy'")
    demo["models"]["real"] = {"dtype": "float32"}
    fails(demo, "models.real", "exactly one of")


def test_checkpoint_needs_revision_or_folder(demo):
    demo["models"]["real"] = {"hub_id": "x/y", "checkpoints": {"a": {"step": 3}}}
    fails(demo, "models.real.checkpoints.a", "'revision' (Hub) or 'folder'")


def test_revision_needs_a_hub_model(demo):
    demo["models"]["local"] = {"path": "/models/m", "checkpoints": {"a": {"revision": "main"}}}
    fails(demo, "models.local.checkpoints.a", "'revision' needs the model's 'hub_id'")


def test_toy_checkpoint_must_be_a_saved_step(demo):
    demo["models"]["toy-bloom-s"]["checkpoints"]["step-77"] = {"folder": "step-77"}
    fails(
        demo,
        "models.toy-bloom-s.checkpoints.step-77",
        "not among models.toy-bloom-s.toy.save_steps",
    )


def test_reserved_model_name(demo):
    demo["models"]["data"] = copy.deepcopy(demo["models"]["toy-bloom-s"])
    fails(demo, "models", "'data'")


def test_hub_model_defaults():
    cfg = load_config(
        {
            "languages": ["en", "fr"],
            "data": {
                "probe": {"source": "flores", "options": {"dir": "/data/flores"}},
                "perplexity": {"source": "xlsum"},
                "xstorycloze": {"source": "xstorycloze"},
            },
            "models": {
                "bloom-560m": {"hub_id": "bigscience/bloom-560m"},
                "bloom-7b1": {
                    "hub_id": "bigscience/bloom-7b1-intermediate",
                    "checkpoints": {"gs1000": {"revision": "global_step1000", "step": 1000}},
                },
            },
        }
    )
    main = cfg.checkpoint("bloom-560m", "main")
    assert (main.revision, main.location, main.step) == ("main", "bigscience/bloom-560m", None)
    ckpt = cfg.checkpoint("bloom-7b1", "gs1000")
    assert (ckpt.revision, ckpt.step, ckpt.is_local) == ("global_step1000", 1000, False)
    assert cfg.models["bloom-7b1"].trust_remote_code is False
    assert cfg.toy is None and cfg.toy_models == []
