"""Benchmark of planning a sweep (not a test): `snakemake -n` on a generated config of
many Hub-style models × checkpoints × languages.

    .venv/bin/python benchmarks/bench_planning.py                    # 50 × 20 × 9, 3 runs
    .venv/bin/python benchmarks/bench_planning.py --models 100 --checkpoints 40 --repeat 1

The config (hub_id + revisions, parameter counts, the paper's 9 languages and data
sources) is written to a temporary folder; nothing is fetched: a dry run only
plans. Each run is a fresh `python -m snakemake --snakefile Snakefile -n
--configfile CONFIG` in an empty working directory (only a small probe corpus in the
OPUS layout, which the planning checks read once and then count from their cache,
and empty files where the fetch step writes XL-Sum and XStoryCloze)
with HF_HUB_OFFLINE=1, timed from start to exit
(interpreter start, config validation, DAG of every job, the plan printed). Also timed once with
`--quiet` (no job listing), and the bare `snakemake --version` start-up. Prints
one JSON object with the median and every run's seconds, and the planned job counts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))
from lingua_franca.config import load_config
from tiny_workflow import job_counts, write_fetched_layout, write_opus_corpus

LANGUAGES = ["en", "zh", "fr", "es", "pt", "ar", "vi", "hi", "id"]


def sweep_config(n_models: int, n_checkpoints: int, languages: list[str]) -> dict:
    """n_models Hub models (Pythia-like names and sizes), each with n_checkpoints
    revisions step0, step1000, ... (no network needed to plan them)."""
    models = {}
    for m in range(n_models):
        models[f"sweep-{m:03d}"] = {
            "hub_id": f"example-org/sweep-model-{m:03d}",
            "family": f"sweep-{m % 5}",
            "parameters": float(70e6 * (1 + m)),
            "dtype": "float16",
            "checkpoints": {
                f"step{1000 * c}": {"revision": f"step{1000 * c}", "step": 1000 * c}
                for c in range(n_checkpoints)
            },
        }
    return {
        "languages": languages,
        "data": {
            "probe": {
                "source": "bible_opus",
                "options": {"dir": "data/bible-uedin"},
                "n_items": 100,
            },
            "perplexity": {"source": "xlsum", "options": {}},
            "xstorycloze": {"source": "xstorycloze", "options": {"split": "eval"}},
        },
        "models": models,
        "analysis": {"device": "cuda", "seed": 0},
    }


def timed(cmd: list[str], env: dict, workdir: Path) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=workdir, check=False, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    output = result.stdout + result.stderr
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(cmd)}\n{output[-3000:]}")
    return seconds, output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--checkpoints", type=int, default=20)
    parser.add_argument("--languages", type=int, default=9, choices=range(2, 10))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_UPDATE_DOWNLOAD_COUNTS": "0",
        "LINGUA_FRANCA_DEVICE_CHECK": "job",  # planned as a login node plans: no GPU here
    }
    snakemake = [sys.executable, "-m", "snakemake"]
    with tempfile.TemporaryDirectory(prefix="bench-planning-") as tmp:
        workdir = Path(tmp)  # empty: no earlier results hide jobs
        plan = [*snakemake, "--snakefile", str(ROOT / "Snakefile"), "-n"]
        config = workdir / "sweep.yaml"
        sweep = sweep_config(args.models, args.checkpoints, LANGUAGES[: args.languages])
        write_opus_corpus(workdir / "data" / "bible-uedin", LANGUAGES[: args.languages], 240)
        write_fetched_layout(workdir, load_config(sweep))  # what the fetch step writes
        config.write_text(yaml.safe_dump(sweep, sort_keys=False))
        startup, _ = timed([*snakemake, "--version"], env, workdir)
        runs, output = [], ""
        for _ in range(args.repeat):
            seconds, output = timed([*plan, "--configfile", str(config)], env, workdir)
            runs.append(seconds)
        quiet, _ = timed([*plan, "--quiet", "--configfile", str(config)], env, workdir)
    counts = job_counts(output)
    print(
        json.dumps(
            {
                "benchmark": "snakemake -n (plan only)",
                "models": args.models,
                "checkpoints_per_model": args.checkpoints,
                "languages": args.languages,
                "model_x_checkpoint": args.models * args.checkpoints,
                "planned_jobs": sum(counts.values()),
                "jobs_per_rule": counts,
                "dry_run_seconds_median": round(statistics.median(runs), 2),
                "dry_run_seconds": [round(s, 2) for s in runs],
                "dry_run_quiet_seconds": round(quiet, 2),
                "snakemake_version_startup_seconds": round(startup, 2),
                "cpus": os.cpu_count(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
