"""Run every benchmark and print each figure as a ratio measured in the same run (issue 8).

    .venv/bin/python benchmarks/run_all.py            # CPU: scaled model, ~6-9 min on 2 cores
    .venv/bin/python benchmarks/run_all.py --quick    # also metrics and planning scaled, ~5 min
    .venv/bin/python benchmarks/run_all.py --full     # GPU machine: BLOOM-560m shape, bf16, cuda
    .venv/bin/python benchmarks/run_all.py --only extraction,ablation --ablation-args "--proto"

Each benchmark runs in its own child process, one after the other, its output
streamed as it comes; the figures are collected and printed together at the end,
with the load average at the start and the end of every benchmark (other jobs on the
machine slow both sides of a ratio alike only because each ratio's two sides are
interleaved inside one benchmark; see benchmarks/README.md).

- extraction (``bench_extraction.py``): pooled_neurons and extract_to_store against
  the bare decoder body; pooled_neurons against the paper's generate-per-sentence code.
  On the CPU it runs twice, in float32 and in bfloat16 (``--second-dtype``).
- ablation (``bench_ablation.py``): all conditions against conditions × bare forward.
- generation (``bench_generation.py``): sampled generation under a deactivation hook
  against a bare ``generate`` of the same batches; labelling throughput (one core).
- steering (``bench_steering.py``): steering cells packed into shared batches against
  one cell a call; the fluency pass in small batches against the sampling batch.
  Its own shape (the demo's toy-bloom-m) unless ``--full``.
- metrics (``bench_metrics.py``, another engineer's): compute_metrics on a synthetic
  BLOOM-7b1-shaped store (900 × 30 × 16384), with and without bootstrap intervals,
  and the reference pair loop against the closed form.  ``--quick``: 10 of the 30
  layers, a 4096-neuron reference slice.
- ap (``bench_ap.py``): AP selection's time (against the plain pass over the means)
  and peak memory on a synthetic BLOOM-7b1-shaped store.  ``--quick``: 10 of the 30
  layers.
- lape (``bench_lape.py``): compute_lape's time and peak memory on a synthetic
  BLOOM-7b1-shaped store with activity counts.  ``--quick``: 10 of the 30 layers.
- planning (``bench_planning.py``, another engineer's, if present): ``snakemake -n`` on
  a 50 models × 20 checkpoints × 9 languages config (3 runs; ``--quick``: 1), against
  snakemake's bare start-up.

``--device``, ``--dtype`` and ``--threads`` go to extraction and ablation; ``--X-args
"..."`` appends options to benchmark X (they win over the defaults above).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = (
    "extraction",
    "ablation",
    "generation",
    "steering",
    "metrics",
    "lape",
    "ap",
    "planning",
)
SCALED_METRICS = ["--layers", "10", "--ref-neurons", "4096"]
SCALED_PLANNING = ["--repeat", "1"]
SCALED_LAPE = ["--layers", "10"]
SCALED_AP = ["--layers", "10"]


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run(cmd: list[str], capture: bool) -> tuple[int, str, float]:
    """Run a child; stream its output (and keep it when ``capture``)."""
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_UPDATE_DOWNLOAD_COUNTS": "0",
        "TOKENIZERS_PARALLELISM": "false",
    }
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=HERE.parent
    )
    lines = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        if capture:
            lines.append(line)
    return proc.wait(), "".join(lines), time.perf_counter() - start


def metrics_figures(output: str) -> dict:
    """The two ratios bench_metrics.py prints (parsed from its text)."""
    figures = {}
    m = re.search(
        r"reference pair loop on (\d+) neurons: ([\d.]+) s \(closed form on the same "
        r"slice ([\d.]+) ms, ×([\d,]+)",
        output,
    )
    if m:
        figures["closed_form_vs_reference_loop"] = {
            "ratio": float(m.group(4).replace(",", "")),
            "label": f"contribution scores: closed form vs the reference pair loop, same "
            f"{int(m.group(1)):,} neurons (speed-up)",
        }
    m = re.search(
        r"extrapolated per neuron to K = ([\d,]+): (\d+) s = ([\d.]+)× the whole "
        r"compute_metrics run",
        output,
    )
    if m:
        figures["reference_loop_vs_compute_metrics"] = {
            "ratio": float(m.group(3)),
            "label": f"reference pair loop extrapolated to K = {m.group(1)} / the whole "
            f"compute_metrics run (speed-up)",
        }
    m = re.search(
        r"bootstrap cost, block width \d+: with / without = ([\d.]+)× wall.*?; CPU ([\d.]+) s "
        r"/ ([\d.]+) s",
        output,
    )
    if m:
        figures["bootstrap_cost"] = {
            "ratio": float(m.group(1)),
            "label": "compute_metrics with item-bootstrap intervals (B = 1000) / without, wall "
            f"(CPU: {float(m.group(2)) / float(m.group(3)):.2f}×)",
        }
    m = re.search(
        r"compute_metrics, block width (\d+): ([\d.]+) s wall, peak RSS (\d+) MiB", output
    )
    if m:
        figures["compute_metrics_seconds"] = {
            "value": float(m.group(2)),
            "label": f"compute_metrics wall seconds (peak RSS {m.group(3)} MiB); not a ratio",
        }
    return figures


def planning_figures(output: str) -> dict:
    start, end = output.find("{"), output.rfind("}")
    try:
        report = json.loads(output[start : end + 1])
    except ValueError:
        return {}
    dry, startup = report["dry_run_seconds_median"], report["snakemake_version_startup_seconds"]
    return {
        "dry_run_vs_startup": {
            "ratio": dry / startup,
            "label": f"snakemake -n on {report['models']} × {report['checkpoints_per_model']} × "
            f"{report['languages']} ({report['planned_jobs']:,} jobs, "
            f"{dry:.1f} s) / bare `snakemake --version` start-up ({startup:.1f} s)",
        },
        "quiet_vs_startup": {
            "ratio": report["dry_run_quiet_seconds"] / startup,
            "label": f"snakemake -n --quiet ({report['dry_run_quiet_seconds']:.1f} s) / "
            "bare start-up",
        },
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--full",
        action="store_true",
        help="extraction and ablation with --full-560m (24 layers, vocab 250880; "
        "cuda and bfloat16 unless --device/--dtype say otherwise)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="metrics, lape and ap on 10 of BLOOM-7b1's 30 layers, planning run once",
    )
    parser.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help=f"comma-separated subset of {','.join(BENCHMARKS)}",
    )
    parser.add_argument("--device", help="extraction and ablation: cpu or cuda")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, help="extraction and ablation CPU threads")
    parser.add_argument(
        "--second-dtype",
        default=None,
        choices=["bfloat16", "float16", "float32", "none"],
        help="run the extraction benchmark a second time in this dtype "
        "(default: bfloat16 when the first run is float32 on the CPU, "
        "where AMX makes bf16 matmuls ~3× faster and the hooks' share "
        "larger; otherwise none)",
    )
    for name in BENCHMARKS:
        parser.add_argument(
            f"--{name}-args",
            default="",
            metavar="ARGS",
            help=f"extra options for bench_{name}.py, one quoted string",
        )
    parser.add_argument("--json", type=Path, help="write every result here")
    args = parser.parse_args(argv)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(only) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}")

    if args.second_dtype is None:
        cpu_fp32 = (
            not args.full and args.device in (None, "cpu") and args.dtype in (None, "float32")
        )
        args.second_dtype = "bfloat16" if cpu_fp32 else "none"
    common = []
    if args.full:
        common.append("--full-560m")
    for opt in ("device", "dtype", "threads"):
        if getattr(args, opt) is not None:
            common += [f"--{opt}", str(getattr(args, opt))]

    print(f"== run_all (issue 8): {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"{os.cpu_count()} cores; load average at start {load()}", flush=True)
    started = time.perf_counter()
    results: dict[str, dict] = {}
    jobs = []  # (result key, benchmark, extra options)
    for name in only:
        extra = shlex.split(getattr(args, f"{name}_args"))
        jobs.append((name, name, extra))
        if name == "extraction" and args.second_dtype != "none":
            jobs.append(
                (f"extraction-{args.second_dtype}", name, ["--dtype", args.second_dtype, *extra])
            )
    with tempfile.TemporaryDirectory(prefix="bench_run_all_") as tmp:
        for key, name, extra in jobs:
            script = HERE / f"bench_{name}.py"
            entry = {"load_before": load()}
            if not script.exists():
                print(f"\n-- {key}: {script.name} not present, skipped")
                results[key] = {**entry, "skipped": f"{script.name} not present"}
                continue
            print(f"\n-- {key}", flush=True)
            if name in ("extraction", "ablation", "generation", "steering", "lape", "ap"):
                out = Path(tmp) / f"{key}.json"
                if name in ("lape", "ap"):
                    scale = (SCALED_LAPE if name == "lape" else SCALED_AP) if args.quick else []
                    cmd = [sys.executable, str(script), *scale, "--json", str(out), *extra]
                else:
                    cmd = [sys.executable, str(script), *common, "--json", str(out), *extra]
                rc, _, seconds = run(cmd, capture=False)
                report = json.loads(out.read_text()) if rc == 0 and out.exists() else {}
                figures = report.get("figures", {})
            elif name == "metrics":
                scale = SCALED_METRICS if args.quick else []
                cmd = [sys.executable, str(script), *scale, *extra]
                rc, output, seconds = run(cmd, capture=True)
                figures = metrics_figures(output)
            else:
                scale = SCALED_PLANNING if args.quick else []
                cmd = [sys.executable, str(script), *scale, *extra]
                rc, output, seconds = run(cmd, capture=True)
                figures = planning_figures(output)
            results[key] = {
                **entry,
                "command": " ".join(cmd[1:]),
                "rc": rc,
                "seconds": round(seconds, 1),
                "figures": figures,
                "load_after": load(),
            }
            if rc != 0:
                print(f"-- {key} FAILED (exit {rc})")

    total = time.perf_counter() - started
    print(
        f"\n== figures (each ratio from one benchmark's own interleaved runs); "
        f"total {total / 60:.1f} min, load average now {load()}"
    )
    for name, entry in results.items():
        if "skipped" in entry:
            print(f"{name}: skipped ({entry['skipped']})")
            continue
        print(
            f"{name} ({entry['seconds']:.0f} s, load {entry['load_before']} -> "
            f"{entry['load_after']}{', FAILED' if entry['rc'] else ''}):"
        )
        for fig in entry["figures"].values():
            value = f"{fig['ratio']:.3f}" if "ratio" in fig else f"{fig['value']:.2f}"
            spread = f"  per round {fig['per_round']}" if "per_round" in fig else ""
            print(f"  {value:>8}  {fig['label']}{spread}")
    if args.json:
        args.json.write_text(json.dumps({"total_s": total, "results": results}, indent=1) + "\n")
    return 1 if any(e.get("rc") for e in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
