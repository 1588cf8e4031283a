"""Benchmark of the perplexity intervals (issue 16; not a test).

    .venv/bin/python benchmarks/bench_ppl_intervals.py                  # BLOOM-7b1-run shape
    .venv/bin/python benchmarks/bench_ppl_intervals.py --windows 500    # longer texts
    .venv/bin/python benchmarks/bench_ppl_intervals.py --window-nll results/M/C/window_nll.parquet

What the paired bootstrap over windows (docs/method.md §10) adds to an ablation job,
after its forward passes: ``ablation.increase_intervals`` (B resamples of every
language's windows, every increase cell), ``interval_summary`` (the interval rule and
the means' intervals), ``contains_zero`` (the heatmap's marks), and building and
writing ``window_nll.parquet`` and ``ppl_increase_ci.csv``.  Timed per round, median
over ``--rounds``, in CPU and wall time.

The default shape is the paper's BLOOM-7b1 Table 1 run: 9 languages, each with its
own key region, 3 random-baseline seeds, so 1 + 3 + 9 = 13 conditions, ``--windows``
windows of 2048 tokens per language (XL-Sum's first 500 validation articles give
roughly 100–200), B = 1000.  Window NLLs are synthetic (their values do not change
the work).  With ``--window-nll`` the NLLs of a real run are used instead (the demo's,
for example), with the seeds and languages found in them.

For scale, it prints how many windows the ablation's forward passes cover at that
shape (conditions × languages × windows): the intervals' time is to be set against
that many forward passes of ``--seqlen`` tokens through the model.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from lingua_franca import ablation as abl
from lingua_franca.bootstrap import BootstrapSettings

LANGS = ["en", "zh", "fr", "es", "pt", "ar", "vi", "hi", "id"]


def synthetic(languages, windows: int, seeds: list[int], seqlen: int, seed: int = 0):
    """{(condition, seed): {language: (W,) NLLs}} shaped as compute_ablation keeps them."""
    rng = np.random.default_rng(seed)
    tokens = seqlen - 1
    nll = {}
    full = {lang: rng.normal(2.5, 0.3, windows) * tokens for lang in languages}
    nll["full", None] = full
    for s in seeds:
        nll["random", s] = {
            k: v + rng.normal(0.01, 0.02, windows) * tokens for k, v in full.items()
        }
    for cond in languages:
        nll[cond, None] = {
            k: v + rng.normal(0.2 if k == cond else 0.02, 0.05, windows) * tokens
            for k, v in full.items()
        }
    return nll, tokens


def from_parquet(path: Path):
    """The NLLs of a real run's window_nll.parquet, in the same shape."""
    table = pd.read_parquet(path)
    nll = {}
    for (cond, seed, lang), rows in table.groupby(
        ["condition", "seed", "language"], dropna=False, sort=False
    ):
        key = (cond, None if pd.isna(seed) else int(seed))
        nll.setdefault(key, {})[lang] = rows.sort_values("window")["nll"].to_numpy()
    return nll, int(table["tokens"].iloc[0])


def one_round(nll, tokens, seeds, settings, workdir: Path) -> None:
    languages = list(nll["full", None])
    ppl = {
        k: {lang: abl.perplexity_from_nlls(v, tokens) for lang, v in d.items()}
        for k, d in nll.items()
    }
    table = pd.DataFrame({"full": ppl["full", None]})
    table["random"] = np.mean([pd.Series(ppl["random", s]) for s in seeds], axis=0)
    deactivated = [lang for lang in languages if (lang, None) in nll]
    for lang in languages:
        table[lang] = pd.Series(ppl[lang, None]) if lang in deactivated else np.nan
    increase = abl.ppl_increase(table, ["random", *languages])
    # what compute_ablation and write_outputs add for the intervals
    ci, cells = abl.increase_intervals(nll, increase, tokens, seeds, settings)
    abl.interval_summary(ci, cells, increase, deactivated, settings)
    abl.contains_zero(ci, increase)
    ci.to_csv(workdir / "ppl_increase_ci.csv", index=False)
    abl.window_nll_table(nll, tokens).to_parquet(workdir / "window_nll.parquet", index=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--languages", type=int, default=9)
    parser.add_argument("--windows", type=int, default=150, help="windows per language")
    parser.add_argument("--seeds", type=int, default=3, help="random-baseline seeds")
    parser.add_argument("--seqlen", type=int, default=2048)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--window-nll", type=Path, help="a real run's window_nll.parquet")
    args = parser.parse_args(argv)

    if args.window_nll:
        nll, tokens = from_parquet(args.window_nll)
        seeds = sorted(s for c, s in nll if c == "random")
        shape = f"{args.window_nll}"
    else:
        seeds = list(range(args.seeds))
        nll, tokens = synthetic(LANGS[: args.languages], args.windows, seeds, args.seqlen)
        shape = "synthetic"
    languages = list(nll["full", None])
    n_windows = {lang: len(v) for lang, v in nll["full", None].items()}
    forward = len(nll) * sum(n_windows.values())
    settings = BootstrapSettings(resamples=args.resamples, level=0.95, seed=0)
    print(
        f"{shape}: {len(languages)} languages, {len(nll)} conditions (seeds {seeds}), "
        f"windows per language {min(n_windows.values())}–{max(n_windows.values())} of "
        f"{tokens + 1} tokens, B = {args.resamples}; the ablation's forward passes cover "
        f"{forward:,} windows ({forward * (tokens + 1):,} tokens)"
    )
    wall, cpu = [], []
    with tempfile.TemporaryDirectory(prefix="bench_ppl_intervals_") as tmp:
        for _ in range(args.rounds):
            w0, c0 = time.perf_counter(), time.process_time()
            one_round(nll, tokens, seeds, settings, Path(tmp))
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
    print(
        f"intervals, summary, marks and files: median wall {statistics.median(wall):.3f} s "
        f"(CPU {statistics.median(cpu):.3f} s) over {args.rounds} rounds; "
        f"rounds: {', '.join(f'{t:.3f}' for t in wall)} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
