# Config loading and validation, wildcard constraints, and the input functions that
# turn the config grid (model × checkpoint × language) into file lists. The config's
# shape is known only to scripts/lingua_franca/config.py.

import os
import re
import sys
from pathlib import Path

# the package lives beside the rule scripts (Snakemake puts a local script's folder
# on sys.path when it runs it); the Snakefile imports it from the same place
sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))
from snakemake.exceptions import WorkflowError
from snakemake.io import report as flag_for_report
from snakemake.logging import logger

from lingua_franca.checks import data_inputs, preflight
from lingua_franca.config import ConfigError, load_config
from lingua_franca.fetch import fetched_data
from lingua_franca.aggregate import checkpoint_records, config_grid, summary_files

# a config error stops the run here, before any job is planned: nothing is deleted
try:
    CFG = load_config(config)
    NOTES = preflight(
        CFG,
        root=workflow.basedir,
        count_items=workflow.is_main_process,  # a cluster job's plan was checked
        cache_dir=".snakemake/lingua_franca",
        fetched=fetched_data(CFG),  # checked when what reads them is planned
    )
except ConfigError as err:
    raise WorkflowError(str(err)) from None
for note in NOTES if workflow.is_main_process else []:
    logger.warning(f"Note: {note}")

if not CFG.uses_hub:  # the demo: nothing to fetch, so nothing may try
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

LANGUAGES = CFG.languages
TOY_MODELS = [m.name for m in CFG.toy_models]
ENV = "../envs/lingua-franca.yaml"
ON_GPU = CFG.analysis["device"].startswith("cuda")
# The jobs that load one model × checkpoint (extraction, metrics, ablation,
# XStoryCloze) form one group: on a cluster, one job, one allocation, one node whose
# page cache holds the weights. Snakemake joins a group's jobs along DAG edges, so
# the four are chained (evaluate_xstorycloze after the ablation); the group then asks
# for the largest memory and GPU count of its jobs and the sum of their runtimes.
MODEL_WORK = "model_work_{model}_{checkpoint}"


def _alternatives(names):
    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    model=_alternatives(CFG.models),
    toy=_alternatives(TOY_MODELS),
    checkpoint=r"[A-Za-z0-9][A-Za-z0-9_.+-]*",
    lang=_alternatives(LANGUAGES),


def toy_targets():
    return [f"results/toy/{name}" for name in TOY_MODELS]


def checkpoint_targets(*names):
    """Files named ``names`` in every model × checkpoint folder."""
    return [f"results/{c.model}/{c.name}/{name}" for c in CFG.grid() for name in names]


def all_targets():
    """Everything the config asks for: the default target."""
    return (
        ["results/data/probe.tsv"]
        + toy_targets()
        + checkpoint_targets("metrics.json", "perplexity.csv", "xstorycloze.json")
        + summary_files(config_grid(CFG))
        + ["results/summary/summary.html"]
    )


def model_inputs(wildcards):
    """What a model × checkpoint job needs before it can load the model: the
    trained toy model's folder; nothing for Hub models and local folders."""
    model = CFG.models[wildcards.model]
    if model.toy is not None:
        return {"model": f"results/toy/{model.name}"}
    return {}


def job_settings(wildcards):
    return CFG.job_settings(wildcards.model, wildcards.checkpoint)


def _parameters(wildcards):
    return CFG.models[wildcards.model].parameters or 0


def model_gpus(wildcards):
    """GPUs a model job asks the scheduler for: none on CPU, else the model's
    `gpus` (default 1; a 70b model spreads over several with device_map)."""
    return (CFG.models[wildcards.model].gpus or 1) if ON_GPU else 0


def model_mem_mb(wildcards, attempt):
    """Host memory for a job that loads the model: its weights in the config's
    dtype plus room to work; more on each retry."""
    model = CFG.models[wildcards.model]
    bytes_per = 4 if model.dtype == "float32" else 2
    return int((4000 + 1.5 * _parameters(wildcards) * bytes_per / 2**20) * attempt)


def model_runtime(wildcards, attempt):
    """Minutes: 30, plus 10 per billion parameters; more on each retry."""
    return int((30 + 10 * _parameters(wildcards) / 1e9) * attempt)


def local_source_files(kind, languages=None):
    """An input function: the local files a data source reads (for ``languages``,
    default all), so that editing one reruns what reads it (Hub sources have none).
    A file that is not there, or too few probe items, stops the plan of the rule
    that reads it (not the fetch step's, which writes them)."""

    def inputs(wildcards):
        try:
            return data_inputs(
                CFG,
                kind,
                languages or ([wildcards.lang] if "lang" in wildcards.keys() else None),
                count_items=workflow.is_main_process,
                cache_dir=".snakemake/lingua_franca",
            )
        except ConfigError as err:
            raise WorkflowError(str(err)) from None

    return inputs


REPORT = Path(workflow.basedir) / "resources" / "report"


def checkpoint_report(name):
    """A per-checkpoint output, shown in the report with its caption
    (resources/report/<name without extension>.rst)."""
    return flag_for_report(
        f"results/{{model}}/{{checkpoint}}/{name}",
        caption=str(REPORT / f"{Path(name).stem}.rst"),
        category="3. Per checkpoint",
        subcategory="{model}",
        labels={
            "checkpoint": "{checkpoint}",
            "figure": Path(name).stem.replace("_", " "),
        },
    )


def summary_outputs():
    """The aggregate's files (named from the config alone), flagged for the report."""
    flagged = []
    for path in summary_files(config_grid(CFG)):
        stem = Path(path).stem
        kind = next(
            k
            for k in ("evolution", "scale", "key_layers", "key_languages", "")
            if stem.startswith(k)
        )
        caption = f"{kind}.rst" if kind else "summary_csv.rst"
        category = "2. Across checkpoints and scales" if kind else "1. Summary"
        flagged.append(
            flag_for_report(
                path,
                caption=str(REPORT / caption),
                category=category,
                labels={"file": stem.replace("_", " ")},
            )
        )
    return flagged
