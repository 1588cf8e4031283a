"""Summary tables across models × checkpoints, and the figures drawn from them
(docs/method.md §7; paper Figures 4–7 and 10).

Each model × checkpoint job writes its own ``metrics.json`` (and
``xstorycloze.json``, ``ablation.json``), but the evolution and scale figures need
every checkpoint side by side.  :func:`collect_tables` reads them into four tables,
:func:`write_summary` writes them as CSV and draws the figures of
:mod:`lingua_franca.plots.evolution`.  :func:`summary_names` names every one of
those files from the grid alone, because Snakemake needs a rule's outputs before
the rule runs; the rule says where they go.

A *record* is one checkpoint: ``Config.identity(model, checkpoint)`` (or any dict
with ``model``, ``family``, ``checkpoint``, ``step``, ``parameters``) plus the
paths ``metrics`` (required), ``xstorycloze``, ``ablation`` and ``bootstrap``
(``metrics_bootstrap.npz``; optional); :func:`checkpoint_records` pairs identities
with the rule's input lists.

Intervals (docs/method.md §10): every value with a bootstrap interval gets ``_lo`` and
``_hi`` columns beside it, and :func:`step_changes` gives each change between
consecutive checkpoints of a model a paired interval (``changes.csv``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lingua_franca.bootstrap import percentile_interval
from lingua_franca.logs import get_logger

log = get_logger(__name__)

SUMMARY_PAGE = "summary.html"  # the main tables as one page, for the report
PROVENANCE = "provenance.json"  # what the results record about their making (the captions')
TABLES = ("metrics", "key_neurons_per_layer", "key_neurons_per_language", "xstorycloze")
FAMILY_FIGURES = ("evolution", "scale")  # one of each per family
MODEL_FIGURES = ("key_layers", "key_languages")  # one of each per model
TASK_KINDS = ("cross", "mono")  # the two XStoryCloze formulations (docs/method.md §6)
ENGLISH = "en"  # the endings' language: its "cross" task is monolingual

ID = ["model", "family", "checkpoint", "step"]
COLUMNS = {
    "metrics": ID
    + [
        "revision",
        "parameters",
        "n_layers",
        "n_neurons",
        "z_threshold",
        "lrds",
        "lrds_lo",
        "lrds_hi",
        "sads",
        "sads_lo",
        "sads_hi",
        "sklr",
        "sklr_lo",
        "sklr_hi",
        "sklr_fraction",
        "sklr_fraction_lo",
        "sklr_fraction_hi",
        "cross_acc_mean",
        "cross_n_languages",
        "mono_acc_mean",
        "mono_n_languages",
        "cross_acc_en",
        "mono_acc_en",
        "xstorycloze_missing",
        "ppl_diagonal_increase",
        "ppl_diagonal_increase_lo",
        "ppl_diagonal_increase_hi",
        "ppl_off_diagonal_increase",
        "ppl_off_diagonal_increase_lo",
        "ppl_off_diagonal_increase_hi",
        "diagonal_dominates",
        "diagonal_dominates_ci",
        "weights_fingerprint",
        "activations_fingerprint",
        "duplicate_of",
        "duplicate_by",
    ],
    "key_neurons_per_layer": ID
    + ["layer", "name", "width", "lrds", "sads", "key_neurons"]
    + ["lrds_lo", "lrds_hi", "sads_lo", "sads_hi", "key_neurons_ci_lo", "key_neurons_ci_hi"],
    "key_neurons_per_language": ID
    + ["language", "key_neurons", "key_fraction", "key_neurons_ci_lo", "key_neurons_ci_hi"]
    + ["region_stability"],
    "xstorycloze": ID + ["language", "kind", "acc", "acc_stderr", "n", "missing", "reason"],
}
INTEGERS = (
    "step",
    "parameters",
    "n_layers",
    "n_neurons",
    "sklr",
    "cross_n_languages",
    "mono_n_languages",
    "layer",
    "width",
    "key_neurons",
    "n",
)
# key_neurons_<language> are per-language counts (key_neurons_hi: Hindi's), so the
# interval of a key-neuron count is key_neurons_ci_lo / key_neurons_ci_hi
BOUNDED = "key_neurons_ci"
CHANGES = "changes.csv"  # step-to-step changes with paired intervals (docs/method.md §10)
CHANGE_COLUMNS = ["model", "from", "to", "metric", "change", "lo", "hi", "outside_noise"]
CHANGE_METRICS = ("lrds", "sads", "sklr")


# ------------------------------------------------------------------ file names


def file_stem(name: str) -> str:
    """A model or family name as part of a file name: any character outside
    ``[A-Za-z0-9_.+-]`` (a Hub-style ``org/name``, a space) becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", str(name))


def summary_names(grid: Iterable[tuple[str, str, str]]) -> list[str]:
    """The name of every file :func:`write_summary` writes for ``grid`` = (model,
    family, checkpoint) triples, without reading any result: the rule's outputs.

    Each family gets an evolution and a scale figure and each model its two
    key-neuron figures, whatever their number of checkpoints or sizes (a figure
    with nothing to compare says so), so the set depends on names only.
    """
    grid = list(grid)
    families = dict.fromkeys(family for _, family, _ in grid)
    models = dict.fromkeys(model for model, _, _ in grid)
    names = [f"{table}.csv" for table in TABLES] + [CHANGES]
    names += [f"{fig}_{file_stem(f)}.png" for f in families for fig in FAMILY_FIGURES]
    names += [f"{fig}_{file_stem(m)}.png" for m in models for fig in MODEL_FIGURES]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"model or family names give the same summary file: {clashes}; rename one")
    return names


def config_grid(cfg) -> list[tuple[str, str, str]]:
    """(model, family, checkpoint) for every checkpoint of a ``Config``, in config order."""
    return [(c.model, cfg.models[c.model].family, c.name) for c in cfg.grid()]


def grid_of(records: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """(model, family, checkpoint) of each record."""
    return [(r["model"], r["family"], r["checkpoint"]) for r in records]


def checkpoint_records(
    identities: Sequence[Mapping[str, Any]], **files: Sequence[str | Path]
) -> list[dict]:
    """One record per checkpoint: its identity and, for each keyword (``metrics``,
    ``xstorycloze``, ``ablation``), the file at the same position of that list.  A
    file in the wrong position is caught when it is read (its source is checked)."""
    for kind, paths in files.items():
        if len(paths) != len(identities):
            raise ValueError(
                f"{len(paths)} {kind} files for {len(identities)} checkpoints: "
                "the lists must follow the same grid"
            )
    return [
        {**identity, **{kind: paths[i] for kind, paths in files.items()}}
        for i, identity in enumerate(identities)
    ]


# ---------------------------------------------------------------------- reading


def read_result(path: str | Path, record: Mapping[str, Any]) -> dict:
    """A result file, checked to belong to ``record``: a checkpoint wired to another
    checkpoint's file would otherwise put wrong numbers in the right row."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    source = doc.get("source") or {}
    for key in ("model", "checkpoint"):
        if source.get(key) not in (None, record[key]):
            raise ValueError(f"{path} is for {key} {source[key]!r}, not {record[key]!r}")
    return doc


def _float(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else math.nan


def _xstorycloze_rows(doc: Mapping[str, Any]) -> list[dict]:
    """One row per language × kind.  A language or kind marked missing, or with no
    accuracy, is a row with ``missing`` true and the reason: never dropped."""
    rows = []
    for lang, entry in (doc.get("languages") or {}).items():
        for kind in TASK_KINDS:
            res = (
                entry
                if entry.get("missing")
                else entry.get(kind) or {"missing": True, "reason": f"no {kind} result"}
            )
            acc = _float(res.get("acc"))
            missing = bool(res.get("missing")) or math.isnan(acc)
            rows.append(
                {
                    "language": lang,
                    "kind": kind,
                    "acc": acc,
                    "acc_stderr": _float(res.get("acc_stderr")),
                    "n": res.get("n"),
                    "missing": missing,
                    "reason": res.get("reason") or ("no accuracy" if missing else None),
                }
            )
    return rows


def _accuracy(rows: list[dict]) -> dict[str, Any]:
    """Unweighted means over the non-English languages with data (each language
    counts once, whatever its number of stories), how many there were, English's own
    accuracy in a column of its own (its "cross" prompt is a monolingual story with
    its own endings, so it is no cross-lingual transfer; docs/method.md §6), and which
    languages lacked cross data.  The mono mean is over the same non-English
    languages, so the two means compare.  ``xstorycloze.csv`` keeps every language."""
    out: dict[str, Any] = {}
    for kind in TASK_KINDS:
        accs = [
            r["acc"]
            for r in rows
            if r["kind"] == kind and not r["missing"] and r["language"] != ENGLISH
        ]
        out[f"{kind}_acc_mean"] = sum(accs) / len(accs) if accs else math.nan
        out[f"{kind}_n_languages"] = len(accs)
    for kind in TASK_KINDS:
        english = [
            r["acc"]
            for r in rows
            if r["kind"] == kind and not r["missing"] and r["language"] == ENGLISH
        ]
        out[f"{kind}_acc_en"] = english[0] if english else math.nan
    missing = [r["language"] for r in rows if r["kind"] == "cross" and r["missing"]]
    out["xstorycloze_missing"] = ";".join(missing) or None
    return out


def deactivation_columns(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Deactivation in one row (paper Table 1): mean perplexity increase (%) of a
    language under its own key region's deactivation and under the others', and for
    how many languages the own one raises it most ("8/9"); with intervals, the means'
    intervals and the count under the interval rule (``diagonal_dominates_ci``)."""
    verdicts = [v for v in (doc.get("diagonal_dominates") or {}).values() if v is not None]
    ci = doc.get("ci") or {}
    by_interval = [v for v in (ci.get("diagonal_dominates") or {}).values() if v is not None]
    return {
        "ppl_diagonal_increase": doc.get("mean_diagonal_increase"),
        **_bounds("ppl_diagonal_increase", ci.get("mean_diagonal_increase")),
        "ppl_off_diagonal_increase": doc.get("mean_off_diagonal_increase"),
        **_bounds("ppl_off_diagonal_increase", ci.get("mean_off_diagonal_increase")),
        "diagonal_dominates": f"{sum(verdicts)}/{len(verdicts)}" if verdicts else None,
        "diagonal_dominates_ci": (
            f"{sum(by_interval)}/{len(by_interval)}" if by_interval else None
        ),
    }


def _bounds(name: str, interval: Sequence[float] | None, scale: float = 1.0) -> dict[str, float]:
    """{name_lo, name_hi} from a [lo, hi] interval (NaN without one)."""
    lo, hi = interval if interval else (math.nan, math.nan)
    return {f"{name}_lo": _float(lo) / scale, f"{name}_hi": _float(hi) / scale}


def _metric_bounds(m: Mapping[str, Any]) -> dict[str, float]:
    """The lo/hi columns of the metrics row from metrics.json's ``ci`` (NaN without)."""
    ci = m.get("ci") or {}
    k = m.get("n_neurons") or math.nan
    return {
        **_bounds("lrds", ci.get("lrds")),
        **_bounds("sads", ci.get("sads")),
        **_bounds("sklr", ci.get("sklr")),
        **_bounds("sklr_fraction", ci.get("sklr"), scale=k),
    }


def _checkpoint_tables(record: Mapping[str, Any]) -> dict[str, list[dict]]:
    """The rows one checkpoint contributes to each table."""
    m = read_result(record["metrics"], record)
    ident = {key: record.get(key) for key in ID}
    provenance = m.get("provenance") or {}
    xsc = []
    if record.get("xstorycloze"):
        xsc = _xstorycloze_rows(read_result(record["xstorycloze"], record))
    ablation = (
        deactivation_columns(read_result(record["ablation"], record))
        if record.get("ablation")
        else {}
    )
    row = {
        **ident,
        "revision": record.get("revision"),
        "parameters": record.get("parameters") or provenance.get("n_parameters"),
        **{
            key: m.get(key)
            for key in (
                "n_layers",
                "n_neurons",
                "z_threshold",
                "lrds",
                "sads",
                "sklr",
                "sklr_fraction",
            )
        },
        **_metric_bounds(m),
        **_accuracy(xsc),
        **ablation,
        "weights_fingerprint": provenance.get("weights_fingerprint"),
        "activations_fingerprint": provenance.get("activations_fingerprint"),
    }
    ci = m.get("ci") or {}
    layer_ci = {row.get("layer"): row for row in ci.get("per_layer") or []}
    layers = [
        {
            **ident,
            **{key: layer.get(key) for key in COLUMNS["key_neurons_per_layer"][4:]},
            **{
                column: value
                for key, name in (("lrds", "lrds"), ("sads", "sads"), ("key_neurons", BOUNDED))
                for column, value in _bounds(
                    name, layer_ci.get(layer.get("layer"), {}).get(key)
                ).items()
            },
            **{
                f"key_neurons_{lang}": n
                for lang, n in (layer.get("key_neurons_per_language") or {}).items()
            },
        }
        for layer in m.get("per_layer") or []
    ]
    fractions = m.get("key_fraction_per_language") or {}
    per_language_ci = ci.get("key_neurons_per_language") or {}
    stability = ci.get("region_stability") or {}
    languages = [
        {
            **ident,
            "language": lang,
            "key_neurons": n,
            "key_fraction": fractions.get(lang),
            **_bounds(BOUNDED, per_language_ci.get(lang)),
            "region_stability": _float(stability.get(lang)),
        }
        for lang, n in (m.get("key_neurons_per_language") or {}).items()
    ]
    return {
        "metrics": [row],
        "key_neurons_per_layer": layers,
        "key_neurons_per_language": languages,
        "xstorycloze": [{**ident, **r} for r in xsc],
    }


#: the signals that find a duplicate checkpoint, strongest first (docs/method.md §7)
DUPLICATE_SIGNALS = {"weights": "weights_fingerprint", "activations": "activations_fingerprint"}


def _duplicates(metrics: pd.DataFrame) -> tuple[list[str | None], list[str | None]]:
    """For each row: the first earlier model/checkpoint with the same weight files, else
    the first with identical activations (``duplicate_of``), and every signal on which
    the two agree, ``+``-joined (``duplicate_by``). Published checkpoint series hold
    byte-identical copies, and equal weights in other files (Pythia step0 and step1),
    which would otherwise count as two points of a trend."""
    first: dict[str, dict[str, int]] = {signal: {} for signal in DUPLICATE_SIGNALS}
    values = {
        signal: [v if isinstance(v, str) else None for v in metrics[column]]
        for signal, column in DUPLICATE_SIGNALS.items()
    }
    names = [f"{m}/{c}" for m, c in zip(metrics["model"], metrics["checkpoint"], strict=True)]
    of, by = [], []
    for row in range(len(metrics)):
        earlier = None
        for signal in DUPLICATE_SIGNALS:
            value = values[signal][row]
            if value is not None:
                seen = first[signal].setdefault(value, row)
                if earlier is None and seen != row:
                    earlier = seen
        if earlier is None:
            of.append(None)
            by.append(None)
            continue
        agree = [
            signal
            for signal in DUPLICATE_SIGNALS
            if values[signal][row] is not None and values[signal][row] == values[signal][earlier]
        ]
        of.append(names[earlier])
        by.append("+".join(agree))
    return of, by


def _table(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    """Rows → DataFrame with the table's columns first (extra per-language columns
    after), integer columns as nullable integers so that CSVs show 300, not 300.0."""
    table = pd.DataFrame(rows, columns=list(dict.fromkeys(columns + [k for r in rows for k in r])))
    for col in table.columns:
        bound = col.startswith(BOUNDED)  # a percentile of counts may lie between two
        if col in INTEGERS or (col.startswith("key_neurons_") and not bound):
            table[col] = pd.to_numeric(table[col]).round().astype("Int64")
    return table


def collect_tables(records: Iterable[Mapping[str, Any]]) -> dict[str, pd.DataFrame]:
    """The four summary tables (see ``COLUMNS``), rows in record order."""
    rows: dict[str, list[dict]] = {name: [] for name in TABLES}
    for record in records:
        for name, part in _checkpoint_tables(record).items():
            rows[name].extend(part)
    tables = {name: _table(rows[name], COLUMNS[name]) for name in TABLES}
    of, by = _duplicates(tables["metrics"])
    tables["metrics"]["duplicate_of"] = pd.Series(of, dtype="object")
    tables["metrics"]["duplicate_by"] = pd.Series(by, dtype="object")
    return tables


def step_changes(records: Sequence[Mapping[str, Any]], metrics: pd.DataFrame) -> pd.DataFrame:
    """changes.csv: LRDS, SADS and SKLR changes between consecutive checkpoints of each
    model (by training step; checkpoints without a step last, in config order), from
    ``metrics`` (the metrics table, rows in record order), each with a paired interval.

    Every checkpoint of a model is resampled with the same item draws (they depend
    only on the seed, the number of items and B), so the difference of the two
    checkpoints' b-th resampled values is the change in resample b; its percentile
    interval says whether the change lies outside the noise of the item sample
    (``outside_noise``: the interval excludes 0).  Without both checkpoints'
    resamples (``bootstrap`` files, resamples > 0) a change has no interval; resamples
    drawn differently (another probe, seed or B) are an error, never compared."""

    def numbers(column: str) -> np.ndarray:
        return pd.to_numeric(metrics[column]).to_numpy(dtype=float, na_value=np.nan)

    step = numbers("step")
    value = {metric: numbers(metric) for metric in CHANGE_METRICS}
    rows = []
    for model in dict.fromkeys(metrics["model"]):
        chosen = np.flatnonzero((metrics["model"] == model).to_numpy())
        ordered = sorted(chosen, key=lambda i: (np.isnan(step[i]), np.nan_to_num(step[i])))
        for i, j in pairwise(ordered):
            paired = _paired_resamples(records[i], records[j])
            for metric in CHANGE_METRICS:
                change = value[metric][j] - value[metric][i]
                interval = None
                if paired is not None:
                    after, before, level = paired
                    interval = percentile_interval(after[metric] - before[metric], level)
                lo, hi = interval or (math.nan, math.nan)
                rows.append(
                    {
                        "model": model,
                        "from": metrics["checkpoint"].iloc[i],
                        "to": metrics["checkpoint"].iloc[j],
                        "metric": metric,
                        "change": change,
                        "lo": lo,
                        "hi": hi,
                        "outside_noise": None if interval is None else bool(lo > 0 or hi < 0),
                    }
                )
    table = pd.DataFrame(rows, columns=CHANGE_COLUMNS)
    table["outside_noise"] = table["outside_noise"].astype("boolean")
    return table


def _resamples(record: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """A checkpoint's metrics_bootstrap.npz (checked to be the record's), or None
    without one or without resamples."""
    path = record.get("bootstrap")
    if not path:
        return None
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    for key in ("model", "checkpoint"):
        if key in arrays and str(arrays[key]) != record[key]:
            raise ValueError(f"{path} is for {key} {str(arrays[key])!r}, not {record[key]!r}")
    return arrays if int(arrays["resamples"]) > 0 else None


def _paired_resamples(before: Mapping[str, Any], after: Mapping[str, Any]):
    """(after's arrays, before's arrays, level) when both checkpoints were resampled
    with the same draws of the same items at the same level; None when either has no
    resamples."""
    a, b = _resamples(before), _resamples(after)
    if a is None or b is None:
        return None
    same = (
        np.array_equal(a["items"], b["items"])
        and np.array_equal(a["draws"], b["draws"])
        and float(a["level"]) == float(b["level"])
    )
    if not same:
        raise ValueError(
            f"{before['bootstrap']} and {after['bootstrap']} were resampled differently "
            "(probe items, draws or level): their change has no paired interval; rerun "
            "compute_metrics for both with the same probe and analysis.bootstrap"
        )
    return b, a, float(a["level"])


def last_checkpoints(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per model for the scale figures: its checkpoint with the largest
    training step; with no step known, its last checkpoint in config order (a
    model's only checkpoint is always its last)."""
    chosen = []
    for _, rows in metrics.groupby("model", sort=False):
        stepped = rows["step"].dropna()
        chosen.append(stepped.idxmax() if len(stepped) else rows.index[-1])
    return metrics.loc[chosen]


# ---------------------------------------------------------------------- writing


def write_provenance(records: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """provenance.json: what each checkpoint's results record about the settings and
    code that made them (lingua_franca.provenance.recorded_settings), and under
    ``recorded`` every distinct value over the grid: the interval settings of the
    metrics (``intervals``) and of the perplexity increases (``window_intervals``),
    with ``without`` the checkpoints that have none, ``z_threshold``, the key-neuron
    ``methods`` whose results are there, and the ``code`` records. The report's
    captions read these, never the config of the moment. ``records`` may carry
    ``methods_ablation`` ({method: ablation.json})."""
    from lingua_franca.methods import PAPER_METHOD
    from lingua_franca.provenance import code_provenance, recorded_settings

    checkpoints = []
    for record in records:
        entry = {key: record.get(key) for key in ("model", "checkpoint")}
        for kind in ("metrics", "ablation", "xstorycloze"):
            if record.get(kind):
                entry[kind] = recorded_settings(record[kind])
        entry["methods"] = {
            name: recorded_settings(file)
            for name, file in (record.get("methods_ablation") or {}).items()
        }
        checkpoints.append(entry)

    def distinct(values: Iterable[Any]) -> list[Any]:
        seen = {}
        for value in values:
            seen.setdefault(json.dumps(value, sort_keys=True), value)
        return [seen[key] for key in sorted(seen)]

    def intervals(kind: str) -> dict[str, Any] | None:
        found = [c.get(kind, {}).get("ci") for c in checkpoints]
        there = [ci for ci in found if ci]
        if not there:
            return None
        summary = {
            key: distinct(ci.get(key) for ci in there) for key in ("level", "resamples", "seed")
        }
        return {**summary, "without": len(found) - len(there)}

    codes = [code_provenance()]
    for entry in checkpoints:
        results = [entry.get(k, {}) for k in ("metrics", "ablation", "xstorycloze")]
        codes += [r.get("code") for r in results + list(entry["methods"].values()) if r.get("code")]
    recorded = {
        "intervals": intervals("metrics"),
        "window_intervals": intervals("ablation"),
        "z_threshold": distinct(
            c["metrics"]["z_threshold"]
            for c in checkpoints
            if "z_threshold" in c.get("metrics", {})
        ),
        "methods": [PAPER_METHOD, *dict.fromkeys(m for c in checkpoints for m in c["methods"])],
        "code": distinct(codes),
    }
    doc = {"recorded": recorded, "checkpoints": checkpoints}
    Path(path).write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def write_summary(
    records: Sequence[Mapping[str, Any]], paths: Mapping[str, str | Path]
) -> dict[str, Path]:
    """Write the tables as CSV and every figure; return them by file name.  ``paths``:
    file name -> where to write it, for at least every name :func:`summary_names`
    gives for the records' grid."""
    from lingua_franca.plots import evolution as figures  # matplotlib only here

    names = summary_names(grid_of(records))
    absent = [name for name in names if name not in paths]
    if absent:
        raise ValueError(f"no path given for summary files {absent}")
    paths = {name: Path(paths[name]) for name in names}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    tables = collect_tables(records)
    for name in TABLES:
        tables[name].to_csv(paths[f"{name}.csv"], index=False)
    step_changes(records, tables["metrics"]).to_csv(paths[CHANGES], index=False)

    metrics = tables["metrics"]
    for row in metrics.dropna(subset=["duplicate_of"]).itertuples():
        log.warning(
            "%s/%s duplicates %s (%s)",
            row.model,
            row.checkpoint,
            row.duplicate_of,
            figures.DUPLICATE_LABELS.get(row.duplicate_by, row.duplicate_by),
        )

    def figure(name: str, draw, data: pd.DataFrame, **label: str) -> None:
        draw(data, paths[name], **label)

    for family, rows in metrics.groupby("family", sort=False):
        stem = file_stem(family)
        figure(f"evolution_{stem}.png", figures.plot_evolution, rows, family=family)
        figure(f"scale_{stem}.png", figures.plot_scale, last_checkpoints(rows), family=family)
    layers, languages = tables["key_neurons_per_layer"], tables["key_neurons_per_language"]
    for model in metrics["model"].unique():
        stem = file_stem(model)
        figure(
            f"key_layers_{stem}.png",
            figures.plot_key_layers,
            layers[layers["model"] == model],
            model=model,
        )
        figure(
            f"key_languages_{stem}.png",
            figures.plot_key_languages,
            languages[languages["model"] == model],
            model=model,
        )
    return paths
