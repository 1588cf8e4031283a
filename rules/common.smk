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

from lingua_franca.checks import (
    data_inputs,
    device_problem,
    jobs_check_device,
    preflight,
)
from lingua_franca.config import ConfigError, load_config
from lingua_franca.fetch import fetched_data
from lingua_franca.aggregate import PROVENANCE, SUMMARY_PAGE, config_grid, summary_names
from lingua_franca.comparison import method_summary_names
from lingua_franca.language_of_generations import language_summary_names
from lingua_franca.steering import steering_summary_names
from lingua_franca.methods import METHODS, PAPER_METHOD, further_methods
from lingua_franca.provenance import code_version as _code_version, recorded_settings

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
# CPU threads of each job that loads a model (analysis.threads)
MODEL_THREADS = CFG.analysis["threads"]
# the key-neuron methods besides the paper's z-scores (computed in the metrics pass):
# each has its own selection job and its own folder methods/<name>/ (rules/methods.smk)
FURTHER_METHODS = further_methods(CFG.analysis["key_neuron_methods"])
# The jobs that load one model × checkpoint (extraction, metrics, ablation,
# XStoryCloze), and the further key-neuron methods' selection and comparison, form one
# group: on a cluster, one job, one allocation, one node whose page cache holds the
# weights. Snakemake joins a group's jobs along DAG edges: the metrics, the
# selections and XStoryCloze follow the extraction, and the ablation follows them
# all, so two jobs never hold the model at once. The submitted group runs its jobs
# one at a time and asks for the largest memory and GPU count of its jobs and the
# sum of their runtimes (tests/test_slurm.py). Every such edge is a real input: with
# an ancient() one, Snakemake skips the later job's own rerun checks whenever the
# earlier one reruns.
MODEL_WORK = "model_work_{model}_{checkpoint}"


def _alternatives(names):
    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    model=_alternatives(CFG.models),
    toy=_alternatives(TOY_MODELS),
    checkpoint=r"[A-Za-z0-9][A-Za-z0-9_.+-]*",
    lang=_alternatives(LANGUAGES),
    method=_alternatives(FURTHER_METHODS),


# Every results path is written once, in the output of the rule that makes it; the
# rules after it, and the functions below, name it as rules.<rule>.output (these
# functions run once every rule file is read).


def per_checkpoint(pattern):
    """``pattern`` (a rule output with {model} and {checkpoint}) for every model ×
    checkpoint, in config order: the order of ``CHECKPOINTS``."""
    pattern = str(pattern)  # without the output's flags (directory, report)
    return [expand(pattern, model=c.model, checkpoint=c.name)[0] for c in CFG.grid()]


# what names each checkpoint in the summary, in the order of per_checkpoint's lists
CHECKPOINTS = [CFG.identity(c.model, c.name) for c in CFG.grid()]


def toy_folder(name):
    """Where the toy model ``name`` is trained: its training rule's output."""
    return expand(str(rules.train_toy.output[0]), toy=name)[0]


def toy_targets():
    return [toy_folder(name) for name in TOY_MODELS]


def all_targets():
    """Everything the config asks for: the default target."""
    return (
        [rules.prepare_probe.output.probe]
        + toy_targets()
        + per_checkpoint(rules.compute_metrics.output.summary)
        + per_checkpoint(rules.ablate_key_neurons.output.perplexity)
        + per_checkpoint(rules.evaluate_xstorycloze.output[0])
        + (
            per_checkpoint(rules.compare_key_neurons.output.table)
            if FURTHER_METHODS
            else []
        )
        + [str(path) for path in rules.aggregate.output]
    )


def per_checkpoint_and_method(patterns):
    """``patterns`` (a rule's output list, one per further method, with {model} and
    {checkpoint}) for every model × checkpoint, checkpoint by checkpoint."""
    return [
        path
        for c in CFG.grid()
        for path in expand(list(map(str, patterns)), model=c.model, checkpoint=c.name)
    ]


def method_settings(method):
    """A key-neuron method's settings, read from the config's analysis section."""
    return METHODS[method].settings(CFG.analysis)


def method_resource(name):
    """The selection job's resource ``name`` (mem_mb, runtime) from its method's
    registry entry; more on each retry."""
    return lambda wildcards, attempt: getattr(METHODS[wildcards.method], name) * attempt


def device_checked(wildcards):
    """No inputs: an input function of the jobs that use analysis.device, which checks
    that torch can use the device where they run, before anything is read or written
    (Snakemake asks for a job's inputs when it plans the job, before it deletes the
    job's old outputs): here when the jobs run here, so that `snakemake -n` stops;
    in each job on its cluster node when LINGUA_FRANCA_DEVICE_CHECK=job (the SLURM
    profile sets it: the login node that plans has no GPU). Jobs that do not use the
    device (the fetch step, the data) are planned whatever the device."""
    if workflow.is_main_process and jobs_check_device():
        return {}
    problem = device_problem(CFG.analysis["device"])
    if problem:
        raise WorkflowError(f"invalid config (1 problem(s)):\n  - {problem}")
    return {}


def model_inputs(wildcards):
    """What a model × checkpoint job needs before it can load the model: the
    trained toy model's folder; nothing for Hub models and local folders. The device
    is checked first (device_checked)."""
    device_checked(wildcards)
    model = CFG.models[wildcards.model]
    if model.toy is not None:
        return {"model": toy_folder(model.name)}
    return {}


def job_settings(wildcards):
    """Config.job_settings of the job's model × checkpoint; a toy model's checkpoints
    lie in the folder its training job wrote. A function of the wildcards alone:
    Snakemake reruns a job when such a parameter changes, but not when the
    function also takes the job's input."""
    model = CFG.models[wildcards.model]
    folder = toy_folder(model.name) if model.toy is not None else None
    return CFG.job_settings(wildcards.model, wildcards.checkpoint, model_folder=folder)


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


def code_version(script):
    """A rule's code version, its parameter ``code``: a hash of its script (the
    path its ``script:`` gives) and of every module of the package the script
    imports, transitively (lingua_franca.provenance.code_version). Editing one reruns
    the rule; touching one, or editing a module it does not import, does not: the
    workflow profile leaves out Snakemake's `code` trigger, which compares times
    (README "What reruns when")."""
    return _code_version(Path(workflow.basedir) / "rules" / script)


def recorded(name):
    """A parameter for the report's captions: the settings that the job's JSON
    result ``name`` (a named output, or the file name of one) records
    (lingua_franca.provenance.recorded_settings), read when the report is made, so
    that a caption describes the result, never the config of the moment. A function
    of the job's output: Snakemake never reruns a job for it."""

    def read(wildcards, output):
        named = getattr(output, name, None)
        return recorded_settings(
            named or next(p for p in output if Path(p).name == name)
        )

    return read


REPORT = Path(workflow.basedir) / "resources" / "report"


def checkpoint_report(path):
    """A per-checkpoint output, shown in the report with its caption
    (resources/report/<file name without extension>.rst)."""
    stem = Path(path).stem
    return flag_for_report(
        path,
        caption=str(REPORT / f"{stem}.rst"),
        category="3. Per checkpoint",
        subcategory="{model}",
        labels={"checkpoint": "{checkpoint}", "figure": stem.replace("_", " ")},
    )


STEERING = CFG.analysis["steering"]["enabled"]


def steering_output(path, report=True):
    """A steering output of the ablation rule (shown in the report with its caption,
    unless ``report`` is False); none when steering is off (docs/method.md §12)."""
    if not STEERING:
        return []
    return checkpoint_report(path) if report else path


def method_report(paths, stem):
    """The further methods' files of one kind (``paths``, one per method, in the order
    of FURTHER_METHODS), shown in the report with the caption method_<stem>.rst."""
    return [
        flag_for_report(
            path,
            caption=str(REPORT / f"method_{stem}.rst"),
            category="3. Per checkpoint",
            subcategory="{model}",
            labels={
                "checkpoint": "{checkpoint}",
                "figure": f"{method} {stem.replace('_', ' ')}",
            },
        )
        for path, method in zip(paths, FURTHER_METHODS)
    ]


def summary_outputs(pattern):
    """The aggregate's files: ``pattern`` (with {name}) for every file name the
    config's grid makes (lingua_franca.aggregate.summary_names), summary.html and
    provenance.json, flagged for the report."""
    flagged = []
    methods = [PAPER_METHOD, *FURTHER_METHODS]
    names = (
        summary_names(config_grid(CFG))
        + method_summary_names(config_grid(CFG), methods)
        + language_summary_names(
            config_grid(CFG), CFG.analysis["generation"]["samples"]
        )
        + steering_summary_names(
            [g for g in config_grid(CFG) if CFG.steered(g[0])], STEERING
        )
    )
    for name in names + [SUMMARY_PAGE, PROVENANCE]:
        stem = Path(name).stem
        kind = next(
            k
            for k in (
                "methods_evolution",
                "methods_scale",
                "methods",
                "language_evolution",
                "language_scale",
                "language_of_generations",
                "steering_evolution",
                "steering",
                "evolution",
                "scale",
                "key_layers",
                "key_languages",
                "",
            )
            if stem.startswith(k)
        )
        caption = f"{kind}.rst" if kind else "summary_csv.rst"
        if (
            kind == "language_of_generations"
        ):  # the per-checkpoint table's caption differs
            caption = "language_summary.rst"
        if name == SUMMARY_PAGE:
            caption, stem = "summary_table.rst", "summary table"
        if name == PROVENANCE:
            caption = "provenance.rst"
        category = "2. Across checkpoints and scales" if kind else "1. Summary"
        flagged.append(
            flag_for_report(
                expand(pattern, name=name)[0],
                caption=str(REPORT / caption),
                category=category,
                labels={"file": stem.replace("_", " ")},
            )
        )
    return flagged
