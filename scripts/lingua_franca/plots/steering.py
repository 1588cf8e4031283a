"""Steering (docs/method.md §12): the target language's share of the continuations
under each condition, and against the region's size.  steering.csv in, one PNG out."""

from __future__ import annotations

import os

import pandas as pd

from lingua_franca.plots.common import new_figure, numbers, save

COLOURS = {
    "unforced": "black",
    "forced": "tab:red",
    "add": "tab:orange",
    "random": "tab:grey",
}
SOURCES = ("unconditional", "prompted")


def _empty(path, title: str, message: str) -> None:
    fig = new_figure(5, 2)
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center")
    ax.set_title(title, fontsize="small")
    save(fig, path)


def plot_steering(cells: pd.DataFrame, path: str | os.PathLike, title: str = "") -> None:
    """One panel per prompt source (rows) and key-neuron method (columns): for every
    target language, its share of the continuations under the unforced model, with
    the method's region forced to the target's median, with α × its mean added, and
    with the count-matched random control forced (95% Wilson intervals)."""
    if cells.empty:
        _empty(path, title, "no steering (analysis.steering is off for this model)")
        return
    full = cells[cells["fraction"] == 1.0]
    methods = [m for m in dict.fromkeys(full["method"]) if m != "none"]
    targets = list(dict.fromkeys(full["target"]))
    conditions = ["unforced", "forced", "add", "random"]
    fig = new_figure(max(6.0, 0.45 * len(targets) * len(methods) * 2 + 2), 6.5)
    axes = fig.subplots(len(SOURCES), len(methods), squeeze=False, sharey=True)
    width = 0.8 / len(conditions)
    for r, source in enumerate(SOURCES):
        for c, method in enumerate(methods):
            ax = axes[r][c]
            for j, target in enumerate(targets):
                mine = full[(full["target"] == target) & (full["source"] == source)]
                for k, condition in enumerate(conditions):
                    row = mine[mine["condition"] == condition]
                    if condition != "unforced":
                        row = row[row["method"] == method]
                    if row.empty:
                        continue
                    x = j + (k - (len(conditions) - 1) / 2) * width
                    value = float(numbers(row["target_share"]).item())
                    lo = float(numbers(row["target_share_lo"]).item())
                    hi = float(numbers(row["target_share_hi"]).item())
                    ax.bar(
                        x,
                        value,
                        width * 0.9,
                        color=COLOURS[condition],
                        label=condition if j == 0 else None,
                    )
                    ax.vlines(x, lo, hi, color="black", linewidth=0.8)
            ax.set_xticks(range(len(targets)), targets)
            ax.set_ylim(0, 1.05)
            ax.set_title(f"{method} regions, {source}", fontsize="small")
            if c == 0:
                ax.set_ylabel("share in the target language")
    axes[0][-1].legend(fontsize="x-small", loc="upper right")
    n = int(cells["n"].max())
    fig.suptitle(
        f"{title}\nsteering: {n} sampled continuations per bar (95% Wilson intervals); "
        "forced = region set to the target's median, add = + α × its mean, random = "
        "count-matched random neurons set to the target's median",
        fontsize="small",
    )
    save(fig, path)


def plot_sizes(cells: pd.DataFrame, path: str | os.PathLike, title: str = "") -> None:
    """For each method whose region was cut down (the sweep), the target share against
    the region's size (neurons, mean over targets): forced, and the random control of
    the same size beside it, per prompt source; the mean over targets with the range
    of the targets' shares as a band."""
    if cells.empty:
        _empty(path, title, "no steering (analysis.steering is off for this model)")
        return
    swept = [
        m
        for m in dict.fromkeys(cells["method"])
        if m != "none" and cells.loc[cells["method"] == m, "fraction"].nunique() > 1
    ]
    if not swept:
        _empty(path, title, "no region-size sweep: no configured method can cut its regions down")
        return
    fig = new_figure(4.2 * len(swept) + 1, 3.6)
    axes = fig.subplots(1, len(swept), squeeze=False)[0]
    for ax, method in zip(axes, swept):
        mine = cells[(cells["method"] == method) & cells["condition"].isin(["forced", "random"])]
        for source, style in zip(SOURCES, ("-", "--")):
            for condition in ("forced", "random"):
                part = mine[(mine["source"] == source) & (mine["condition"] == condition)]
                if part.empty:
                    continue
                grouped = part.groupby("fraction").agg(
                    neurons=("neurons", "mean"),
                    share=("target_share", "mean"),
                    low=("target_share", "min"),
                    high=("target_share", "max"),
                )
                grouped = grouped.sort_values("neurons")
                ax.plot(
                    grouped["neurons"],
                    grouped["share"],
                    style,
                    marker="o",
                    ms=3,
                    color=COLOURS[condition],
                    label=f"{condition}, {source}",
                )
                ax.fill_between(
                    grouped["neurons"],
                    grouped["low"],
                    grouped["high"],
                    color=COLOURS[condition],
                    alpha=0.1,
                    lw=0,
                )
        ax.set_xlabel("neurons forced (mean over targets)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{method} regions", fontsize="medium")
    axes[0].set_ylabel("share in the target language (mean over targets)")
    axes[-1].legend(fontsize="x-small", loc="best")
    fig.subplots_adjust(top=0.8)  # room for the two-line title above the panels' own
    fig.suptitle(
        f"{title}\nsteering against the region's size; band: the targets' range", fontsize="small"
    )
    save(fig, path)
