"""Deactivating key linguistic regions: perplexity and generations (docs/method.md §5, Table 1, App. A).

Every condition runs on the one loaded model: neurons are zeroed through
``interventions.zero_neurons`` (the same hook point that extraction reads), so the
weights never change and leaving a condition restores the model exactly.

Conditions: ``full`` (nothing zeroed), ``random`` (a uniform draw over all K neurons,
one per seed, at the smallest whole percent strictly above the largest key fraction),
and one per language (its key region).  A language whose key region is empty gets a
column of NA, never a number: zeroing nothing would just repeat the full model.

Perplexity of a language: its text tokenized once without special tokens, cut into
non-overlapping windows of ``seqlen`` tokens (remainder dropped); each window predicts
its last ``seqlen - 1`` tokens; PPL = exp(total NLL / predicted tokens).  A NaN
perplexity stops the job (``NonFinitePerplexityError``); an overflow to inf is kept,
flagged in ablation.json, and never enters a mean or a "dominates" verdict.

Every window's NLL is kept (``window_nll.parquet``): a paired bootstrap over the
windows (docs/method.md §10) gives every increase cell an interval
(``ppl_increase_ci.csv``), and "own deactivation dominates" is judged by the
intervals too.

Generations (``lingua_franca.generations``): every condition but the random baseline
continues every language's prompts, greedily, for exactly ``max_new_tokens`` tokens.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .activations import tokenize
from .architectures import context_length, find_neurons
from .bootstrap import (
    BootstrapSettings,
    draw_windows,
    item_weights,
    percentile_interval,
    resampled_increase,
)
from .generations import generate_all, write_html
from .interventions import zero_neurons
from .outputs import OutputFiles, json_number


@dataclass(frozen=True)
class AblationFiles(OutputFiles):
    """What an ablation writes (the rule ablate_key_neurons' named outputs)."""

    perplexity: Path = field(metadata={"suffix": ".csv"})  # language × condition
    seeds: Path = field(metadata={"suffix": ".csv"})  # the random baseline, one column per seed
    increase: Path = field(metadata={"suffix": ".csv"})  # percent increase over the full model
    increase_ci: Path = field(metadata={"suffix": ".csv"})  # its intervals, one row per cell
    window_nll: Path = field(metadata={"suffix": ".parquet"})  # NLL of every window
    conditions: Path = field(metadata={"suffix": ".csv"})  # neurons zeroed by each condition
    heatmap: Path = field(metadata={"suffix": ".png"})
    generations: Path = field(metadata={"suffix": ".jsonl"})
    generations_table: Path = field(metadata={"suffix": ".html"})
    summary: Path = field(metadata={"suffix": ".json"})  # ablation.json


NO_KEY_NEURONS = "no key neurons"

Neurons = dict[int, np.ndarray]  # layer → indices within the layer


class NonFinitePerplexityError(FloatingPointError):
    """A perplexity came out NaN: the job stops rather than write it (docs/method.md §5)."""


# ------------------------------------------------------------------ pure pieces


def windows(ids: Sequence[int] | torch.Tensor, seqlen: int, name: str = "the text") -> torch.Tensor:
    """(n, seqlen) non-overlapping windows of ``ids``; the remainder is dropped.

    Windows never overlap, so no token is scored twice and every window is full
    length: no padding, hence no mask, enters the perplexity.
    """
    if seqlen < 2:
        raise ValueError(
            f"seqlen must be at least 2 (a window predicts seqlen - 1 tokens), got {seqlen}"
        )
    ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
    n = len(ids) // seqlen
    if n == 0:
        raise ValueError(
            f"{name}: {len(ids)} tokens, shorter than one perplexity window of {seqlen} tokens; "
            "give it more text or lower seqlen"
        )
    return ids[: n * seqlen].reshape(n, seqlen)


def perplexity(
    model: nn.Module, windows: torch.Tensor, batch_size: int, progress: bool | tqdm = False
) -> float:
    """exp(total NLL / predicted tokens) over full-length windows, ``batch_size`` at a time
    (:func:`window_nlls`, then :func:`perplexity_from_nlls`).
    ``progress`` is a bool or an existing tqdm bar to advance by windows.
    """
    return perplexity_from_nlls(
        window_nlls(model, windows, batch_size, progress), windows.shape[1] - 1
    )


def perplexity_from_nlls(nlls: Sequence[float], predicted_per_window: int) -> float:
    """exp(Σ NLL / predicted tokens), the windows' NLLs summed in order in float64 (so a
    perplexity and the per-window NLLs it was summed from agree exactly); NaN stays
    NaN, an overflow is inf."""
    total = 0.0
    for value in nlls:
        total += float(value)
    mean = total / (len(nlls) * predicted_per_window)
    if math.isnan(mean):
        return math.nan  # the caller names the condition and language and stops
    return math.exp(mean) if mean < 709 else math.inf  # an overflow is kept, and flagged


@torch.inference_mode()
def window_nlls(
    model: nn.Module, windows: torch.Tensor, batch_size: int, progress: bool | tqdm = False
) -> np.ndarray:
    """(W,) float64: each window's NLL summed over its predicted tokens 2…seqlen.

    Each is summed in float64 from float32 log-probabilities, one row at a time, so
    a batch of float32 logits over a large vocabulary is never materialised at once.
    ``progress`` is a bool or an existing tqdm bar to advance by windows.
    """
    if windows.ndim != 2 or len(windows) == 0 or windows.shape[1] < 2:
        raise ValueError(f"windows must be (n ≥ 1, seqlen ≥ 2), got {tuple(windows.shape)}")
    device = model.get_input_embeddings().weight.device
    own = not isinstance(progress, tqdm)
    bar = (
        tqdm(total=len(windows), unit="window", desc="perplexity", disable=not progress)
        if own
        else progress
    )
    nlls = []
    try:
        for start in range(0, len(windows), batch_size):
            ids = windows[start : start + batch_size].to(device)
            logits = model(input_ids=ids, use_cache=False).logits
            for row, x in zip(logits, ids):
                nlls.append(F.cross_entropy(row[:-1].float(), x[1:], reduction="sum").item())
            bar.update(len(ids))
    finally:
        if own:
            bar.close()
    return np.asarray(nlls, dtype=np.float64)


def random_fraction(key_fractions: Iterable[float] | Mapping[str, float]) -> float:
    """Smallest whole percent strictly above the largest key fraction (0.094 → 0.10,
    0.10 → 0.11, 0 → 0.01), capped at 100 %.  The paper's random baseline (docs/method.md §5)
    is just bigger than any language's region, so a larger random loss means size alone
    does not explain it.  Rounded first so that 0.29 counts as 29 %, not 28.99… %."""
    values = key_fractions.values() if isinstance(key_fractions, Mapping) else key_fractions
    largest = max((float(v) for v in values), default=0.0)
    return min(math.floor(round(largest * 100, 6)) + 1, 100) / 100


def random_neurons(widths: Sequence[int], fraction: float, seed: int) -> Neurons:
    """round(fraction × K) distinct neurons drawn uniformly over all layers (seeded),
    as {layer: sorted indices within the layer} for every layer."""
    bounds = np.cumsum([0, *widths])
    k = int(bounds[-1])
    flat = np.sort(np.random.default_rng(seed).choice(k, round(fraction * k), replace=False))
    parts = np.split(flat, np.searchsorted(flat, bounds[1:-1]))
    return {m: (part - bounds[m]).astype(np.int64) for m, part in enumerate(parts)}


def regions_by_language(
    key_neurons: pd.DataFrame, languages: Sequence[str], widths: Sequence[int]
) -> dict[str, Neurons]:
    """{language: {layer: indices}} from key_neurons.parquet rows; an empty region is {}.

    Rows of a language outside ``languages`` or indices outside ``widths`` mean the
    table belongs to another run or model, so they are an error, not silently dropped.
    """
    unknown = sorted(set(map(str, key_neurons["language"])) - set(languages))
    if unknown:
        raise ValueError(
            f"key neurons of languages {unknown} not among the configured {list(languages)}"
        )
    layer = key_neurons["layer"].to_numpy(np.int64)
    neuron = key_neurons["neuron"].to_numpy(np.int64)
    bad = (layer < 0) | (layer >= len(widths))
    bad[~bad] |= (neuron[~bad] < 0) | (neuron[~bad] >= np.asarray(widths)[layer[~bad]])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"key neuron (layer {layer[i]}, neuron {neuron[i]}) outside the layer widths "
            f"{list(widths)}"
        )
    regions: dict[str, Neurons] = {}
    lang = key_neurons["language"].astype(str).to_numpy()
    for name in languages:
        rows = lang == name
        regions[name] = {
            int(m): np.unique(neuron[rows & (layer == m)]) for m in np.unique(layer[rows])
        }
    return regions


def count(neurons: Neurons) -> int:
    return int(sum(len(v) for v in neurons.values()))


def ppl_increase(ppl: pd.DataFrame, conditions: Sequence[str]) -> pd.DataFrame:
    """(PPL_condition / PPL_full − 1) × 100 per condition column (NA stays NA).  A
    condition that overflowed gives +inf; a row whose full-model perplexity overflowed
    has no increase at all (NA), never the −100 % that finite / inf would give."""
    full = ppl["full"].where(np.isfinite(ppl["full"]))
    return ppl[list(conditions)].div(full, axis=0).sub(1).mul(100)


def diagonal_summary(increase: pd.DataFrame, deactivated: Sequence[str]) -> dict:
    """Does each language's own deactivation hurt it most?  ``deactivated`` = languages
    with a non-empty region.  A language without its own region or without a rival is
    ``None``: there is nothing to compare.  So is a language whose own or any rival
    increase is not finite (an overflow to inf, or no increase because the full model
    overflowed): an overflow is a numerical failure, not a measured effect.  The means
    are over finite cells only."""
    dominates, diag, off = {}, [], []
    for lang in increase.index:
        row = increase.loc[lang]
        others = [row[m] for m in deactivated if m != lang]
        off += [v for v in others if np.isfinite(v)]
        if lang not in deactivated or not others:
            dominates[lang] = None
            continue
        if np.isfinite(row[lang]):
            diag.append(row[lang])
        if not np.isfinite([row[lang], *others]).all():
            dominates[lang] = None
            continue
        dominates[lang] = bool(all(row[lang] > v for v in others))
    known = [v for v in dominates.values() if v is not None]
    return {
        "diagonal_dominates": dominates,
        "diagonal_dominates_all": bool(all(known)) if known else None,
        "mean_diagonal_increase": json_number(np.mean(diag)) if diag else None,
        "mean_off_diagonal_increase": json_number(np.mean(off)) if off else None,
    }


# ------------------------------------------------------------ intervals (docs/method.md §10)

CI_STATUS = {
    "interval": "a paired bootstrap interval over the language's windows",
    "no bootstrap": "analysis.bootstrap.resamples is 0",
    NO_KEY_NEURONS: "the condition zeroes nothing: no increase",
    "overflow": "the condition's perplexity overflowed to inf: no interval",
    "full model overflowed": "no increase, so no interval",
    "undefined in a resample": "a resampled increase is not finite: no interval",
}


def window_nll_table(nll: Mapping, predicted_per_window: int) -> pd.DataFrame:
    """window_nll.parquet: one row per (condition, seed, language, window) of
    ``nll`` = {(condition, seed): {language: (W,) NLLs}}; ``seed`` is null but for
    the random baseline, ``tokens`` the tokens each window predicts."""
    parts = [
        pd.DataFrame(
            {
                "condition": name,
                "seed": pd.array([seed] * len(values), dtype="Int64"),
                "language": lang,
                "window": np.arange(len(values), dtype=np.int64),
                "nll": np.asarray(values, dtype=np.float64),
                "tokens": np.full(len(values), predicted_per_window, dtype=np.int64),
            }
        )
        for (name, seed), by_language in nll.items()
        for lang, values in by_language.items()
    ]
    return pd.concat(parts, ignore_index=True).astype({"condition": str, "language": str})


def increase_intervals(
    nll: Mapping,
    increase: pd.DataFrame,
    predicted_per_window: int,
    seeds: Sequence[int],
    bootstrap: BootstrapSettings | None,
) -> tuple[pd.DataFrame, dict[tuple[str, str], np.ndarray]]:
    """(ppl_increase_ci.csv, {(language, condition): (B,) resampled increases}).

    For each cell of ``increase`` (evaluated language × condition), a paired
    bootstrap over the language's windows: each resample draws W windows with
    replacement (``bootstrap.draw_windows``, seeded by ``bootstrap.seed``), and the
    SAME draws weight the full model's and the condition's window NLLs
    (``resampled_increase``; the random column averages its seeds' perplexities as
    its point value does).  The interval is the percentile interval at
    ``bootstrap.level``.  A cell without an increase (no key neurons, a full model
    that overflowed) or whose perplexity overflowed gets no interval, and its
    ``status`` says why (``CI_STATUS``)."""
    enabled = bootstrap is not None and bootstrap.enabled
    rows, cells = [], {}
    weights = {}
    for lang in increase.index:
        full = nll["full", None][lang]
        if enabled and len(full) not in weights:
            draws = draw_windows(len(full), bootstrap.resamples, bootstrap.seed)
            weights[len(full)] = item_weights(draws, len(full))
        tokens = np.full(len(full), predicted_per_window, dtype=np.float64)
        for condition in increase.columns:
            point, lo_hi = increase.at[lang, condition], None
            if condition == "random":
                values = np.stack([nll["random", s][lang] for s in seeds])
            else:
                values = nll.get((condition, None), {}).get(lang)
            if values is None:
                status = NO_KEY_NEURONS
            elif np.isnan(point):
                status = "full model overflowed"
            elif np.isinf(point):
                status = "overflow"
            elif not enabled:
                status = "no bootstrap"
            else:
                resampled = resampled_increase(full, values, tokens, weights[len(full)])
                lo_hi = percentile_interval(resampled, bootstrap.level)
                status = "interval" if lo_hi else "undefined in a resample"
                if lo_hi:
                    cells[lang, condition] = resampled
            lo, hi = lo_hi or (np.nan, np.nan)
            rows.append(
                {"language": lang, "condition": condition, "lo": lo, "hi": hi, "status": status}
            )
    return pd.DataFrame(rows, columns=["language", "condition", "lo", "hi", "status"]), cells


def interval_summary(
    table: pd.DataFrame,
    cells: Mapping[tuple[str, str], np.ndarray],
    increase: pd.DataFrame,
    deactivated: Sequence[str],
    bootstrap: BootstrapSettings,
) -> dict:
    """The ``ci`` entry of ablation.json: "own deactivation dominates" by the interval
    rule (its own cell's lower bound above every rival cell's upper bound; null where
    :func:`diagonal_summary` has no verdict or a cell has no interval), and intervals
    for the mean diagonal and off-diagonal increases over the same cells as their
    point values (per resample, the mean of the resampled cells)."""
    bounds = {(r.language, r.condition): (r.lo, r.hi) for r in table.itertuples()}
    dominates, diag, off = {}, [], []
    for lang in increase.index:
        row = increase.loc[lang]
        rivals = [m for m in deactivated if m != lang]
        off += [(lang, m) for m in rivals if np.isfinite(row[m])]
        if lang not in deactivated or not rivals:
            dominates[lang] = None
            continue
        if np.isfinite(row[lang]):
            diag.append((lang, lang))
        compared = [(lang, lang), *((lang, m) for m in rivals)]
        if not all((lang, m) in cells for _, m in compared):
            dominates[lang] = None
            continue
        own_lo = bounds[lang, lang][0]
        dominates[lang] = bool(all(own_lo > bounds[lang, m][1] for m in rivals))
    known = [v for v in dominates.values() if v is not None]

    def mean_interval(chosen):
        if not chosen or not all(cell in cells for cell in chosen):
            return None
        return percentile_interval(np.mean([cells[c] for c in chosen], axis=0), bootstrap.level)

    return {
        "level": bootstrap.level,
        "resamples": bootstrap.resamples,
        "seed": bootstrap.seed,
        "unit": "window",
        "method": "percentile",
        "paired": True,
        "diagonal_dominates": dominates,
        "diagonal_dominates_all": bool(all(known)) if known else None,
        "mean_diagonal_increase": mean_interval(diag),
        "mean_off_diagonal_increase": mean_interval(off),
    }


def contains_zero(table: pd.DataFrame, increase: pd.DataFrame) -> pd.DataFrame:
    """language × condition, True where the cell's interval contains 0 (the heatmap
    marks those), False where it does not or there is none."""
    mask = pd.DataFrame(False, index=increase.index, columns=increase.columns)
    for row in table.itertuples():
        if row.lo <= 0 <= row.hi:
            mask.at[row.language, row.condition] = True
    return mask


def _hook_count(site) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in site.modules)


# ------------------------------------------------------------------ compute, then write


@dataclass
class AblationResult:
    """What one ablation measured (:func:`compute_ablation`), written by
    :func:`write_outputs`."""

    perplexity: pd.DataFrame  # evaluated language × (full, random[, random_sd], languages)
    random_seeds: pd.DataFrame  # evaluated language × seed_<s>
    increase: pd.DataFrame  # percent increase over the full model, × (random, languages)
    conditions: pd.DataFrame  # condition × (neurons, fraction, status)
    generations: list[dict]  # one record per condition × prompt (lingua_franca.generations)
    summary: dict  # ablation.json, but for the file names and the caller's provenance
    label: str = ""  # model and checkpoint, for titles
    increase_ci: pd.DataFrame | None = None  # (language, condition, lo, hi, status) per cell
    window_nll: pd.DataFrame | None = None  # (condition, seed, language, window, nll, tokens)
    probe: float = math.nan  # the full model's perplexity on the first window, batch 1
    # the neurons each condition zeroed: "random" (its first seed's draw) and every
    # language with a region, for the experiments that run under the same conditions
    regions: dict[str, Neurons] = field(default_factory=dict)

    def full_nlls(self) -> dict[str, np.ndarray]:
        """{language: (W,) window NLLs} of the full model, for :func:`compute_ablation`'s
        ``full`` on the same loaded model."""
        rows = self.window_nll[self.window_nll["condition"] == "full"]
        return {
            lang: part.sort_values("window")["nll"].to_numpy()
            for lang, part in rows.groupby("language", sort=False)
        }


def compute_ablation(
    model: nn.Module,
    tokenizer,
    key_neurons: pd.DataFrame,
    widths: Sequence[int],
    texts: Mapping[str, str],
    prompts: Mapping[str, Sequence[str | Mapping[str, str]]],
    languages: Sequence[str],
    *,
    seqlen: int | None,
    batch_size: int,
    seeds: Sequence[int],
    max_new_tokens: int = 64,
    prompts_per_language: int = 3,
    neuron_module: str | None = None,
    progress: bool = True,
    label: str = "",
    bootstrap: BootstrapSettings | None = None,
    full: Mapping[str, np.ndarray] | None = None,
) -> AblationResult:
    """Evaluate every condition on one loaded model; write nothing.

    Languages with an evaluation text are evaluated (in ``languages`` order); every
    language with a key region is a deactivation condition.  ``prompts``: per
    language, prompt texts or {"item", "text"} records; the first
    ``prompts_per_language`` of each are continued under the full model and every
    language's deactivation.  Inputs are checked before the first forward pass.
    ``label`` (model and checkpoint) starts error messages.  With ``bootstrap``
    (analysis.bootstrap, resamples > 0) every increase cell gets a paired interval
    over the windows (docs/method.md §10).  ``full`` ({language: window NLLs}, from
    :meth:`AblationResult.full_nlls` of an earlier run on this model and these texts)
    stands for the full-model pass, which is then not run again.
    """
    languages, seeds = [str(lang) for lang in languages], [int(s) for s in seeds]
    if not seeds:
        raise ValueError("the random baseline needs at least one seed")
    evaluated = [lang for lang in languages if lang in texts]
    if not evaluated:
        raise ValueError(f"no evaluation text for any of {languages}")
    site = find_neurons(model, neuron_module)
    if len(site) != len(widths):
        raise ValueError(f"{len(widths)} layer widths given, the model has {len(site)} layers")
    model.eval()
    seqlen = seqlen or context_length(model)
    k = int(sum(widths))
    regions = regions_by_language(key_neurons, languages, widths)
    sizes = {lang: count(regions[lang]) for lang in languages}
    deactivated = [lang for lang in languages if sizes[lang]]
    fraction = random_fraction({lang: n / k for lang, n in sizes.items()})
    ids = {lang: tokenize(tokenizer, [texts[lang]])[0] for lang in evaluated}
    wins = {
        lang: windows(ids[lang], seqlen, f"perplexity text of language {lang!r}")
        for lang in evaluated
    }
    chosen = _chosen_prompts(tokenizer, prompts, languages, prompts_per_language)

    hooks_before, probe = _hook_count(site), wins[evaluated[0]][:1]
    probe_before = perplexity(model, probe, 1)
    runs = [("full", None, {})]
    runs += [("random", s, random_neurons(widths, fraction, s)) for s in seeds]
    runs += [(lang, None, regions[lang]) for lang in deactivated]
    nll: dict = {}
    results = {}
    if full is not None:
        nll["full", None] = _given_full_nlls(full, wins)
        results["full", None] = {
            lang: perplexity_from_nlls(values, seqlen - 1)
            for lang, values in nll["full", None].items()
        }
    measured = runs[1:] if full is not None else runs
    results |= _perplexities(model, measured, wins, batch_size, neuron_module, progress, label, nll)
    gen_runs = [(name, neurons) for name, seed, neurons in runs if seed is None]
    generations = _generations(
        model, tokenizer, gen_runs, chosen, max_new_tokens, batch_size, neuron_module, progress
    )
    hooks_removed = _hook_count(site) == hooks_before
    restored = perplexity(model, probe, 1) == probe_before
    if not restored:
        warnings.warn("the full model's perplexity changed after the ablation")

    ppl, per_seed = _perplexity_tables(results, evaluated, languages, seeds, deactivated)
    increase = ppl_increase(ppl, ["random", *languages])
    increase_ci, resampled = increase_intervals(nll, increase, seqlen - 1, seeds, bootstrap)
    ci = {}
    if bootstrap is not None and bootstrap.enabled:
        ci = {"ci": interval_summary(increase_ci, resampled, increase, deactivated, bootstrap)}
    conditions = pd.DataFrame(
        {"neurons": [0, round(fraction * k), *sizes.values()]},
        index=pd.Index(["full", "random", *languages], name="condition"),
    )
    conditions["fraction"] = conditions["neurons"] / k
    conditions["status"] = ["evaluated"] * 2 + [
        "evaluated" if sizes[lang] else NO_KEY_NEURONS for lang in languages
    ]
    overflow = [
        {"condition": name, "seed": seed, "language": lang}
        for (name, seed), values in results.items()
        for lang, value in values.items()
        if math.isinf(value)
    ]
    for cell in overflow:
        warnings.warn(f"{label}: perplexity overflowed to inf: {cell}")

    summary = {
        "languages": languages,
        "evaluated_languages": evaluated,
        "languages_without_text": [lang for lang in languages if lang not in texts],
        "languages_without_key_neurons": [lang for lang in languages if not sizes[lang]],
        "n_neurons": k,
        "widths": [int(w) for w in widths],
        "neuron_module": site.pattern,
        "conditions": [
            {
                "name": name,
                "neurons": int(row.neurons),
                "fraction": float(row.fraction),
                "status": row.status,
                "kind": CONDITION_KINDS.get(name, "language"),
            }
            for name, row in conditions.iterrows()
        ],
        "random_fraction": fraction,
        "random_percent": round(fraction * 100),
        "seeds": seeds,
        "random_sd": "sample standard deviation over seeds (ddof=1)" if len(seeds) > 1 else None,
        "seqlen": seqlen,
        "batch_size": batch_size,
        "perplexity_text": {
            lang: {
                "tokens": len(ids[lang]),
                "windows": len(wins[lang]),
                "tokens_used": wins[lang].numel(),
                "predicted_tokens": len(wins[lang]) * (seqlen - 1),
                "tokens_dropped": len(ids[lang]) - wins[lang].numel(),
            }
            for lang in evaluated
        },
        "full_perplexity": {lang: json_number(ppl.at[lang, "full"]) for lang in evaluated},
        "overflow": overflow,
        **diagonal_summary(increase, deactivated),
        **ci,
        "generation": {
            "greedy": True,
            "max_new_tokens": max_new_tokens,
            "stop_at_eos": False,
            "prompts_per_language": prompts_per_language,
            "conditions": [name for name, _ in gen_runs],
            "prompt_languages": list(chosen),
            "n": len(generations),
            "ended_with_eos": sum(g["first_eos"] is not None for g in generations),
        },
        "hooks_removed": hooks_removed,
        "restored_exactly": restored,
        "definitions": DEFINITIONS,
    }
    return AblationResult(
        ppl,
        per_seed,
        increase,
        conditions,
        generations,
        summary,
        label,
        increase_ci=increase_ci,
        window_nll=window_nll_table(nll, seqlen - 1),
        probe=probe_before,
        regions={
            name: neurons
            for name, seed, neurons in runs
            if name != "full" and seed in (None, seeds[0])
        },
    )


def write_outputs(
    result: AblationResult,
    files: AblationFiles,
    extra: Mapping | None = None,
    sampled: Sequence[Mapping] = (),
    sampled_caption: str = "",
) -> dict:
    """Write every file of ``files``; ``extra`` (provenance) is added to ablation.json;
    ``sampled`` continuations follow the greedy ones in generations.html, under
    ``sampled_caption``. Returns the ablation.json content."""
    _write_tables(
        result,
        files,
        f"Perplexity increase after deactivation (random {result.summary['random_fraction']:.0%})",
    )
    with open(files.generations, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in result.generations)
    write_html(
        result.generations,
        files.generations_table,
        title=result.label or "generations",
        sampled=sampled,
        sampled_caption=sampled_caption,
    )
    return _write_summary(result, files, extra)


def _write_tables(result: AblationResult, files, title: str) -> None:
    """The deactivation table's files, which every key-neuron method writes alike."""
    from lingua_franca.plots import plot_ppl_increase  # matplotlib only when the figure is drawn

    files.make_folders()
    result.perplexity.to_csv(files.perplexity)
    result.random_seeds.to_csv(files.seeds)
    result.increase.to_csv(files.increase)
    result.increase_ci.to_csv(files.increase_ci, index=False)
    result.window_nll.to_parquet(files.window_nll, index=False)
    result.conditions.to_csv(files.conditions)
    ppl = result.perplexity
    plot_ppl_increase(
        result.increase,
        result.conditions,
        files.heatmap,
        random_sd=ppl["random_sd"] / ppl["full"] * 100 if "random_sd" in ppl else None,
        contains_zero=contains_zero(result.increase_ci, result.increase),
        ci_level=(result.summary.get("ci") or {}).get("level"),
        title=title,
    )


def _write_summary(result: AblationResult, files, extra: Mapping | None) -> dict:
    """ablation.json (last, so that its presence means every other file is there)."""
    summary = {
        **result.summary,
        "files": [path.name for path in files.paths().values()],  # beside this one
        **(extra or {}),
    }
    files.summary.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return summary


# ------------------------------------------------------- further key-neuron methods


@dataclass(frozen=True)
class MethodAblationFiles(OutputFiles):
    """What the ablation writes for a further key-neuron method (docs/method.md §9): the
    deactivation table of its regions, as for the z-score regions, with its intervals
    (docs/method.md §10), without generations."""

    perplexity: Path = field(metadata={"suffix": ".csv"})
    seeds: Path = field(metadata={"suffix": ".csv"})
    increase: Path = field(metadata={"suffix": ".csv"})
    increase_ci: Path = field(metadata={"suffix": ".csv"})
    window_nll: Path = field(metadata={"suffix": ".parquet"})
    conditions: Path = field(metadata={"suffix": ".csv"})
    heatmap: Path = field(metadata={"suffix": ".png"})
    summary: Path = field(metadata={"suffix": ".json"})  # its ablation.json


def compute_method_ablation(
    model: nn.Module,
    tokenizer,
    key_neurons: pd.DataFrame,
    widths: Sequence[int],
    texts: Mapping[str, str],
    languages: Sequence[str],
    *,
    method: str,
    reference: AblationResult | None = None,
    **settings,
) -> AblationResult:
    """The deactivation table of a further method's regions (``key_neurons``: its
    language, layer, neuron rows) on the model already loaded: ``compute_ablation``
    (``settings``: its keywords) without generations, so every rule of docs/method.md §5
    holds for it.  Its random baseline follows §5's rule on its own regions.  With
    ``reference`` (the z-score run on the same model and texts) its full-model window
    NLLs are reused, not measured again: ``full_matches_reference`` says whether the
    model gave that run's perplexity on the probe window bit for bit (a mismatch is
    warned about); without it the full model is measured."""
    result = compute_ablation(
        model,
        tokenizer,
        key_neurons,
        widths,
        texts,
        {},
        languages,
        prompts_per_language=0,
        full=None if reference is None else reference.full_nlls(),
        **settings,
    )
    summary = {key: value for key, value in result.summary.items() if key != "generation"}
    summary["method"] = method
    if reference is not None:
        same = result.probe == reference.probe
        summary["full_matches_reference"] = same
        if not same:
            warnings.warn(
                f"{method}: the full model's probe perplexity differs from the first run's"
            )
    result.summary = summary
    return result


def write_method_outputs(
    result: AblationResult, files: MethodAblationFiles, extra: Mapping | None = None
) -> dict:
    """Write every file of ``files``; ``extra`` (provenance) is added to its ablation.json.
    Returns the ablation.json content."""
    method, fraction = result.summary.get("method"), result.summary["random_fraction"]
    title = f"Perplexity increase after deactivating {method} regions (random {fraction:.0%})"
    _write_tables(result, files, title)
    return _write_summary(result, files, extra)


def _chosen_prompts(tokenizer, prompts, languages, prompts_per_language) -> dict[str, list[dict]]:
    """The first ``prompts_per_language`` prompts of each language that has any, as
    {"item", "text"} records; a prompt without tokens is an error."""
    chosen = {
        lang: [
            {"item": None, "text": p} if isinstance(p, str) else {"item": p.get("item"), **p}
            for p in list(prompts.get(lang, []))[:prompts_per_language]
        ]
        for lang in languages
    }
    for lang, some in chosen.items():
        if some and not all(tokenize(tokenizer, [p["text"] for p in some])):
            raise ValueError(f"a prompt of language {lang!r} has no tokens")
    return {lang: some for lang, some in chosen.items() if some}


def _perplexity_tables(results, evaluated, languages, seeds, deactivated):
    """(perplexity.csv, perplexity_random_seeds.csv) from {(condition, seed): {language:
    PPL}}: a language without a key region is a column of NA, never a number."""
    index = pd.Index(evaluated, name="language")
    per_seed = pd.DataFrame({f"seed_{s}": results["random", s] for s in seeds}, index=index)
    ppl = pd.DataFrame(
        {"full": results["full", None], "random": per_seed.mean(axis=1)}, index=index
    )
    if len(seeds) > 1:
        ppl["random_sd"] = per_seed.std(axis=1, ddof=1)
    for lang in languages:
        ppl[lang] = pd.Series(results[lang, None]) if lang in deactivated else np.nan
    return ppl, per_seed


def _given_full_nlls(full: Mapping[str, np.ndarray], wins: Mapping) -> dict:
    """The full model's window NLLs handed to compute_ablation, checked to cover every
    evaluated language with one value per window."""
    given = {}
    for lang, w in wins.items():
        values = np.asarray(full.get(lang, ()), dtype=np.float64)
        if len(values) != len(w):
            raise ValueError(
                f"full-model NLLs of language {lang!r}: {len(values)} values for {len(w)} windows"
            )
        given[lang] = values
    return given


def _perplexities(
    model, runs, wins, batch_size, neuron_module, progress, label="", nll=None
) -> dict:
    """{(condition, seed): {language: PPL}}; one hook installation per condition,
    every language evaluated inside it; one bar over all windows of all conditions.
    A NaN perplexity stops here, naming the model, condition and language.
    ``nll``, a dict, receives every window's NLL in the same shape."""
    nll = {} if nll is None else nll
    results = {}
    total = len(runs) * sum(len(w) for w in wins.values())
    with tqdm(total=total, unit="window", desc="perplexity", disable=not progress) as bar:
        for name, seed, neurons in runs:
            bar.set_postfix_str(name if seed is None else f"{name} seed {seed}")
            with zero_neurons(model, neurons, neuron_module):
                results[name, seed], nll[name, seed] = {}, {}
                for lang, w in wins.items():
                    nll[name, seed][lang] = window_nlls(model, w, batch_size, bar)
                    value = perplexity_from_nlls(nll[name, seed][lang], w.shape[1] - 1)
                    if math.isnan(value):
                        condition = repr(name) if seed is None else f"{name!r} (seed {seed})"
                        raise NonFinitePerplexityError(
                            f"{label + ': ' if label else ''}perplexity of language {lang!r} "
                            f"under condition {condition} is NaN (the model's log-probabilities "
                            "are not numbers: a half-precision overflow? try dtype float32)"
                        )
                    results[name, seed][lang] = value
    return results


def _generations(
    model, tokenizer, runs, prompts, max_new_tokens, batch_size, neuron_module, progress
):
    """One record per (condition, prompt language, prompt), greedy, exactly
    ``max_new_tokens`` new tokens (Appendix A): the full model and every language's
    deactivation, each on every language's prompts."""
    total = len(runs) * sum(len(p) for p in prompts.values())
    with tqdm(
        total=total, unit="prompt", desc="generation", disable=not progress or not total
    ) as bar:
        return generate_all(
            model,
            tokenizer,
            runs,
            prompts,
            max_new_tokens,
            batch_size,
            lambda neurons: zero_neurons(model, neurons, neuron_module),
            bar,
        )


CONDITION_KINDS = {"full": "full", "random": "random"}  # any other: "language"
DEFINITIONS = {
    "perplexity": "exp(total NLL / predicted tokens); non-overlapping windows of seqlen tokens, "
    "remainder dropped, no special tokens; each window predicts seqlen - 1 tokens",
    "ppl_increase": "(PPL_condition / PPL_full - 1) * 100",
    "random": "round(random_fraction * K) neurons uniform over all layers; mean over seeds",
    "diagonal_dominates": "own deactivation raises a language's PPL more than every other "
    "language's deactivation; null without an own key region or a rival one",
    "restored_exactly": "after all conditions, the full model's PPL on the first window is "
    "bitwise the one measured before",
    "overflow": "(condition, seed, language) whose perplexity overflowed to inf; kept as inf "
    "in the tables, left out of the means and of diagonal_dominates",
    "ci": "paired percentile bootstrap over each language's perplexity windows (the same "
    "resampled windows for the full model and every condition): intervals in ppl_increase_ci.csv; "
    "diagonal_dominates when the own cell's lower bound exceeds every rival cell's upper bound",
    "ci_status": CI_STATUS,  # the status column of ppl_increase_ci.csv
    "generation": "greedy, exactly max_new_tokens new tokens, no stop at end-of-sequence "
    "(first_eos: where the first one came); every condition but random × every prompt language",
}
