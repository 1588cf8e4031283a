"""Average precision, a third way to find language-specific neurons (docs/method.md §9.2;
Kojima et al., NAACL 2024).

For language L and neuron k, the probe's samples are ranked by k's pooled activation
(the store's per-sample means, §2) and the average precision of retrieving L's
samples among all is taken, ties as ``sklearn.metrics.average_precision_score``
handles them.  L's region: the ``top`` neurons of highest AP and, optionally, the
``bottom`` neurons of highest AP for the reversed ranking (low activation marks L).

* ``average_precisions`` is the AP of every column of a (samples × neurons) block for
  every language, both rankings, from one sort per column;
* ``compute_ap`` streams a store through it: every AP of every neuron, (L, K) twice;
* ``ap_regions`` selects the regions from those arrays (``region_size`` turns a count
  or a fraction of K into a count);
* ``key_neurons`` is both, as the registry of key-neuron methods calls it
  (:mod:`lingua_franca.methods`); ``smaller_regions`` cuts its table down to smaller
  N without recomputing (a sweep of region sizes).

Memory: the two (L, K) float64 arrays of AP (9 languages × BLOOM-7b1's 491,520
neurons: 71 MB together) plus the temporaries of one block of samples × block width;
nothing grows with samples × K.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lingua_franca.methods import KeyNeurons
from lingua_franca.store import ActivationStore, StoreError

__all__ = [
    "DEFAULTS",
    "KEY_COLUMNS",
    "ApResult",
    "ap_regions",
    "average_precisions",
    "compute_ap",
    "key_neurons",
    "region_size",
    "smaller_regions",
]

KEY_COLUMNS = (
    "language",
    "layer",
    "neuron",
    "score",
    "direction",
    "rank_top",
    "rank_bottom",
    "ap_high",
    "ap_low",
)
#: The config's ``analysis.ap`` defaults (docs/method.md §9.2): 2% of K each way, as
#: Kojima et al.'s 2,000 of bloom-560m's 98,304 neurons.
DEFAULTS = {"top": 0.02, "bottom": 0.02}
RANKS = ("rank_top", "rank_bottom")


def _run_ends(values: np.ndarray) -> np.ndarray:
    """For each position of rows sorted ascending along axis 1, the index of the last
    position holding the same value (the end of its tie group)."""
    n = values.shape[1]
    last = np.empty(values.shape, dtype=bool)
    np.not_equal(values[:, 1:], values[:, :-1], out=last[:, :-1])
    last[:, -1] = True
    index = np.where(last, np.arange(n, dtype=np.int32), np.int32(n))
    return np.minimum.accumulate(index[:, ::-1], axis=1)[:, ::-1]


def _run_starts(values: np.ndarray) -> np.ndarray:
    """For each position of rows sorted ascending along axis 1, the index of the first
    position holding the same value."""
    first = np.empty(values.shape, dtype=bool)
    first[:, 0] = True
    np.not_equal(values[:, 1:], values[:, :-1], out=first[:, 1:])
    index = np.where(first, np.arange(values.shape[1], dtype=np.int32), np.int32(0))
    return np.maximum.accumulate(index, axis=1)


def _ap_from_cutoffs(cutoffs: np.ndarray) -> np.ndarray:
    """AP per row from the positives' cut-offs (rows × positives): a positive's cut-off
    is the 0-based position, in the ranking, of the last sample tied with it, so it is
    retrieved at the threshold of its tie group, with precision = positives with a
    cut-off ≤ its own / (its cut-off + 1).  AP = the mean of those precisions over the
    positives = Σ over thresholds of (R_i − R_{i−1}) P_i."""
    cutoffs = np.sort(cutoffs, axis=1)
    retrieved = _run_ends(cutoffs) + 1  # positives retrieved at each one's threshold
    return (retrieved / (cutoffs + 1.0)).mean(axis=1)


def average_precisions(
    block: np.ndarray, labels: np.ndarray, n_labels: int
) -> tuple[np.ndarray, np.ndarray]:
    """(high, low), each (n_labels, neurons): the AP of retrieving the samples of label
    l when the samples are ranked by each column of ``block`` (samples × neurons),
    highest first (``high``) or lowest first (``low``, the scores negated).

    One sort per column serves every label and both rankings.  A positive's cut-off
    is the last position of its tie group in the ranking; without ties that is its
    rank r (0-based, ascending) for ``low`` and n − 1 − r for ``high``, so the i-th
    smallest of a label's P ranks s_i gives AP_low = (1/P) Σ_i i / (s_i + 1) and
    AP_high = (1/P) Σ_i (P + 1 − i) / (n − s_i).  Columns with tied values take the
    general path (``_ap_from_cutoffs``).  Every label needs a sample; the values must
    be finite.
    """
    columns = np.ascontiguousarray(np.asarray(block).T)  # (neurons, samples): rows sort
    width, n = columns.shape
    labels = np.asarray(labels)
    order = np.argsort(columns, axis=1)
    every = np.arange(width)[:, None]
    rank = np.empty((width, n), dtype=np.int32)
    rank[every, order] = np.arange(n, dtype=np.int32)
    ascending = columns[every, order]
    tied = np.flatnonzero((ascending[:, 1:] == ascending[:, :-1]).any(axis=1))
    if len(tied):  # cut-offs at the end of each tie group, in either ranking
        sub, at = ascending[tied], np.arange(len(tied))[:, None]
        cut_high = np.empty((len(tied), n), dtype=np.int32)
        cut_low = np.empty((len(tied), n), dtype=np.int32)
        cut_high[at, order[tied]] = (n - 1) - _run_starts(sub)
        cut_low[at, order[tied]] = _run_ends(sub)
    high = np.empty((n_labels, width))
    low = np.empty((n_labels, width))
    for label in range(n_labels):
        rows = np.flatnonzero(labels == label)
        if len(rows) == 0:
            raise ValueError(f"label {label} has no sample: its AP is undefined")
        if rows[-1] - rows[0] == len(rows) - 1:  # a block of samples (the store's layout)
            rows = slice(rows[0], rows[-1] + 1)
        ranks = np.sort(rank[:, rows], axis=1).astype(np.float64)
        positives = ranks.shape[1]
        count = np.arange(1, positives + 1, dtype=np.float64)  # a perfect ranking: exactly 1
        low[label] = (count / (ranks + 1)).sum(axis=1) / positives
        high[label] = (count[::-1] / (n - ranks)).sum(axis=1) / positives
        if len(tied):
            high[label, tied] = _ap_from_cutoffs(cut_high[:, rows])
            low[label, tied] = _ap_from_cutoffs(cut_low[:, rows])
    return high, low


@dataclass
class ApResult:
    """Every neuron's AP for every language, both rankings, neurons layer by layer."""

    languages: list[str]
    layer_names: list[str]
    widths: list[int]
    high: np.ndarray  # (L, K): AP with the highest activation first
    low: np.ndarray  # (L, K): AP with the lowest activation first (the bottom ranking)
    positives: np.ndarray  # (L,) samples of each language

    @property
    def n_neurons(self) -> int:
        return int(sum(self.widths))


def compute_ap(store: ActivationStore | str | os.PathLike, block_width: int = 4096) -> ApResult:
    """Every AP of ``store``, streamed in blocks of neurons (docs/method.md §9.2)."""
    if isinstance(store, (str, os.PathLike)):
        store = ActivationStore(store)
    if block_width < 1:
        raise ValueError("block_width must be positive")
    languages = list(dict.fromkeys(store.languages))
    labels = np.array([languages.index(x) for x in store.languages])
    offsets = np.concatenate([[0], np.cumsum(store.widths)])
    high = np.empty((len(languages), store.n_neurons))
    low = np.empty_like(high)
    for m, start, block in store.iter_blocks(block_width, dtype="float32"):
        bad = ~np.isfinite(block)
        if bad.any():
            row, col = (int(i[0]) for i in np.nonzero(bad))
            raise StoreError(
                f"{store.path}: {store.layers[m]} sample {row} ({store.languages[row]}, item "
                f"{store.items[row]}), neuron {start + col}: {block[row, col]} is not a number "
                "a ranking can use"
            )
        at = offsets[m] + start
        width = block.shape[1]
        high[:, at : at + width], low[:, at : at + width] = average_precisions(
            block, labels, len(languages)
        )
    return ApResult(
        languages=languages,
        layer_names=list(store.layers),
        widths=list(store.widths),
        high=high,
        low=low,
        positives=np.bincount(labels, minlength=len(languages)),
    )


def region_size(value: float | None, n_neurons: int, name: str = "top") -> int:
    """Neurons per region from ``analysis.ap.top``/``bottom``: a whole number is a count
    (0 or None: none), a number in (0, 1) a fraction of K, rounded (half to even) and
    at least 1; a count above K is K."""
    if value is None:
        return 0
    value = float(value)
    if value < 0 or (value >= 1 and not value.is_integer()):
        raise ValueError(
            f"AP {name} must be a count (0, 1, 2, …) or a fraction in (0, 1), got {value:g}"
        )
    if value.is_integer():
        return min(int(value), n_neurons)
    return min(max(round(n_neurons * value), 1), n_neurons)


def _ranks(ap: np.ndarray, size: int) -> np.ndarray:
    """(L, K) int32: 1 … size for each language's ``size`` neurons of highest AP (ties:
    the lower global index first), 0 for the others."""
    ranks = np.zeros(ap.shape, dtype=np.int32)
    if size == 0:
        return ranks
    k = ap.shape[1]
    for lang, row in enumerate(ap):
        if size < k:  # the cut without a full sort: the size-th largest value
            kth = np.partition(row, k - size)[k - size]
            candidates = np.flatnonzero(row >= kth)
        else:
            candidates = np.arange(k)
        order = np.lexsort((candidates, -row[candidates]))[:size]
        ranks[lang, candidates[order]] = np.arange(1, size + 1)
    return ranks


def _cut(ap: np.ndarray, ranks: np.ndarray, size: int) -> dict:
    """AP at each language's cut and how many neurons tie there (and were kept)."""
    if size == 0:
        return {}
    cut = {}
    for lang in range(ap.shape[0]):
        at = ap[lang][ranks[lang] == size][0]
        cut[lang] = {
            "ap": float(at),
            "tied": int((ap[lang] == at).sum()),
            "tied_kept": int(((ap[lang] == at) & (ranks[lang] > 0)).sum()),
        }
    return cut


def ap_regions(
    result: ApResult, *, top: float | None, bottom: float | None
) -> tuple[pd.DataFrame, dict]:
    """(table, summary): each language's ``top`` neurons of highest ``high`` AP and
    ``bottom`` neurons of highest ``low`` AP (docs/method.md §9.2).

    One row per (language, neuron of its region): language, layer, neuron, score (the
    AP of the ranking that selected it; the higher of both for a neuron in both
    lists), direction ("top", "bottom" or "both"), rank_top and rank_bottom (1-based
    rank in each list, 0 when not in it), ap_high, ap_low.
    """
    k = result.n_neurons
    n_top, n_bottom = region_size(top, k, "top"), region_size(bottom, k, "bottom")
    rank_top, rank_bottom = _ranks(result.high, n_top), _ranks(result.low, n_bottom)
    lang, flat = np.nonzero((rank_top > 0) | (rank_bottom > 0))  # language, then neuron order
    offsets = np.concatenate([[0], np.cumsum(result.widths)])
    layer = np.searchsorted(offsets, flat, side="right") - 1
    table = pd.DataFrame(
        {
            "language": pd.Series(np.array(result.languages, dtype=object)[lang], dtype="str"),
            "layer": layer.astype(np.int32),
            "neuron": (flat - offsets[layer]).astype(np.int32),
            "score": 0.0,
            "direction": "",
            "rank_top": rank_top[lang, flat],
            "rank_bottom": rank_bottom[lang, flat],
            "ap_high": result.high[lang, flat],
            "ap_low": result.low[lang, flat],
        },
        columns=list(KEY_COLUMNS),
    )
    table = _label(table, table["rank_top"] > 0, table["rank_bottom"] > 0)
    per_language = np.bincount(lang, minlength=len(result.languages))
    names = result.languages
    summary = {
        "method": "ap",
        "languages": names,
        "n_layers": len(result.widths),
        "n_neurons": k,
        "top": top,
        "bottom": bottom,
        "top_neurons": n_top,
        "bottom_neurons": n_bottom,
        "samples_per_language": dict(zip(names, map(int, result.positives))),
        "chance_ap": {
            lang: int(p) / int(result.positives.sum()) for lang, p in zip(names, result.positives)
        },
        "cut_top": {names[i]: c for i, c in _cut(result.high, rank_top, n_top).items()},
        "cut_bottom": {names[i]: c for i, c in _cut(result.low, rank_bottom, n_bottom).items()},
        "in_both_lists": {
            names[i]: int(((rank_top[i] > 0) & (rank_bottom[i] > 0)).sum())
            for i in range(len(names))
        },
        "key_neurons_per_language": dict(zip(names, map(int, per_language))),
        "definitions": {
            "ap_high": "average precision of retrieving the language's probe samples when "
            "all samples are ranked by the neuron's pooled activation, highest first; ties "
            "as sklearn.metrics.average_precision_score (one threshold per distinct value)",
            "ap_low": "the same with the lowest activation first (the scores negated)",
            "region": "the top_neurons of highest ap_high and the bottom_neurons of highest "
            "ap_low; ties at a cut go to the lower (layer, neuron)",
            "score": "the AP of the ranking that selected the neuron (the higher of both "
            "for direction 'both'); higher = more specific; chance level = the language's "
            "share of the samples (chance_ap)",
            "rank_top": "1-based rank among the language's top list, 0 when not in it "
            "(rank_bottom likewise): rows with rank ≤ n give the region for a smaller n",
        },
    }
    return table, summary


def smaller_regions(
    table: pd.DataFrame, *, top: int, bottom: int, widths: Sequence[int] | None = None
) -> pd.DataFrame:
    """The rows of an ``ap`` table (key_neurons.parquet) that a selection with ``top``
    and ``bottom`` neurons (counts, not above the table's own) would have kept: the
    same neurons as a fresh selection, since ranks are fixed by the AP.  ``widths``
    only names K in the error for a count above the table's."""
    have_top, have_bottom = (int(table[c].max()) if len(table) else 0 for c in RANKS)
    if top > have_top or bottom > have_bottom:
        k = f" of K = {sum(widths)}" if widths is not None else ""
        raise ValueError(
            f"the table holds the top {have_top} and bottom {have_bottom} neurons{k}: "
            f"select again for top {top}, bottom {bottom}"
        )
    keep_top = (table["rank_top"] > 0) & (table["rank_top"] <= top)
    keep_bottom = (table["rank_bottom"] > 0) & (table["rank_bottom"] <= bottom)
    keep = keep_top | keep_bottom
    smaller = table[keep].reset_index(drop=True)
    return _label(smaller, keep_top[keep].to_numpy(), keep_bottom[keep].to_numpy())


def shrink(table: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """The regions of a selection keeping ``fraction`` of the table's top and bottom
    counts (each rounded, at least one where the table has any): the registry's
    ``shrink``, for steering's sweep of region sizes (docs/method.md §12)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    have = [int(table[c].max()) if len(table) else 0 for c in RANKS]
    top, bottom = (max(1, round(n * fraction)) if n else 0 for n in have)
    return smaller_regions(table, top=top, bottom=bottom)


def _label(table: pd.DataFrame, in_top, in_bottom) -> pd.DataFrame:
    """``direction`` and ``score`` from the lists each row is in (ranks outside them
    set to 0)."""
    in_top, in_bottom = np.asarray(in_top, bool), np.asarray(in_bottom, bool)
    high, low = table["ap_high"].to_numpy(), table["ap_low"].to_numpy()
    both = in_top & in_bottom
    table = table.assign(
        score=np.where(both, np.maximum(high, low), np.where(in_top, high, low)),
        direction=pd.Series(
            np.where(both, "both", np.where(in_top, "top", "bottom")),
            dtype="str",
            index=table.index,
        ),
        rank_top=np.where(in_top, table["rank_top"], 0).astype(np.int32),
        rank_bottom=np.where(in_bottom, table["rank_bottom"], 0).astype(np.int32),
    )
    return table


def key_neurons(
    store: ActivationStore | str | os.PathLike,
    *,
    block_width: int = 4096,
    top: float | None = DEFAULTS["top"],
    bottom: float | None = DEFAULTS["bottom"],
) -> KeyNeurons:
    """The AP regions of ``store`` for the registry (:mod:`lingua_franca.methods`)."""
    result = compute_ap(store, block_width)
    table, summary = ap_regions(result, top=top, bottom=bottom)
    return KeyNeurons(
        "ap", table, result.languages, result.layer_names, result.widths, summary=summary
    )
