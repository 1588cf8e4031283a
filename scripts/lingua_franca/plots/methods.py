"""Figures that compare key-neuron methods (docs/method.md §9): tables in, one PNG out.

* ``plot_overlap`` — one checkpoint: each language's region under two methods, their
  intersection and Jaccard index, per language and per layer (``overlap.csv``)
* ``plot_methods_evolution`` — one family across training steps: the Jaccard index
  with the paper's regions, and each method's own-vs-others perplexity increase
* ``plot_methods_scale`` — the same against parameter count (last checkpoints)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lingua_franca.plots.common import interval_bars, new_figure, numbers, save, shade_interval

MARKERS = "osD^vP*X"


def _bars(ax, rows: pd.DataFrame, labels: list[str], a: str, b: str) -> None:
    """Grouped bars: region under a, under b, their intersection (the chance level
    as a tick), the Jaccard index written above each group."""
    x = np.arange(len(rows))
    width = 0.27
    ax.bar(x - width, numbers(rows["size_a"]), width, label=a, color="C0")
    ax.bar(x, numbers(rows["size_b"]), width, label=b, color="C1")
    ax.bar(x + width, numbers(rows["intersection"]), width, label="both", color="C2")
    ax.scatter(
        x + width,
        numbers(rows["expected_intersection"]),
        marker="_",
        s=120,
        color="black",
        zorder=3,
        label="both, by chance",
    )
    top = np.nanmax(numbers(rows[["size_a", "size_b"]].max(axis=1))) if len(rows) else 0
    for xi, j in zip(x, numbers(rows["jaccard"])):
        ax.text(xi, top * 1.04 + 0.5, f"J={j:.2f}", ha="center", va="bottom", fontsize="x-small")
    ax.set_ylim(0, top * 1.18 + 1.5)
    ax.set_xticks(x, labels)
    ax.set_ylabel("neurons")
    ax.grid(alpha=0.3, axis="y")


def plot_overlap(overlap: pd.DataFrame, path: str | os.PathLike, title: str = "") -> None:
    """``overlap.csv`` of one checkpoint: for each pair of methods, left the region of
    every language (all layers), right every language's regions together (``any``)
    in each layer and in all: sizes under each method, the intersection, the
    intersection two random sets of those sizes would have (tick) and the Jaccard index."""
    pairs = list(dict.fromkeys(zip(overlap["method_a"], overlap["method_b"])))
    fig = new_figure(13, 3.8 * max(len(pairs), 1))
    axes = fig.subplots(max(len(pairs), 1), 2, squeeze=False)
    for (left, right), (a, b) in zip(axes, pairs):
        rows = overlap[(overlap["method_a"] == a) & (overlap["method_b"] == b)]
        # every language together is the right panel's "all" bar
        languages = rows[(rows["layer"].astype(str) == "all") & (rows["language"] != "any")]
        _bars(left, languages, [str(x) for x in languages["language"]], a, b)
        left.set_title(f"{a} vs {b}: each language's region, all layers", fontsize="medium")
        left.set_xlabel("language")
        layers = rows[rows["language"] == "any"]
        _bars(right, layers, [str(x) for x in layers["layer"]], a, b)
        right.set_title(f"{a} vs {b}: all languages' regions together", fontsize="medium")
        right.set_xlabel("layer")
    if not pairs:
        axes[0][0].text(
            0.5,
            0.5,
            "one method only: nothing to compare",
            ha="center",
            transform=axes[0][0].transAxes,
        )
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:  # one legend for every panel, under them
        fig.legend(handles, labels, loc="lower center", ncol=len(handles), fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07 / max(len(pairs), 1), 1, 1))
    save(fig, path)


def _compare(
    rows: pd.DataFrame,
    x: str,
    path: str | os.PathLike,
    methods: Sequence[str],
    title: str,
    log_x: bool,
) -> None:
    """Left: Jaccard index of each further method's regions with the first method's
    (solid: all languages' regions together; dashed: mean over languages); right: each
    method's mean perplexity increase under a language's own deactivation (solid) and
    under the others' (dashed), shaded over its bootstrap interval where there is one.
    One marker per model."""
    first = methods[0]
    rows = rows.assign(_x=numbers(rows[x])).dropna(subset=["_x"]).sort_values("_x")
    fig = new_figure(12, 4.2)
    left, right = fig.subplots(1, 2)
    for i, (model, part) in enumerate(rows.groupby("model", sort=False)):
        marker = MARKERS[i % len(MARKERS)]
        for j, method in enumerate(methods):
            mine = part[part["method"] == method]
            colour = f"C{j}"
            lines = [(right, "ppl_diagonal_increase", "-", "own")]
            lines.append((right, "ppl_off_diagonal_increase", "--", "others'"))
            if method != first:
                lines.append((left, f"jaccard_{first}", "-", "all languages"))
                lines.append((left, f"mean_jaccard_{first}", "--", "mean over languages"))
            # the own deactivation's interval (docs/method.md §10), when there is one
            draw = shade_interval if len(mine) > 1 else interval_bars
            draw(right, mine["_x"], mine, "ppl_diagonal_increase", colour)
            for ax, column, style, what in lines:
                ax.plot(
                    mine["_x"],
                    numbers(mine[column]),
                    color=colour,
                    linestyle=style,
                    marker=marker,
                    markersize=4,
                    label=f"{method}, {what} — {model}",
                )
    left.set_title(f"overlap with the {first} regions (Jaccard)", fontsize="medium")
    left.set_ylabel("Jaccard index")
    right.set_title("perplexity increase under deactivation", fontsize="medium")
    right.set_ylabel("mean increase (%)")
    for ax in (left, right):
        ax.set_xlabel("training step" if x == "step" else "parameters")
        if log_x and len(rows):
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="xx-small", loc="best")
        if rows.empty:
            what = "training step" if x == "step" else "parameter count"
            ax.text(
                0.5,
                0.5,
                f"no checkpoint has a {what}",
                ha="center",
                color="grey",
                transform=ax.transAxes,
            )
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)


def plot_methods_evolution(
    rows: pd.DataFrame, path: str | os.PathLike, methods: Sequence[str], family: str = ""
) -> None:
    """One family's rows of ``methods.csv`` against training step."""
    several = rows.drop_duplicates(["model", "checkpoint"]).groupby("model").size().ge(2).any()
    status = "methods over training" if several else "one checkpoint per model: no evolution"
    _compare(rows, "step", path, methods, f"{family}: {status}" if family else status, False)


def plot_methods_scale(
    rows: pd.DataFrame, path: str | os.PathLike, methods: Sequence[str], family: str = ""
) -> None:
    """One family's rows of ``methods.csv`` at each model's last checkpoint against
    parameter count."""
    several = rows["model"].nunique() > 1
    status = "methods across scales" if several else "one model only: no scale trend"
    _compare(rows, "parameters", path, methods, f"{family}: {status}" if family else status, True)
