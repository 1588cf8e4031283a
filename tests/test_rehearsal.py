"""The rehearsal of a real run: every experiment config of resources/experiments/, cut
down by an overlay (tests/hub_rehearsal.py: two model × checkpoint pairs, CPU, tiny
batches), runs end to end (not a dry run) offline, against a Hugging Face cache
shaped like the Hub's and data files in their published layouts, all written by the
fetch step (lingua_franca.fetch) through a stand-in downloader. The models are tiny
and random; what is rehearsed is that every job finds, reads and records what the
real grid would give it: the BLOOM intermediate checkpoints' tokenizer from the final
model, the 10-column Spanish XStoryCloze file, Bible zips without .ids (Genesis 1:1-3,
the generation prompts, found by their English text), BLOOM's 2048-token windows
whatever its config says, sharded safetensors beside sharded .bin (2 and 15 shards),
sharded .bin training branches, gated repositories, equal models in different files,
and no network anywhere.
"""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
import zarr
from hub_rehearsal import (
    AMBIGUOUS_PAIR,
    GENESIS,
    KEEP,
    XSTORYCLOZE_CONFIGS,
    StandInDownloader,
    overlay,
)
from lingua_franca.config import load_config
from lingua_franca.fetch import fetch_all

pytestmark = pytest.mark.workflow

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "resources" / "experiments"
WINDOW = {"bloom": 2048, "llama2": 4096, "pythia": 2048}  # docs/method.md §5
MODEL_RULES = ("extract_activations", "ablate_key_neurons", "evaluate_xstorycloze")


def run_offline(workdir: Path, hf_home: Path, config_path: Path):
    env = {
        **os.environ,
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_UPDATE_DOWNLOAD_COUNTS": "0",
        "HF_ENDPOINT": "http://127.0.0.1:9",  # were anything to try the Hub: refused at once
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--configfile",
            str(config_path),
            "--directory",
            str(workdir),
            "--cores",
            "2",
            # one thread per model job, so that the two checkpoints' chains run side by
            # side on two cores (their jobs spend most of their time importing)
            "--set-threads",
            *(f"{rule}=1" for rule in MODEL_RULES),
        ],
        cwd=ROOT,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.parametrize("name", sorted(KEEP))
def test_an_experiment_config_runs_end_to_end_offline(name, remote, tmp_path, monkeypatch):
    config = overlay(yaml.safe_load((EXPERIMENTS / f"{name}.yaml").read_text()), name)
    workdir, hf_home = tmp_path / "run", tmp_path / "hf"
    workdir.mkdir()
    config_path = tmp_path / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    cfg = load_config(config)

    # the fetch step (on the login node), into HF_HOME and the data folders
    monkeypatch.chdir(workdir)
    downloader = StandInDownloader(remote, hf_home)
    manifests = fetch_all(cfg, downloader)
    monkeypatch.chdir(ROOT)
    assert sorted(p.name for p in (workdir / "data").iterdir()) == [
        "bible-uedin",
        "fetched",
        "xlsum",
        "xstory_cloze",
    ]

    # then the whole grid, offline
    result = run_offline(workdir, hf_home, config_path)
    log = result.stdout + result.stderr
    (tmp_path / "snakemake.log").write_text(log)
    assert result.returncode == 0, log[-5000:]
    results = workdir / "results"
    summary = pd.read_csv(results / "summary" / "metrics.csv")
    assert sorted(zip(summary["model"], summary["checkpoint"], strict=True)) == sorted(
        (m, c) for m, checkpoints in KEEP[name].items() for c in checkpoints
    )

    for c in cfg.grid():
        folder = results / c.model / c.name
        model = cfg.models[c.model]
        # the weights from_pretrained read: the first layout the revision has, every
        # shard its index lists, never the .bin beside safetensors; fetched, loaded and
        # fingerprinted alike
        published = remote.repos["model", model.hub_id, c.revision]
        expected_weights = published_weights(published)
        store = zarr.open_group(folder / "activations.zarr", mode="r")
        assert sorted(store.attrs["weights_files"]) == expected_weights, c
        fetched = manifests[f"model-{c.model}-{c.name}"]["files"]
        assert [f for f in fetched if f.endswith((".safetensors", ".bin"))] == expected_weights
        ablation = json.loads((folder / "ablation.json").read_text())
        # break 4: BLOOM's window is 2048 at every size (bloom-1b7's config says 4096)
        assert ablation["seqlen"] == WINDOW[model.family], (c.model, ablation["seqlen"])
        # break 1: the tokenizer source is used and recorded
        source = ablation["source"]
        assert source["revision"] == c.revision and source["location"] == model.hub_id
        expected = model.tokenizer or {"location": model.hub_id, "revision": c.revision}
        assert source["tokenizer"] == expected
        # the fetch manifest names the commit of the revision
        manifest = manifests[f"model-{c.model}-{c.name}"]
        assert manifest["commit"] == remote.commit(model.hub_id, c.revision)
        # break 2: every XStoryCloze language was evaluated, Spanish included, and the
        # ones outside the probe languages too (docs/method.md §6)
        xstorycloze = json.loads((folder / "xstorycloze.json").read_text())["languages"]
        assert sorted(xstorycloze) == sorted(XSTORYCLOZE_CONFIGS)
        for lang in XSTORYCLOZE_CONFIGS:
            assert xstorycloze[lang]["cross"]["n"] == xstorycloze[lang]["mono"]["n"] == 2
    stories = json.loads((results / "data" / "xstorycloze.json").read_text())
    assert sorted(stories["stories"]) == sorted(XSTORYCLOZE_CONFIGS) and stories["missing"] == []
    assert len(stories["stories"]["es"]) == len(stories["stories"]["en"]) == 48

    # break 3: the zips hold no .ids: pairs are aligned by the English text; what each
    # pair lost is logged and recorded beside the probe
    members = {
        pair: zipfile.ZipFile(workdir / "data" / "bible-uedin" / f"{pair}.txt.zip").namelist()
        for pair in ("ar-en", "en-es", "en-fr", "en-zh")
    }
    assert not [name for names in members.values() for name in names if name.endswith(".ids")]
    alignment = json.loads((results / "data" / "probe_alignment.json").read_text())
    assert alignment["aligned_by"] == "english_text"
    pairs = alignment["pairs"]
    assert sorted(pairs) == sorted(members)
    assert pairs[AMBIGUOUS_PAIR]["dropped_ambiguous"] == 2  # one English line, twice
    for pair in pairs.values():
        assert pair["kept"] == alignment["items_in_every_language"] > 50
        assert pair["lost"] == pair["lines"] - pair["kept"] > 0
        # Genesis 1:1-3, in the WEB's typeset wording, found by their text
        assert pair["named_by_english_text"] == ["b.GEN.1.1", "b.GEN.1.2", "b.GEN.1.3"]
    log = (workdir / "logs" / "data" / "prepare_probe.log").read_text()
    assert f"pair {AMBIGUOUS_PAIR} (aligned by english_text)" in log and "ambiguous 2" in log
    probe = pd.read_csv(results / "data" / "probe.tsv", sep="\t", dtype=str)
    assert probe["item"].str.fullmatch(r"b\.GEN\.1\.[123]|en#[0-9a-f]{12}").all()
    assert len(probe) == 6 * len(cfg.languages)
    # ... and the generation prompts are Genesis 1:1 in every language, as with .ids
    prompts = json.loads((results / "data" / "prompts.json").read_text())
    assert prompts["source"] == "genesis"
    for lang in cfg.languages:
        assert prompts["prompts"][lang] == [{"item": "b.GEN.1.1", "text": GENESIS[lang][0]}]

    # break 5: the data rules read what the fetch step wrote, in the published layout
    assert (workdir / "data/xlsum/spanish/validation/0000.parquet").is_file()
    assert not list((workdir / "data/xlsum").glob("*/train"))  # the validation split only

    # equal models are flagged, with the signal that found them (docs/method.md §7)
    flagged = summary.dropna(subset=["duplicate_of"])
    found = {(r.checkpoint, r.duplicate_of, r.duplicate_by) for r in flagged.itertuples()}
    fingerprints = summary["weights_fingerprint"].nunique()
    if name == "bloom-7b1-checkpoints":  # the Hub's global_step100000 = global_step200000
        duplicate = "bloom-7b1-intermediate/global_step100000"
        assert found == {("global_step200000", duplicate, "weights+activations")}
        assert fingerprints == 1
    elif name == "pythia-checkpoints":  # step0 = step1, in files with other bytes
        assert found == {("step1", "pythia-12b/step0", "activations")}
        assert fingerprints == 2
    else:
        assert not found and fingerprints == 2
    assert summary["activations_fingerprint"].notna().all()


def published_weights(files: dict[str, bytes]) -> list[str]:
    """The weight files from_pretrained reads from a published revision, by the index
    the revision carries (every shard it lists), else the single file."""
    layouts = (
        ("model.safetensors.index.json", "model.safetensors"),
        ("pytorch_model.bin.index.json", "pytorch_model.bin"),
    )
    for index, single in layouts:
        if index in files:
            return sorted(set(json.loads(files[index])["weight_map"].values()))
        if single in files:
            return [single]
    raise AssertionError(f"no weights in {sorted(files)}")
