"""The config schema: defaults, and one clear message per kind of mistake."""

import copy
from pathlib import Path

import pytest
import yaml
from lingua_franca.config import ConfigError, load_config, load_config_file
from lingua_franca.methods import METHODS

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
    assert ckpt.step == 300 and ckpt.revision is None
    assert ckpt.location is None and ckpt.folder == "step-300"  # where the workflow trains it
    settings = cfg.job_settings("toy-bloom-s", "step-300", model_folder="trained/toy-bloom-s")
    assert settings["location"] == "trained/toy-bloom-s/step-300"
    # the order older runs recorded: Snakemake compares the parameter's repr
    assert list(settings) == [
        "model",
        "checkpoint",
        "family",
        "location",
        "hub_id",
        "revision",
        "step",
        "parameters",
        "dtype",
        "device_map",
        "trust_remote_code",
        "neuron_module",
        "context_length",
        "tokenizer",
    ]
    with pytest.raises(ValueError, match="toy-bloom-s is a toy model"):
        cfg.job_settings("toy-bloom-s", "step-300")
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


def test_sampled_methods_are_methods_that_run(demo):
    assert load_config(copy.deepcopy(demo)).analysis["generation"]["methods"] == ["zscore"]
    del demo["analysis"]["generation"]["methods"]
    assert load_config(copy.deepcopy(demo)).analysis["generation"]["methods"] is None  # every one
    demo["analysis"]["key_neuron_methods"] = ["zscore", "lape"]
    demo["analysis"]["generation"] = {"methods": ["lape"]}
    assert load_config(copy.deepcopy(demo)).analysis["generation"]["methods"] == ["lape"]
    demo["analysis"]["generation"] = {"methods": ["zscore", "ap"]}
    fails(demo, "analysis.generation.methods: ['ap'] not in analysis.key_neuron_methods")


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
    assert (ckpt.revision, ckpt.step) == ("global_step1000", 1000)
    assert cfg.models["bloom-7b1"].trust_remote_code is False
    assert cfg.toy is None and cfg.toy_models == []


def test_reserved_model_names_get_a_plain_message(demo):
    for name in ("summary", "toy"):
        config = copy.deepcopy(demo)
        config["models"][name] = copy.deepcopy(demo["models"]["toy-bloom-s"])
        message = fails(config, f"models: {name!r} is a reserved name", "rename the model")
        assert "should not be valid under" not in message and "enum" not in message
    demo["models"]["a b"] = copy.deepcopy(demo["models"]["toy-bloom-s"])
    fails(demo, "models: 'a b' does not match")


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:0", "cuda:12", "mps"])
def test_devices(demo, device):
    demo["analysis"]["device"] = device
    assert load_config(demo).analysis["device"] == device


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "CUDA", "cuda 1", "tpu"])
def test_an_unknown_device_is_refused(demo, device):
    demo["analysis"]["device"] = device
    fails(demo, f"analysis.device: {device!r} is not a device; use cpu, cuda, cuda:N or mps")


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("analysis", "z_threshold", 0),
        ("analysis", "z_threshold", -1),
        ("analysis", "seed", -1),
        ("analysis", "random_baseline_seeds", [0, 0]),
        ("analysis", "random_baseline_seeds", [-3]),
        ("toy-bloom-s", "learning_rate", 2.0),
        ("toy-bloom-s", "weight_decay", 1.5),
        ("toy-bloom-s", "seed", -1),
    ],
)
def test_numbers_out_of_range_are_refused(demo, section, key, value):
    target = demo["analysis"] if section == "analysis" else demo["models"][section]["toy"]
    target[key] = value
    path = f"analysis.{key}" if section == "analysis" else f"models.{section}.toy.{key}"
    fails(demo, path)


@pytest.mark.parametrize(
    "kind, source, required",
    [
        ("probe", "tsv", "path"),
        ("probe", "bible_ces", "dir"),
        ("probe", "bible_opus", "dir"),
        ("probe", "flores", "dir"),
        ("perplexity", "text_files", "dir"),
    ],
)
def test_each_source_names_its_required_option(demo, kind, source, required):
    demo["data"][kind] = {"source": source}
    fails(demo, f"missing required entry data.{kind}.options.{required}")
    demo["data"][kind]["options"] = {required: "somewhere"}
    load_config(demo)


def test_an_unknown_source_option_is_refused(demo):
    demo["data"]["probe"]["options"] = {"dri": "resources/corpus"}
    fails(demo, "unknown key data.probe.options.dri (allowed here: dir)")
    demo["data"]["probe"] = {"source": "flores", "options": {"dir": "x", "split": "test"}}
    fails(demo, "data.probe.options.split: 'test' is not one of ['dev', 'devtest']")
    demo["data"]["probe"] = {"source": "bible_ces", "options": {"dir": "x", "files": {"zh": 1}}}
    fails(demo, "data.probe.options.files.zh")


def test_a_missing_source_is_named_once(demo):
    del demo["data"]["probe"]["source"]
    message = fails(demo, "missing required entry data.probe.source")
    assert "1 problem(s)" in message


def test_toy_settings_training_would_refuse(demo):
    toy = demo["models"]["toy-bloom-s"]["toy"]
    toy["save_steps"] = [0, 600, 700, 800]
    fails(demo, "models.toy-bloom-s.toy.save_steps: [700, 800] go beyond steps (600)")
    toy["save_steps"], toy["num_heads"] = [0, 600], 5
    fails(demo, "models.toy-bloom-s.toy.num_heads: 5 does not divide hidden_size (64)")
    toy["num_heads"], toy["intermediate_size"] = 4, 100
    fails(demo, "models.toy-bloom-s.toy.intermediate_size: BLOOM's MLP width is 4 × hidden_size")


def test_lape_settings_default_and_range(demo):
    from lingua_franca.lape import DEFAULTS

    assert load_config(copy.deepcopy(demo)).analysis["lape"] == {**DEFAULTS, "top_rate": 0.1}
    del demo["analysis"]["lape"]  # the demo's own top_rate
    assert load_config(copy.deepcopy(demo)).analysis["lape"] == DEFAULTS
    demo["analysis"]["lape"] = {"top_rate": 0.05}
    assert load_config(copy.deepcopy(demo)).analysis["lape"]["filter_rate"] == 0.95
    demo["analysis"]["lape"] = {"filter_rate": 0, "activation_bar_ratio": 1.5}
    fails(demo, "analysis.lape.filter_rate", "analysis.lape.activation_bar_ratio")


def test_ap_settings_default_and_range(demo):
    from lingua_franca.ap import DEFAULTS

    demo["analysis"].pop("ap", None)
    assert load_config(copy.deepcopy(demo)).analysis["ap"] == DEFAULTS
    demo["analysis"]["ap"] = {"top": 2000, "bottom": 0}
    assert load_config(copy.deepcopy(demo)).analysis["ap"] == {"top": 2000, "bottom": 0}
    demo["analysis"]["ap"] = {"top": 1.5, "bottom": -3}
    message = "is neither a count (0, 1, 2, …) nor a fraction of K in (0, 1)"
    fails(demo, f"analysis.ap.bottom: -3 {message}", f"analysis.ap.top: 1.5 {message}")


def test_key_neuron_methods(demo):
    """z-scores and LAPE by default; the paper's z-scores always (docs/method.md §9)."""
    del demo["analysis"]["key_neuron_methods"]
    demo["analysis"].get("generation", {}).pop("methods", None)  # sampled: all that run
    default = load_config(copy.deepcopy(demo)).analysis["key_neuron_methods"]
    assert default[0] == "zscore" and "lape" in default
    demo["analysis"]["key_neuron_methods"] = ["zscore"]
    assert load_config(copy.deepcopy(demo)).analysis["key_neuron_methods"] == ["zscore"]
    message = "must list zscore (the paper's method, always computed) and each method once"
    for bad in (["lape"], [], ["zscore", "lape", "lape"]):
        demo["analysis"]["key_neuron_methods"] = bad
        fails(demo, f"analysis.key_neuron_methods: {bad!r} {message}")
    demo["analysis"]["key_neuron_methods"] = ["zscore", "LAPE"]
    fails(demo, f"analysis.key_neuron_methods.1: 'LAPE' is not one of {list(METHODS)}")


def test_tokenizer_source_per_model(demo):
    """docs/method.md §8: a model's `tokenizer` entry (Hub id + revision, or a folder)
    serves every checkpoint; without it each checkpoint is its own tokenizer."""
    cfg = load_config(demo)
    settings = cfg.job_settings("toy-bloom-s", "step-300", model_folder="trained")
    assert settings["tokenizer"] == {"location": "trained/step-300", "revision": None}
    demo["models"]["toy-bloom-s"]["tokenizer"] = {"path": "results/data/tokenizer"}
    settings = load_config(demo).job_settings("toy-bloom-s", "step-300", model_folder="trained")
    assert settings["tokenizer"] == {"location": "results/data/tokenizer", "revision": None}
    hub = load_config_file(ROOT / "resources/experiments/bloom-7b1-checkpoints.yaml")
    for c in hub.grid():
        assert hub.job_settings(c.model, c.name)["tokenizer"] == {
            "location": "bigscience/bloom-7b1",
            "revision": "main",
        }
        assert hub.job_settings(c.model, c.name)["revision"] == c.name  # global_stepN


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"hub_id": "a/b", "path": "x"}, "give exactly one of 'hub_id'"),
        ({"revision": "main"}, "give exactly one of 'hub_id'"),
        ({"path": "x", "revision": "main"}, "'revision' needs 'hub_id'"),
        ({"hub_id": "a/b", "branch": "main"}, "unknown key models.toy-bloom-s.tokenizer.branch"),
    ],
)
def test_tokenizer_entry_errors(demo, entry, message):
    demo["models"]["toy-bloom-s"]["tokenizer"] = entry
    fails(demo, message)


def test_the_schema_describes_the_tokenizer_entry():
    from lingua_franca.config import load_schema

    entry = load_schema()["$defs"]["model"]["properties"]["tokenizer"]
    assert "bloom-*-intermediate" in entry["description"]
    assert {"hub_id", "revision", "path"} <= set(entry["properties"])
