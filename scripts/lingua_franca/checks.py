"""Planning-time checks: what a config asks of the file system, checked while the
workflow is read, before Snakemake plans a job.

A folder that is not there, or more probe items than the corpus holds, would
otherwise surface only when a job runs, after Snakemake has deleted that job's
earlier outputs and so made everything downstream of them out of date. Here every
such problem is found at once, by ``snakemake -n`` too, and nothing is deleted.
Each problem reads ``<config key>: <problem> (<path>)``. The config's shape stays in
:mod:`lingua_franca.config` (``Config.local_paths``); the files a data source reads
come from :func:`lingua_franca.corpora.source_files`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
from pathlib import Path

from lingua_franca.config import Config, ConfigError
from lingua_franca.corpora import CorpusError, load_probe_corpus, prompt_pool, source_files

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
ITEM_COUNTS = "probe_items.json"  # in cache_dir: corpus item counts by file stamps
# "job": the jobs run on other machines (cluster nodes) and each checks the device
# there, before it touches a file; the SLURM profile sets it. Otherwise the device is
# checked when the jobs that use it are planned, on the machine they will run on.
DEVICE_CHECK = "LINGUA_FRANCA_DEVICE_CHECK"


def jobs_check_device() -> bool:
    """Whether each job checks the device on its own node (``DEVICE_CHECK=job``)
    rather than the planning process on this machine."""
    return os.environ.get(DEVICE_CHECK, "").strip().lower() == "job"


@functools.cache
def device_problem(device: str) -> str | None:
    """What keeps torch from using ``device`` (analysis.device) on this machine, or
    None. Found when a job that uses it is planned, it stops the plan (or a cluster
    job, before it touches a file) instead of failing a job after Snakemake has
    deleted that job's outputs."""
    if device == "cpu":
        return None
    import torch

    where = f"analysis.device: {device!r} is not available here: torch {torch.__version__}"
    if device == "mps":
        if not torch.backends.mps.is_available():
            return f"{where} finds no MPS device (torch.backends.mps.is_available() is False)"
        return None
    if not torch.cuda.is_available():
        return (
            f"{where} finds no CUDA device (torch.cuda.is_available() is False). Use cpu,"
            f" or run where a GPU is; where jobs run on cluster nodes, set {DEVICE_CHECK}=job"
            " to check on each node instead (the SLURM profile does)"
        )
    index = int(device.partition(":")[2] or 0)
    count = torch.cuda.device_count()
    if index >= count:
        return f"{where} finds {count} CUDA device(s) (cuda:0 to cuda:{count - 1})"
    return None


def preflight(
    cfg: Config,
    *,
    root: str | os.PathLike | None = None,
    count_items: bool = True,
    cache_dir: str | os.PathLike | None = None,
    fetched: frozenset[str] | set[str] = frozenset(),
) -> list[str]:
    """Raise ConfigError listing every configured local path that is not there and
    every data problem knowable without a model; return notes that do not stop the
    run (warnings).

    ``fetched`` names the data kinds (probe, perplexity, xstorycloze) whose local
    files the fetch step writes (``lingua_franca.fetch.fetched_data``): they may not
    be there yet when the fetch step itself is planned, so they are checked by
    :func:`data_inputs` when a rule that reads them is planned, not here.

    ``root`` is the workflow's folder: relative paths are read from the working
    directory, so a problem met elsewhere comes with a hint to run from ``root``.
    ``count_items`` reads the local probe corpus to check ``n_items`` (Bible sources
    take seconds; the count is kept in ``cache_dir`` by file size and time, so later
    runs read nothing); a cluster job, whose plan was checked already, skips it.
    """
    problems, missing = _path_problems(cfg, fetched)
    problems += _data_problems(cfg, missing, count_items, cache_dir, fetched)
    problems += _identifier_problems(cfg)
    root = Path(root).resolve() if root is not None else None
    elsewhere = root is not None and Path.cwd().resolve() != root
    if problems:
        lines = "\n".join(f"  - {p}".replace("\n", "\n    ") for p in problems)
        hint = ""
        if elsewhere and any(not Path(p).is_absolute() for p in missing.values()):
            hint = (
                f"\nRelative paths are read from the working directory, {Path.cwd()}:"
                f" run snakemake from the repository root, {root}."
            )
        raise ConfigError(f"invalid config ({len(problems)} problem(s)):\n{lines}{hint}")
    notes = _notes(cfg)
    if elsewhere:
        notes.append(
            f"the working directory {Path.cwd()} is not the repository root {root}:"
            " results/ and logs/ are written under the working directory"
        )
    return notes


def _path_problems(cfg: Config, fetched=frozenset()) -> tuple[list[str], dict[str, str]]:
    """Problems with the configured paths, and the config keys of the paths that are
    not there (the checkpoints of a missing model folder are not reported again)."""
    problems, missing = [], {}
    for key, path, kind in cfg.local_paths():
        if any(key.startswith(f"data.{data_kind}.") for data_kind in fetched):
            continue  # written by the fetch step: checked by data_inputs
        p = Path(path)
        if kind == "model" and any(Path(m) in (p, *p.parents) for m in missing.values()):
            continue  # a checkpoint of a model folder that is not there
        problem, hint = None, ""
        if kind == "file" and not p.is_file():
            problem = "not a file" if p.exists() else "no such file"
        elif kind != "file" and not p.is_dir():
            problem = "not a folder" if p.exists() else "no such folder"
            if key.endswith(".path") and HUB_ID.match(path):
                hint = "; a Hub model is named with hub_id"
        elif kind == "model" and not (p / "config.json").is_file():
            problem = "not a Hugging Face model folder: no config.json"
        if problem:
            problems.append(f"{key}: {problem} ({path}){hint}")
            missing[key] = path
    return problems, missing


def _data_problems(
    cfg: Config,
    missing: dict[str, str],
    count_items: bool,
    cache_dir: str | os.PathLike | None,
    fetched=frozenset(),
) -> list[str]:
    """The files each data source reads, and the probe's n_items against the corpus."""
    problems = []
    for kind, section in cfg.data.items():
        option = "path" if "path" in section["options"] else "dir"
        if kind in fetched or f"data.{kind}.options.{option}" in missing:
            continue  # written by the fetch step (data_inputs), or reported already
        problems += data_problems(cfg, kind, count_items=count_items, cache_dir=cache_dir)[1]
    return problems


def data_problems(
    cfg: Config,
    kind: str,
    languages: list[str] | None = None,
    *,
    count_items: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[list[Path], list[str]]:
    """(the local files data source ``kind`` reads for ``languages`` (default: all of
    that kind's), the problems found): files that are not there, and for the probe,
    ``n_items`` against the corpus's items (read once; see probe_item_count)."""
    section = cfg.data[kind]
    source, options = section["source"], section["options"]
    option = "path" if "path" in options else "dir"
    languages = languages or cfg.data_languages(kind)
    try:
        files = source_files(kind, source, options, languages)
    except CorpusError as err:
        return [], [f"data.{kind}.options.{option}: {err}"]
    if kind != "probe" or not files or not count_items:
        return files, []  # a Hub source cannot be counted before it is fetched
    try:
        count = probe_item_count(source, options, languages, files, cache_dir)
    except CorpusError as err:
        return files, [f"data.probe: {err}"]
    n_items = section["n_items"]
    where = files[0] if len(files) == 1 else options.get(option)
    if n_items is not None and n_items > count:
        problem = (
            f"data.probe.n_items: {n_items} is more than the corpus holds,"
            f" {count} items in every language ({where})"
        )
        return files, [problem]
    samples = cfg.analysis["generation"]["samples"]
    if samples:
        pool = probe_item_count(source, options, languages, files, cache_dir, pool=True)
        unused = pool - (count if n_items is None else n_items)
        if samples > unused:
            problem = (
                f"analysis.generation.samples: {samples} prompts per language asked, but only"
                f" {unused} items of the probe corpus are not in the probe ({where}); lower"
                " samples or data.probe.n_items (docs/method.md §11)"
            )
            return files, [problem]
    return files, []


def data_inputs(cfg: Config, kind: str, languages: list[str] | None = None, **kwargs) -> list[str]:
    """The files a data rule reads, as its inputs (editing one reruns the rule);
    ConfigError naming every problem (data_problems). Called when the rule is
    planned, so that a source the fetch step has not written yet stops the plan of
    what reads it, and never the fetch step's own."""
    files, problems = data_problems(cfg, kind, languages, **kwargs)
    if problems:
        lines = "\n".join(f"  - {p}".replace("\n", "\n    ") for p in problems)
        raise ConfigError(f"invalid data ({len(problems)} problem(s)):\n{lines}")
    return [str(f) for f in files]


def probe_item_count(
    source: str,
    options: dict,
    languages: list[str],
    files: list[Path],
    cache_dir: str | os.PathLike | None = None,
    pool: bool = False,
) -> int:
    """Items of the probe corpus present in every language, read and validated as
    ``prepare_probe`` reads them (a CorpusError names what is wrong); with ``pool``,
    the items a sampled prompt may come from (``corpora.prompt_pool``, the probe's
    included). With ``cache_dir``, the count is kept there under the files' sizes and
    modification times, and read back while none of them changes."""
    stamp = [source, options, languages] + (["pool"] if pool else [])
    for f in files:
        stat = f.stat()
        stamp.append([str(f), stat.st_size, stat.st_mtime_ns])
    key = hashlib.sha256(json.dumps(stamp, sort_keys=True, default=str).encode()).hexdigest()
    cache = Path(cache_dir) / ITEM_COUNTS if cache_dir is not None else None
    counts = {}
    if cache is not None and cache.is_file():
        try:
            counts = json.loads(cache.read_text(encoding="utf-8"))
        except ValueError:
            counts = {}  # a damaged cache is only a cache
    if key in counts:
        return int(counts[key])
    read = prompt_pool if pool else load_probe_corpus
    count = int(read(source, options, languages)["id"].nunique())
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps({**counts, key: count}), encoding="utf-8")
        tmp.replace(cache)
    return count


def _identifier_problems(cfg: Config) -> list[str]:
    """With the language statistics on, every study language must be one the language
    identifier can name (docs/method.md §11)."""
    if not cfg.analysis["generation"]["samples"]:
        return []
    from lingua_franca.language_id import check_languages

    try:
        check_languages(cfg.languages)
    except ValueError as err:
        return [f"analysis.generation.samples: {err}"]
    return []


def _notes(cfg: Config) -> list[str]:
    """Settings that run but cannot give what they are meant for."""
    notes = []
    n_languages, threshold = len(cfg.languages), cfg.analysis["z_threshold"]
    bound = math.sqrt(n_languages - 1)
    if threshold >= bound:
        notes.append(
            f"analysis.z_threshold: {threshold} leaves every key region empty: over"
            f" {n_languages} languages no z-score exceeds √{n_languages - 1} = {bound:.2f}"
            " (docs/method.md §4)"
        )
    return notes
