"""Benchmark of ``compute_metrics`` on synthetic stores of real model shapes (not a test).

    .venv/bin/python benchmarks/bench_metrics.py                   # BLOOM-7b1: 900 × 30 × 16384
    .venv/bin/python benchmarks/bench_metrics.py --llama-layers 80 # + LLaMA-2-70b: 80 × 28672
    .venv/bin/python benchmarks/bench_metrics.py --layers 2 --width 2048 --items 20 \
        --ref-neurons 512                                          # smoke test, seconds
    .venv/bin/python benchmarks/bench_metrics.py --store results/m/c/activations.zarr  # any store
    .venv/bin/python benchmarks/bench_metrics.py --resamples 0     # without the bootstrap run

For each store: creates it with ``StoreWriter`` under a temporary folder, then runs
``compute_metrics`` (and, with ``--outputs``, ``write_outputs``) in a fresh child
process and reports its wall time, CPU time and peak RSS.  Unless ``--resamples 0``,
it also runs ``compute_metrics`` with the item bootstrap (docs/method.md §10; B =
``--resamples``, 1000 by default) in another fresh child, side by side: in each of
``--rounds`` rounds both variants run once, the order alternating from round to
round, and the figure is the ratio (with / without) of their median wall times, with
the per-round ratios beside it.  The peak is the child's own
``VmHWM`` (/proc/self/status), not ``ru_maxrss``: on Linux ``ru_maxrss`` survives
``exec`` and would report the parent's RSS at fork time, which here holds the
synthetic data generator.

The reference code's way (X-LANCE/LinguaFranca ``find_max_average_neurons``) scores
neurons with a running average over every within-language pair of samples, a
Python loop over pairs vectorised over neurons: O(n²·K).  It is timed on a slice
of ``--ref-neurons`` neurons in another child, checked against the closed form on
the same slice, and extrapolated linearly (per neuron) to all K neurons.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from lingua_franca import metrics
from lingua_franca.bootstrap import BootstrapSettings
from lingua_franca.store import ActivationStore, StoreWriter

LANGUAGES = ["en", "zh", "fr", "es", "pt", "ar", "vi", "hi", "id"]


def synthetic_writer(
    path: Path, n_lang: int, n_items: int, n_layers: int, width: int, **options
) -> StoreWriter:
    """A StoreWriter for n_lang language blocks of n_items samples each (the paper's
    layout), to be written one language block at a time; ``options`` go to it."""
    langs = [LANGUAGES[i] if i < len(LANGUAGES) else f"l{i}" for i in range(n_lang)]
    items = [f"item{v:04d}" for v in range(n_items)]
    return StoreWriter(
        path,
        [lang for lang in langs for _ in items],
        items * n_lang,
        [width] * n_layers,
        attrs={"synthetic": True},
        **options,
    )


def make_store(path: Path, n_lang: int, n_items: int, n_layers: int, width: int, seed: int):
    """Synthetic activations: always-on part + language part + item part + noise.

    Written one language block (n_items rows, all layers) at a time, so the store
    has the paper's layout and LRDS, SADS and key regions are all non-trivial.
    """
    rng = np.random.default_rng(seed)
    shape = (n_layers, width)
    base = np.abs(rng.standard_normal(shape, dtype=np.float32))
    item_part = 0.4 * rng.standard_normal((n_items, *shape), dtype=np.float32)
    with synthetic_writer(path, n_lang, n_items, n_layers, width) as writer:
        for _ in range(n_lang):
            lang_part = 0.4 * rng.standard_normal(shape, dtype=np.float32)
            rows = []
            for m in range(n_layers):
                x = rng.standard_normal((n_items, width), dtype=np.float32)
                x *= 0.5
                x += base[m] + lang_part[m] + item_part[:, m]
                rows.append(x)
            writer.write(rows)
    return ActivationStore(path)


# ------------------------------------------------------------------ child runs


def proc_status_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_metrics(
    store_path: str,
    block_width: int,
    z: float,
    outdir: str | None,
    resamples: int = 0,
    device: str = "cpu",
    workers: int | None = None,
) -> dict:
    store = ActivationStore(store_path)
    bootstrap = BootstrapSettings(resamples=resamples) if resamples else None
    if bootstrap:
        import torch  # imported before the clock starts, as the plain run imports numpy

        torch.zeros(1)
    report = {"rss_before_mib": proc_status_mib("VmRSS"), "load_before": os.getloadavg()[0]}
    cpu = cpu_seconds()
    start = time.perf_counter()
    result = metrics.compute_metrics(
        store,
        z_threshold=z,
        block_width=block_width,
        bootstrap=bootstrap,
        device=device,
        workers=workers,
    )
    report["compute_s"] = time.perf_counter() - start
    report["cpu_s"] = cpu_seconds() - cpu
    if result.bootstrap is not None:
        ci = result.summary()["ci"]
        report["ci"] = {key: ci[key] for key in ("lrds", "sads", "sklr", "region_stability")}
    report["peak_compute_mib"] = proc_status_mib("VmHWM")
    report["load_after"] = os.getloadavg()[0]
    report.update(
        lrds=result.lrds,
        sads=result.sads,
        sklr=result.sklr,
        sklr_fraction=result.sklr / result.n_neurons,
    )
    if outdir:
        start = time.perf_counter()
        metrics.write_outputs(result, metrics.MetricsFiles.in_folder(outdir), title="synthetic")
        report["write_outputs_s"] = time.perf_counter() - start
    report["peak_mib"] = proc_status_mib("VmHWM")
    return report


def reference_contributions(a: np.ndarray, sample_langs: np.ndarray) -> tuple[np.ndarray, float]:
    """The reference code's loop, per language: running average of a_i * a_j over i < j."""
    start = time.perf_counter()
    out = []
    for lang in dict.fromkeys(sample_langs.tolist()):
        hs = a[sample_langs == lang]
        sum_hs, counter = np.zeros(hs.shape[1]), 0
        for i in range(hs.shape[0]):
            for j in range(i + 1, hs.shape[0]):
                sum_hs += (hs[i] * hs[j] - sum_hs) / (counter + 1)
                counter += 1
        out.append(sum_hs * counter)  # the average, back to the paper's sum (Eq. 11)
    return np.array(out), time.perf_counter() - start


def child_reference(store_path: str, n_neurons: int) -> dict:
    store = ActivationStore(store_path)
    layout = metrics.probe_layout(store.languages, store.items)
    x = np.asarray(store.group[store.layers[0]][:, :n_neurons], dtype=np.float64)
    a = x / np.linalg.norm(x, axis=1, keepdims=True)  # slice-normalised: same cost
    expected, ref_s = reference_contributions(a, layout.sample_languages)
    start = time.perf_counter()
    closed = metrics.contribution_scores(a, layout.sample_languages)
    closed_s = time.perf_counter() - start
    scale = np.abs(closed).max()
    return {
        "neurons": a.shape[1],
        "reference_s": ref_s,
        "closed_form_s": closed_s,
        "max_rel_diff": float(np.abs(expected - closed).max() / scale),
    }


def run_child(args: list[str]) -> dict:
    """Run this script as a fresh child process; return its JSON report."""
    proc = subprocess.run([sys.executable, __file__, *args], stdout=subprocess.PIPE, check=True)
    return json.loads(proc.stdout)


# ----------------------------------------------------------------------- main


def create(label, workdir, args, n_layers, width) -> Path:
    """Write a synthetic store of this shape under ``workdir``; report size and time."""
    path = workdir / f"{label}.zarr"
    start = time.perf_counter()
    make_store(path, args.languages, args.items, n_layers, width, args.seed)
    size_mb = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
    print(
        f"\n== {label}: created in {time.perf_counter() - start:.1f} s, {size_mb:,.0f} MB on disk",
        flush=True,
    )
    return path


def bench_store(path, args, block_widths, with_reference, outputs_dir=None):
    """Time compute_metrics (each block width; without and with the bootstrap, side by
    side) and the reference loop on one store."""
    store = ActivationStore(path)
    n, k = store.n_samples, store.n_neurons
    print(f"{path.name}: {n} samples × {len(store.widths)} layers, K = {k:,} neurons", flush=True)
    reports = {}
    for block_width in block_widths:
        common = [
            "--child-metrics",
            str(path),
            "--block-width",
            str(block_width),
            "--z",
            str(args.z),
        ]
        plain_args = common + ["--resamples", "0"]
        plain_args += ["--child-outputs", str(outputs_dir)] if outputs_dir else []
        boot_args = common + ["--resamples", str(args.resamples), "--device", args.device]
        boot_args += ["--workers", str(args.workers)] if args.workers else []
        plain, boot = [], []
        for round_ in range(max(1, args.rounds)):
            order = (
                [(plain, plain_args), (boot, boot_args)]
                if args.resamples
                else [(plain, plain_args)]
            )
            for runs, child_args in order[:: -1 if round_ % 2 else 1]:
                runs.append(run_child(child_args))
                report = runs[-1]
                label = (
                    f"compute_metrics + bootstrap (B = {args.resamples}, {args.device})"
                    if runs is boot
                    else "compute_metrics"
                )
                print(
                    f"{label}, block width {block_width}: {report['compute_s']:.1f} s wall, "
                    f"peak RSS {report['peak_compute_mib']:.0f} MiB (after imports and opening "
                    f"the store {report['rss_before_mib']:.0f} MiB), CPU {report['cpu_s']:.1f} s; "
                    f"1-min load average {report['load_before']:.1f} before, "
                    f"{report['load_after']:.1f} after",
                    flush=True,
                )
                if "write_outputs_s" in report:
                    print(
                        f"  write_outputs: {report['write_outputs_s']:.1f} s, peak RSS with it "
                        f"{report['peak_mib']:.0f} MiB"
                    )
        reports[block_width] = plain[0]
        if boot:
            wall = [r["compute_s"] for r in boot], [r["compute_s"] for r in plain]
            ratio = float(np.median(wall[0]) / np.median(wall[1]))
            per_round = ", ".join(f"{a / b:.2f}" for a, b in zip(*wall))
            print(
                f"bootstrap cost, block width {block_width}: with / without = {ratio:.2f}× "
                f"wall (median {np.median(wall[0]):.1f} s / {np.median(wall[1]):.1f} s; per "
                f"round {per_round}); CPU {np.median([r['cpu_s'] for r in boot]):.1f} s / "
                f"{np.median([r['cpu_s'] for r in plain]):.1f} s; peak RSS "
                f"{max(r['peak_compute_mib'] for r in boot):.0f} MiB / "
                f"{max(r['peak_compute_mib'] for r in plain):.0f} MiB",
                flush=True,
            )
            ci = boot[0]["ci"]
            print(
                f"  intervals: LRDS {ci['lrds']}, SADS {ci['sads']}, SKLR {ci['sklr']}; "
                f"region stability {ci['region_stability']}"
            )
    block_width, report = next(iter(reports.items()))
    print(
        f"LRDS {report['lrds']:.4f}  SADS {report['sads']:.4f}  SKLR {report['sklr']:,} "
        f"({100 * report['sklr_fraction']:.2f}% of K) at z > {args.z}"
    )
    dense_gib = n * k * 4 / 2**30
    print(
        f"whole (n × K) matrix in memory, as the reference code holds it: "
        f"{dense_gib:.2f} GiB float32, {2 * dense_gib:.2f} GiB float64 (computed, not run)"
    )
    if with_reference and args.ref_neurons > 0:
        ref = run_child(["--child-reference", str(path), "--ref-neurons", str(args.ref_neurons)])
        per_neuron = ref["reference_s"] / ref["neurons"]
        print(
            f"reference pair loop on {ref['neurons']} neurons: {ref['reference_s']:.2f} s "
            f"(closed form on the same slice {ref['closed_form_s'] * 1e3:.1f} ms, "
            f"×{ref['reference_s'] / ref['closed_form_s']:.0f}; max rel. diff "
            f"{ref['max_rel_diff']:.1e})"
        )
        print(
            f"reference contribution scores extrapolated per neuron to K = {k:,}: "
            f"{per_neuron * k:.0f} s = {per_neuron * k / report['compute_s']:.1f}× the whole "
            f"compute_metrics run (block width {block_width})",
            flush=True,
        )


def store_shape_arguments(parser: argparse.ArgumentParser, layers_help: str) -> None:
    """The synthetic store's shape (BLOOM-7b1's by default), as the metrics and LAPE
    benchmarks take it."""
    parser.add_argument("--languages", type=int, default=9)
    parser.add_argument("--items", type=int, default=100, help="samples per language")
    parser.add_argument("--layers", type=int, default=30, help=layers_help)
    parser.add_argument("--width", type=int, default=16384, help="BLOOM-7b1: 16384")


def selection_arguments(parser: argparse.ArgumentParser) -> None:
    """What the key-neuron selection benchmarks (LAPE, AP) take besides the shape."""
    store_shape_arguments(parser, "BLOOM-7b1: 30")
    parser.add_argument(
        "--block-width",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[4096],
        help="one or more, comma-separated: 4096,16384",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp folder")
    parser.add_argument("--keep", action="store_true", help="keep the store")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", type=Path, help="time this existing store instead")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)


def on_store(args: argparse.Namespace, make, bench, name: str) -> dict:
    """``bench(path)`` on ``args.store``, or on a synthetic store that ``make`` (as
    ``make_store``) creates under a temporary folder, removed after unless ``--keep``;
    the result, written with ``figures(result)`` to ``--json`` by ``write_result``."""
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    print(
        f"python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} cores; "
        f"load average {[round(x, 2) for x in os.getloadavg()]}"
    )
    if args.store:
        return bench(args.store)
    workdir = Path(tempfile.mkdtemp(dir=args.workdir, prefix=f"bench_{name}_"))
    try:
        path = workdir / "store.zarr"
        start = time.perf_counter()
        make(path, args.languages, args.items, args.layers, args.width, args.seed)
        size_mb = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
        print(f"store created in {time.perf_counter() - start:.1f} s, {size_mb:,.0f} MB on disk")
        return bench(path)
    finally:
        if args.keep:
            print(f"kept under {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def write_result(args: argparse.Namespace, name: str, result: dict, figures: dict) -> None:
    """The benchmark's result and figures to ``--json``, for run_all.py."""
    if args.json:
        record = {"benchmark": name, "command": " ".join(sys.argv), **result, "figures": figures}
        args.json.write_text(json.dumps(record, indent=1) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    store_shape_arguments(parser, "BLOOM-7b1: 30 (0: skip)")
    parser.add_argument(
        "--llama-layers",
        type=int,
        default=0,
        help="also a LLaMA-2-70b-width store with this many layers (80: full)",
    )
    parser.add_argument("--llama-width", type=int, default=28672)
    parser.add_argument(
        "--llama-block-width",
        type=lambda v: [int(x) for x in v.split(",")],
        default=None,
        help="block widths for that store (default: --block-width)",
    )
    parser.add_argument(
        "--block-width",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[4096],
        help="one or more, comma-separated: 1024,4096",
    )
    parser.add_argument("--z", type=float, default=2.0)
    parser.add_argument(
        "--resamples", type=int, default=1000, help="bootstrap B for the side-by-side run (0: skip)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="rounds of (without, with)")
    parser.add_argument("--device", default="cpu", help="bootstrap device (torch)")
    parser.add_argument("--workers", type=int, default=0, help="bootstrap threads (0: every core)")
    parser.add_argument(
        "--ref-neurons", type=int, default=16384, help="slice for the reference pair loop (0: skip)"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp folder")
    parser.add_argument("--outputs", action="store_true", help="also time write_outputs")
    parser.add_argument("--keep", action="store_true", help="keep stores and outputs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--store",
        type=Path,
        action="append",
        default=[],
        help="time this existing store instead of creating synthetic ones (repeatable)",
    )
    parser.add_argument("--child-metrics", help=argparse.SUPPRESS)
    parser.add_argument("--child-reference", help=argparse.SUPPRESS)
    parser.add_argument("--child-outputs", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_metrics:
        report = child_metrics(
            args.child_metrics,
            args.block_width[0],
            args.z,
            args.child_outputs,
            resamples=args.resamples,
            device=args.device,
            workers=args.workers or None,
        )
        print(json.dumps(report))
        return
    if args.child_reference:
        print(json.dumps(child_reference(args.child_reference, args.ref_neurons)))
        return

    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    print(
        f"python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM"
    )
    for path in args.store:  # existing stores: time only, never delete
        bench_store(path, args, args.block_width, with_reference=True)
    if args.store:
        return
    workdir = Path(tempfile.mkdtemp(dir=args.workdir, prefix="bench_metrics_"))
    try:
        shapes = [("bloom-7b1-shape", args.layers, args.width, args.block_width, True)]
        shapes.append(
            (
                "llama-2-70b-width",
                args.llama_layers,
                args.llama_width,
                args.llama_block_width or args.block_width,
                False,
            )
        )
        for label, n_layers, width, block_widths, with_reference in shapes:
            if n_layers:
                path = create(label, workdir, args, n_layers, width)
                outputs = workdir / f"{label}-outputs" if args.outputs else None
                bench_store(path, args, block_widths, with_reference, outputs)
                if not args.keep:
                    shutil.rmtree(path)
    finally:
        if args.keep:
            print(f"kept under {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
