"""The paper's experiment configs (resources/experiments/*.yaml): each validates, names
the real models, revisions and data sources, and `snakemake -n --configfile X` plans
its whole grid offline."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from lingua_franca.config import load_config_file
from lingua_franca.languages import PAPER_LANGUAGES

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((ROOT / "resources" / "experiments").glob("*.yaml"))
NAMES = [p.stem for p in EXPERIMENTS]

from tiny_workflow import job_counts, parse_jobs, write_opus_corpus

# docs/method.md §8: exact parameter counts (layers × width = K in the comments of the configs)
PARAMETERS = {
    "bigscience/bloom-560m": 559_214_592,
    "bigscience/bloom-1b1": 1_065_314_304,
    "bigscience/bloom-1b7": 1_722_408_960,
    "bigscience/bloom-3b": 3_002_557_440,
    "bigscience/bloom-7b1": 7_069_016_064,
    "bigscience/bloom-7b1-intermediate": 7_069_016_064,
    "meta-llama/Llama-2-7b-hf": 6_738_415_616,
    "meta-llama/Llama-2-13b-hf": 13_015_864_320,
    "meta-llama/Llama-2-70b-hf": 68_976_648_192,
}
REVISION_STEP = re.compile(r"^(?:global_)?step(\d+)$")


def test_the_paper_grid_is_covered():
    expected = {"bloom-scales", "bloom-7b1-checkpoints", "llama2-scales", "pythia-checkpoints"}
    assert expected <= set(NAMES)
    hub_ids = {m.hub_id for path in EXPERIMENTS for m in load_config_file(path).models.values()}
    assert {h for h in PARAMETERS if h != "bigscience/bloom-7b1-intermediate"} <= hub_ids
    assert "bigscience/bloom-7b1-intermediate" in hub_ids


@pytest.mark.parametrize("path", EXPERIMENTS, ids=NAMES)
def test_an_experiment_config_is_valid_and_real(path):
    cfg = load_config_file(path)  # the schema, defaults, languages
    assert cfg.languages == PAPER_LANGUAGES
    assert cfg.toy is None and not cfg.toy_models
    assert cfg.data["probe"]["source"] in ("bible_opus", "bible_ces")
    assert cfg.data["probe"]["options"]["dir"]  # the folder the user fills
    assert cfg.data["probe"]["n_items"] == 100
    assert cfg.data["perplexity"]["source"] == "xlsum"
    assert cfg.data["xstorycloze"]["source"] == "xstorycloze"
    assert cfg.analysis["device"].startswith("cuda")
    for model in cfg.models.values():
        assert model.hub_id, f"{model.name}: a Hub model"
        # cluster memory and time scale with the parameter count
        assert model.parameters and model.parameters > 1e7, model.name
        if model.hub_id in PARAMETERS:
            assert model.parameters == PARAMETERS[model.hub_id], model.name
        assert model.dtype in ("float16", "bfloat16")
        revisions = [c.revision for c in model.checkpoints.values()]
        assert len(set(revisions)) == len(revisions)
        for c in model.checkpoints.values():
            m = REVISION_STEP.match(c.revision)
            if m:  # a training checkpoint: its step is the branch's number
                assert c.step == int(m.group(1)), f"{model.name}/{c.name}"
        if model.parameters > 30e9:
            assert model.device_map == "auto", f"{model.name} spans several GPUs"


def test_the_checkpoint_experiments_name_the_published_branches():
    bloom = load_config_file(ROOT / "resources/experiments/bloom-7b1-checkpoints.yaml")
    (model,) = bloom.models.values()
    assert model.hub_id == "bigscience/bloom-7b1-intermediate"
    assert sorted(c.step for c in model.checkpoints.values()) == [
        1000,
        10000,
        50000,
        100000,
        150000,
        200000,
        250000,
        300000,
    ]
    pythia = load_config_file(ROOT / "resources/experiments/pythia-checkpoints.yaml")
    log_spaced = {0} | {2**i for i in range(10)}
    for model in pythia.models.values():
        assert model.hub_id.startswith("EleutherAI/pythia-")
        steps = {c.step for c in model.checkpoints.values()}
        assert log_spaced <= steps and 143000 in steps
        assert all(s in log_spaced or s % 1000 == 0 and s <= 143000 for s in steps)


@pytest.mark.workflow
@pytest.mark.parametrize("path", EXPERIMENTS, ids=NAMES)
def test_a_dry_run_plans_the_whole_grid_offline(path, tmp_path):
    """`snakemake -n --configfile resources/experiments/X.yaml` from the repository
    root, in an empty working directory (results of earlier runs would hide jobs)
    holding only a small probe corpus in the OPUS layout: nothing is fetched."""
    cfg = load_config_file(path)
    grid = {(c.model, c.name) for c in cfg.grid()}
    # the probe corpus the user downloads (relative: to the working directory); the
    # planning checks read it for n_items
    write_opus_corpus(tmp_path / cfg.data["probe"]["options"]["dir"], cfg.languages, 120)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--configfile",
            str(path),
            "--directory",
            str(tmp_path),
        ],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    counts = job_counts(output)
    assert counts["prepare_probe"] == 1
    assert counts["extract_activations"] == len(grid)
    assert counts["compute_metrics"] == len(grid)
    assert "train_toy" not in counts and "train_tokenizer" not in counts
    # every model × checkpoint job of any rule belongs to the configured grid, and
    # every grid point has its jobs
    planned = {
        (j.wildcards["model"], j.wildcards["checkpoint"])
        for j in parse_jobs(output)
        if "model" in j.wildcards and "checkpoint" in j.wildcards
    }
    assert planned == grid
    # cluster resources (profiles/slurm asks SLURM for them): the model's GPUs (one
    # unless its entry says more), memory and time growing with the model's size
    extract = sorted(
        (j for j in parse_jobs(output) if j.rule == "extract_activations"),
        key=lambda j: cfg.models[j.wildcards["model"]].parameters,
    )
    assert all(
        j.resources["gpu"] == str(cfg.models[j.wildcards["model"]].gpus or 1) for j in extract
    )
    mem = [int(j.resources["mem_mb"]) for j in extract]
    runtime = [int(j.resources["runtime"]) for j in extract]
    assert mem == sorted(mem) and runtime == sorted(runtime)
    if len({m.parameters for m in cfg.models.values()}) > 1:
        assert mem[-1] > mem[0] and runtime[-1] > runtime[0]


def test_the_configs_keep_their_comments_for_the_user():
    """The probe folder is the user's to fill: each config says how."""
    for path in EXPERIMENTS:
        text = path.read_text()
        assert "object.pouta.csc.fi/OPUS-bible-uedin" in text, path.name
        assert yaml.safe_load(text)["data"]["probe"]["options"]["dir"]
