"""Steering: force a language's key neurons and measure the language the model then
writes (docs/method.md §12; Kojima et al. 2024).

One experiment of the checkpoint's model job, on the model the ablation job has
loaded.  For every key-neuron method and every target language with a region:

- ``forced``: the region's neurons set to the target's median pooled activation
  (Kojima et al.'s ``on_p50``);
- ``add``: α × the target's mean pooled activation added to them (Gurgurov et al.);
- ``random``: as many neurons per layer, drawn from outside the region, set to the
  target's median of *those* neurons (the count-matched control);
- for a method whose regions can be cut down (the registry's ``shrink``: AP's N),
  ``forced`` and ``random`` again at each fraction of ``sweep``;

and the unforced model.  Each continues two prompt sets with the sampling protocol
of docs/method.md §11: **unconditional** (the beginning-of-text token alone) and
**prompted** (the sampled prompts of the other languages, cycled).  Every condition
is a list of :class:`~lingua_franca.interventions.Intervention` values, applied by
``intervene_rows`` to its rows of a batch that several conditions share (each
drawing the random numbers it would draw alone); the per-language statistics come from the activation store
(``store.language_statistics``), so steering needs no extra forward pass to find
its values.  Each continuation's language is identified (``language_id``), and its
fluency measured: its perplexity under the unforced model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from lingua_franca.generations import Sampling, generate_cells
from lingua_franca.interventions import Intervention, random_like
from lingua_franca.language_id import Identifier, cell_statistics, distinct_2, top_token_share
from lingua_franca.outputs import OutputFiles, json_number

UNFORCED = "unforced"
SOURCES = ("unconditional", "prompted")
CONDITIONS = (UNFORCED, "forced", "add", "random")


@dataclass(frozen=True)
class SteeringSettings:
    """analysis.steering: ``samples`` continuations per cell, ``alpha`` of ``add``,
    ``sweep`` (fractions of a shrinkable region's size), ``start`` (the
    beginning-of-text token: ``bos`` or ``eos``), ``seed`` of the random controls."""

    samples: int = 100
    alpha: float = 1.0
    sweep: tuple[float, ...] = ()
    start: str = "bos"
    seed: int = 0


@dataclass(frozen=True)
class SteerCondition:
    """One steering condition, a value: ``method``'s region of ``target`` (``size``
    neurons, ``fraction`` of the method's full region), the ``condition`` applied, and
    its interventions (none for the unforced model)."""

    method: str
    target: str | None
    condition: str
    fraction: float
    interventions: tuple[Intervention, ...] = ()

    @property
    def size(self) -> int:
        return sum(i.n_neurons for i in self.interventions)

    @property
    def name(self) -> str:
        if self.condition == UNFORCED:
            return UNFORCED
        return f"{self.method}:{self.target}:{self.condition}:{self.fraction:g}"


def conditions(
    regions: Mapping[str, Mapping[str, Mapping[float, Mapping[int, np.ndarray]]]],
    median: Mapping[str, Mapping[int, np.ndarray]],
    mean: Mapping[str, Mapping[int, np.ndarray]],
    widths: Sequence[int],
    settings: SteeringSettings,
) -> list[SteerCondition]:
    """Every steering condition but the unforced model: ``regions`` is method →
    target → fraction of the full region (1.0 = the region itself) → {layer:
    indices}; ``median`` and ``mean`` the per-language statistics
    (``store.language_statistics``).  ``add`` is applied to the full region only; the
    random control of each forced region is drawn with ``settings.seed``."""
    out = []
    for method, by_target in regions.items():
        for target, by_fraction in by_target.items():
            for fraction, neurons in sorted(by_fraction.items(), key=lambda x: -x[0]):
                if not sum(len(v) for v in neurons.values()):
                    continue
                forced = Intervention.from_statistics(neurons, median[target], "set")
                out.append(SteerCondition(method, target, "forced", fraction, (forced,)))
                if fraction == 1.0:
                    add = Intervention.from_statistics(neurons, mean[target], "add", settings.alpha)
                    out.append(SteerCondition(method, target, "add", fraction, (add,)))
                control = random_like(forced, widths, settings.seed, median[target])
                out.append(SteerCondition(method, target, "random", fraction, (control,)))
    return out


def regions(
    tables: Mapping[str, pd.DataFrame],
    languages: Sequence[str],
    widths: Sequence[int],
    sweep: Sequence[float] = (),
) -> dict[str, dict[str, dict[float, dict[int, np.ndarray]]]]:
    """method → target → fraction → {layer: indices}, from each method's key-neuron
    table (language, layer, neuron, …): its full regions (fraction 1.0) and, for a
    method the registry can ``shrink``, the regions at each fraction of ``sweep``.
    A language without a region under a method is left out of it."""
    from lingua_franca.ablation import count, regions_by_language
    from lingua_franca.methods import METHODS

    out: dict = {}
    for method, table in tables.items():
        shrink = METHODS[method].shrinker() if method in METHODS else None
        by_fraction = {1.0: regions_by_language(table, languages, widths)}
        for fraction in sweep if shrink is not None else ():
            if fraction < 1:
                by_fraction[float(fraction)] = regions_by_language(
                    shrink(table, float(fraction)), languages, widths
                )
        out[method] = {
            lang: {f: r[lang] for f, r in by_fraction.items()}
            for lang in languages
            if count(by_fraction[1.0][lang])
        }
    return out


def prompt_sets(
    samples: Mapping[str, Sequence[Mapping]],
    languages: Sequence[str],
    targets: Sequence[str],
    n: int,
    start_id: int,
) -> dict[str, dict[str, list[dict]]]:
    """{source: {target: prompts}}: ``n`` beginning-of-text prompts (the same for every
    target), and ``n`` prompts of the other languages' sampled prompts, cycled over
    the languages (prompt i of target t: language others[i mod (L−1)], its prompt
    i div (L−1))."""
    unconditional = [{"item": None, "text": "", "ids": [start_id]} for _ in range(n)]
    out: dict[str, dict[str, list[dict]]] = {"unconditional": {}, "prompted": {}}
    for target in targets:
        out["unconditional"][target] = unconditional
        others = [lang for lang in languages if lang != target and samples.get(lang)]
        chosen = []
        for i in range(n if others else 0):
            lang = others[i % len(others)]
            pool = samples[lang]
            if i // len(others) >= len(pool):
                raise ValueError(
                    f"steering: {n} prompted samples for target {target!r} need "
                    f"{-(-n // len(others))} prompts of each other language, {lang!r} has "
                    f"{len(pool)} (analysis.generation.samples)"
                )
            chosen.append({**pool[i // len(others)], "language": lang})
        out["prompted"][target] = chosen
    return out


@torch.inference_mode()
def continuation_nll(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    batch_size: int,
    pad_id: int,
) -> np.ndarray:
    """(n,) float64: each continuation's NLL (summed over its tokens) given its prompt,
    under ``model`` as it is (the caller leaves every intervention off): the fluency
    of docs/method.md §12.  Right padding with the attention mask: every position
    of a row is where it would be alone."""
    device = model.get_input_embeddings().weight.device
    out = np.zeros(len(prompts), dtype=np.float64)
    for start in range(0, len(prompts), batch_size):
        rows = [
            list(p) + list(c)
            for p, c in zip(
                prompts[start : start + batch_size], continuations[start : start + batch_size]
            )
        ]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.as_tensor(row)
            mask[i, : len(row)] = 1
        logits = model(
            input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False
        ).logits
        for i in range(len(rows)):
            first = len(prompts[start + i])
            last = first + len(continuations[start + i])
            target = ids[i, first:last].to(device)
            out[start + i] = F.cross_entropy(
                logits[i, first - 1 : last - 1].float(), target, reduction="sum"
            ).item()
    return out


@dataclass
class SteeringResult:
    texts: pd.DataFrame  # one row per continuation
    cells: pd.DataFrame  # steering.csv
    summary: dict
    label: str = ""


@dataclass(frozen=True)
class SteeringFiles(OutputFiles):
    """What the steering experiment writes (named outputs ``steering_*`` of the
    ablation rule)."""

    steering_table: Path = field(metadata={"suffix": ".csv"})
    steering_texts: Path = field(metadata={"suffix": ".jsonl"})
    steering_summary: Path = field(metadata={"suffix": ".json"})
    steering_figure: Path = field(metadata={"suffix": ".png"})
    steering_sizes: Path = field(metadata={"suffix": ".png"})


def start_token(tokenizer, start: str) -> int:
    """The beginning-of-text token of unconditional generation: ``bos`` (Kojima et al.'s
    setting) or ``eos`` (for a model trained on documents separated by end-of-sequence
    alone, as the demo's toys and GPT-2 are)."""
    token = tokenizer.bos_token_id if start == "bos" else tokenizer.eos_token_id
    if token is None:
        raise ValueError(
            f"analysis.steering.start: {start!r}, but the tokenizer has no {start} token; "
            "set it to the other one"
        )
    return int(token)


def run(
    model: nn.Module,
    tokenizer,
    steer: Sequence[SteerCondition],
    samples: Mapping[str, Sequence[Mapping]],
    languages: Sequence[str],
    *,
    settings: SteeringSettings,
    max_new_tokens: int,
    batch_size: int,
    sampling: Sampling,
    apply_rows: Callable[[Sequence[Sequence[Intervention]], Sequence[int]], object],
    identifier: Identifier,
    progress: bool = True,
    label: str = "",
    score_batch_size: int | None = None,
) -> SteeringResult:
    """Continue both prompt sets under the unforced model and every condition of
    ``steer`` (``apply_rows(conditions, rows)``: the context manager that applies
    ``conditions[rows[i]]`` to row i of a batch, ``interventions.intervene_rows``),
    identify each continuation's language and measure its fluency (in forward passes of
    ``score_batch_size`` rows, default ``batch_size``: a row's NLL does not depend on
    its batch, and small batches are the faster ones on a CPU)."""
    languages = [str(lang) for lang in languages]
    targets = list(dict.fromkeys(c.target for c in steer))
    sets = prompt_sets(
        samples, languages, targets, settings.samples, start_token(tokenizer, settings.start)
    )
    runs: list[tuple[SteerCondition, str, str | None, list[dict]]] = []
    runs.append(
        (
            SteerCondition("none", None, UNFORCED, 1.0),
            "unconditional",
            None,
            sets["unconditional"][targets[0]] if targets else [],
        )
    )
    for target in targets:
        runs.append(
            (
                SteerCondition("none", target, UNFORCED, 1.0),
                "prompted",
                target,
                sets["prompted"][target],
            )
        )
    for source in SOURCES:
        for condition in steer:
            runs.append((condition, source, condition.target, sets[source][condition.target]))
    runs = [run for run in runs if run[3]]
    total = sum(len(p) for *_, p in runs)
    # several cells a call, each under its own condition, with the random numbers each
    # would draw alone (generate_cells): a call of one 30-prompt cell leaves a GPU or a
    # second CPU thread mostly idle (benchmarks/bench_steering.py)
    with tqdm(total=total, unit="text", desc="steering", disable=not progress) as bar:
        made = generate_cells(
            model,
            tokenizer,
            [(condition.interventions, prompts) for condition, _, _, prompts in runs],
            max_new_tokens,
            batch_size,
            apply_rows,
            bar,
            sampling=sampling,
        )
    parts = []
    for (condition, source, target, prompts), records in zip(runs, made):
        frame = pd.DataFrame(records)
        frame.insert(0, "method", condition.method)
        frame.insert(1, "target", target)
        frame.insert(2, "source", source)
        frame.insert(3, "condition", condition.condition)
        frame.insert(4, "fraction", condition.fraction)
        frame.insert(5, "neurons", condition.size)
        frame["prompt_language"] = [p.get("language") for p in prompts]
        frame["prompt_ids"] = [list(p["ids"]) if "ids" in p else None for p in prompts]
        parts.append(frame)
    texts = pd.concat(parts, ignore_index=True)
    plain = [tokenizer.decode(ids, skip_special_tokens=True) for ids in texts["continuation_ids"]]
    texts["continuation"] = plain
    texts = pd.concat([texts, identifier.labels(plain)], axis=1)
    texts["distinct_2"] = [distinct_2(ids) for ids in texts["continuation_ids"]]
    texts["top_token_share"] = [top_token_share(ids) for ids in texts["continuation_ids"]]
    # fluency: each continuation under the unforced model (no intervention applied)
    from lingua_franca.activations import tokenize

    prompt_ids = [
        ids if ids is not None else tokenize(tokenizer, [text])[0]
        for ids, text in zip(texts["prompt_ids"], texts["prompt"])
    ]
    pad = next((t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id) if t is not None), 0)
    texts["nll"] = continuation_nll(
        model, prompt_ids, list(texts["continuation_ids"]), score_batch_size or batch_size, pad
    )
    texts["tokens"] = [len(ids) for ids in texts["continuation_ids"]]
    texts = texts.drop(columns=["prompt_ids"])
    unconditional = texts["source"] == "unconditional"
    shared = texts[unconditional & (texts["condition"] == UNFORCED)]
    cells = cell_table(texts, shared, targets, languages)
    summary = {
        "languages": languages,
        "targets": targets,
        "settings": {
            "samples": settings.samples,
            "alpha": settings.alpha,
            "sweep": list(settings.sweep),
            "start": settings.start,
            "start_token": start_token(tokenizer, settings.start),
            "seed": settings.seed,
            "statistic": {"forced": "median", "add": "mean", "random": "median"},
        },
        "sampling": {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": sampling.seed,
            "batch_size": batch_size,
            "max_new_tokens": max_new_tokens,
            "end_of_sequence": "suppressed",
        },
        "identifier": identifier.provenance(),
        "methods": method_summaries(cells, targets),
        "definitions": DEFINITIONS,
    }
    return SteeringResult(texts, cells, summary, label)


def cell_table(
    texts: pd.DataFrame, shared: pd.DataFrame, targets: Sequence[str], languages: Sequence[str]
) -> pd.DataFrame:
    """steering.csv: one row per (method, target, source, condition, fraction); the
    unforced unconditional texts count for every target (they do not depend on it)."""
    rows = []
    keys = ["method", "target", "source", "condition", "fraction"]
    groups = [
        (k, part)
        for k, part in texts.groupby(keys, sort=False, dropna=False)
        if not (k[2] == "unconditional" and k[3] == UNFORCED)
    ]
    groups += [(("none", t, "unconditional", UNFORCED, 1.0), shared) for t in targets]
    for (method, target, source, condition, fraction), part in groups:
        stats = cell_statistics(part["label"], target, languages, part["second_label"])
        stats = {k.replace("retention", "target_share", 1): v for k, v in stats.items()}
        rows.append(
            {
                "method": method,
                "target": target,
                "source": source,
                "condition": condition,
                "fraction": fraction,
                "neurons": int(part["neurons"].iloc[0]),
                **stats,
                "fluency": math.exp(part["nll"].sum() / part["tokens"].sum())
                if part["tokens"].sum()
                else math.nan,
                "distinct_2": float(np.nanmean(part["distinct_2"])),
                "top_token_share": float(np.nanmean(part["top_token_share"])),
            }
        )
    table = pd.DataFrame(rows)
    order = {c: i for i, c in enumerate(CONDITIONS)}
    table["_c"] = table["condition"].map(order)
    table["_m"] = table["method"].eq("none").map({True: 0, False: 1})
    table = table.sort_values(
        ["source", "target", "_m", "method", "_c", "fraction"],
        ascending=[True, True, True, True, True, False],
        kind="stable",
    )
    return table.drop(columns=["_c", "_m"]).reset_index(drop=True)


def method_summaries(cells: pd.DataFrame, targets: Sequence[str]) -> dict:
    """Per method and prompt source, at the full region: for every target, the target
    share under the unforced model, forced, add and the random control (with their
    intervals), and whether forcing (and adding) beats both the unforced model and the
    random control beyond the intervals (its lower bound above both upper bounds);
    ``beats_both``: for how many targets, as "k/n"."""
    out: dict = {}
    full = cells[cells["fraction"] == 1.0]
    for method in [m for m in dict.fromkeys(cells["method"]) if m != "none"]:
        out[method] = {}
        for source in SOURCES:
            per_target = {}
            for target in targets:
                mine = full[(full["target"] == target) & (full["source"] == source)]
                base = mine[mine["condition"] == UNFORCED]
                own = mine[mine["method"] == method]
                if base.empty or own.empty:
                    continue
                entry = {}
                for condition, row in [(UNFORCED, base)] + [
                    (c, own[own["condition"] == c]) for c in CONDITIONS[1:]
                ]:
                    if row.empty:
                        continue
                    r = row.iloc[0]
                    entry[condition] = {
                        "target_share": json_number(r["target_share"]),
                        "lo": json_number(r["target_share_lo"]),
                        "hi": json_number(r["target_share_hi"]),
                        "fluency": json_number(r["fluency"]),
                    }
                ceiling = max(entry[UNFORCED]["hi"], entry.get("random", {}).get("hi") or 0.0)
                for condition in ("forced", "add"):
                    if condition in entry:
                        entry[f"{condition}_beats_both"] = bool(entry[condition]["lo"] > ceiling)
                per_target[target] = entry
            counts = {
                condition: f"{sum(e.get(f'{condition}_beats_both', False) for e in per_target.values())}/{len(per_target)}"
                for condition in ("forced", "add")
            }
            out[method][source] = {"per_target": per_target, "beats_both": counts}
    return out


DEFINITIONS = {
    "target_share": "share of a cell's continuations identified as the target language, "
    "with its 95% Wilson interval (_lo, _hi)",
    "forced": "the region's neurons set to the target's median pooled activation",
    "add": "alpha x the target's mean pooled activation added to the region's neurons",
    "random": "as many neurons per layer, outside the region, set to the target's median",
    "unforced": "the full model",
    "fraction": "the share of the method's full region (per direction) kept in the sweep",
    "unconditional": "generation from the beginning-of-text token alone",
    "prompted": "generation from the other languages' sampled prompts, cycled",
    "fluency": "perplexity of the cell's continuations under the unforced model",
    "beats_both": "targets whose forced (add) share's lower bound is above the upper "
    "bounds of both the unforced model and the random control",
}


def write_outputs(
    result: SteeringResult, files: SteeringFiles, extra: Mapping | None = None
) -> dict:
    """Every file of ``files``, the summary (with ``extra``, provenance) last."""
    from lingua_franca.plots.steering import plot_sizes, plot_steering

    files.make_folders()
    result.cells.to_csv(files.steering_table, index=False)
    columns = [c for c in result.texts.columns if c != "continuation_ids"]
    with open(files.steering_texts, "w", encoding="utf-8") as f:
        for row in (
            result.texts[columns].to_dict(orient="records") if not result.texts.empty else []
        ):
            clean = {
                k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in row.items()
            }
            f.write(json.dumps(clean, ensure_ascii=False) + "\n")
    title = result.label or "steering"
    plot_steering(result.cells, files.steering_figure, title=title)
    plot_sizes(result.cells, files.steering_sizes, title=title)
    summary = {**result.summary, **(extra or {})}
    files.steering_summary.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return summary


# ------------------------------------------------------ across checkpoints and scales

SUMMARY_TABLE = "steering.csv"
SUMMARY_FIGURE = "steering_evolution"  # one per family
STEERING_SERIES = (
    ("unforced", "unforced", "black"),
    ("forced", "forced (median)", "tab:red"),
    ("add", "add (α × mean)", "tab:orange"),
    ("random", "random control", "tab:grey"),
)


def steering_summary_names(grid, enabled: bool) -> list[str]:
    """The summary files of steering for ``grid`` = the steered (model, family,
    checkpoint) triples: the table and a figure per family that has one; none when
    steering is off."""
    from lingua_franca.aggregate import file_stem

    if not enabled:
        return []
    families = dict.fromkeys(family for _, family, _ in grid)
    return [SUMMARY_TABLE] + [f"{SUMMARY_FIGURE}_{file_stem(f)}.png" for f in families]


def summary_rows(record: Mapping, doc: Mapping) -> list[dict]:
    """One row per method and prompt source of a steered checkpoint's steering.json:
    the target share under each condition, pooled over the targets (Wilson intervals
    over the pooled continuations), and for how many targets forcing (adding) beats
    both the unforced model and the random control beyond the intervals."""
    from lingua_franca.language_id import wilson

    ident = {key: record.get(key) for key in ("model", "family", "checkpoint", "step")}
    ident["parameters"] = record.get("parameters") or doc.get("n_parameters")
    n = (doc.get("settings") or {}).get("samples")
    rows = []
    for method, by_source in (doc.get("methods") or {}).items():
        for source, entry in by_source.items():
            row = {**ident, "method": method, "source": source}
            for condition in CONDITIONS:
                shares = [
                    t[condition]["target_share"]
                    for t in entry["per_target"].values()
                    if condition in t
                ]
                k = round(sum(shares) * n) if shares and n else 0
                lo, hi = wilson(k, len(shares) * n) if shares and n else (math.nan, math.nan)
                row |= {
                    f"target_share_{condition}": k / (len(shares) * n)
                    if shares and n
                    else math.nan,
                    f"target_share_{condition}_lo": lo,
                    f"target_share_{condition}_hi": hi,
                }
            row["forced_beats_both"] = entry["beats_both"]["forced"]
            row["add_beats_both"] = entry["beats_both"]["add"]
            rows.append(row)
    return rows


def write_steering_summary(
    records: Sequence[Mapping], paths: Mapping[str, str | Path], enabled: bool
):
    """``steering.csv`` across the grid (``records``: each checkpoint's identity with
    ``steering``, its steering.json; an unsteered checkpoint has no rows) and one
    figure per family with a steered model: the pooled target shares against training
    step."""
    from lingua_franca.aggregate import file_stem, grid_of, read_result
    from lingua_franca.plots.language import plot_language_evolution

    docs = [read_result(r["steering"], r) for r in records] if enabled else []
    steered = [(r, doc) for r, doc in zip(records, docs) if doc.get("steered", True)]
    names = steering_summary_names(grid_of([r for r, _ in steered]), enabled)
    absent = [name for name in names if name not in paths]
    if absent:
        raise ValueError(f"no path given for summary files {absent}")
    out = {name: Path(paths[name]) for name in names}
    for path in out.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    if not names:
        return out
    table = pd.DataFrame([row for r, doc in steered for row in summary_rows(r, doc)])
    table.to_csv(out[SUMMARY_TABLE], index=False)
    for family in dict.fromkeys(r["family"] for r, _ in steered):
        mine = table[table["family"] == family] if not table.empty else table
        if not mine.empty:
            mine = mine.assign(method=mine["method"] + " regions, " + mine["source"])
        plot_language_evolution(
            mine,
            out[f"{SUMMARY_FIGURE}_{file_stem(family)}.png"],
            family=family,
            series=STEERING_SERIES,
            column="target_share",
            ylabel="share in the target language",
            what="steering, the target's share pooled over targets",
            panel="{}",
        )
    return out
