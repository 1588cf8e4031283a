"""Similarity map, LRDS/SADS and key linguistic regions (docs/method.md §2–4, paper Eq. 5–14).

Two layers of code:

* pure functions on in-memory arrays (``normalize_rows``, ``similarity``,
  ``lrds_sads``, ``contribution_scores``, ``zscores``, ``key_regions``), the
  formulas as written, used by ``metrics_from_arrays`` for small data and tests;
* ``compute_metrics``, which streams an activation store in blocks of neurons so that
  peak memory grows with samples × block width, never with the neuron count K.
  Pass 1 gets every sample's squared norm (whole vector and per layer); pass 2
  accumulates the float64 n×n Gram matrix of each layer (its own similarity map
  and the global one are rescaled Gram matrices) and scores each block's neurons on
  the globally normalised block.  Only n×n matrices, per-layer counts and the key
  neurons themselves are kept.  With a bootstrap (docs/method.md §10), the same
  pass also scores every resample (``lingua_franca.bootstrap``): LRDS/SADS from the
  same n×n maps, key regions from the same blocks.

``write_outputs`` writes the files a metrics run produces, each where ``MetricsFiles`` says.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby, pairwise
from pathlib import Path

import numpy as np
import pandas as pd

from lingua_franca.bootstrap import (
    BootstrapResult,
    BootstrapSettings,
    KeyRegionResampler,
    draw_items,
    item_weights,
    resampled_lrds_sads,
)
from lingua_franca.outputs import OutputFiles, json_number
from lingua_franca.store import ActivationStore

__all__ = [
    "MetricsFiles",
    "MetricsInputError",
    "MetricsResult",
    "ProbeLayout",
    "compute_metrics",
    "contribution_scores",
    "key_regions",
    "lrds_sads",
    "metrics_from_arrays",
    "normalize_rows",
    "probe_layout",
    "similarity",
    "write_outputs",
    "zscores",
]

KEY_COLUMNS = ("language", "layer", "neuron", "z")


class MetricsInputError(ValueError):
    """The activations cannot be scored: bad probe layout, NaN, or a zero vector."""


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class ProbeLayout:
    """Rows in language blocks, the same item order inside every block (docs/method.md §3)."""

    languages: tuple[str, ...]  # block order
    items: tuple[str, ...]  # item order inside every block

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def sample_languages(self) -> np.ndarray:
        return np.repeat(np.array(self.languages, dtype=str), self.n_items)

    @property
    def sample_items(self) -> np.ndarray:
        return np.tile(np.array(self.items, dtype=str), len(self.languages))


def probe_layout(languages: Sequence[str], items: Sequence[str]) -> ProbeLayout:
    """Check the row order the metrics and the similarity figure rely on.

    LRDS/SADS only need labels, but the contribution z-scores compare languages
    with equal sample counts (paper §3.2) and the similarity map is only readable
    when every block lists the items in the same order.
    """
    languages, items = [str(x) for x in languages], [str(x) for x in items]
    if len(languages) != len(items):
        raise MetricsInputError(f"{len(languages)} language labels for {len(items)} items")
    if not languages:
        raise MetricsInputError("no samples")
    blocks: list[tuple[str, list[str]]] = []
    for lang, item in zip(languages, items):
        if not blocks or blocks[-1][0] != lang:
            if any(lang == seen for seen, _ in blocks):
                raise MetricsInputError(
                    f"language {lang!r} appears in more than one block of rows; "
                    "rows must be grouped in one block per language"
                )
            blocks.append((lang, []))
        blocks[-1][1].append(item)
    first_lang, first_items = blocks[0]
    if len(set(first_items)) != len(first_items):
        raise MetricsInputError(f"language {first_lang!r} lists an item more than once")
    for lang, block_items in blocks[1:]:
        if len(block_items) != len(first_items):
            counts = {b[0]: len(b[1]) for b in blocks}
            raise MetricsInputError(f"languages have different numbers of items: {counts}")
        if block_items != first_items:
            at = next(i for i, (a, b) in enumerate(zip(first_items, block_items)) if a != b)
            raise MetricsInputError(
                f"item order of {lang!r} differs from {first_lang!r} at position {at}: "
                f"{block_items[at]!r} instead of {first_items[at]!r}"
            )
    return ProbeLayout(tuple(b[0] for b in blocks), tuple(first_items))


# ------------------------------------------------------------------ pure functions


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm (Eq. 6); a zero row has no direction: error."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    if np.any(norms == 0):
        raise MetricsInputError(f"rows {np.flatnonzero(norms == 0).tolist()} are all zero")
    return x / norms[:, None]


def similarity(x: np.ndarray) -> np.ndarray:
    """S_ij = a_i · a_j with a the L2-normalised rows of ``x`` (Eq. 7)."""
    a = normalize_rows(x)
    return a @ a.T


def _masked_mean(s: np.ndarray, mask: np.ndarray) -> float:
    count = int(mask.sum())
    return float(s[mask].sum() / count) if count else math.nan


def lrds_sads(s: np.ndarray, languages: Sequence[str], items: Sequence[str]) -> tuple[float, float]:
    """LRDS and SADS of a similarity map over pairs i ≠ j (Eq. 8, 9).

    Works from labels alone, in any row order.  A mean over an empty set of pairs
    (one language only, one item only) is NaN, and so is the score using it.
    """
    lang, item = np.asarray(languages, dtype=str), np.asarray(items, dtype=str)
    same_lang = lang[:, None] == lang[None, :]
    same_item = item[:, None] == item[None, :]
    off_diag = ~np.eye(len(lang), dtype=bool)
    base = _masked_mean(s, ~same_lang & ~same_item & off_diag)
    lrds = _masked_mean(s, same_lang & ~same_item & off_diag) - base
    sads = _masked_mean(s, ~same_lang & same_item & off_diag) - base
    return lrds, sads


def _language_groups(languages: Sequence[str]) -> list[tuple[str, slice | np.ndarray]]:
    """Row selector per language, first-appearance order; slices (views) for blocks."""
    lang = np.asarray(languages, dtype=str)
    groups = []
    for name in dict.fromkeys(lang.tolist()):
        rows = np.flatnonzero(lang == name)
        contiguous = rows[-1] - rows[0] + 1 == len(rows)
        groups.append((name, slice(rows[0], rows[-1] + 1) if contiguous else rows))
    return groups


def contribution_scores(
    a: np.ndarray, languages: Sequence[str], items: Sequence[str] | None = None
) -> np.ndarray:
    """S̄_l(k) = Σ_{i<j in l} a_k(s_i) a_k(s_j), in closed form (Eq. 11, docs/method.md §4).

    ((Σ_i a_k)² − Σ_i a_k²) / 2 is O(n·K) instead of the reference's O(n²·K) pair
    loop.  ``a`` must already be normalised (globally, for the paper's scores).
    With ``items``, pairs of two samples of the same item are left out: they occur
    only in a bootstrap resample, where an item can be drawn twice
    (docs/method.md §10); the second term then squares each item's sum.
    Returns (L, K), languages in order of first appearance.
    """
    a = np.asarray(a, dtype=np.float64)
    groups = _language_groups(languages)
    out = np.empty((len(groups), a.shape[1]))
    for index, (_, rows) in enumerate(groups):
        block = a[rows]
        if items is None:
            same_item = np.einsum("ij,ij->j", block, block)
        else:
            codes = np.unique(np.asarray(items, dtype=str)[rows], return_inverse=True)[1]
            per_item = np.zeros((codes.max() + 1, a.shape[1]))
            np.add.at(per_item, codes, block)
            same_item = np.einsum("ij,ij->j", per_item, per_item)
        out[index] = (block.sum(axis=0) ** 2 - same_item) / 2
    return out


def zscores(c: np.ndarray) -> np.ndarray:
    """z_l(k) = (S̄_l(k) − μ_k) / σ_k across languages (axis 0), ddof = 0 (Eq. 12–14).

    A neuron whose scores are all equal (σ_k = 0; e.g. a dead neuron, or a single
    language) gets z = 0.  Equality is tested exactly, so rounding in μ_k cannot turn
    0/0 into a spurious ±1.
    """
    c = np.asarray(c, dtype=np.float64)
    sigma = c.std(axis=0)
    flat = np.all(c == c[:1], axis=0) | (sigma == 0)
    z = np.zeros_like(c)
    np.divide(c - c.mean(axis=0), sigma, out=z, where=~flat[None, :])
    return z


def key_regions(z: np.ndarray, tau: float) -> list[np.ndarray]:
    """Key region of each language: the neuron indices with z_l(k) > τ (strictly)."""
    return [np.flatnonzero(row > tau) for row in np.asarray(z)]


# ------------------------------------------------------------------------- result


@dataclass
class MetricsResult:
    """Everything a metrics run keeps: n×n maps, scores, counts and the key neurons."""

    layout: ProbeLayout
    layer_names: list[str]
    widths: list[int]
    z_threshold: float
    similarity: np.ndarray  # (n, n) float64, whole vector normalised once
    lrds: float
    sads: float
    layer_lrds: np.ndarray  # (M,), each layer normalised on its own
    layer_sads: np.ndarray
    key_counts: np.ndarray  # (L, M): |key region of l within layer m|
    key_union: np.ndarray  # (M,): neurons of layer m in at least one key region
    key_language: np.ndarray  # one entry per key neuron, sorted (language, layer, neuron)
    key_layer: np.ndarray
    key_neuron: np.ndarray  # index within its layer
    key_z: np.ndarray
    bootstrap: BootstrapResult | None = None  # every resample's values (docs/method.md §10)

    @property
    def languages(self) -> list[str]:
        return list(self.layout.languages)

    @property
    def n_neurons(self) -> int:
        return int(sum(self.widths))

    @property
    def sklr(self) -> int:
        """Σ_l |key region of l| (a neuron key for two languages counts twice)."""
        return int(self.key_counts.sum())

    @property
    def z_max_possible(self) -> float:
        """With L languages and ddof = 0, no z-score can exceed √(L − 1)."""
        return math.sqrt(len(self.layout.languages) - 1)

    def key_neurons(self):
        """The key neurons as a DataFrame with columns language, layer, neuron, z."""
        return pd.DataFrame(
            {
                "language": pd.Series(
                    np.array(self.languages, dtype=object)[self.key_language], dtype="str"
                ),
                "layer": self.key_layer.astype(np.int32),
                "neuron": self.key_neuron.astype(np.int32),
                "z": self.key_z.astype(np.float64),
            },
            columns=list(KEY_COLUMNS),
        )

    def summary(self) -> dict:
        """The metrics.json content (NaN written as null)."""
        k = self.n_neurons
        per_language = self.key_counts.sum(axis=1)
        per_layer = self.key_counts.sum(axis=0)
        ci = {} if self.bootstrap is None else {"ci": self.bootstrap.summary(self.languages)}
        return {
            "n_samples": len(self.layout.languages) * self.layout.n_items,
            "n_items": self.layout.n_items,
            "languages": self.languages,
            "n_layers": len(self.widths),
            "n_neurons": k,
            "z_threshold": self.z_threshold,
            "z_max_possible": self.z_max_possible,
            "lrds": json_number(self.lrds),
            "sads": json_number(self.sads),
            "sklr": self.sklr,
            "sklr_fraction": self.sklr / k,
            "key_neurons_unique": int(self.key_union.sum()),
            "key_neurons_per_language": dict(zip(self.languages, map(int, per_language))),
            "key_fraction_per_language": {
                lang: int(c) / k for lang, c in zip(self.languages, per_language)
            },
            "per_layer": [
                {
                    "layer": m,
                    "name": name,
                    "width": width,
                    "lrds": json_number(self.layer_lrds[m]),
                    "sads": json_number(self.layer_sads[m]),
                    "key_neurons": int(per_layer[m]),
                    "sklr_fraction": int(per_layer[m]) / k,
                    "key_neurons_unique": int(self.key_union[m]),
                    "key_neurons_per_language": dict(
                        zip(self.languages, map(int, self.key_counts[:, m]))
                    ),
                }
                for m, (name, width) in enumerate(zip(self.layer_names, self.widths))
            ],
            "definitions": {
                "similarity": "cosine of mean-pooled neuron vectors, whole vector normalised once",
                "layer_scores": "each layer's block normalised on its own",
                "z": "across languages, population sigma (ddof=0); sigma=0 gives z=0",
                "key_neuron": "z > z_threshold; neuron is its index within its layer",
                "sklr_fraction": "key neurons summed over languages / n_neurons",
            },
            **ci,
        }


def _warn_unreachable(n_languages: int, tau: float) -> None:
    if n_languages > 0 and tau >= math.sqrt(n_languages - 1):
        warnings.warn(
            f"z_threshold {tau} can never be exceeded with {n_languages} languages "
            f"(max z = sqrt(L-1) = {math.sqrt(n_languages - 1):.3f}): key regions are empty",
            stacklevel=3,
        )


# ---------------------------------------------------------------------- in memory


def metrics_from_arrays(
    layers: Sequence[np.ndarray],
    languages: Sequence[str],
    items: Sequence[str],
    z_threshold: float = 2.0,
    layer_names: Sequence[str] | None = None,
) -> MetricsResult:
    """The whole computation on in-memory (samples, width) arrays, one per layer.

    Straight from the pure functions; memory grows with K.  For small data and as
    the reference ``compute_metrics`` is tested against.
    """
    layout = probe_layout(languages, items)
    _warn_unreachable(len(layout.languages), z_threshold)
    lang, item = layout.sample_languages, layout.sample_items
    layers = [np.asarray(x, dtype=np.float64) for x in layers]
    names = list(layer_names or [f"layer_{m:03d}" for m in range(len(layers))])
    for name, x in zip(names, layers):
        if not np.all(np.isfinite(x)):
            raise MetricsInputError(f"{name}: NaN or infinite activations")
    widths = [x.shape[1] for x in layers]
    a = normalize_rows(np.concatenate(layers, axis=1))
    s = a @ a.T
    lrds, sads = lrds_sads(s, lang, item)
    per_layer = np.array([lrds_sads(similarity(x), lang, item) for x in layers]).reshape(-1, 2)
    z = zscores(contribution_scores(a, lang))
    key_lang, key_k = np.nonzero(z > z_threshold)
    offsets = np.concatenate([[0], np.cumsum(widths)])
    key_layer = np.searchsorted(offsets, key_k, side="right") - 1
    is_key = z > z_threshold
    bounds = list(pairwise(offsets))
    return MetricsResult(
        layout=layout,
        layer_names=names,
        widths=widths,
        z_threshold=float(z_threshold),
        similarity=s,
        lrds=lrds,
        sads=sads,
        layer_lrds=per_layer[:, 0],
        layer_sads=per_layer[:, 1],
        key_counts=np.stack([is_key[:, a:b].sum(axis=1) for a, b in bounds], axis=1),
        key_union=np.array([is_key[:, a:b].any(axis=0).sum() for a, b in bounds], dtype=int),
        key_language=key_lang.astype(np.int32),
        key_layer=key_layer.astype(np.int32),
        key_neuron=(key_k - offsets[key_layer]).astype(np.int32),
        key_z=z[key_lang, key_k],
    )


# ---------------------------------------------------------------------- streaming


def _squared_norms(store, block_width: int, layout: ProbeLayout) -> np.ndarray:
    """Pass 1: (M, n) per-layer squared norms; refuses NaN/inf, naming the layer."""
    sq = np.zeros((len(store.layers), len(layout.languages) * layout.n_items))
    for m, start, block in store.iter_blocks(block_width):
        part = np.einsum("ij,ij->i", block, block)
        if not np.all(np.isfinite(part)):
            row = int(np.flatnonzero(~np.isfinite(part))[0])
            what = "NaN" if np.isnan(block[row]).any() else "infinite values"
            raise MetricsInputError(
                f"{store.layers[m]}: {what} in sample {row} "
                f"({layout.sample_languages[row]}, item {layout.sample_items[row]!r}), "
                f"neurons {start}–{start + block.shape[1] - 1}"
            )
        sq[m] += part
    return sq


def _check_nonzero(sq_norms: np.ndarray, what: str) -> None:
    if np.any(sq_norms == 0):
        raise MetricsInputError(
            f"{what}: samples {np.flatnonzero(sq_norms == 0).tolist()} are all zero, "
            "their similarity is undefined"
        )


def _rescale(gram: np.ndarray, sq_norms: np.ndarray, what: str) -> np.ndarray:
    """Gram matrix of raw rows → cosine similarities, given the rows' squared norms."""
    _check_nonzero(sq_norms, what)
    norms = np.sqrt(sq_norms)
    return gram / norms[:, None] / norms[None, :]


def compute_metrics(
    store: ActivationStore | str | os.PathLike,
    z_threshold: float = 2.0,
    block_width: int = 4096,
    bootstrap: BootstrapSettings | None = None,
    *,
    device: str = "cpu",
    workers: int | None = None,
    bootstrap_dtype: str = "float32",
) -> MetricsResult:
    """All metrics of one activation store, streamed in blocks of ``block_width`` neurons.

    ``store`` is an ``ActivationStore`` or a path to one.  Reads the store twice;
    peak memory is a few copies of one (samples × block_width) float64 block plus
    n×n matrices and the key neurons found.  Gram matrices are float64 whatever
    the store's dtype, so sums over millions of neurons keep their precision.
    ``block_width`` is best a multiple of the store's column chunk (4096): narrower
    or unaligned blocks decode the same chunks more than once (1024: ~2× slower).

    With ``bootstrap`` (and resamples > 0) the same pass scores every resample of
    the probe items (docs/method.md §10) into ``result.bootstrap``: key regions with
    torch on ``device`` (``workers`` threads on a CPU, default: every core), in
    ``bootstrap_dtype``.  Without it the result is exactly what it was before.
    """
    if isinstance(store, (str, os.PathLike)):
        store = ActivationStore(store)
    if block_width < 1:
        raise ValueError("block_width must be positive")
    if store.n_neurons == 0:
        raise MetricsInputError(f"{store.path}: the store has no neurons")
    layout = probe_layout(store.languages, store.items)
    _warn_unreachable(len(layout.languages), z_threshold)
    lang, item = layout.sample_languages, layout.sample_items
    n, n_lang, n_layers = len(lang), len(layout.languages), len(store.layers)

    sq = _squared_norms(store, block_width, layout)
    _check_nonzero(sq.sum(axis=0), "whole vector")
    inv_norm = 1.0 / np.sqrt(sq.sum(axis=0))[:, None]

    resampling = bootstrap is not None and bootstrap.enabled
    if resampling:
        draws = draw_items(layout.n_items, bootstrap.resamples, bootstrap.seed)
        weights = item_weights(draws, layout.n_items)
        layer_boot = np.full((2, bootstrap.resamples, n_layers), math.nan)
        resampler = KeyRegionResampler(
            weights,
            n_lang,
            n_layers,
            z_threshold,
            device=device,
            dtype=bootstrap_dtype,
            workers=workers,
        )

    gram_total = np.zeros((n, n))
    layer_scores = np.full((n_layers, 2), math.nan)
    key_counts = np.zeros((n_lang, n_layers), dtype=np.int64)
    key_union = np.zeros(n_layers, dtype=np.int64)
    found: list[tuple[np.ndarray, ...]] = []
    try:
        for m, blocks in groupby(store.iter_blocks(block_width), key=lambda b: b[0]):
            gram = np.zeros((n, n))
            for _, start, block in blocks:
                gram += block @ block.T  # syrk, float64 whatever the store holds
                block *= inv_norm  # globally normalised a_k(s_i), in place
                z = zscores(contribution_scores(block, lang))
                is_key = z > z_threshold
                if resampling:  # queued: runs while the next block is read
                    resampler.add(m, block, is_key)
                key_counts[:, m] += is_key.sum(axis=1)
                key_union[m] += int(is_key.any(axis=0).sum())
                l_idx, k_idx = np.nonzero(is_key)
                found.append((l_idx, np.full(len(l_idx), m), k_idx + start, z[l_idx, k_idx]))
            layer_s = _rescale(gram, sq[m], store.layers[m])
            layer_scores[m] = lrds_sads(layer_s, lang, item)
            if resampling:
                layer_boot[:, :, m] = resampled_lrds_sads(layer_s, n_lang, weights)
            gram_total += gram
        if resampling:
            resampler.wait()
    finally:
        if resampling:
            resampler.close()

    key_l, key_m, key_k, key_z = (np.concatenate(parts) for parts in zip(*found))
    order = np.lexsort((key_k, key_m, key_l))
    s = _rescale(gram_total, sq.sum(axis=0), "whole vector")
    lrds, sads = lrds_sads(s, lang, item)
    boot = None
    if resampling:
        boot_lrds, boot_sads = resampled_lrds_sads(s, n_lang, weights)
        boot = BootstrapResult(
            settings=bootstrap,
            draws=draws,
            lrds=boot_lrds,
            sads=boot_sads,
            layer_lrds=layer_boot[0],
            layer_sads=layer_boot[1],
            key_counts=resampler.counts,
            key_overlap=resampler.overlap,
            full_sizes=key_counts.sum(axis=1),
        )
    return MetricsResult(
        layout=layout,
        layer_names=list(store.layers),
        widths=list(store.widths),
        z_threshold=float(z_threshold),
        similarity=s,
        lrds=lrds,
        sads=sads,
        layer_lrds=layer_scores[:, 0],
        layer_sads=layer_scores[:, 1],
        key_counts=key_counts,
        key_union=key_union,
        key_language=key_l[order].astype(np.int32),
        key_layer=key_m[order].astype(np.int32),
        key_neuron=key_k[order].astype(np.int32),
        key_z=key_z[order].astype(np.float64),
        bootstrap=boot,
    )


# ------------------------------------------------------------------------ outputs


@dataclass(frozen=True)
class MetricsFiles(OutputFiles):
    """What :func:`write_outputs` writes (the rule compute_metrics' named outputs)."""

    summary: Path = field(metadata={"suffix": ".json"})  # metrics.json
    key_neurons: Path = field(metadata={"suffix": ".parquet"})
    similarity: Path = field(metadata={"suffix": ".npy"})  # the global similarity map, float32
    labels: Path = field(metadata={"suffix": ".tsv"})  # language and item of each row of the map
    similarity_map: Path = field(metadata={"suffix": ".png"})
    layerwise: Path = field(metadata={"suffix": ".png"})
    per_layer: Path = field(metadata={"suffix": ".png"})
    per_language: Path = field(metadata={"suffix": ".png"})
    bootstrap: Path = field(metadata={"suffix": ".npz"})  # every resample's values (§10)


def write_bootstrap(result: MetricsResult, path: Path, source: dict | None = None) -> None:
    """metrics_bootstrap.npz: every resample's LRDS, SADS, SKLR, per-layer and
    per-language values (``BootstrapResult.arrays``) with the probe's item ids, so
    that the aggregate can difference two checkpoints resampled with the same draws
    (docs/method.md §10).  Without a bootstrap it holds ``resamples`` = 0 and the
    items only; ``source``'s model and checkpoint name it.  Plain arrays: no pickle."""
    arrays = {"resamples": np.int64(0)} if result.bootstrap is None else result.bootstrap.arrays()
    arrays["items"] = np.array(result.layout.items, dtype=str)
    arrays["languages"] = np.array(result.languages, dtype=str)
    for key in ("model", "checkpoint"):
        if (source or {}).get(key) is not None:
            arrays[key] = np.array(str(source[key]))
    with open(path, "wb") as fh:  # np.savez(path) would add .npz to the name
        np.savez(fh, **arrays)


def write_outputs(
    result: MetricsResult, files: MetricsFiles, title: str = "", extra: dict | None = None
) -> None:
    """Write every file of ``files``.

    ``title`` (e.g. "bloom-560m @ step 1000") heads every figure; ``extra``
    (provenance, model, checkpoint…) is merged into metrics.json.  No pickle
    anywhere: .npy without objects, parquet, JSON, TSV.
    """
    from lingua_franca import plots  # matplotlib only when figures are wanted

    files.make_folders()
    summary = {**result.summary(), **(extra or {})}
    # the similarity map's files, beside this one
    summary["files"] = {"similarity": files.similarity.name, "labels": files.labels.name}
    files.summary.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    result.key_neurons().to_parquet(files.key_neurons, index=False)
    with open(files.similarity, "wb") as fh:  # np.save(path) would add .npy to the name
        np.save(fh, result.similarity.astype(np.float32), allow_pickle=False)
    write_bootstrap(result, files.bootstrap, (extra or {}).get("source"))
    layout = result.layout
    pd.DataFrame(
        {
            "index": np.arange(len(layout.sample_items)),
            "language": layout.sample_languages,
            "item": layout.sample_items,
        }
    ).to_csv(files.labels, sep="\t", index=False)

    prefix = f"{title}: " if title else ""
    plots.plot_similarity_map(
        result.similarity,
        layout.sample_languages,
        files.similarity_map,
        title=f"{prefix}similarity map",
    )
    plots.plot_layerwise_scores(
        np.arange(len(result.widths)),
        result.layer_lrds,
        result.layer_sads,
        files.layerwise,
        title=f"{prefix}layer-wise LRDS and SADS",
    )
    counts = pd.DataFrame(result.key_counts.T, columns=result.languages)
    counts.index.name = "layer"
    plots.plot_key_neurons_per_layer(
        counts,
        files.per_layer,
        title=f"{prefix}key neurons per layer (z > {result.z_threshold:g})",
    )
    plots.plot_key_neurons_per_language(
        counts.sum(axis=0),
        files.per_language,
        n_neurons=result.n_neurons,
        title=f"{prefix}key neurons per language (z > {result.z_threshold:g})",
    )
