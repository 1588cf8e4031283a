"""Planning-time checks (lingua_franca.checks): every configured local path, the files
each data source reads, n_items against the corpus; each problem named by its key."""

import copy
import os
import shutil
import time
import zipfile
from pathlib import Path

import pytest
import yaml
from helpers import FIXTURES
from lingua_franca import checks
from lingua_franca.checks import data_inputs, preflight, probe_item_count
from lingua_franca.config import ConfigError, load_config
from lingua_franca.corpora import CorpusError, source_files
from lingua_franca.fetch import fetched_data

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "resources" / "corpus"


@pytest.fixture
def demo():
    """The demo config with absolute paths (the tests run from anywhere)."""
    config = yaml.safe_load((ROOT / "workflow_config.yaml").read_text())
    for section in config["data"].values():
        section["options"] = {"dir": str(DEMO)}
    config["toy"]["training_text"] = [str(DEMO / "train_part1.tsv")]
    return config


def problems(config, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        preflight(load_config(config), **kw)
    return str(info.value)


def test_the_demo_passes(demo):
    assert preflight(load_config(demo)) == []


def test_every_missing_local_path_is_named_with_its_key(demo, tmp_path):
    (tmp_path / "not-a-model").mkdir()
    demo["toy"]["training_text"].append(str(tmp_path / "train_part9.tsv"))
    demo["data"]["probe"]["options"]["dir"] = str(tmp_path / "corpus_typo")
    demo["models"]["local"] = {"path": str(tmp_path / "models" / "bloom")}
    demo["models"]["folders"] = {
        "path": str(tmp_path),
        "checkpoints": {
            "a": {"folder": "not-a-model"},
            "b": {"folder": "missing"},
        },
    }
    message = problems(demo)
    assert "5 problem(s)" in message, message
    for line in [
        f"toy.training_text.1: no such file ({tmp_path}/train_part9.tsv)",
        f"data.probe.options.dir: no such folder ({tmp_path}/corpus_typo)",
        f"models.local.path: no such folder ({tmp_path}/models/bloom)",
        (
            "models.folders.checkpoints.a.folder: not a Hugging Face model folder:"
            f" no config.json ({tmp_path}/not-a-model)"
        ),
        f"models.folders.checkpoints.b.folder: no such folder ({tmp_path}/missing)",
    ]:
        assert f"  - {line}\n" in message + "\n", message
    # the checkpoints of a missing model folder are not listed once more
    assert "models.local.checkpoints" not in message


def test_a_hub_id_given_as_a_path_gets_a_hint(demo):
    demo["models"]["bloom"] = {"path": "bigscience/bloom-560m"}
    message = problems(demo)
    assert (
        "models.bloom.path: no such folder (bigscience/bloom-560m); a Hub model is named with hub_id"
        in message
    )


def test_a_local_model_folder_passes(demo, tmp_path):
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "config.json").write_text("{}")
    demo["models"]["mine"] = {"path": str(tmp_path), "checkpoints": {"f": {"folder": "final"}}}
    assert preflight(load_config(demo)) == []


def test_a_file_missing_inside_a_corpus_folder_is_named(demo, tmp_path):
    corpus = shutil.copytree(DEMO, tmp_path / "corpus")
    (corpus / "heldout.tsv").unlink()
    demo["data"]["perplexity"]["options"]["dir"] = str(corpus)
    message = problems(demo)
    assert f"data.perplexity.options.dir: no such file ({corpus}/heldout.tsv)" in message


def test_per_language_files_are_checked(demo, tmp_path):
    for lang in ("en", "zh"):
        (tmp_path / f"{lang}.txt").write_text(f"{lang} text")
    demo["data"]["perplexity"] = {"source": "text_files", "options": {"dir": str(tmp_path)}}
    message = problems(demo)
    assert "data.perplexity.options.dir: no such files (" in message
    assert f"{tmp_path}/fr.txt" in message and f"{tmp_path}/zh.txt" not in message


def test_n_items_is_checked_against_the_local_corpus(demo, tmp_path):
    demo["data"]["probe"]["n_items"] = 1000
    message = problems(demo, cache_dir=tmp_path)
    assert (
        "data.probe.n_items: 1000 is more than the corpus holds, 120 items in every language"
        f" ({DEMO})"
    ) in message
    demo["data"]["probe"]["n_items"] = 120
    assert preflight(load_config(demo), cache_dir=tmp_path) == []
    demo["data"]["probe"]["n_items"] = 1000
    assert preflight(load_config(demo), count_items=False) == []  # a cluster job's parse


def test_sampled_prompts_are_checked_against_the_items_the_probe_leaves(demo, tmp_path):
    """analysis.generation.samples comes from the items the probe does not use: the
    embedded corpus holds 120 probe and 80 held-out items (docs/method.md §11)."""
    demo["data"]["probe"]["n_items"] = 100
    demo["analysis"]["generation"] = {"samples": 101}
    message = problems(demo, cache_dir=tmp_path)
    assert (
        "analysis.generation.samples: 101 prompts per language asked, but only 100 items of"
        f" the probe corpus are not in the probe ({DEMO})"
    ) in message, message
    demo["analysis"]["generation"] = {"samples": 100}
    assert preflight(load_config(demo), cache_dir=tmp_path) == []
    demo["analysis"]["generation"] = {"samples": 0}
    demo["analysis"]["steering"] = {"enabled": False}  # steering needs the prompts
    demo["data"]["probe"]["n_items"] = 120
    assert preflight(load_config(demo), cache_dir=tmp_path) == []


def test_a_language_the_identifier_cannot_name_stops_the_plan(demo, monkeypatch):
    from lingua_franca import language_id

    monkeypatch.setattr(language_id, "supported_languages", lambda: frozenset({"en", "fr"}))
    demo["analysis"]["generation"] = {"samples": 10}
    message = problems(demo)
    assert (
        "analysis.generation.samples: languages ['ar', 'es', 'hi', 'id', 'pt', 'vi', 'zh']"
        in message
    )
    assert "cannot be identified" in message
    demo["analysis"]["generation"] = {"samples": 0}  # no statistics, nothing to identify
    demo["analysis"]["steering"] = {"enabled": False}
    assert preflight(load_config(demo)) == []


def test_n_items_counts_the_items_every_language_has(demo, tmp_path):
    languages = ["en", "fr", "zh"]
    rows = [f"{i}\t{lang}\t{lang} {i}" for i in range(5) for lang in languages]
    rows += [f"{i}\ten\ten {i}" for i in range(5, 9)]  # English only: not parallel
    path = tmp_path / "corpus.tsv"
    path.write_text("id\tlang\ttext\n" + "\n".join(rows) + "\n")
    demo["languages"] = languages
    demo["data"]["probe"] = {"source": "tsv", "options": {"path": str(path)}, "n_items": 5}
    message = problems(demo)  # the job's own validation, at planning
    assert "data.probe: probe source 'tsv'" in message
    assert "item '5', language 'fr': missing" in message


def test_the_item_count_is_kept_until_a_file_changes(tmp_path, monkeypatch):
    options = {"dir": str(DEMO)}
    files = source_files("probe", "embedded", options, ["en", "fr"])
    assert probe_item_count("embedded", options, ["en", "fr"], files, tmp_path) == 120
    assert (tmp_path / checks.ITEM_COUNTS).is_file()

    def unread(*args):
        raise AssertionError("read again")

    monkeypatch.setattr(checks, "load_probe_corpus", unread)
    assert probe_item_count("embedded", options, ["en", "fr"], files, tmp_path) == 120
    # another corpus file (here: the same one, newer) is read again
    copy_dir = shutil.copytree(DEMO, tmp_path / "corpus")
    stamp = time.time() + 10
    os.utime(copy_dir / "probe.tsv", (stamp, stamp))
    moved = {"dir": str(copy_dir)}
    with pytest.raises(AssertionError, match="read again"):
        probe_item_count("embedded", moved, ["en", "fr"], [copy_dir / "probe.tsv"], tmp_path)


def test_hub_sources_are_not_files(demo):
    demo["data"]["perplexity"] = {
        "source": "xlsum",
        "options": {"dir": "hf://datasets/csebuetnlp/xlsum@refs%2Fconvert%2Fparquet"},
    }
    demo["data"]["xstorycloze"] = {
        "source": "xstorycloze",
        "options": {"dir": "hf://datasets/juletxara/xstory_cloze", "split": "eval"},
    }
    assert preflight(load_config(demo)) == []


def test_what_the_fetch_step_writes_is_checked_when_its_reader_is_planned(demo, tmp_path):
    """The default XL-Sum and XStoryCloze folders (data/...) are the fetch step's to
    fill: planning the fetch step must not need them, planning their readers must."""
    demo["data"]["perplexity"] = {"source": "xlsum", "options": {"dir": str(tmp_path / "x")}}
    demo["data"]["xstorycloze"] = {"source": "xstorycloze", "options": {"split": "eval"}}
    cfg = load_config(demo)
    assert fetched_data(cfg) == {"perplexity", "xstorycloze"}
    assert preflight(cfg, fetched=fetched_data(cfg)) == []
    message = problems(demo)  # without the fetch step's exemption
    assert "data.perplexity.options.dir: no such folder" in message
    with pytest.raises(ConfigError, match=r"data\.perplexity\.options\.dir: .*fetch"):
        data_inputs(cfg, "perplexity", ["en"])
    with pytest.raises(ConfigError, match=r"data\.xstorycloze\.options\.dir: .*fetch"):
        data_inputs(cfg, "xstorycloze")
    assert data_inputs(cfg, "probe") == [str(DEMO / "probe.tsv"), str(DEMO / "heldout.tsv")]


def test_z_threshold_beyond_what_a_z_score_reaches_is_noted(demo):
    demo["languages"] = ["en", "fr", "zh"]
    (note,) = preflight(load_config(demo))
    assert note.startswith("analysis.z_threshold: 2.0 leaves every key region empty")
    assert "√2 = 1.41" in note
    demo["analysis"]["z_threshold"] = 1.2
    assert preflight(load_config(demo)) == []


def test_a_relative_path_elsewhere_hints_at_the_repository_root(demo, tmp_path, monkeypatch):
    demo["data"]["probe"]["options"]["dir"] = "resources/corpus"
    monkeypatch.chdir(tmp_path)
    message = problems(demo, root=ROOT)
    assert "data.probe.options.dir: no such folder (resources/corpus)" in message
    assert f"run snakemake from the repository root, {ROOT}" in message
    monkeypatch.chdir(ROOT)
    assert preflight(load_config(demo), root=ROOT) == []


def test_a_run_elsewhere_is_noted(demo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (note,) = preflight(load_config(demo), root=ROOT)
    assert f"the working directory {tmp_path} is not the repository root {ROOT}" in note


# ---------------------------------------------------------------- source_files


def opus_zips(folder):
    for pair in ("en-fr", "en-zh"):
        with zipfile.ZipFile(folder / f"{pair}.txt.zip", "w") as zipped:
            for member in (FIXTURES / "opus").glob(f"bible-uedin.{pair}.*"):
                zipped.write(member, member.name)
    return folder


@pytest.mark.parametrize(
    "kind, source, options, languages, expected",
    [
        # the held-out items join the pool of the sampled prompts (docs/method.md §11)
        (
            "probe",
            "embedded",
            {"dir": str(DEMO)},
            ["en"],
            [DEMO / "probe.tsv", DEMO / "heldout.tsv"],
        ),
        ("perplexity", "embedded", {}, ["en"], [Path("resources/corpus/heldout.tsv")]),
        ("xstorycloze", "embedded", {"dir": str(DEMO)}, ["en"], [DEMO / "stories.jsonl"]),
        ("probe", "tsv", {"path": str(DEMO / "heldout.tsv")}, ["en"], [DEMO / "heldout.tsv"]),
        (
            "probe",
            "bible_ces",
            {"dir": str(FIXTURES / "bible_ces")},
            ["en", "zh"],
            [FIXTURES / "bible_ces" / "English.xml", FIXTURES / "bible_ces" / "Chinese.xml"],
        ),
        (
            "probe",
            "bible_opus",
            {"dir": str(FIXTURES / "opus")},
            ["en", "fr"],
            [FIXTURES / "opus" / f"bible-uedin.en-fr.{s}" for s in ("en", "fr", "ids")],
        ),
        (
            "probe",
            "flores",
            {"dir": str(FIXTURES / "flores200_dataset")},
            ["en", "fr"],
            [FIXTURES / "flores200_dataset" / "dev" / f"{c}.dev" for c in ("eng_Latn", "fra_Latn")],
        ),
        (
            "xstorycloze",
            "xstorycloze",
            {"dir": str(FIXTURES / "xstorycloze")},
            ["en", "fr"],  # XStoryCloze has no French: no file
            [FIXTURES / "xstorycloze" / "spring2016.val.en.tsv.split_20_80_eval.tsv"],
        ),
        ("perplexity", "xlsum", {"dir": "hf://datasets/csebuetnlp/xlsum"}, ["en"], []),  # the Hub
        ("xstorycloze", "xstorycloze", {"dir": "hf://datasets/juletxara/xstory_cloze"}, ["en"], []),
    ],
)
def test_source_files_are_the_files_a_source_reads(
    kind, source, options, languages, expected, monkeypatch
):
    monkeypatch.chdir(ROOT)  # the default embedded folder is relative
    assert source_files(kind, source, options, languages) == expected


def test_source_files_of_zipped_pairs_and_text_files(tmp_path):
    opus_zips(tmp_path)
    assert source_files("probe", "bible_opus", {"dir": str(tmp_path)}, ["zh", "fr", "en"]) == [
        tmp_path / "en-zh.txt.zip",
        tmp_path / "en-fr.txt.zip",
    ]
    for lang in ("fr", "zh"):
        (tmp_path / f"{lang}.txt").write_text(lang)
    options = {"dir": str(tmp_path)}
    assert source_files("perplexity", "text_files", options, ["zh"]) == [tmp_path / "zh.txt"]
    with pytest.raises(CorpusError, match=rf"no such file \({tmp_path}/en\.txt\)"):
        source_files("perplexity", "text_files", options, ["fr", "en"])


def test_source_files_of_a_local_xlsum_copy(tmp_path):
    for config in ("english", "french"):
        (tmp_path / config / "validation").mkdir(parents=True)
        (tmp_path / config / "validation" / "0000.parquet").write_bytes(b"")
    options = {"dir": str(tmp_path)}
    assert source_files("perplexity", "xlsum", options, ["fr"]) == [
        tmp_path / "french" / "validation" / "0000.parquet"
    ]
    with pytest.raises(CorpusError, match="XL-Sum zh: no file matches"):
        source_files("perplexity", "xlsum", options, ["en", "zh"])


def test_source_files_name_what_is_missing():
    with pytest.raises(CorpusError, match=r"language 'vi': no file .*Vietnamese\.xml"):
        source_files("probe", "bible_ces", {"dir": str(FIXTURES / "bible_ces")}, ["en", "vi"])
    with pytest.raises(CorpusError, match=r"pair en-vi \(language 'vi'\): neither"):
        source_files("probe", "bible_opus", {"dir": str(FIXTURES / "opus")}, ["en", "vi"])
    with pytest.raises(CorpusError, match="needs the option 'path'"):
        source_files("probe", "tsv", {}, ["en"])


def test_configs_are_not_changed_by_the_checks(demo):
    before = copy.deepcopy(demo)
    cfg = load_config(demo)
    preflight(cfg)
    assert demo == before


def test_a_device_torch_cannot_use_here_is_named(monkeypatch):
    """analysis.device against what torch finds on this machine (planning, or a
    cluster job's start: lingua_franca.checks.device_problem)."""
    import torch
    from lingua_franca.checks import device_problem

    device_problem.cache_clear()  # what torch finds is kept for the process
    assert device_problem("cpu") is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    problem = device_problem("cuda")
    assert problem.startswith("analysis.device: 'cuda' is not available here"), problem
    assert "torch.cuda.is_available() is False" in problem and torch.__version__ in problem
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    device_problem.cache_clear()
    assert device_problem("cuda") is None and device_problem("cuda:0") is None
    problem = device_problem("cuda:1")
    assert problem.startswith("analysis.device: 'cuda:1' is not available here"), problem
    assert "1 CUDA device" in problem
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    device_problem.cache_clear()
    assert device_problem("mps").startswith("analysis.device: 'mps' is not available here")
    device_problem.cache_clear()  # not what the mocks said, for later tests


def test_the_slurm_profile_leaves_the_device_check_to_each_job(monkeypatch):
    """Its login node has no GPU: the profile sets LINGUA_FRANCA_DEVICE_CHECK=job."""
    import yte

    monkeypatch.setenv(checks.DEVICE_CHECK, "placeholder")  # so that it is put back
    monkeypatch.delenv(checks.DEVICE_CHECK)
    with open(ROOT / "profiles" / "slurm" / "config.yaml", encoding="utf-8") as profile:
        yte.process_yaml(profile)
    assert os.environ[checks.DEVICE_CHECK] == "job"
