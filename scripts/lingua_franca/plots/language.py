"""The language of sampled generations (docs/method.md §11): per checkpoint, retention
under every condition and where a language's own deactivation sends its prompts;
across checkpoints and scales, retention under own deactivation against the full
model, the other languages' deactivations and the random baseline.

Tables in (language_of_generations.csv, results/summary/language_of_generations.csv),
one PNG out.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.patches import Rectangle

from lingua_franca.plots.common import new_figure, numbers, save

UNKNOWN, OTHER = "unknown", "other"


def _empty(path, title: str, message: str) -> None:
    fig = new_figure(5, 2)
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center")
    ax.set_title(title)
    save(fig, path)


def plot_retention(cells: pd.DataFrame, path: str | os.PathLike, title: str = "") -> None:
    """One heatmap per key-neuron method: rows are the conditions (the full model, the
    random baseline, each language's deactivation), columns the prompt languages,
    cells the share of continuations in the prompt's language (n and the 95% Wilson
    interval under it); a language's own deactivation is outlined."""
    if cells.empty:
        _empty(path, title, "no sampled generations (analysis.generation.samples: 0)")
        return
    full = cells[cells["kind"] == "full"]
    methods = [m for m in dict.fromkeys(cells["method"]) if m not in set(full["method"])]
    languages = list(dict.fromkeys(cells["language"]))
    n_rows = 1 + max(
        len(cells[cells["method"] == m]["condition"].unique()) for m in methods or [""]
    )
    fig = new_figure(
        max(6.0, 0.75 * len(languages) * max(1, len(methods)) + 2), 0.45 * n_rows + 2.4
    )
    cmap = colormaps["viridis"].with_extremes(bad="lightgrey")
    axes = fig.subplots(1, max(1, len(methods)), squeeze=False)[0]
    for ax, method in zip(axes, methods or [None]):
        mine = pd.concat([full, cells[cells["method"] == method]]) if method else full
        conditions = list(dict.fromkeys(mine["condition"]))
        grid = mine.pivot_table(
            index="condition", columns="language", values="retention", aggfunc="first", sort=False
        ).reindex(index=conditions, columns=languages)
        lo = mine.pivot_table(
            index="condition",
            columns="language",
            values="retention_lo",
            aggfunc="first",
            sort=False,
        ).reindex(index=conditions, columns=languages)
        hi = mine.pivot_table(
            index="condition",
            columns="language",
            values="retention_hi",
            aggfunc="first",
            sort=False,
        ).reindex(index=conditions, columns=languages)
        values = grid.to_numpy(dtype=float)
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0, vmax=1, aspect="auto")
        for i, condition in enumerate(conditions):
            for j, lang in enumerate(languages):
                v = values[i, j]
                if np.isfinite(v):
                    ax.text(
                        j,
                        i,
                        f"{100 * v:.0f}\n[{100 * lo.iat[i, j]:.0f}, {100 * hi.iat[i, j]:.0f}]",
                        ha="center",
                        va="center",
                        fontsize=5.5,
                        color="black" if v > 0.6 else "white",
                    )
                if condition == lang:
                    ax.add_patch(
                        Rectangle(
                            (j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2
                        )
                    )
        names = {"full": "full model", "random": "random"}
        ax.set_yticks(range(len(conditions)), [names.get(c, f"×{c}") for c in conditions])
        ax.set_xticks(range(len(languages)), languages)
        ax.set_xlabel("prompt language")
        ax.set_title(f"{method} regions" if method else "full model", fontsize="medium")
    axes[0].set_ylabel("condition (×: that language's region deactivated)")
    n = int(cells["n"].max())
    fig.suptitle(
        f"{title}\nretention: % of {n} sampled continuations per cell in the prompt's language "
        "[95% Wilson interval]; red: own deactivation",
        fontsize="small",
    )
    fig.colorbar(image, ax=list(axes), label="retention", shrink=0.8)
    save(fig, path)


def _colours(languages: Sequence[str]) -> dict[str, tuple]:
    """A colour per study language (tab10 without its grey, then tab20b), greys for
    ``other`` and ``unknown``."""
    palette = [c for i, c in enumerate(colormaps["tab10"].colors) if i != 7]
    palette += list(colormaps["tab20b"].colors)
    out = {lang: palette[i % len(palette)] for i, lang in enumerate(languages)}
    out[OTHER], out[UNKNOWN] = (0.35, 0.35, 0.35, 1.0), (0.8, 0.8, 0.8, 1.0)
    return out


def plot_destinations(
    cells: pd.DataFrame, languages: Sequence[str], path: str | os.PathLike, title: str = ""
) -> None:
    """Where a language's own deactivation sends its prompts: for each prompt language,
    a bar of the full model's continuations and one per method under that language's
    own deactivation, stacked by identified language (each study language, ``other``
    for a language outside the study, ``unknown``)."""
    if cells.empty:
        _empty(path, title, "no sampled generations (analysis.generation.samples: 0)")
        return
    languages = list(languages)
    full = cells[cells["kind"] == "full"].set_index("language")
    own = cells[(cells["kind"] == "language") & cells["own"]]
    methods = list(dict.fromkeys(own["method"]))
    labels = [*languages, OTHER, UNKNOWN]
    colours = _colours(languages)
    bars = 1 + len(methods)
    prompt_languages = [lang for lang in languages if lang in full.index]
    fig = new_figure(max(6.0, 0.55 * bars * len(prompt_languages) + 2), 4.2)
    ax = fig.add_subplot()
    width = 0.8 / bars
    ticks, tick_labels = [], []
    for j, lang in enumerate(prompt_languages):
        rows = [("full", full.loc[[lang]])] + [
            (m, own[(own["method"] == m) & (own["language"] == lang)]) for m in methods
        ]
        for b, (name, row) in enumerate(rows):
            x = j + (b - (bars - 1) / 2) * width
            ticks.append(x)
            tick_labels.append("full" if name == "full" else f"×{lang} {name}")
            if row.empty:
                ax.text(x, 0.02, "no region", rotation=90, fontsize=5, ha="center", va="bottom")
                continue
            bottom = 0.0
            for label in labels:
                share = float(numbers(row[f"share_{label}"]).item())
                if share > 0:
                    ax.bar(x, share, width * 0.92, bottom=bottom, color=colours[label])
                    if share >= 0.12:
                        ax.text(x, bottom + share / 2, label, ha="center", va="center", fontsize=5)
                bottom += share
    ax.set_xticks(ticks, tick_labels, rotation=90, fontsize=5.5)
    for j, lang in enumerate(prompt_languages):
        ax.text(j, 1.02, lang, ha="center", va="bottom", fontsize="small", weight="bold")
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("share of continuations")
    handles = [Rectangle((0, 0), 1, 1, color=colours[label]) for label in labels]
    ax.legend(
        handles, labels, fontsize="x-small", ncol=1, bbox_to_anchor=(1.01, 1), loc="upper left"
    )
    n = int(cells["n"].max())
    ax.set_title(
        f"{title}\nthe language of {n} sampled continuations per prompt language: full model, "
        "and under the prompt language's own deactivation (×)",
        fontsize="small",
    )
    save(fig, path)


RETENTION_SERIES = (
    ("full", "full model", "black"),
    ("own", "own deactivation", "tab:red"),
    ("others", "other languages' deactivation", "tab:blue"),
    ("random", "random baseline", "tab:grey"),
)


def plot_language_evolution(
    rows: pd.DataFrame,
    path: str | os.PathLike,
    family: str = "",
    x: str = "step",
    series: Sequence[tuple[str, str, str]] = RETENTION_SERIES,
    column: str = "retention",
    ylabel: str = "retention (share in the prompt's language)",
    what: str = "the language of sampled continuations",
    panel: str = "{} regions",
) -> None:
    """Across checkpoints (``x`` = step) or scales (``x`` = parameters) of a family: one
    panel per key-neuron method (``method``), one line style per model, and one line
    per ``series`` (key, name, colour): ``<column>_<key>`` with its interval
    (``_lo``, ``_hi``). By default retention under the full model, own deactivation,
    the other languages' deactivations and the random baseline. ``panel``: each panel's
    title, from its method."""
    if rows.empty:
        _empty(path, family, f"no data: {what}")
        return
    methods = list(dict.fromkeys(rows["method"]))
    fig = new_figure(4.2 * len(methods) + 1, 3.6)
    axes = fig.subplots(1, len(methods), squeeze=False)[0]
    from matplotlib.lines import Line2D

    styles = ["-", "--", ":", "-."]
    models = list(dict.fromkeys(rows["model"]))
    for ax, method in zip(axes, methods):
        mine = rows[rows["method"] == method]
        for m, (model, part) in enumerate(mine.groupby("model", sort=False)):
            xs = numbers(part[x])
            if not np.isfinite(xs).any():
                xs = np.arange(len(part), dtype=float)
            order = np.argsort(xs, kind="stable")
            for key, name, colour in series:
                if f"{column}_{key}" not in part:
                    continue
                ys = numbers(part[f"{column}_{key}"])[order]
                lo = numbers(part[f"{column}_{key}_lo"])[order]
                hi = numbers(part[f"{column}_{key}_hi"])[order]
                ax.plot(
                    xs[order],
                    ys,
                    marker="o",
                    linestyle=styles[models.index(model) % len(styles)] if len(order) > 1 else "",
                    color=colour,
                    ms=3,
                    label=name if m == 0 else None,
                )
                ax.vlines(xs[order], lo, hi, color=colour, alpha=0.5)
        if x == "parameters" and (numbers(mine[x]) > 0).any():
            ax.set_xscale("log")
        ax.set_xlabel("training step" if x == "step" else "parameters")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(panel.format(method), fontsize="medium")
    axes[0].set_ylabel(ylabel)
    legend = axes[-1].legend(fontsize="x-small", loc="lower left")
    if len(models) > 1:  # which line is which model
        axes[-1].add_artist(legend)
        handles = [
            Line2D([], [], color="black", linestyle=styles[i % len(styles)])
            for i in range(len(models))
        ]
        axes[-1].legend(handles, models, fontsize="x-small", loc="lower right", title="model")
    fig.suptitle(f"{family}: {what} (95% Wilson intervals)", fontsize="small")
    save(fig, path)
