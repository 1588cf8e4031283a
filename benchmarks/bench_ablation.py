"""Benchmark of the deactivation (ablation) perplexities (issue 8; not a test).

    .venv/bin/python benchmarks/bench_ablation.py                    # CPU, scaled shape
    .venv/bin/python benchmarks/bench_ablation.py --seqlen 32 --repeats 1   # quicker
    .venv/bin/python benchmarks/bench_ablation.py --proto --end-to-end --profile
    .venv/bin/python benchmarks/bench_ablation.py --full-560m        # GPU: 24 × 1024, bf16, cuda

Figure: the time of every ablation condition over the same perplexity windows
(``full`` + ``random`` (one draw per ``--seeds``) + one per language, as
``compute_ablation`` runs them) against (number of conditions × one bare forward pass
over those windows).  Both are timed in the same run, interleaved: each round runs

- ``ablation``: ``ablation._perplexities``, the loop ``compute_ablation`` spends its time
  in (called with one condition at a time, as it loops inside): per condition,
  ``zero_neurons`` hooks on every layer, then ``perplexity`` of every
  language's windows (logits, a float32 cross-entropy per row, ``.item()``);
- ``bare``: the model's forward (with its LM head: perplexity needs the logits) over
  the same windows in the same batches, no hooks and no loss, repeated once per
  condition, so both sides do the same number of forward passes;
- ``proto`` (with ``--proto``): the ablation loop with the candidate package
  changes of ``proto_*`` below, checked to give the same perplexities;
- end to end (with ``--end-to-end``): ``compute_ablation`` then ``write_outputs``, generations off
  (``prompts_per_language=0``), which adds two one-window perplexities, the tables and
  the figure.

Interleaving is per condition: in every round, for each condition in turn, one
piece of each variant runs (``bare``: one pass; ``ablation``/``proto``: that
condition), in an order rotated from piece to piece, so each pair is timed seconds
apart under the same load.  A variant's round time is the sum of its pieces; the
figure is the ratio of the medians over rounds, with the median of the per-condition
paired ratios beside it.  Model, tokenizer and CPU threads: as in ``bench_extraction.py`` (a
random-weight BLOOM-560m-shaped model, 4 layers on CPU).  Perplexity text: the
embedded held-out corpus (``resources/corpus/heldout.tsv``, the demo's perplexity
source), tokenized once per language and cut by ``ablation.windows``; the first
``--windows`` windows of ``--seqlen`` tokens per language are used.  Key regions are
synthetic (the model is random): for each language a seeded uniform draw of neurons,
fractions spread from 2 % to 9.4 % of K, so the random baseline is 10 % as in the
paper's BLOOM-7b1 Table 1.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_extraction as be
from lingua_franca import ablation as abl
from lingua_franca import architectures as arch
from lingua_franca.activations import tokenize
from lingua_franca.corpora.embedded import read_heldout_texts


def synthetic_key_neurons(widths, languages, seed: int, low=0.02, high=0.094) -> pd.DataFrame:
    """A key_neurons.parquet-shaped table: per language a seeded uniform draw of neurons."""
    k = int(sum(widths))
    bounds = np.cumsum([0, *widths])
    rng = np.random.default_rng(seed)
    frames = []
    for lang, fraction in zip(languages, np.linspace(low, high, len(languages))):
        flat = np.sort(rng.choice(k, round(fraction * k), replace=False))
        layer = np.searchsorted(bounds, flat, side="right") - 1
        frames.append(
            pd.DataFrame({"language": lang, "layer": layer, "neuron": flat - bounds[layer]})
        )
    return pd.concat(frames, ignore_index=True)


def prefix_text(tokenizer, text: str, n_windows: int, seqlen: int) -> str:
    """The shortest prefix of ``text`` that still gives ``n_windows`` windows."""
    lo, hi = 1, len(text)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(tokenize(tokenizer, [text[:mid]])[0]) >= n_windows * seqlen:
            hi = mid
        else:
            lo = mid + 1
    return text[:lo]


@torch.inference_mode()
def bare(model, wins: dict[str, torch.Tensor], batch_size: int, passes: int) -> None:
    device = model.get_input_embeddings().weight.device
    for _ in range(passes):
        for w in wins.values():
            for start in range(0, len(w), batch_size):
                _ = model(
                    input_ids=w[start : start + batch_size].to(device), use_cache=False
                ).logits


# ------------------------------------------------------------------ prototypes


@torch.inference_mode()
def proto_perplexity(model, windows: torch.Tensor, batch_size: int, progress=False) -> float:
    """``ablation.perplexity`` with the NLL of a whole batch in one ``cross_entropy``
    (float32 logits, summed in float64 via one ``.item()`` per batch instead of per row).
    For bf16/fp16 models this materialises the batch's logits in float32, which is what
    the package avoids on purpose; so the prototype upcasts row by row only then."""
    device = model.get_input_embeddings().weight.device
    total = 0.0
    for start in range(0, len(windows), batch_size):
        ids = windows[start : start + batch_size].to(device)
        logits = model(input_ids=ids, use_cache=False).logits[:, :-1]
        if logits.dtype == torch.float32:
            nll = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="sum")
        else:
            nll = sum(
                F.cross_entropy(r.float(), x[1:], reduction="sum") for r, x in zip(logits, ids)
            )
        total += float(nll.double().item())
        if progress:
            progress.update(len(ids))
    mean = total / (windows.shape[0] * (windows.shape[1] - 1))
    return math.exp(mean) if mean < 709 else math.inf


def proto_zero_neurons(model, neurons, neuron_module=None):
    """``zero_neurons`` with ``index_fill_`` of the listed columns in place of a
    multiplication by a 0/1 vector (which writes a whole new activation tensor)."""
    from contextlib import contextmanager

    @contextmanager
    def ctx():
        site = arch.find_neurons(model, neuron_module)
        handles = []
        try:
            for layer, index in neurons.items():
                index = torch.as_tensor(index, dtype=torch.long).reshape(-1)
                if index.numel() == 0:
                    continue
                cache: dict = {}

                def zero(x, index=index, cache=cache):
                    if x.device not in cache:
                        cache[x.device] = index.to(x.device)
                    return x.index_fill_(-1, cache[x.device], 0)

                handles.append(arch._register(site, layer, zero))
            yield site
        finally:
            for h in handles:
                h.remove()

    return ctx()


def run_proto(model, runs, wins, batch_size) -> dict:
    """``ablation._perplexities`` with both prototypes swapped in."""
    saved = abl.perplexity, abl.zero_neurons
    abl.perplexity, abl.zero_neurons = proto_perplexity, proto_zero_neurons
    try:
        return abl._perplexities(model, runs, wins, batch_size, None, False)
    finally:
        abl.perplexity, abl.zero_neurons = saved


def interleaved_conditions(model, runs, wins, batch_size, names, repeats, device):
    """Per round and condition, one piece of each variant (order rotated per piece):
    ``bare`` one forward pass over every window, ``ablation`` the package's loop on that
    one condition, ``proto`` the prototype loop on it.  Returns per-round totals,
    the pieces' seconds, and the perplexities of the last round."""
    pieces = {name: [] for name in names}
    totals = {name: [] for name in names}
    ppl: dict = {name: {} for name in names}
    step = 0
    for r in range(repeats):
        for run in runs:
            order = names[step % len(names) :] + names[: step % len(names)]
            step += 1
            for name in order:
                be.sync(device)
                start = time.perf_counter()
                if name == "bare":
                    bare(model, wins, batch_size, 1)
                elif name == "ablation":
                    ppl[name].update(abl._perplexities(model, [run], wins, batch_size, None, False))
                else:
                    ppl[name].update(run_proto(model, [run], wins, batch_size))
                be.sync(device)
                pieces[name].append(time.perf_counter() - start)
        n = len(runs)
        for name in names:
            totals[name].append(sum(pieces[name][-n:]))
        print(
            f"  round {r + 1}/{repeats}: "
            + ", ".join(f"{x} {totals[x][-1]:.2f} s" for x in names)
            + f"; load {be.load()}"
        )
    return totals, pieces, ppl


def paired(totals, pieces, num: str, den: str) -> dict:
    """``be.ratio`` over round totals, plus the ratio of each condition's pair of pieces."""
    out = be.ratio(totals, num, den)
    per_piece = [d / n for n, d in zip(pieces[num], pieces[den])]
    out["per_piece"] = [round(x, 3) for x in per_piece]
    out["median_piece"] = float(np.median(per_piece))
    return out


# ------------------------------------------------------------------ main


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    be.add_model_args(parser)
    parser.add_argument(
        "--seqlen",
        type=int,
        default=None,
        help="perplexity window (default 64 on cpu, the demo's analysis.seqlen; "
        "2048 with --full-560m)",
    )
    parser.add_argument("--windows", type=int, default=1, help="windows per language (default 1)")
    parser.add_argument("--seeds", type=int, default=1, help="random-baseline draws (default 1)")
    parser.add_argument(
        "--proto",
        action="store_true",
        help="also time the prototype loop (proto_perplexity, proto_zero_neurons)",
    )
    parser.add_argument(
        "--end-to-end",
        action="store_true",
        help="also time the ablation end to end (generations off)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="print torch.profiler tables of one bare pass and one condition",
    )
    args = parser.parse_args(argv)
    be.resolve_model_args(args)
    if args.seqlen is None:
        args.seqlen = 2048 if args.full_560m else 64
    args.batch_size = args.batch_size or 4
    args.repeats = args.repeats or 2
    warnings.filterwarnings("ignore")

    print("== ablation benchmark (issue 8)")
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    t0 = time.perf_counter()
    tokenizer = be.build_tokenizer(args)
    model = be.build_model(args, tokenizer)
    languages = be.LANGUAGES
    texts = read_heldout_texts({"dir": str(be.CORPUS)}, languages)
    wins = {}
    for lang in languages:
        w = abl.windows(tokenize(tokenizer, [texts[lang]])[0], args.seqlen, lang)
        if len(w) < args.windows:
            raise SystemExit(f"{lang}: only {len(w)} windows of {args.seqlen} tokens")
        wins[lang] = w[: args.windows]
    site = arch.find_neurons(model)
    widths = [4 * model.config.hidden_size] * len(site)
    key = synthetic_key_neurons(widths, languages, args.seed)
    regions = abl.regions_by_language(key, languages, widths)
    k = sum(widths)
    fraction = abl.random_fraction({lang: abl.count(regions[lang]) / k for lang in languages})
    runs = [("full", None, {})]
    runs += [("random", s, abl.random_neurons(widths, fraction, s)) for s in range(args.seeds)]
    runs += [(lang, None, regions[lang]) for lang in languages if abl.count(regions[lang])]
    n_cond = len(runs)
    n_windows = sum(len(w) for w in wins.values())
    print(be.describe_model(model))
    print(
        f"{n_cond} conditions (full, random {fraction:.0%} × {args.seeds} seed(s), "
        f"{n_cond - 1 - args.seeds} languages with key fractions "
        f"{min(abl.count(r) for r in regions.values()) / k:.1%}–"
        f"{max(abl.count(r) for r in regions.values()) / k:.1%}); {n_windows} windows of "
        f"{args.seqlen} tokens ({args.windows} per language), batch {args.batch_size}: "
        f"{n_cond * n_windows * args.seqlen:,} tokens per ablation run"
    )
    print(
        f"set-up {time.perf_counter() - t0:.1f} s; environment {be.environment()}; load {be.load()}"
    )

    # correctness and warm-up: one window, every path
    one = {languages[0]: wins[languages[0]][:1]}
    check_runs = [runs[0], runs[1], runs[-1]]
    expected = abl._perplexities(model, check_runs, one, args.batch_size, None, False)
    checks = {}
    if args.proto:
        got = run_proto(model, check_runs, one, args.batch_size)
        checks["proto_max_rel_diff"] = max(
            abs(got[c][languages[0]] / expected[c][languages[0]] - 1) for c in expected
        )
    bare(model, one, args.batch_size, 1)
    print(f"checks: {json.dumps(checks)}")

    names = ["bare", "ablation"] + (["proto"] if args.proto else [])
    print(
        f"timing {args.repeats} rounds; in each, per condition, one piece of every variant "
        f"({', '.join(names)}) in an order rotated per piece"
        + ("; then the ablation end to end once" if args.end_to_end else "")
    )
    times, pieces, ppl = interleaved_conditions(
        model, runs, wins, args.batch_size, names, args.repeats, args.device
    )
    if args.proto:
        checks["proto_max_rel_diff_all"] = max(
            abs(ppl["proto"][c][lang] / ppl["ablation"][c][lang] - 1)
            for c in ppl["ablation"]
            for lang in wins
        )
    if args.end_to_end:
        # compute_ablation windows the whole text: give it prefixes holding the same windows
        short = {
            lang: prefix_text(tokenizer, texts[lang], args.windows, args.seqlen)
            for lang in languages
        }
        times["end_to_end"] = []
        with tempfile.TemporaryDirectory(prefix="bench_ablation_") as tmp:
            for r in range(args.repeats):
                be.sync(args.device)
                start = time.perf_counter()
                result = abl.compute_ablation(
                    model,
                    tokenizer,
                    key,
                    widths,
                    short,
                    {},
                    languages,
                    seqlen=args.seqlen,
                    batch_size=args.batch_size,
                    seeds=list(range(args.seeds)),
                    prompts_per_language=0,
                    progress=False,
                )
                abl.write_outputs(result, abl.AblationFiles.in_folder(tmp))
                be.sync(args.device)
                times["end_to_end"].append(time.perf_counter() - start)
                bare_start = time.perf_counter()
                bare(model, wins, args.batch_size, n_cond)
                be.sync(args.device)
                times.setdefault("bare_e2e", []).append(time.perf_counter() - bare_start)
                print(
                    f"  end to end {times['end_to_end'][-1]:.2f} s, then {n_cond} bare "
                    f"passes {times['bare_e2e'][-1]:.2f} s; load {be.load()}"
                )

    labels = {
        "ablation_vs_bare": f"all {n_cond} ablation conditions / ({n_cond} × bare forward)",
        "proto_vs_bare": f"prototype ablation loop / ({n_cond} × bare forward)",
        "proto_vs_ablation": "prototype ablation loop / package ablation loop",
        "end_to_end_vs_bare": f"compute_ablation + write_outputs / ({n_cond} × bare forward)",
    }
    figures = {"ablation_vs_bare": paired(times, pieces, "ablation", "bare")}
    if "proto" in times:
        figures["proto_vs_bare"] = paired(times, pieces, "proto", "bare")
        figures["proto_vs_ablation"] = paired(times, pieces, "proto", "ablation")
    if "end_to_end" in times:
        figures["end_to_end_vs_bare"] = be.ratio(
            {"a": times["end_to_end"], "b": times["bare_e2e"]}, "a", "b"
        )
    tokens = n_cond * n_windows * args.seqlen
    tps = {name: tokens / float(np.median(t)) for name, t in times.items()}
    print("throughput (tokens/s, median): " + ", ".join(f"{k} {v:,.0f}" for k, v in tps.items()))
    for name, fig in figures.items():
        extra = (
            f"; median of the {len(fig['per_piece'])} per-condition pairs {fig['median_piece']:.3f}"
            if "per_piece" in fig
            else ""
        )
        print(f"FIGURE {labels[name]}: {fig['ratio']:.3f}  (per round {fig['per_round']}{extra})")
    print(f"load average after: {be.load()}")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for name, fn in [
            ("bare (1 pass)", lambda: bare(model, wins, args.batch_size, 1)),
            (
                "ablation (1 condition: random)",
                lambda: abl._perplexities(model, runs[1:2], wins, args.batch_size, None, False),
            ),
        ]:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                fn()
            print(
                f"--- {name}\n"
                + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
            )
    result = {
        "benchmark": "ablation",
        "command": " ".join(sys.argv),
        "model": be.describe_model(model),
        "conditions": [r[0] if r[1] is None else f"{r[0]}-{r[1]}" for r in runs],
        "seqlen": args.seqlen,
        "windows": n_windows,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "seconds": times,
        "tokens_per_s": tps,
        "figures": {k: {**v, "label": labels[k]} for k, v in figures.items()},
        "checks": checks,
        "environment": be.environment(),
        "load_after": be.load(),
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
