"""What every figure shares: a bare Agg ``Figure`` (no pyplot state, GUI backend or
display, so figures can be drawn from any process or thread) and how it is saved."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 150


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | os.PathLike) -> None:
    fig.savefig(path, format="png", bbox_inches="tight")


# ------------------------------------------- values and their intervals (docs/method.md §10)


def numbers(series: pd.Series) -> np.ndarray:
    """Floats with NaN for missing (nullable integer columns included)."""
    return pd.to_numeric(series).to_numpy(dtype=float, na_value=np.nan)


def interval_bounds(rows: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(lo, hi) of ``column`` from its ``_lo``/``_hi`` columns (key-neuron counts:
    ``key_neurons_ci_lo``/``_hi``), or None when the table has none or all are missing."""
    name = "key_neurons_ci" if column == "key_neurons" else column
    if f"{name}_lo" not in rows or f"{name}_hi" not in rows:
        return None
    lo, hi = numbers(rows[f"{name}_lo"]), numbers(rows[f"{name}_hi"])
    return (lo, hi) if np.isfinite(lo).any() else None


def shade_interval(ax, x, rows: pd.DataFrame, column: str, colour) -> bool:
    """Shade ``column``'s interval along x; whether there was one to shade."""
    bounds = interval_bounds(rows, column)
    if bounds is not None:
        ax.fill_between(np.asarray(x, dtype=float), *bounds, color=colour, alpha=0.18, lw=0)
    return bounds is not None


def interval_bars(ax, x, rows: pd.DataFrame, column: str, colour) -> bool:
    """A vertical bar from lo to hi at each x (a percentile interval need not hold
    the point, so no error-bar lengths); whether there were any."""
    bounds = interval_bounds(rows, column)
    if bounds is not None:
        ax.vlines(np.asarray(x, dtype=float), *bounds, color=colour, linewidth=1.5, alpha=0.7)
    return bounds is not None
