"""Table 1 as a figure: perplexity increase after deactivating each key region.

Tables in, one PNG out (``plots.common``).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import SymLogNorm
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter

from lingua_franca.plots.common import new_figure, save


def _percent(v: float) -> str:
    return f"{v:.0f}%" if abs(v) >= 10 else f"{v:.1f}%"


def plot_ppl_increase(
    increase: pd.DataFrame,
    conditions: pd.DataFrame,
    path: str | os.PathLike,
    random_sd: pd.Series | None = None,
    title: str = "Perplexity increase after deactivation",
    contains_zero: pd.DataFrame | None = None,
    ci_level: float | None = None,
) -> None:
    """Rows: evaluated language; columns: condition (``random``, then one per language).

    Cells show (PPL_condition / PPL_full − 1) × 100.  Increases span four orders of
    magnitude in the paper (1 % … 27 000 %), so colours follow a symmetric log scale
    (a fall in perplexity shows blue).  The diagonal — a language under its own
    deactivation — is outlined.  Under each column: neuron count and fraction of K
    (``conditions`` columns ``neurons`` and ``fraction``).  A column without numbers
    (an empty key region) is grey and labelled "no key neurons"; an overflow to inf
    is a grey cell marked "inf (overflow)".  ``random_sd``
    (per row, in percent points) is printed as ± in the random column.
    ``contains_zero`` (same shape as ``increase``, booleans) hatches the cells whose
    ``ci_level`` interval contains 0: an increase not told apart from none.
    """
    values = increase.to_numpy(dtype=float)
    rows, cols = [str(r) for r in increase.index], [str(c) for c in increase.columns]
    finite = values[np.isfinite(values)]
    largest = float(np.abs(finite).max()) if finite.size else 0.0
    exponent = max(
        2, math.ceil(math.log10(max(largest, 1.0)))
    )  # scale ends at a power of ten ≥ 100 %
    vmax = 10.0**exponent
    cmap = colormaps["RdBu_r"].with_extremes(bad="lightgrey")
    fig = new_figure(max(5.0, 0.9 * len(cols) + 2.5), max(3.0, 0.5 * len(rows) + 2.2))
    ax = fig.add_subplot()
    norm = SymLogNorm(linthresh=10, vmin=-vmax, vmax=vmax, base=10)
    image = ax.imshow(
        np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto", interpolation="nearest"
    )
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            v = values[i, j]
            if np.isfinite(v):
                text = _percent(v)
                if col == "random" and random_sd is not None and np.isfinite(random_sd.iloc[i]):
                    text += f"\n±{_percent(float(random_sd.iloc[i]))}"
                light = abs(image.norm(v) - 0.5) > 0.35
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize="x-small",
                    color="white" if light else "black",
                )
            elif np.isinf(v):  # an overflow: kept, shown, never coloured as a number
                ax.text(j, i, "inf\n(overflow)", ha="center", va="center", fontsize="x-small")
            if contains_zero is not None and bool(contains_zero.iat[i, j]):
                ax.add_patch(
                    Rectangle(
                        (j - 0.5, i - 0.5),
                        1,
                        1,
                        fill=False,
                        hatch="///",
                        edgecolor="grey",
                        linewidth=0,
                    )
                )
            if row == col:
                ax.add_patch(
                    Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2)
                )
    for j, col in enumerate(cols):
        if np.isnan(values[:, j]).all():
            ax.text(
                j,
                (len(rows) - 1) / 2,
                "no key neurons",
                rotation=90,
                ha="center",
                va="center",
                fontsize="small",
                color="dimgrey",
            )
    labels = []
    for col in cols:
        n, frac = int(conditions.at[col, "neurons"]), float(conditions.at[col, "fraction"])
        labels.append(f"{n:,}\n{100 * frac:.1f}%")
    ax.set_xticks(range(len(cols)), labels, fontsize="x-small")
    top = ax.secondary_xaxis("top")
    top.set_xticks(range(len(cols)), [c if c == "random" else f"×{c}" for c in cols])
    ax.set_yticks(range(len(rows)), rows)
    xlabel = "neurons deactivated (count, fraction of K)"
    if contains_zero is not None and ci_level is not None:
        xlabel += (
            f"\nhatched: the {ci_level:.0%} interval (paired bootstrap over windows) contains 0"
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("evaluated language")
    ax.set_title(title)
    ticks = [10.0**e for e in range(1, exponent + 1)]
    bar = fig.colorbar(image, ax=ax, label="perplexity increase (%)", shrink=0.85)
    bar.set_ticks([-t for t in ticks[::-1]] + [0] + ticks)
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}%"))
    save(fig, path)
