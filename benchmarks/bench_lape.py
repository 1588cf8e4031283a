"""Benchmark of LAPE selection (``lape.compute_lape``) on a synthetic store of a real
model shape (issue 15; not a test).

    .venv/bin/python benchmarks/bench_lape.py                    # BLOOM-7b1: 900 × 30 × 16384
    .venv/bin/python benchmarks/bench_lape.py --layers 2 --width 2048 --items 20   # seconds
    .venv/bin/python benchmarks/bench_lape.py --store results/m/c/activations.zarr  # any store

Creates a store with ``StoreWriter`` holding activity counts (9 languages × 100 items;
each sample 5–60 real tokens; every neuron fires with a base rate, 2% of the neurons
fire mostly in one language), then runs ``compute_lape`` with the default settings
in a fresh child process for each block width and reports its wall time, the share of
the pass over the store, and the child's peak RSS (``VmHWM``, as in
``bench_metrics.py``).  The means are written as zeros: LAPE never reads them.
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
    on_store,
    proc_status_mib,
    selection_arguments,
    synthetic_writer,
    write_result,
)
from lingua_franca import lape
from lingua_franca.store import ActivationStore


def make_store(path: Path, n_lang: int, n_items: int, n_layers: int, width: int, seed: int):
    """Synthetic activity counts, one language block (all layers) at a time."""
    rng = np.random.default_rng(seed)
    k = n_layers * width
    base = rng.beta(0.5, 2.0, k).astype(np.float32)  # a neuron's rate in every language
    owner = np.where(rng.uniform(size=k) < 0.02, rng.integers(0, n_lang, k), -1)
    activity = {"pattern": "synthetic", "side": "output", "kind": "neuron", "active": "value > 0"}
    with synthetic_writer(path, n_lang, n_items, n_layers, width, activity=activity) as writer:
        zeros = np.zeros((n_items, width), np.float32)
        for index in range(n_lang):
            n_tokens = rng.integers(5, 61, n_items).astype(np.int32)
            rates = np.where(owner == index, 0.9, np.where(owner >= 0, 0.01, base))
            active = [
                rng.binomial(n_tokens[:, None], rates[m * width : (m + 1) * width]).astype(np.int32)
                for m in range(n_layers)
            ]
            writer.write([zeros] * n_layers, active, n_tokens)
    return ActivationStore(path)


def child_lape(store_path: str, block_width: int) -> dict:
    store = ActivationStore(store_path)
    report = {"rss_before_mib": proc_status_mib("VmRSS"), "load_before": os.getloadavg()[0]}
    start = time.perf_counter()
    languages, p, tokens = lape.activation_probabilities(store, block_width)
    report["pass_s"] = time.perf_counter() - start
    report["peak_pass_mib"] = proc_status_mib("VmHWM")
    result = lape.lape_from_probabilities(p, store.widths, languages, tokens=tokens)
    report["compute_s"] = time.perf_counter() - start
    report["peak_mib"] = proc_status_mib("VmHWM")
    report["load_after"] = os.getloadavg()[0]
    # the same through the one public entry point, for the record (not timed separately)
    again = lape.compute_lape(store, block_width=block_width)
    assert again.key_neurons().equals(result.key_neurons())
    summary = result.summary()
    report.update(
        p_mib=p.nbytes / 2**20,
        selected=summary["selected"],
        candidates=summary["candidates"],
        rows=int(result.member.sum()),
        per_language=summary["key_neurons_per_language"],
        filter_value=summary["filter_value"],
    )
    return report


def run_child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], stdout=subprocess.PIPE, check=True)
    return json.loads(proc.stdout)


def bench_store(path: Path, block_widths: list[int]) -> dict:
    store = ActivationStore(path)
    n, k = store.n_samples, store.n_neurons
    print(f"{path.name}: {n} samples × {len(store.widths)} layers, K = {k:,} neurons", flush=True)
    reports = {}
    for block_width in block_widths:
        r = reports[block_width] = run_child(
            ["--child", str(path), "--block-width", str(block_width)]
        )
        print(
            f"compute_lape, block width {block_width}: {r['compute_s']:.1f} s wall (pass over "
            f"the counts {r['pass_s']:.1f} s), peak RSS {r['peak_mib']:.0f} MiB (after imports "
            f"and opening the store {r['rss_before_mib']:.0f} MiB; p itself {r['p_mib']:.0f} MiB); "
            f"1-min load average {r['load_before']:.1f} before, {r['load_after']:.1f} after",
            flush=True,
        )
    r = next(iter(reports.values()))
    print(
        f"selected {r['selected']:,} of {r['candidates']:,} candidates; {r['rows']:,} "
        f"(language, neuron) rows; per language {r['per_language']}"
    )
    print(
        f"all counts of the store in memory at once (n × K int32): {n * k * 4 / 2**30:.2f} GiB "
        "(computed, not run)"
    )
    return {"samples": n, "neurons": k, "block_widths": reports}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    selection_arguments(parser)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child_lape(args.child, args.block_width[0])))
        return
    result = on_store(args, make_store, lambda path: bench_store(path, args.block_width), "lape")
    first = next(iter(result["block_widths"].items()))
    figures = {
        "compute_lape_seconds": {
            "value": first[1]["compute_s"],
            "label": f"compute_lape wall seconds, K = {result['neurons']:,}, block width "
            f"{first[0]} (peak RSS {first[1]['peak_mib']:.0f} MiB); not a ratio",
        }
    }
    write_result(args, "lape", result, figures)
    return result


if __name__ == "__main__":
    main()
