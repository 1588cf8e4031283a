"""Incremental reruns: after a complete run of a tiny copy of the workflow, a change
to the config plans only the jobs that depend on it.

- a checkpoint added to a model: that checkpoint's jobs and the aggregates;
- a model added: its training (toy models), its checkpoints' jobs, the aggregates;
- a language added: the probe, every checkpoint's jobs (metrics compare all
  languages) but XStoryCloze (its languages are its own list), the new language's
  own jobs, the aggregates; no other language's per-language jobs;
- LAPE removed from or added to analysis.key_neuron_methods, or its settings changed:
  the LAPE selection, the ablation job that deactivates its regions, the comparison
  and the aggregates; never the extraction, the metrics or XStoryCloze.

"Aggregates" are jobs over several checkpoints (summaries, plots, the report): any
job of the complete run whose outputs are neither a checkpoint's, nor data, nor
toy training. The complete run itself tells which rules are per checkpoint, so the
tests follow the rules as they grow. One real run (~40 s), then dry runs (~3 s each).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from tiny_workflow import parse_jobs, tiny_config, write_config

pytestmark = pytest.mark.workflow

# Toy models train on every language of their training text, whichever languages are
# analysed (lingua_franca.toy.write_training_split), so adding a language retrains
# nothing, as for a published model.
TOY_TRAINING_DEPENDS_ON_LANGUAGES = False

TRAINING_RULES = {"prepare_toy_text", "train_tokenizer", "train_toy"}
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def snakemake(workdir, *args, timeout=600):
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args],
        cwd=workdir,
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def is_checkpoint_output(path: str) -> bool:
    parts = Path(path).parts
    return len(parts) >= 4 and parts[0] == "results" and parts[1] not in ("data", "toy")


def is_data_or_toy_output(path: str) -> bool:
    parts = Path(path).parts
    return len(parts) >= 2 and parts[0] == "results" and parts[1] in ("data", "toy")


@pytest.fixture(scope="module")
def workflow(tiny_run):
    """The tiny workflow, run to completion once (conftest.py); what the complete run did."""
    workdir, output = tiny_run
    run = parse_jobs(output)
    per_checkpoint = {j.rule for j in run if "checkpoint" in j.wildcards}
    aggregates = {
        j.rule
        for j in run
        if j.rule != "all"
        and "checkpoint" not in j.wildcards
        and j.outputs
        and not any(is_checkpoint_output(o) or is_data_or_toy_output(o) for o in j.outputs)
    }
    assert {"extract_activations", "compute_metrics"} <= per_checkpoint
    assert "Nothing to be done" in snakemake(workdir, "-n"), "a complete run leaves nothing to do"
    return workdir, run, per_checkpoint, aggregates


def plan_after(workdir, change) -> list:
    """The jobs a dry run plans after ``change(config)``; the config is restored."""
    config = tiny_config()
    change(config)
    write_config(workdir, config)
    try:
        return [j for j in parse_jobs(snakemake(workdir, "-n")) if j.rule != "all"]
    finally:
        write_config(workdir, tiny_config())


def checkpoint_jobs(jobs, model, checkpoint):
    return {
        j.rule
        for j in jobs
        if j.wildcards.get("model") == model and j.wildcards.get("checkpoint") == checkpoint
    }


def test_adding_a_checkpoint_reruns_only_its_jobs_and_the_aggregates(workflow):
    workdir, _, per_checkpoint, aggregates = workflow

    def add_step_3(config):  # a step the toy model saved but nobody analysed
        config["models"]["toy-bloom"]["checkpoints"]["step-3"] = {"folder": "step-3"}

    jobs = plan_after(workdir, add_step_3)
    assert checkpoint_jobs(jobs, "toy-bloom", "step-3") == per_checkpoint
    others = [j for j in jobs if j.wildcards.get("checkpoint") != "step-3"]
    assert {j.rule for j in others} <= aggregates, [str(j) for j in others]
    assert not {j.rule for j in jobs} & (TRAINING_RULES | {"prepare_probe"})


def test_adding_a_toy_model_trains_it_alone(workflow):
    workdir, _, per_checkpoint, aggregates = workflow

    def add_model(config):
        config["models"]["toy-llama"] = {
            "family": "toy-llama",
            "toy": {**config["models"]["toy-bloom"]["toy"], "architecture": "llama"},
            "checkpoints": {"step-6": {"folder": "step-6"}},
        }

    jobs = plan_after(workdir, add_model)
    training = [j for j in jobs if j.rule in TRAINING_RULES]
    assert [(j.rule, j.wildcards) for j in training] == [("train_toy", {"toy": "toy-llama"})]
    assert checkpoint_jobs(jobs, "toy-llama", "step-6") == per_checkpoint
    assert not checkpoint_jobs(jobs, "toy-bloom", "step-0")
    assert not checkpoint_jobs(jobs, "toy-bloom", "step-6")
    rest = [j for j in jobs if j.rule != "train_toy" and j.wildcards.get("model") != "toy-llama"]
    assert {j.rule for j in rest} <= aggregates, [str(j) for j in rest]


def test_adding_a_hub_model_plans_only_its_jobs(workflow):
    """A Hub model (never fetched: a dry run only plans) trains nothing."""
    workdir, _, per_checkpoint, aggregates = workflow

    def add_model(config):
        config["models"]["hub-tiny"] = {
            "hub_id": "example-org/tiny-model",
            "parameters": 1.0e6,
            "checkpoints": {"step100": {"revision": "step100", "step": 100}},
        }

    jobs = plan_after(workdir, add_model)
    assert checkpoint_jobs(jobs, "hub-tiny", "step100") == per_checkpoint
    rest = [j for j in jobs if j.wildcards.get("model") != "hub-tiny"]
    assert {j.rule for j in rest} <= aggregates, [str(j) for j in rest]


def test_adding_a_language_reruns_what_depends_on_the_languages(workflow):
    workdir, run, per_checkpoint, aggregates = workflow

    def add_arabic(config):
        config["languages"].append("ar")

    jobs = plan_after(workdir, add_arabic)
    rules = {j.rule for j in jobs}
    assert "prepare_probe" in rules  # the probe holds every language
    for model, checkpoint in [("toy-bloom", "step-0"), ("toy-bloom", "step-6")]:
        # activations of the new language's samples; metrics compare all languages.
        # XStoryCloze has its own languages (already every story language) and its
        # stories stay as they are, but it follows the extraction in the checkpoint's
        # SLURM group (rules/common.smk, MODEL_WORK), so it runs again
        assert checkpoint_jobs(jobs, model, checkpoint) == per_checkpoint
    assert "prepare_stories" not in rules
    # per-language jobs run for the new language only
    per_language = [j for j in jobs if "lang" in j.wildcards]
    assert all(j.wildcards["lang"] == "ar" for j in per_language), [str(j) for j in per_language]
    trained = {j.rule for j in jobs if j.rule in TRAINING_RULES}
    if TOY_TRAINING_DEPENDS_ON_LANGUAGES:
        assert trained == TRAINING_RULES
        assert [j.wildcards["toy"] for j in jobs if j.rule == "train_toy"] == ["toy-bloom"]
    else:
        assert not trained
    # nothing else: every other planned rule is one the language set feeds
    language_rules = {j.rule for j in run if j.rule.startswith("prepare_")} | aggregates
    extra = rules - per_checkpoint - TRAINING_RULES - language_rules
    assert not extra, extra


def checkpoint_folders(workdir, run, rule):
    """The results folder of every model × checkpoint that ``rule`` ran for."""
    folders = sorted(
        {
            workdir / "results" / j.wildcards["model"] / j.wildcards["checkpoint"]
            for j in run
            if j.rule == rule
        }
    )
    assert folders, f"no {rule} job in the run"
    return folders


def test_every_checkpoint_has_metric_intervals(workflow):
    """The default analysis.bootstrap (1000 resamples) puts intervals into every
    checkpoint's metrics.json (docs/method.md §10)."""
    workdir, run, _, _ = workflow
    for folder in checkpoint_folders(workdir, run, "compute_metrics"):
        summary = json.loads((folder / "metrics.json").read_text())
        ci = summary["ci"]
        assert (ci["resamples"], ci["level"], ci["unit"]) == (1000, 0.95, "item")
        lo, hi = ci["sklr"]
        assert lo <= hi
        assert len(ci["per_layer"]) == summary["n_layers"]
        assert set(ci["region_stability"]) == set(summary["languages"])


def test_every_checkpoint_deactivates_key_regions(workflow):
    """The tiny config's z_threshold (1.0, below √2) gives key regions, so the run
    evaluates language deactivations, not only the full model and the random one."""
    workdir, run, _, _ = workflow
    for folder in checkpoint_folders(workdir, run, "ablate_key_neurons"):
        assert json.loads((folder / "metrics.json").read_text())["sklr"] > 0
        ablation = json.loads((folder / "ablation.json").read_text())
        evaluated = [
            c["name"]
            for c in ablation["conditions"]
            if c["kind"] == "language" and c["status"] == "evaluated"
        ]
        assert evaluated, ablation["conditions"]
        assert set(evaluated) <= set(ablation["generation"]["conditions"])
        assert any(v is not None for v in ablation["diagonal_dominates"].values())


def test_changing_how_a_model_is_loaded_reruns_its_jobs_not_its_training(workflow):
    """A model × checkpoint job takes its model's settings (Config.job_settings) as a
    parameter, so a changed dtype reruns its jobs (Snakemake's params trigger, which
    ignores a parameter computed from the job's input)."""
    workdir, run, _, _ = workflow

    def half_precision(config):
        config["models"]["toy-bloom"]["dtype"] = "bfloat16"

    jobs = plan_after(workdir, half_precision)
    extract = [j for j in jobs if j.rule == "extract_activations"]
    assert {str(j) for j in extract} == {str(j) for j in run if j.rule == "extract_activations"}
    assert all("params" in j.reason.lower() for j in extract), [j.reason for j in extract]
    # every job that loads the model, XStoryCloze included, in the same invocation
    model_jobs = {"extract_activations", "evaluate_xstorycloze", "compute_metrics"}
    model_jobs.add("ablate_key_neurons")
    for rule in model_jobs:
        assert {str(j) for j in jobs if j.rule == rule} == {
            str(j) for j in run if j.rule == rule
        }, rule
    assert not {j.rule for j in jobs} & TRAINING_RULES


def test_changing_the_bootstrap_reruns_the_metrics_not_the_extraction(workflow):
    """analysis.bootstrap is a parameter of compute_metrics alone.  The ablation and the
    methods' comparison read metrics.json and key_neurons.parquet, which the rerun
    rewrites, so they run again too (Snakemake's mtime trigger); extraction, LAPE's
    selection, evaluation and training do not."""
    workdir, run, _, aggregates = workflow

    def fewer_resamples(config):
        config["analysis"]["bootstrap"] = {"resamples": 50}

    jobs = plan_after(workdir, fewer_resamples)
    rules = {j.rule for j in jobs}
    assert {str(j) for j in jobs if j.rule == "compute_metrics"} == {
        str(j) for j in run if j.rule == "compute_metrics"
    }
    assert rules - aggregates == {
        "compute_metrics",
        "ablate_key_neurons",
        "compare_key_neurons",
    }, sorted(rules)


LAPE_RULES = {"select_key_neurons", "ablate_key_neurons", "compare_key_neurons"}


def test_every_checkpoint_selects_deactivates_and_compares_lape(workflow):
    """The tiny config's methods, zscore and lape: each checkpoint's LAPE regions are
    what compute_lape finds on its store; the ablation job deactivates them after the
    z-score regions, on its one model load; overlap.csv compares the two; the
    summary has both methods for every checkpoint (docs/method.md §9)."""
    from lingua_franca.comparison import overlap_table
    from lingua_franca.lape import compute_lape

    workdir, run, _, _ = workflow
    config = tiny_config()
    assert config["analysis"]["key_neuron_methods"] == ["zscore", "lape"]
    folders = checkpoint_folders(workdir, run, "select_key_neurons")
    assert folders == checkpoint_folders(workdir, run, "compute_metrics")
    for folder in folders:
        table = pd.read_parquet(folder / "methods" / "lape" / "key_neurons.parquet")
        expected = compute_lape(folder / "activations.zarr", **config["analysis"]["lape"])
        pd.testing.assert_frame_equal(table, expected.key_neurons())
        ablation = json.loads((folder / "methods" / "lape" / "ablation.json").read_text())
        assert ablation["method"] == "lape" and ablation["full_matches_reference"] is True
        assert any(
            c["kind"] == "language" and c["status"] == "evaluated" for c in ablation["conditions"]
        ), ablation["conditions"]
        model, checkpoint = folder.parts[-2:]
        log = (workdir / "logs" / model / checkpoint / "ablate_key_neurons.log").read_text()
        assert log.count("lingua_franca.pipeline: loading ") == 1
        metrics = json.loads((folder / "metrics.json").read_text())
        overlap = pd.read_csv(folder / "methods" / "overlap.csv", dtype={"layer": str})
        expected_overlap = overlap_table(
            {"zscore": pd.read_parquet(folder / "key_neurons.parquet"), "lape": table},
            metrics["languages"],
            [layer["width"] for layer in metrics["per_layer"]],
        )
        pd.testing.assert_frame_equal(overlap, expected_overlap, check_dtype=False)
    summary = pd.read_csv(workdir / "results" / "summary" / "methods.csv")
    assert set(zip(summary["checkpoint"], summary["method"])) == {
        (folder.name, m) for folder in folders for m in ("zscore", "lape")
    }


def test_changing_the_lape_settings_reruns_only_lape_and_its_ablation(workflow):
    workdir, run, _, aggregates = workflow

    def keep_more(config):
        config["analysis"]["lape"]["top_rate"] = 0.5

    jobs = plan_after(workdir, keep_more)
    assert {j.rule for j in jobs} - aggregates == LAPE_RULES
    assert len([j for j in jobs if j.rule == "select_key_neurons"]) == len(
        [j for j in run if j.rule == "select_key_neurons"]
    )


def test_removing_then_adding_lape_reruns_only_what_depends_on_it(workflow, tmp_path):
    """Without LAPE, each checkpoint's ablation job runs again (it no longer writes the
    LAPE tables) and the aggregate. With LAPE back, the ablation and the aggregate
    again: the LAPE selections and comparisons left from before are still up to date.
    Added to a run that never had them: the selection, the ablation, the comparison
    and the aggregate. Never anything upstream: extraction, metrics, XStoryCloze."""
    source, run, _, aggregates = workflow
    workdir = tmp_path / "wf"
    shutil.copytree(source, workdir, symlinks=True)  # keeps times and .snakemake

    def zscore_only(config):
        config["analysis"]["key_neuron_methods"] = ["zscore"]

    jobs = plan_after(workdir, zscore_only)
    assert {j.rule for j in jobs} - aggregates == {"ablate_key_neurons"}, sorted(map(str, jobs))
    assert {str(j) for j in jobs if j.rule == "ablate_key_neurons"} == {
        str(j) for j in run if j.rule == "ablate_key_neurons"
    }
    config = tiny_config()
    zscore_only(config)
    write_config(workdir, config)
    snakemake(workdir)
    assert "Nothing to be done" in snakemake(workdir, "-n")
    summary = workdir / "results" / "summary"
    assert not (summary / "methods.csv").exists()  # the aggregate's folder: current files only

    write_config(workdir, tiny_config())  # LAPE back
    jobs = [j for j in parse_jobs(snakemake(workdir, "-n")) if j.rule != "all"]
    assert {j.rule for j in jobs} - aggregates == {"ablate_key_neurons"}, sorted(map(str, jobs))
    for folder in (workdir / "results").glob("*/*/methods"):
        shutil.rmtree(folder)  # as if LAPE had never run
    jobs = [j for j in parse_jobs(snakemake(workdir, "-n")) if j.rule != "all"]
    assert {j.rule for j in jobs} - aggregates == LAPE_RULES, sorted(map(str, jobs))


def test_lape_on_a_store_written_before_activity_counts_stops_naming_the_fix(workflow, tmp_path):
    """A store without activity counts (written before extraction counted them): the
    LAPE job fails, its log saying to delete the store and extract again; the z-score
    metrics still run on it."""
    from lingua_franca.store import ActivationStore, StoreWriter

    source, _, _, _ = workflow
    workdir = tmp_path / "wf"
    shutil.copytree(source, workdir, symlinks=True)
    path = workdir / "results" / "toy-bloom" / "step-6" / "activations.zarr"
    store = ActivationStore(path)
    layers = [block for _, _, block in store.iter_blocks(block_width=10**9, dtype="float32")]
    kept = {
        key: value
        for key, value in store.attrs.items()
        if key not in ("languages", "items", "layers", "widths", "activity", "complete")
    }
    with StoreWriter(path, store.languages, store.items, store.widths, attrs=kept) as writer:
        writer.write(layers)
    assert not ActivationStore(path).has_activity
    target = "results/toy-bloom/step-6/methods/lape/key_neurons.parquet"
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", target],
        cwd=workdir,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
    )
    assert result.returncode != 0
    log = (workdir / "logs" / "toy-bloom" / "step-6" / "select_key_neurons_lape.log").read_text()
    assert "no activity counts" in log and "Delete it and rerun the extraction" in log, log
    assert not (workdir / target).exists()
    snakemake(workdir, "results/toy-bloom/step-6/metrics.json")  # the z-scores still run
