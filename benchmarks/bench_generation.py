"""Benchmark of the language statistics (docs/method.md §11; not a test).

    .venv/bin/python benchmarks/bench_generation.py                # CPU, scaled shape
    .venv/bin/python benchmarks/bench_generation.py --full-560m    # GPU: 24 × 1024, bf16, cuda

Figures, each measured side by side in one run (``bench_extraction.interleaved``:
every variant once per round, the order rotated):

1. **Sampled generation under hooks against a bare ``generate``** of the same batch:
   ``generations.sample`` inside ``zero_neurons`` of a region of 5% of K (the
   package's path in the ablation job) against the model's own ``generate`` with the
   same sampling settings (``do_sample``, temperature 0.8, top-p 0.9, no top-k,
   end-of-sequence suppressed) and no hook.  The package draws the nucleus itself
   (``NucleusSampler``: a ``topk`` first, the whole vocabulary sorted only when the
   candidates hold less than top-p); the library sorts the whole vocabulary at every
   step.  A third variant, ``sample`` without the hook, separates the hook's cost from
   the sampler's.
2. **Labelling throughput**: texts a second on one core, for ``Identifier.label``
   (the unknown rules, lid.176 and the second identifier) and for lid.176 alone,
   over the demo corpus' held-out paragraphs (the shape of a 64-token continuation).

Model, tokenizer and threads as in ``bench_extraction.py`` (a random-weight
BLOOM-560m-shaped model, 4 layers on the CPU).  Prompts: the first ``--prompts``
held-out paragraphs of every language, ``--batch-size`` at a time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_extraction as be
from lingua_franca.ablation import random_neurons
from lingua_franca.activations import tokenize
from lingua_franca.architectures import find_neurons
from lingua_franca.corpora.parallel import read_parallel_tsv
from lingua_franca.generations import Sampling, left_pad, sample
from lingua_franca.interventions import zero_neurons
from lingua_franca.language_id import Identifier

HELDOUT = be.CORPUS / "heldout.tsv"


def region(model, fraction: float, seed: int) -> dict[int, np.ndarray]:
    """A uniform draw of ``fraction`` of all K neurons (as the random baseline)."""
    c = model.config
    width = getattr(c, "intermediate_size", None) or 4 * c.hidden_size
    return random_neurons([width] * len(find_neurons(model)), fraction, seed)


def bare_generate(model, batch, new_tokens, pad, eos, seed):
    """The library's own sampling, no hook."""
    from transformers import GenerationConfig

    ids, mask = left_pad(batch, pad)
    device = next(model.parameters()).device
    config = GenerationConfig(
        do_sample=True,
        temperature=0.8,
        top_p=0.9,
        top_k=0,
        max_new_tokens=new_tokens,
        min_new_tokens=None,
        eos_token_id=[],
        pad_token_id=pad,
        suppress_tokens=[eos],
    )
    torch.manual_seed(seed)
    model.generate(
        input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    be.add_model_args(parser)
    parser.add_argument("--prompts", type=int, default=4, help="prompts per language (default 4)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--fraction", type=float, default=0.05, help="region size (of K)")
    parser.add_argument("--texts", type=int, default=720, help="texts to label (default 720)")
    args = parser.parse_args(argv)
    be.resolve_model_args(args)
    args.batch_size = args.batch_size or 36
    args.repeats = args.repeats or 3
    tokenizer = be.build_tokenizer(args)
    model = be.build_model(args, tokenizer)
    print(be.describe_model(model), flush=True)
    heldout = read_parallel_tsv(HELDOUT)
    texts = [
        text
        for lang in be.LANGUAGES
        for text in heldout.loc[heldout["lang"] == lang, "text"].head(args.prompts)
    ]
    ids = tokenize(tokenizer, texts)
    batches = [ids[i : i + args.batch_size] for i in range(0, len(ids), args.batch_size)]
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    neurons = region(model, args.fraction, args.seed)
    sampling = Sampling()

    def package(hooked: bool):
        def go():
            for b, batch in enumerate(batches):
                if hooked:
                    with zero_neurons(model, neurons):
                        sample(model, batch, args.new_tokens, pad, sampling, b, [eos])
                else:
                    sample(model, batch, args.new_tokens, pad, sampling, b, [eos])

        return go

    def bare():
        for b, batch in enumerate(batches):
            bare_generate(model, batch, args.new_tokens, pad, eos, b)

    print(
        f"{len(texts)} prompts in {len(batches)} batches of ≤ {args.batch_size}, "
        f"{args.new_tokens} new tokens; region {args.fraction:.0%} of every layer",
        flush=True,
    )
    times = be.interleaved(
        {"hooked": package(True), "unhooked": package(False), "bare": bare},
        args.repeats,
        args.device,
    )
    results = {
        "model": be.describe_model(model),
        "environment": be.environment(),
        "prompts": len(texts),
        "batch_size": args.batch_size,
        "new_tokens": args.new_tokens,
        "median_s": {name: statistics.median(t) for name, t in times.items()},
        "hooked_vs_bare": be.ratio(times, "hooked", "bare"),
        "hooked_vs_unhooked": be.ratio(times, "hooked", "unhooked"),
        "load_end": be.load(),
    }

    # labelling throughput, one core
    torch.set_num_threads(1)
    corpus = list(heldout["text"])
    pool = (corpus * (args.texts // len(corpus) + 1))[: args.texts]
    identifier = Identifier(be.LANGUAGES)
    identifier.label(pool[0])  # load both models before timing
    detector = identifier._detector

    def label_all():
        for text in pool:
            identifier.label(text)

    def lid_only():
        for text in pool:
            detector.detect(" ".join(text.split()), k=1)

    label_times = be.interleaved({"label": label_all, "lid176": lid_only}, args.repeats, "cpu")
    results["labelling_texts_per_s"] = {
        name: len(pool) / statistics.median(t) for name, t in label_times.items()
    }

    results["figures"] = {
        "sampled_generation_hooked_vs_bare": {
            "ratio": results["hooked_vs_bare"]["ratio"],
            "label": "sampled generation inside a 5% deactivation (NucleusSampler) / the "
            "library's own sampling with no hook, same batches (throughput; goal >= 0.95)",
        },
        "sampled_generation_hooked_vs_unhooked": {
            "ratio": results["hooked_vs_unhooked"]["ratio"],
            "label": "the same sampling with / without the deactivation hook (throughput)",
        },
        "labelling_texts_per_second": {
            "value": results["labelling_texts_per_s"]["label"],
            "label": "Identifier.label (unknown rules, lid.176, py3langid), texts/s on one "
            "core; not a ratio",
        },
    }
    print("\n=== sampled generation ===")
    for name, value in results["median_s"].items():
        print(f"  {name:9s} {value:.2f} s (median over {args.repeats} rounds)")
    for key in ("hooked_vs_bare", "hooked_vs_unhooked"):
        r = results[key]
        print(f"  {key}: throughput ratio {r['ratio']:.3f} (per round {r['per_round']})")
    print("=== labelling (one core) ===")
    for name, value in results["labelling_texts_per_s"].items():
        print(f"  {name}: {value:,.0f} texts/s")
    print(f"load at the end {results['load_end']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - start:.0f} s")
