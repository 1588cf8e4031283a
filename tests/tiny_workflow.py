"""A tiny, fast copy of the workflow: the repository's Snakefile, rules, scripts,
resources, envs and profiles in another folder, with a config of a few languages,
one toy model of a few training steps and a few probe items (tests/tiny_config.yaml).
The real SLURM run (tests/test_slurm.py), the incremental-rerun tests
(tests/test_incremental.py) and the report test (tests/test_report.py) run it; the tiny
config is the copy's workflow_config.yaml, so that a plain `snakemake` (or
`snakemake --profile slurm`) in the copy runs it.

    .venv/bin/python tests/tiny_workflow.py DEST    # make a copy by hand

Also parses Snakemake's job listings (dry runs and real runs alike), and writes a
small Bible corpus in the OPUS layout and the files the fetch step writes, for
configs that plan the paper's grid (tests/test_experiments.py,
benchmarks/bench_planning.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COPIED = ["Snakefile", "rules", "scripts", "resources", "envs", "profiles"]
LINKS = ["slurm"]  # the repository-root link that makes `--profile slurm` work
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".snakemake", "results", "logs")

TINY_CONFIG = Path(__file__).resolve().parent / "tiny_config.yaml"


def tiny_config() -> dict:
    """A fresh copy of the tiny config, tests/tiny_config.yaml (callers change it freely)."""
    return yaml.safe_load(TINY_CONFIG.read_text(encoding="utf-8"))


def copy_workflow(dest: Path, config: dict | None = None) -> Path:
    """Copy the workflow into ``dest`` and write the tiny config (or ``config``) as
    its workflow_config.yaml. Returns ``dest``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=IGNORED, symlinks=True)
        else:
            shutil.copy2(src, dest / name)
    for name in LINKS:
        if (ROOT / name).is_symlink():
            os.symlink(os.readlink(ROOT / name), dest / name)
    write_config(dest, config if config is not None else tiny_config())
    return dest


def run_snakemake(workdir, *args: str, env: dict | None = None, timeout: int = 600):
    """(exit status, stdout and stderr) of `snakemake --cores 2 ARGS` in ``workdir``,
    offline, with ``env`` added to the environment."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args],
        cwd=workdir,
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})},
    )
    return result.returncode, result.stdout + result.stderr


def write_config(dest: Path, config: dict) -> None:
    (Path(dest) / "workflow_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def write_opus_corpus(folder: Path, languages: list[str], n_verses: int) -> Path:
    """``n_verses`` made-up verses in every language, as OPUS bible-uedin serves them:
    one ``<pair>.txt.zip`` per English-paired pair (two text files and the .ids)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from lingua_franca.languages import get_language

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    verses = [f"b.GEN.{1 + v // 30}.{1 + v % 30}" for v in range(n_verses)]
    for lang in languages:
        if lang == "en":
            continue
        code = get_language(lang).bible
        pair = "-".join(sorted(["en", code]))
        sides = pair.split("-")
        docs = "\t".join(f"{side}/{side}.xml.gz" for side in sides)
        ids = "".join(f"{docs}\t{v}\t{v}\n" for v in verses)
        with zipfile.ZipFile(folder / f"{pair}.txt.zip", "w") as zipped:
            for side in sides:
                text = "".join(f"{side} verse {v}\n" for v in verses)
                zipped.writestr(f"bible-uedin.{pair}.{side}", text)
            zipped.writestr(f"bible-uedin.{pair}.ids", ids)
    return folder


def write_fetched_layout(folder: Path, cfg) -> None:
    """Empty files where the fetch step writes XL-Sum and XStoryCloze (relative to the
    working directory ``folder``) for ``cfg`` (a Config): planning only asks that
    they are there."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from lingua_franca.corpora.perplexity import XLSUM_DIR, XLSUM_PATTERN
    from lingua_franca.corpora.stories import XSTORYCLOZE_DIR, XSTORYCLOZE_FILE
    from lingua_franca.languages import LANGUAGES, get_language

    for lang in cfg.data_languages("perplexity"):
        config = get_language(lang).xlsum
        if config is not None:
            name = XLSUM_PATTERN.format(config=config, split="validation", lang=lang)
            target = folder / XLSUM_DIR / name.replace("*", "0000")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
    split = cfg.data["xstorycloze"]["options"].get("split", "eval")
    for lang in cfg.data_languages("xstorycloze") or LANGUAGES:
        config = get_language(lang).xstorycloze
        if config is not None:
            target = folder / XSTORYCLOZE_DIR / XSTORYCLOZE_FILE.format(config=config, split=split)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()


@dataclass
class Job:
    rule: str
    wildcards: dict[str, str] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    reason: str = ""
    resources: dict[str, str] = field(default_factory=dict)
    group: str | None = None  # the group job it is part of (cluster and dry runs)

    def __str__(self) -> str:
        wc = ",".join(f"{k}={v}" for k, v in self.wildcards.items())
        return f"{self.rule}[{wc}]" if wc else self.rule


_HEADER = re.compile(r"^( {4})?(?:local)?rule (\S+):$")
_GROUP = re.compile(r"^(?:\[[^]]*\] )?Group job (\S+) \(jobs")
_FIELD = re.compile(r"^    (\w[\w ()-]*): (.*)$")


def parse_jobs(output: str) -> list[Job]:
    """The jobs of a Snakemake job listing (a dry run's plan, or a real run's log):
    one per 'rule NAME:' block, with its wildcards and outputs; the jobs of a group
    job (listed indented under 'Group job NAME') carry the group's name."""
    jobs: list[Job] = []
    current: Job | None = None
    group: str | None = None
    for line in output.splitlines():
        found = _GROUP.match(line)
        if found:
            group, current = found.group(1), None
            continue
        header = _HEADER.match(line)
        if header:
            current = Job(header.group(2), group=group if header.group(1) else None)
            jobs.append(current)
            continue
        if current is None:
            continue
        if current.group is not None:
            line = line[4:] if line.startswith("    ") else "x"  # a group's fields are indented
        match = _FIELD.match(line)
        if not match:
            current = None
            continue
        key, value = match.groups()
        if key == "wildcards":
            current.wildcards = dict(item.split("=", 1) for item in value.split(", "))
        elif key == "output":
            current.outputs = [v.strip() for v in value.split(", ")]
        elif key == "reason":
            current.reason = value
        elif key == "resources":
            current.resources = dict(item.split("=", 1) for item in value.split(", "))
    return jobs


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a run or dry run: rule -> count ({} if none)."""
    if "Job stats:" not in output:
        return {}
    counts = {}
    for line in output.split("Job stats:")[1].splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} DEST")
    print(copy_workflow(Path(sys.argv[1])))
