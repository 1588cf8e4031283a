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

from tiny_workflow import job_counts, parse_jobs, write_fetched_layout, write_opus_corpus

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
MODEL_WORK = (
    "extract_activations",
    "compute_metrics",
    "select_key_neurons",
    "ablate_key_neurons",
    "compare_key_neurons",
    "evaluate_xstorycloze",
)


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


def dry_run(path: Path, workdir: Path, *targets: str) -> subprocess.CompletedProcess:
    """`snakemake -n` of an experiment config as a cluster's login node runs it: without
    a GPU, the device left to each job (LINGUA_FRANCA_DEVICE_CHECK=job)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env["LINGUA_FRANCA_DEVICE_CHECK"] = "job"
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", str(path)]
        + ["--directory", str(workdir), *targets],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.mark.workflow
def test_before_the_fetch_step_only_the_fetch_step_plans(tmp_path):
    """With nothing fetched yet, `snakemake -n fetch` plans the downloads, and the
    whole grid stops at planning, naming what is missing and the fetch command."""
    path = ROOT / "resources/experiments/bloom-scales.yaml"
    fetch = dry_run(path, tmp_path, "fetch")
    assert fetch.returncode == 0, (fetch.stdout + fetch.stderr)[-3000:]
    assert job_counts(fetch.stdout + fetch.stderr)["fetch_item"] > 1
    grid = dry_run(path, tmp_path)
    output = grid.stdout + grid.stderr
    assert grid.returncode != 0
    assert "data.probe.options.dir" in output or "data.perplexity.options.dir" in output
    assert "snakemake --configfile CONFIG fetch" in output


@pytest.mark.workflow
@pytest.mark.parametrize("path", EXPERIMENTS, ids=NAMES)
def test_a_dry_run_plans_the_whole_grid_offline(path, tmp_path):
    """`snakemake -n --configfile resources/experiments/X.yaml` from the repository
    root, in an empty working directory (results of earlier runs would hide jobs)
    holding what the fetch step writes: a small probe corpus in the OPUS layout (the
    planning checks read it for n_items and the sampled prompts) and the XL-Sum and
    XStoryCloze files."""
    cfg = load_config_file(path)
    grid = {(c.model, c.name) for c in cfg.grid()}
    write_opus_corpus(tmp_path / cfg.data["probe"]["options"]["dir"], cfg.languages, 240)
    write_fetched_layout(tmp_path, cfg)
    result = dry_run(path, tmp_path)
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
    # one group job per checkpoint holds its model jobs (on a cluster: one SLURM
    # job, tests/test_slurm.py)
    groups: dict[str, set] = {}
    for j in parse_jobs(output):
        if "checkpoint" in j.wildcards:
            assert j.group == f"model_work_{j.wildcards['model']}_{j.wildcards['checkpoint']}"
            groups.setdefault(j.group, set()).add(j.rule)
    assert len(groups) == len(grid)
    assert all(rules == set(MODEL_WORK) for rules in groups.values()), groups
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
    """Each config says where its data comes from and how to fetch it."""
    for path in EXPERIMENTS:
        text = path.read_text()
        assert "object.pouta.csc.fi/OPUS-bible-uedin" in text, path.name
        assert f"snakemake --configfile resources/experiments/{path.name} fetch" in text
        assert yaml.safe_load(text)["data"]["probe"]["options"]["dir"]


@pytest.mark.parametrize("path", EXPERIMENTS, ids=NAMES)
def test_an_experiment_config_is_offline_ready(path):
    """Every source a job reads is a local folder that the fetch step fills (no
    hf:// location that needs a network at job time), and the fetch plan holds every
    Hub checkpoint, tokenizer source, XL-Sum language, XStoryCloze file and Bible
    pair the config reads (tests/test_rehearsal.py runs the jobs offline)."""
    from lingua_franca.fetch import HubItem, UrlItem, plan

    cfg = load_config_file(path)
    for kind, section in cfg.data.items():
        folder = section["options"].get("dir")
        assert folder and "://" not in folder and folder.startswith("data/"), (kind, folder)
    items = plan(cfg)
    checkpoints = {
        (i.repo_id, i.revision)
        for i in items.values()
        if isinstance(i, HubItem) and i.local_dir is None
    }
    assert {(c.location, c.revision) for c in cfg.grid()} <= checkpoints
    for model in cfg.models.values():
        if model.tokenizer:
            assert items[f"tokenizer-{model.name}"].repo_id == model.tokenizer["location"]
        else:  # each checkpoint brings its own tokenizer
            assert all(
                items[f"model-{model.name}-{c}"].select == "weights+tokenizer"
                for c in model.checkpoints
            )
    assert {f"xlsum-{lang}" for lang in cfg.languages} <= set(items)
    assert all(items[f"xlsum-{lang}"].local_dir == "data/xlsum" for lang in cfg.languages)
    stories = items["xstorycloze"]
    # every XStoryCloze language (docs/method.md §6), whatever the probe languages
    assert stories.local_dir == "data/xstory_cloze" and len(stories.patterns) == 11
    bible = sorted(i.dest for i in items.values() if isinstance(i, UrlItem))
    pairs = ["ar-en", "en-es", "en-fr", "en-hi", "en-id", "en-pt", "en-vi", "en-zh"]
    assert bible == [f"data/bible-uedin/{pair}.txt.zip" for pair in pairs]
