"""Benchmark of the steering experiment's generation (docs/method.md §12; not a test).

    .venv/bin/python benchmarks/bench_steering.py              # CPU, the demo's toy-bloom-m shape
    .venv/bin/python benchmarks/bench_steering.py --full-560m  # GPU: 24 × 1024, bf16, cuda

Figures, each measured side by side in one run (``bench_extraction.interleaved``):

1. **Cells packed into shared calls against one cell a call**: ``--cells``
   conditions (each a region of ``--fraction`` of K forced to random values), each
   continuing ``--samples`` prompts by sampling.  ``generations.generate_cells`` under
   ``intervene_rows`` (``--rows-per-call`` rows a call, each row under its own condition)
   against ``generate_all`` under ``intervene`` for one cell at a time, the way the
   steering experiment ran before.  Both give every cell the same continuations (the
   same random numbers; tests/test_generations.py), so only the time differs.
2. **The fluency pass in small batches against the sampling batch**:
   ``steering.continuation_nll`` over every continuation of (1), ``--score-batch``
   rows a forward against ``--batch-size`` rows (the values are equal; asserted).

Default shape: the demo's ``toy-bloom-m`` (2 layers × 128, vocabulary 2,048), one
thread, the demo's 270-row batches of 30-prompt cells (the steering experiment's
``analysis.steering.samples``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_extraction as be
from bench_generation import HELDOUT, region
from lingua_franca.corpora.parallel import read_parallel_tsv
from lingua_franca.generations import Sampling, generate_all, generate_cells
from lingua_franca.interventions import Intervention, intervene, intervene_rows
from lingua_franca.steering import continuation_nll

TOY = {"layers": 2, "hidden": 128, "heads": 4, "vocab": 2048}  # workflow_config.yaml


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    be.add_model_args(parser)
    parser.set_defaults(bpe_vocab=None)
    parser.add_argument("--cells", type=int, default=18, help="conditions (default 18)")
    parser.add_argument("--samples", type=int, default=30, help="prompts a cell (default 30)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--fraction", type=float, default=0.05, help="region size (of K)")
    parser.add_argument("--score-batch", type=int, default=16, help="fluency rows a forward")
    parser.add_argument(
        "--rows-per-call", type=int, default=135, help="packed rows a call (the demo's 135)"
    )
    parser.add_argument(
        "--model",
        type=Path,
        help="a saved model folder with its tokenizer instead of random weights (e.g. the "
        "demo's results/toy/toy-bloom-m/step-600)",
    )
    args = parser.parse_args(argv)
    if not args.full_560m:  # unless given, the demo's toy-bloom-m shape
        for name, value in TOY.items():
            if getattr(args, name) is None:
                setattr(args, name, value)
    args.bpe_vocab = args.bpe_vocab or min(args.vocab or 32000, 32000)
    be.resolve_model_args(args)
    args.batch_size = args.batch_size or 270
    args.repeats = args.repeats or 3
    if args.model:  # trained weights: the nucleus is small, as in the demo
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(args.model))
        tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(str(args.model)).eval()
    else:
        tokenizer = be.build_tokenizer(args)
        model = be.build_model(args, tokenizer)
    print(be.describe_model(model), flush=True)
    heldout = read_parallel_tsv(HELDOUT)
    pool = list(heldout["text"])
    rng = np.random.default_rng(args.seed)
    cells = []
    for c in range(args.cells):
        neurons = region(model, args.fraction, args.seed + c)
        values = {m: rng.normal(0, 2, len(i)) for m, i in neurons.items()}
        texts = [pool[(c * args.samples + i) % len(pool)] for i in range(args.samples)]
        prompts = [{"item": str(i), "text": " ".join(t.split()[:8])} for i, t in enumerate(texts)]
        cells.append(((Intervention(neurons, "set", values),), prompts))
    sampling = Sampling()
    made = {}
    in_parts = Sampling(rows_per_call=args.rows_per_call)

    def packed():
        made["packed"] = generate_cells(
            model,
            tokenizer,
            cells,
            args.new_tokens,
            args.batch_size,
            lambda conditions, rows: intervene_rows(model, conditions, rows),
            sampling=in_parts,
        )

    def apart():
        made["apart"] = [
            generate_all(
                model,
                tokenizer,
                [("c", condition)],
                {"x": prompts},
                args.new_tokens,
                args.batch_size,
                lambda interventions: intervene(model, interventions),
                sampling=sampling,
            )
            for condition, prompts in cells
        ]

    print(
        f"{args.cells} cells of {args.samples} prompts, batches of ≤ {args.batch_size}, "
        f"packed {args.rows_per_call} rows a call, "
        f"{args.new_tokens} new tokens; regions {args.fraction:.0%} of every layer",
        flush=True,
    )
    times = be.interleaved({"packed": packed, "apart": apart}, args.repeats, args.device)
    same = [
        [r["continuation_ids"] for r in a] == [r["continuation_ids"] for r in p]
        for a, p in zip(made["apart"], made["packed"])
    ]
    from lingua_franca.activations import tokenize

    prompt_ids = [
        ids for _, prompts in cells for ids in tokenize(tokenizer, [p["text"] for p in prompts])
    ]
    continuations = [r["continuation_ids"] for records in made["packed"] for r in records]
    scores = {}

    def scored(batch):
        def go():
            scores[batch] = continuation_nll(
                model, prompt_ids, continuations, batch, tokenizer.pad_token_id
            )

        return go

    score_times = be.interleaved(
        {
            f"batch {args.score_batch}": scored(args.score_batch),
            f"batch {args.batch_size}": scored(args.batch_size),
        },
        args.repeats,
        args.device,
    )
    score_times = {
        "small": score_times[f"batch {args.score_batch}"],
        "large": score_times[f"batch {args.batch_size}"],
    }
    equal_scores = bool(np.allclose(scores[args.score_batch], scores[args.batch_size], rtol=1e-5))
    results = {
        "model": be.describe_model(model),
        "environment": be.environment(),
        "cells": args.cells,
        "samples": args.samples,
        "batch_size": args.batch_size,
        "score_batch": args.score_batch,
        "rows_per_call": args.rows_per_call,
        "new_tokens": args.new_tokens,
        "threads": args.threads,
        "median_s": {name: statistics.median(t) for name, t in times.items()},
        "packed_vs_apart": be.ratio(times, "packed", "apart"),
        "cells_identical": (same_cells := f"{sum(same)} of {len(same)}"),
        "score_median_s": {name: statistics.median(t) for name, t in score_times.items()},
        "score_small_vs_large": be.ratio(score_times, "small", "large"),
        "scores_equal": equal_scores,
        "load_end": be.load(),
    }
    results["figures"] = {
        "steering_cells_packed_vs_apart": {
            "ratio": results["packed_vs_apart"]["ratio"],
            "label": f"steering cells sampled {args.rows_per_call // args.samples} to a call "
            "(generate_cells, intervene_rows) / one cell a call (throughput; the same "
            "random numbers)",
        },
        "steering_fluency_small_vs_large_batches": {
            "ratio": results["score_small_vs_large"]["ratio"],
            "label": f"fluency NLL in batches of {args.score_batch} / of {args.batch_size} "
            "(throughput; the same values)",
        },
    }
    for title, medians, key, check, check_value in (
        ("steering cells", "median_s", "packed_vs_apart", "identical cells", same_cells),
        ("fluency pass", "score_median_s", "score_small_vs_large", "the same NLLs", equal_scores),
    ):
        print(f"\n=== {title} ===")
        for name, value in results[medians].items():
            print(f"  {name:7s} {value:.2f} s (median over {args.repeats} rounds)")
        r = results[key]
        print(f"  {key}: throughput ratio {r['ratio']:.3f} (per round {r['per_round']})")
        print(f"  {check}: {check_value}")
    print(f"load at the end {results['load_end']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - start:.0f} s")
