"""Figures across training checkpoints and model scales (paper Fig. 4–7, 10; docs/method.md §7).

As in :mod:`lingua_franca.plots`: tables in (the tables of
:mod:`lingua_franca.aggregate`, i.e. the columns of the summary CSV tables),
one PNG out, drawn on a bare ``Figure``.  Every function draws a figure for any
input — one checkpoint, one model, missing values, no rows — and says in its
title or text what there is nothing to compare, because the workflow promises
each file before it knows the results and a report links to all of them.

* ``plot_evolution`` — Fig. 4, SKLR/LRDS and SADS/accuracy against training step
* ``plot_scale`` — Fig. 7 and 10, LRDS, SADS, SKLR fraction, accuracy against size
* ``plot_key_layers`` — Fig. 5, key neurons per layer, one line per checkpoint
* ``plot_key_languages`` — Fig. 6, key neurons per language, bars per checkpoint

Where a table has a value's interval (columns ``<value>_lo`` and ``<value>_hi``;
``key_neurons_ci_lo``/``_hi`` for key-neuron counts; docs/method.md §10), the figure
draws it: a band along a line, a bar on a point or a bar chart.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.ticker import MaxNLocator

from lingua_franca.plots.common import (
    interval_bars,
    numbers,
    shade_interval,
)
from lingua_franca.plots.common import new_figure as _figure
from lingua_franca.plots.common import save as _save

MARKERS = "osD^vP*X"


def _note(ax, text: str) -> None:
    ax.text(
        0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="grey", wrap=True
    )


def _footer(fig, notes: list[str]) -> None:
    if notes:
        fig.text(
            0.5, -0.02, "\n".join(notes), ha="center", va="top", fontsize="small", color="dimgrey"
        )


def _checkpoints_in_order(rows: pd.DataFrame) -> list[str]:
    """A model's checkpoints by training step, those without a step last (config order)."""
    ordered = rows.assign(_s=numbers(rows["step"])).sort_values(
        "_s", na_position="last", kind="stable"
    )
    return list(dict.fromkeys(ordered["checkpoint"]))


def _progress_colours(n: int) -> list:
    """Dark (early) to light (late): training progress reads as a colour ramp."""
    cmap = colormaps["viridis"]
    return [cmap(x) for x in (np.linspace(0.0, 0.85, n) if n > 1 else [0.35])]


def _names(rows: pd.DataFrame) -> str:
    return ", ".join(f"{m}/{c}" for m, c in rows[["model", "checkpoint"]].itertuples(index=False))


INTERVAL_NOTE = "shaded / bars: bootstrap intervals over probe items (metrics.json ci)"


def _legend(ax, twin, **kwargs) -> None:
    handles, labels = ax.get_legend_handles_labels()
    more_handles, more_labels = twin.get_legend_handles_labels()
    if handles or more_handles:
        ax.legend(handles + more_handles, labels + more_labels, fontsize="small", **kwargs)


#: what each value of the metrics table's ``duplicate_by`` says (docs/method.md §7)
DUPLICATE_LABELS = {
    "weights": "same weight files",
    "activations": "same activations (other weight files)",
    "weights+activations": "same weight files and activations",
}


def duplicate_notes(metrics: pd.DataFrame) -> list[str]:
    """One line per checkpoint that duplicates an earlier one, with what found it."""
    if "duplicate_of" not in metrics:
        return []
    rows = metrics.dropna(subset=["duplicate_of"])
    by = rows["duplicate_by"] if "duplicate_by" in rows else pd.Series("weights", index=rows.index)
    return [
        f"{DUPLICATE_LABELS.get(signal, signal)}: {m}/{c} = {d}"
        for m, c, d, signal in zip(
            rows["model"], rows["checkpoint"], rows["duplicate_of"], by, strict=True
        )
    ]


# --------------------------------------------------------------------- Figure 4


def plot_evolution(metrics: pd.DataFrame, path: str | os.PathLike, family: str = "") -> None:
    """Fig. 4 for one family: left, SKLR (key neurons summed over languages) and
    LRDS; right, SADS and cross-lingual XStoryCloze accuracy (the mean over the
    non-English story languages); x = training step.

    ``metrics``: the family's rows of the metrics table.  One line per model (marker
    = model); checkpoints with no training step cannot be placed and are listed
    instead, as are checkpoints that duplicate an earlier one (same weight files, or
    identical activations: ``duplicate_notes``).  The paper
    reads SKLR and LRDS falling, SADS and accuracy rising as training goes on.
    """
    stepped = metrics.assign(_x=numbers(metrics["step"])).dropna(subset=["_x"]).sort_values("_x")
    several = stepped.groupby("model").size().ge(2).any()
    many_models = metrics["model"].nunique() > 1
    fig = _figure(12, 4.2)
    left, right = fig.subplots(1, 2)
    left2, right2 = left.twinx(), right.twinx()
    panels = (
        (left, "sklr", "C0", "-", "SKLR (key neurons)"),
        (left2, "lrds", "C1", "--", "LRDS"),
        (right, "sads", "C2", "-", "SADS"),
        (right2, "cross_acc_mean", "C3", "--", "cross-lingual accuracy (non-English mean)"),
    )
    shaded = False
    for i, (model, rows) in enumerate(stepped.groupby("model", sort=False)):
        suffix = f" — {model}" if many_models else ""
        for ax, column, colour, style, label in panels:
            # a band needs two points: a model's lone checkpoint gets a bar
            draw = shade_interval if len(rows) > 1 else interval_bars
            shaded |= draw(ax, rows["_x"], rows, column, colour)
            ax.plot(
                rows["_x"],
                numbers(rows[column]),
                color=colour,
                linestyle=style,
                marker=MARKERS[i % len(MARKERS)],
                markersize=4,
                label=label + suffix,
            )
    for ax, column, colour, style, label in panels:
        ax.set_ylabel(label, color=colour)
        ax.tick_params(axis="y", colors=colour)
    for ax, twin, title in (
        (left, left2, "linguistic regions"),
        (right, right2, "semantic alignment"),
    ):
        ax.set_xlabel("training step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        _legend(ax, twin, loc="best")
        if stepped.empty:
            _note(ax, "no checkpoint has a training step")
    status = (
        "evolution over training" if several else "one checkpoint per model: no evolution to show"
    )
    fig.suptitle(f"{family}: {status}" if family else status)
    unplaced = metrics[metrics["step"].isna()]
    notes = [INTERVAL_NOTE] if shaded else []
    notes += [f"no training step, not shown: {_names(unplaced)}"] if len(unplaced) else []
    notes += duplicate_notes(metrics)
    _footer(fig, notes)
    fig.tight_layout()
    _save(fig, path)


# ---------------------------------------------------------------- Figures 7, 10

SCALE_PANELS = (
    ("lrds", "LRDS (lower: more language-agnostic)"),
    ("sads", "SADS (higher: more semantic alignment)"),
    ("sklr_fraction", "SKLR / K (key-neuron fraction)"),
    ("cross_acc_mean", "XStoryCloze accuracy (non-English mean)"),
)


def plot_scale(last: pd.DataFrame, path: str | os.PathLike, family: str = "") -> None:
    """Fig. 7 / 10 for one family: each score against parameter count (log x).

    ``last``: one row per model, its last checkpoint (``aggregate.last_checkpoints``).
    SKLR is shown as a fraction of K because the sizes have different K.  The
    accuracy panel (means over the non-English story languages) shows the
    monolingual task too (dashed), as a reference.
    """
    rows = last.assign(_x=numbers(last["parameters"])).dropna(subset=["_x"]).sort_values("_x")
    fig = _figure(15, 3.8)
    axes = fig.subplots(1, len(SCALE_PANELS), sharex=True)  # a null score leaves no gap in x
    barred = False
    for ax, (column, label) in zip(axes, SCALE_PANELS):
        y = numbers(rows[column])
        barred |= interval_bars(ax, rows["_x"], rows, column, "C0")
        ax.plot(rows["_x"], y, marker="o", label="cross-lingual")
        if column == "cross_acc_mean":
            ax.plot(
                rows["_x"],
                numbers(rows["mono_acc_mean"]),
                marker="s",
                linestyle="--",
                color="grey",
                label="monolingual",
            )
            ax.legend(fontsize="small")
        for x, value, model in zip(rows["_x"], y, rows["model"]):
            if np.isfinite(value):
                ax.annotate(
                    str(model),
                    (x, value),
                    xytext=(3, 3),
                    textcoords="offset points",
                    fontsize="x-small",
                )
        if len(rows):
            ax.set_xscale("log")
        if not np.isfinite(y).any():
            _note(ax, "no values" if len(rows) else "no parameter counts")
        ax.set_xlabel("parameters")
        ax.set_title(label, fontsize="medium")
        ax.grid(alpha=0.3)
    n = last["model"].nunique()
    status = (
        "across model scales (last checkpoint of each model)"
        if n > 1
        else "one model only: no scale trend to show"
    )
    fig.suptitle(f"{family}: {status}" if family else status)
    notes = [f"points: {_names(rows)}"] if len(rows) else []
    notes += [INTERVAL_NOTE] if barred else []
    missing = last[last["parameters"].isna()]
    notes += [f"no parameter count, not shown: {_names(missing)}"] if len(missing) else []
    _footer(fig, notes)
    fig.tight_layout()
    _save(fig, path)


# --------------------------------------------------------------------- Figure 5


def plot_key_layers(per_layer: pd.DataFrame, path: str | os.PathLike, model: str = "") -> None:
    """Fig. 5 for one model: key neurons (summed over languages) in each layer, one
    line per checkpoint, early dark to late light.  The paper sees key regions
    concentrate in the first layers as training goes on."""
    checkpoints = _checkpoints_in_order(per_layer)
    fig = _figure(7, 4)
    ax = fig.add_subplot()
    shaded = False
    for colour, checkpoint in zip(_progress_colours(len(checkpoints)), checkpoints):
        rows = per_layer[per_layer["checkpoint"] == checkpoint].sort_values("layer")
        shaded |= shade_interval(ax, numbers(rows["layer"]), rows, "key_neurons", colour)
        ax.plot(
            numbers(rows["layer"]),
            numbers(rows["key_neurons"]),
            marker="o",
            markersize=3,
            color=colour,
            label=str(checkpoint),
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer")
    ax.set_ylabel("key neurons (all languages)")
    ax.grid(alpha=0.3)
    if checkpoints:
        ax.legend(title="checkpoint", fontsize="small", bbox_to_anchor=(1.01, 1), loc="upper left")
    if not np.nansum(numbers(per_layer["key_neurons"])):
        ax.set_ylim(0, 1)
        _note(ax, "no key neurons" if checkpoints else "no data")
    status = "key neurons per layer" + ("" if len(checkpoints) > 1 else " (one checkpoint only)")
    ax.set_title(f"{model}: {status}" if model else status)
    if shaded:
        ax.set_xlabel(f"layer\n{INTERVAL_NOTE}")
    _save(fig, path)


# --------------------------------------------------------------------- Figure 6


def plot_key_languages(
    per_language: pd.DataFrame, path: str | os.PathLike, model: str = ""
) -> None:
    """Fig. 6 for one model: each language's key-region size, one bar per
    checkpoint within each language's group (same colours as Fig. 5)."""
    checkpoints = _checkpoints_in_order(per_language)
    languages = list(dict.fromkeys(per_language["language"]))
    x = np.arange(len(languages))
    width = 0.8 / max(len(checkpoints), 1)
    fig = _figure(max(6.0, 0.25 * len(languages) * max(len(checkpoints), 2) + 3), 4)
    ax = fig.add_subplot()
    barred = False
    for i, (colour, checkpoint) in enumerate(zip(_progress_colours(len(checkpoints)), checkpoints)):
        rows = per_language[per_language["checkpoint"] == checkpoint].set_index("language")
        rows = rows.reindex(languages)
        centres = x - 0.4 + width * (i + 0.5)
        ax.bar(centres, numbers(rows["key_neurons"]), width, color=colour, label=str(checkpoint))
        barred |= interval_bars(ax, centres, rows, "key_neurons", "black")
    ax.set_xticks(x, languages)
    ax.set_xlabel(f"language\n{INTERVAL_NOTE}" if barred else "language")
    ax.set_ylabel("key neurons")
    if checkpoints:
        ax.legend(title="checkpoint", fontsize="small", bbox_to_anchor=(1.01, 1), loc="upper left")
    if not np.nansum(numbers(per_language["key_neurons"])):
        ax.set_ylim(0, 1)
        _note(ax, "no key neurons" if checkpoints else "no data")
    status = "key neurons per language" + ("" if len(checkpoints) > 1 else " (one checkpoint only)")
    ax.set_title(f"{model}: {status}" if model else status)
    _save(fig, path)
