"""Which language the model writes under each condition of the ablation job: sampled
continuations of every language's prompts, their languages identified, and the
statistics per condition and prompt language (docs/method.md §11).

One experiment of the checkpoint's model job: it runs on the model the ablation job
has loaded, after the perplexities, under the same conditions (the full model, the
random baseline and each language's region, of every key-neuron method), each a
value (:class:`Condition`) that :func:`run` applies through the neuron site.  Text
becomes numbers in :mod:`lingua_franca.language_id`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn
from tqdm.auto import tqdm

from lingua_franca.generations import Sampling, generate_all
from lingua_franca.interventions import Intervention
from lingua_franca.language_id import (
    UNKNOWN,
    Identifier,
    cell_statistics,
    distinct_2,
    top_token_share,
    wilson,
)
from lingua_franca.outputs import OutputFiles, json_number

FULL = "full"  # the full model: its ``method`` is NO_METHOD, no neuron is touched
NO_METHOD = "none"


@dataclass(frozen=True)
class Condition:
    """One way of running the model, a value: its ``interventions`` (none for the
    full model; one zeroing a region otherwise); ``name`` is ``full``, ``random`` or
    the language whose region it is, ``method`` the key-neuron method that chose the
    neurons (``none`` for the full model)."""

    name: str
    method: str
    kind: str  # "full", "random" or "language"
    interventions: tuple[Intervention, ...] = ()

    @property
    def size(self) -> int:
        return sum(i.n_neurons for i in self.interventions)


def conditions_of(regions: Mapping[str, Mapping[str, Mapping[int, np.ndarray]]]) -> list[Condition]:
    """The full model, then for each method (``regions``: method → {condition name →
    neurons}, as :attr:`ablation.AblationResult.regions` holds them) its random
    baseline and each language's non-empty region, zeroed."""
    out = [Condition(FULL, NO_METHOD, "full")]
    for method, by_name in regions.items():
        for name, neurons in by_name.items():
            kind = "random" if name == "random" else "language"
            out.append(Condition(name, method, kind, (Intervention(neurons),)))
    return out


@dataclass(frozen=True)
class LanguageFiles(OutputFiles):
    """What the experiment writes (named outputs of the ablation rule)."""

    language_table: Path = field(metadata={"suffix": ".csv"})  # one row per cell
    language_texts: Path = field(metadata={"suffix": ".jsonl"})  # one line per continuation
    language_summary: Path = field(metadata={"suffix": ".json"})
    language_retention: Path = field(metadata={"suffix": ".png"})
    language_destinations: Path = field(metadata={"suffix": ".png"})


@dataclass
class LanguageResult:
    texts: pd.DataFrame  # one row per continuation, with its labels
    cells: pd.DataFrame  # language_of_generations.csv
    summary: dict
    label: str = ""


def run(
    model: nn.Module,
    tokenizer,
    conditions: Sequence[Condition],
    prompts: Mapping[str, Sequence[Mapping[str, str]]],
    languages: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    sampling: Sampling,
    apply: Callable[[Sequence[Intervention]], object],
    identifier: Identifier | None = None,
    progress: bool = True,
    label: str = "",
) -> LanguageResult:
    """Sample a continuation of every prompt under every condition (``apply(
    interventions)``: the context manager that applies a condition's interventions,
    ``interventions.intervene`` on the model), identify each one's language, and
    compute the statistics of every (method, condition, prompt language) cell."""
    languages = [str(lang) for lang in languages]
    identifier = identifier or Identifier(languages)
    prompts = {lang: list(prompts.get(lang, [])) for lang in languages if prompts.get(lang)}
    total = len(conditions) * sum(len(p) for p in prompts.values())
    parts = []
    with tqdm(total=total, unit="text", desc="sampling", disable=not progress) as bar:
        for condition in conditions:
            records = generate_all(
                model,
                tokenizer,
                [(condition.name, condition.interventions)],
                prompts,
                max_new_tokens,
                batch_size,
                apply,
                bar,
                sampling=sampling,
            )
            frame = pd.DataFrame(records)
            frame.insert(0, "method", condition.method)
            frame.insert(2, "kind", condition.kind)
            frame["neurons"] = condition.size
            parts.append(frame)
    texts = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if texts.empty:
        return LanguageResult(texts, pd.DataFrame(), {}, label)
    # what is judged is the continuation alone, without special tokens
    plain = [tokenizer.decode(ids, skip_special_tokens=True) for ids in texts["continuation_ids"]]
    texts["continuation"] = plain
    texts = pd.concat([texts, identifier.labels(plain)], axis=1)
    texts["distinct_2"] = [distinct_2(ids) for ids in texts["continuation_ids"]]
    texts["top_token_share"] = [top_token_share(ids) for ids in texts["continuation_ids"]]
    cells = cell_table(texts, languages)
    summary = {
        "languages": languages,
        "prompt_languages": list(prompts),
        "samples": {lang: len(p) for lang, p in prompts.items()},
        "sampling": {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": None,
            "seed": sampling.seed,
            "seeds": "batch b draws from seed + b; the same batches under every condition",
            "batch_size": batch_size,
            "max_new_tokens": max_new_tokens,
            "end_of_sequence": "suppressed",
        },
        "identifier": identifier.provenance(),
        "methods": method_summaries(cells, languages),
        "agreement": _agreement(texts),
        "definitions": DEFINITIONS,
    }
    return LanguageResult(texts, cells, summary, label)


def shown_texts(result: LanguageResult, method: str, per_language: int = 3) -> list[dict]:
    """The first ``per_language`` sampled prompts of every language under the full
    model and each language's region of ``method``: the greedy table's layout
    (``generations.write_html``), to read beside it."""
    texts = result.texts
    if texts.empty:
        return []
    chosen = texts[
        (texts["kind"] == "full") | ((texts["kind"] == "language") & (texts["method"] == method))
    ]
    chosen = chosen[chosen["prompt_index"] < per_language]
    columns = ["condition", "language", "prompt_index", "prompt", "continuation"]
    columns += ["new_tokens", "first_eos", "label"]
    return chosen[columns].to_dict(orient="records")


def cell_table(texts: pd.DataFrame, languages: Sequence[str]) -> pd.DataFrame:
    """language_of_generations.csv: one row per (method, condition, prompt language),
    in the order the texts came, with :func:`language_id.cell_statistics` and the mean
    degeneracy measures of its texts."""
    rows = []
    keys = ["method", "condition", "kind", "language"]
    for (method, condition, kind, lang), part in texts.groupby(keys, sort=False):
        rows.append(
            {
                "method": method,
                "condition": condition,
                "kind": kind,
                "language": lang,
                "own": condition == lang,
                "neurons": int(part["neurons"].iloc[0]),
                **cell_statistics(part["label"], lang, languages, part["second_label"]),
                "distinct_2": float(np.nanmean(part["distinct_2"])),
                "top_token_share": float(np.nanmean(part["top_token_share"])),
            }
        )
    return pd.DataFrame(rows)


def _pooled(cells: pd.DataFrame) -> dict:
    """Retention pooled over ``cells`` (their texts counted together), with its Wilson
    interval: {retention, lo, hi, n}."""
    n = int(cells["n"].sum())
    k = round((cells["retention"] * cells["n"]).sum())
    lo, hi = wilson(k, n)
    return {
        "retention": json_number(k / n) if n else None,
        "lo": json_number(lo),
        "hi": json_number(hi),
        "n": n,
    }


def method_summaries(cells: pd.DataFrame, languages: Sequence[str]) -> dict:
    """Per key-neuron method: retention under the full model, under each language's own
    deactivation, under the other languages' deactivations and under the random
    baseline, pooled over prompt languages (Wilson intervals: an approximation, as the
    same prompts recur in every cell); and per prompt language whether its own
    deactivation lowers retention more than the mean of the other languages'
    (``own_lowers_most``; null without an own region or a rival), and whether it does
    so beyond the intervals (the own cell's upper bound below the pooled other cells'
    lower bound: ``own_lowers_most_ci``)."""
    full = cells[cells["kind"] == "full"]
    out = {}
    for method in [m for m in dict.fromkeys(cells["method"]) if m != NO_METHOD]:
        mine = cells[cells["method"] == method]
        regions = mine.loc[mine["kind"] == "language", "condition"].unique()
        own = mine[(mine["kind"] == "language") & mine["own"]]
        others = mine[(mine["kind"] == "language") & ~mine["own"]]
        per_language = {}
        for lang in languages:
            base = full[full["language"] == lang]
            own_cell = own[own["language"] == lang]
            rivals = others[others["language"] == lang]
            if base.empty:
                continue
            entry = {"full": json_number(float(base["retention"].iloc[0]))}
            if not own_cell.empty:
                entry |= {
                    "own": json_number(float(own_cell["retention"].iloc[0])),
                    "own_lo": json_number(float(own_cell["retention_lo"].iloc[0])),
                    "own_hi": json_number(float(own_cell["retention_hi"].iloc[0])),
                }
            if not rivals.empty:
                pooled = _pooled(rivals)
                entry |= {
                    "others_mean": json_number(float(rivals["retention"].mean())),
                    "others_lo": pooled["lo"],
                    "others_hi": pooled["hi"],
                }
            verdict = verdict_ci = None
            if not own_cell.empty and not rivals.empty:
                verdict = bool(entry["own"] < entry["others_mean"])
                verdict_ci = bool(entry["own_hi"] < entry["others_lo"])
            entry["own_lowers_most"] = verdict
            entry["own_lowers_most_ci"] = verdict_ci
            per_language[lang] = entry
        verdicts = [e["own_lowers_most"] for e in per_language.values()]
        verdicts_ci = [e["own_lowers_most_ci"] for e in per_language.values()]
        out[method] = {
            "languages_with_region": [str(x) for x in regions],
            "full": _pooled(full),
            "own": _pooled(own) if not own.empty else None,
            "others": _pooled(others) if not others.empty else None,
            "random": _pooled(mine[mine["kind"] == "random"])
            if (mine["kind"] == "random").any()
            else None,
            "per_language": per_language,
            "own_lowers_most": _count(verdicts),
            "own_lowers_most_ci": _count(verdicts_ci),
        }
    return out


def _count(verdicts: Sequence[bool | None]) -> str | None:
    known = [v for v in verdicts if v is not None]
    return f"{sum(known)}/{len(known)}" if known else None


def _agreement(texts: pd.DataFrame) -> dict:
    judged = texts[(texts["label"] != UNKNOWN) & texts["second_label"].notna()]
    n = len(judged)
    k = int((judged["label"] == judged["second_label"]).sum())
    lo, hi = wilson(k, n)
    return {
        "share": json_number(k / n) if n else None,
        "lo": json_number(lo),
        "hi": json_number(hi),
        "n": n,
        "unknown": int((texts["label"] == UNKNOWN).sum()),
        "texts": len(texts),
    }


DEFINITIONS = {
    "retention": "share of a cell's continuations identified as the prompt's language",
    "share_<x>": "share identified as study language x; share_other: a language outside the "
    "study; share_unknown: probability <= min_probability, too short or degenerate",
    "top_other": "the most frequent label besides the prompt language and unknown",
    "interval": "95% Wilson score interval of each share over the cell's n continuations",
    "agreement": "share of the identified continuations whose second identifier's label "
    "(py3langid, restricted to the study's languages) is the same",
    "distinct_2": "distinct token bigrams / bigrams of a continuation, mean over the cell",
    "top_token_share": "share of a continuation taken by its most frequent token, mean",
    "own_lowers_most": "the own deactivation's retention is below the mean of the other "
    "languages' deactivations' retention, for the same prompt language",
    "own_lowers_most_ci": "the own cell's upper bound is below the lower bound of the other "
    "languages' cells pooled",
}


def write_outputs(result: LanguageResult, files: LanguageFiles, extra: Mapping | None = None):
    """Every file of ``files``; the summary (``extra``: provenance added) last."""
    from lingua_franca.plots.language import plot_destinations, plot_retention

    files.make_folders()
    result.cells.to_csv(files.language_table, index=False)
    columns = [c for c in result.texts.columns if c != "continuation_ids"]
    with open(files.language_texts, "w", encoding="utf-8") as f:
        for row in result.texts[columns].to_dict(orient="records"):
            clean = {
                k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                for k, v in row.items()
            }
            f.write(json.dumps(clean, ensure_ascii=False) + "\n")
    title = result.label or "language of generations"
    plot_retention(result.cells, files.language_retention, title=title)
    plot_destinations(
        result.cells, result.summary.get("languages", []), files.language_destinations, title=title
    )
    summary = {**result.summary, **(extra or {})}
    files.language_summary.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return summary


# ------------------------------------------------------ across checkpoints and scales

SUMMARY_TABLE = "language_of_generations.csv"
SUMMARY_FIGURES = ("language_evolution", "language_scale")  # one of each per family
SERIES = ("full", "own", "others", "random")


def language_summary_names(grid, samples: int) -> list[str]:
    """The summary files of the language statistics for ``grid`` = (model, family,
    checkpoint) triples: none when they are off (``samples`` 0)."""
    from lingua_franca.aggregate import file_stem

    if not samples:
        return []
    families = dict.fromkeys(family for _, family, _ in grid)
    return [SUMMARY_TABLE] + [
        f"{fig}_{file_stem(f)}.png" for f in families for fig in SUMMARY_FIGURES
    ]


def summary_rows(record: Mapping, doc: Mapping) -> list[dict]:
    """One row per key-neuron method of one checkpoint's language_of_generations.json:
    retention pooled over the prompt languages under the full model, own deactivation,
    the other languages' deactivations and the random baseline, with intervals, and
    for how many languages own deactivation lowers retention most."""
    ident = {key: record.get(key) for key in ("model", "family", "checkpoint", "step")}
    ident["parameters"] = record.get("parameters") or doc.get("n_parameters")
    rows = []
    for method, entry in (doc.get("methods") or {}).items():
        row = {**ident, "method": method}
        for key in SERIES:
            pooled = entry.get(key) or {}
            row |= {
                f"retention_{key}": pooled.get("retention"),
                f"retention_{key}_lo": pooled.get("lo"),
                f"retention_{key}_hi": pooled.get("hi"),
                f"n_{key}": pooled.get("n"),
            }
        row["own_lowers_most"] = entry.get("own_lowers_most")
        row["own_lowers_most_ci"] = entry.get("own_lowers_most_ci")
        row["agreement"] = (doc.get("agreement") or {}).get("share")
        rows.append(row)
    return rows


def write_language_summary(
    records: Sequence[Mapping], paths: Mapping[str, str | Path], samples: int
):
    """``language_of_generations.csv`` and the figures per family (``records``: each
    checkpoint's identity with ``language``, its language_of_generations.json)."""
    from lingua_franca.aggregate import file_stem, grid_of, last_checkpoints, read_result
    from lingua_franca.plots.language import plot_language_evolution

    names = language_summary_names(grid_of(records), samples)
    absent = [name for name in names if name not in paths]
    if absent:
        raise ValueError(f"no path given for summary files {absent}")
    out = {name: Path(paths[name]) for name in names}
    if not names:
        return out
    for path in out.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    rows = [row for r in records for row in summary_rows(r, read_result(r["language"], r))]
    table = pd.DataFrame(rows)
    table.to_csv(out[SUMMARY_TABLE], index=False)
    for family in dict.fromkeys(r["family"] for r in records):
        stem = file_stem(family)
        mine = table[table["family"] == family] if not table.empty else table
        plot_language_evolution(mine, out[f"language_evolution_{stem}.png"], family=family)
        if not mine.empty:
            last = last_checkpoints(mine.drop_duplicates(["model", "checkpoint"]))
            mine = mine.merge(last[["model", "checkpoint"]], on=["model", "checkpoint"])
        plot_language_evolution(
            mine, out[f"language_scale_{stem}.png"], family=family, x="parameters"
        )
    return out
