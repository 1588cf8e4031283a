"""Benchmark of AP selection (``ap.key_neurons``, docs/method.md §9.2) on a synthetic
store of a real model shape (issue 24; not a test).

    .venv/bin/python benchmarks/bench_ap.py                    # BLOOM-7b1: 900 × 30 × 16384
    .venv/bin/python benchmarks/bench_ap.py --layers 2 --width 2048 --items 20   # seconds
    .venv/bin/python benchmarks/bench_ap.py --store results/m/c/activations.zarr  # any store

Creates a store of means with ``bench_metrics.make_store`` (9 languages × 100 items;
always-on, language, item and noise parts), then, in a fresh child process for each
block width: reads the store once block by block (``iter_blocks``, float32: the pass
itself, which also warms the page cache), then runs the selection with the default
settings (2% of K top and bottom) and reports its wall time, the ratio to the plain
pass measured just before it, and the child's peak RSS (``VmHWM``, as in
``bench_metrics.py``).  The APs of ``--ref-neurons`` neurons are also computed the
slow way, one ``sklearn.metrics.average_precision_score`` call per language, neuron
and ranking, checked against the fast ones, and that time extrapolated linearly to
all K neurons.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from bench_metrics import (
    make_store,
    on_store,
    proc_status_mib,
    selection_arguments,
    write_result,
)
from lingua_franca import ap
from lingua_franca.store import ActivationStore


def child_ap(store_path: str, block_width: int, ref_neurons: int) -> dict:
    store = ActivationStore(store_path)
    report = {"rss_before_mib": proc_status_mib("VmRSS"), "load_before": os.getloadavg()[0]}
    start = time.perf_counter()
    for _ in store.iter_blocks(block_width, dtype="float32"):
        pass
    report["read_s"] = time.perf_counter() - start
    start = time.perf_counter()
    found = ap.key_neurons(store, block_width=block_width)
    report["select_s"] = time.perf_counter() - start
    report["peak_mib"] = proc_status_mib("VmHWM")
    report["load_after"] = os.getloadavg()[0]
    summary = found.summary
    report.update(
        rows=len(found.table),
        top_neurons=summary["top_neurons"],
        bottom_neurons=summary["bottom_neurons"],
        in_both=sum(summary["in_both_lists"].values()),
        ap_mib=2 * len(found.languages) * store.n_neurons * 8 / 2**20,
    )
    if ref_neurons:
        report.update(reference(store, ref_neurons))
    return report


def reference(store: ActivationStore, n: int) -> dict:
    """sklearn, one call per (language, neuron, ranking), on the first n neurons."""
    from sklearn.metrics import average_precision_score

    block = np.asarray(store.group[store.layers[0]][:, :n], dtype=np.float32)
    languages = list(dict.fromkeys(store.languages))
    labels = np.array([languages.index(x) for x in store.languages])
    start = time.perf_counter()
    slow = np.array(
        [
            [
                [average_precision_score(labels == lang, sign * block[:, j]) for j in range(n)]
                for lang in range(len(languages))
            ]
            for sign in (1, -1)
        ]
    )
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    fast = np.array(ap.average_precisions(block, labels, len(languages)))
    fast_seconds = time.perf_counter() - start
    return {
        "ref_neurons": n,
        "ref_s": seconds,
        "ref_fast_s": fast_seconds,
        "ref_max_abs_diff": float(np.abs(slow - fast).max()),
        "ref_extrapolated_s": seconds * store.n_neurons / n,
    }


def run_child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], stdout=subprocess.PIPE, check=True)
    return json.loads(proc.stdout)


def bench_store(path: Path, block_widths: list[int], ref_neurons: int) -> dict:
    store = ActivationStore(path)
    n, k = store.n_samples, store.n_neurons
    print(f"{path.name}: {n} samples × {len(store.widths)} layers, K = {k:,} neurons", flush=True)
    reports = {}
    for i, block_width in enumerate(block_widths):
        r = reports[block_width] = run_child(
            ["--child", str(path), "--block-width", str(block_width)]
            + ["--ref-neurons", str(ref_neurons if i == 0 else 0)]
        )
        print(
            f"ap selection, block width {block_width}: {r['select_s']:.1f} s wall, "
            f"{r['select_s'] / r['read_s']:.1f}× the plain pass over the means measured just "
            f"before it ({r['read_s']:.1f} s); peak RSS {r['peak_mib']:.0f} MiB (after imports "
            f"and opening the store {r['rss_before_mib']:.0f} MiB; the two AP arrays "
            f"{r['ap_mib']:.0f} MiB); 1-min load average {r['load_before']:.1f} before, "
            f"{r['load_after']:.1f} after",
            flush=True,
        )
    r = next(iter(reports.values()))
    print(
        f"regions: top {r['top_neurons']:,} + bottom {r['bottom_neurons']:,} per language, "
        f"{r['rows']:,} rows ({r['in_both']} neurons in both lists of a language)"
    )
    if r.get("ref_neurons"):
        print(
            f"sklearn, one average_precision_score call per language × neuron × ranking, on "
            f"{r['ref_neurons']} neurons: {r['ref_s']:.1f} s (the vectorised pass on the same "
            f"block: {r['ref_fast_s']:.3f} s; largest difference {r['ref_max_abs_diff']:.1e}); "
            f"extrapolated to K: {r['ref_extrapolated_s'] / 3600:.1f} h"
        )
    return {"samples": n, "neurons": k, "block_widths": reports}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    selection_arguments(parser)
    parser.add_argument("--ref-neurons", type=int, default=128, help="0: no sklearn reference")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child_ap(args.child, args.block_width[0], args.ref_neurons)))
        return
    result = on_store(
        args, make_store, lambda path: bench_store(path, args.block_width, args.ref_neurons), "ap"
    )
    first_width, first = next(iter(result["block_widths"].items()))
    figures = {
        "ap_select_over_read": {
            "value": first["select_s"] / first["read_s"],
            "label": f"AP selection / plain pass over the means, K = {result['neurons']:,}, "
            f"block width {first_width} ({first['select_s']:.0f} s, peak RSS "
            f"{first['peak_mib']:.0f} MiB)",
        }
    }
    write_result(args, "ap", result, figures)
    return result


if __name__ == "__main__":
    main()
