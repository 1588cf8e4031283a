"""The activation store: one zarr v3 group per model × checkpoint.

Layout (readable with plain ``zarr``, or ``xarray.open_zarr(path, consolidated=False)``)::

    activations.zarr/
        layer_000 … layer_{M-1}   float32 (sample, neuron): mean-pooled MLP neurons
        language                  str (sample,): language of each row
        item                      str (sample,): parallel-corpus item id of each row
        n_tokens                  int32 (sample,): real tokens of each row
        active/layer_000 …        int32 (sample, neuron): real tokens at which the
                                  neuron's activation value is > 0 (docs/method.md §9.1)
        attrs: languages, items, layers, widths, activity, complete, provenance…

``n_tokens`` and ``active`` exist when the extraction counted activity (attribute
``activity`` says where the value was read); a store written before they existed
still serves the z-score metrics, and ``require_activity`` names the fix for LAPE.

Rows are un-normalized; the metrics normalize.  A store is written under a
temporary name and renamed at the end, and carries ``complete: true`` only then,
so a killed job never leaves something that looks finished; the next writer of
the store removes what a killed one left (:mod:`lingua_franca.atomic`).

Attribute ``activations_fingerprint`` identifies the store's content (docs/method.md
§7): two checkpoints whose stores carry the same one gave identical activations on
the same probe, whatever files their weights came from. The writer hashes each
array as it writes it, so the store is never read for it (``content_fingerprint``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import zarr

from lingua_franca.atomic import remove_stale_temporaries, temporary_path

LAYER_PREFIX = "layer_"
ACTIVE_GROUP = "active"
ROW_CHUNK = 256
COL_CHUNK = 4096


def layer_name(index: int) -> str:
    return f"{LAYER_PREFIX}{index:03d}"


def content_fingerprint(
    languages: Sequence[str], items: Sequence[str], arrays: Sequence[tuple[str, str, tuple, str]]
) -> str:
    """sha256 over the rows' languages and items (JSON) and one line per numeric array,
    ``name<TAB>dtype<TAB>shape<TAB>sha256 of its C-order bytes``, in the order given
    (the store's: layers, then ``active/`` layers, then ``n_tokens``)."""
    lines = [f"languages\t{json.dumps(list(languages))}", f"items\t{json.dumps(list(items))}"]
    lines += [f"{name}\t{dtype}\t{list(shape)}\t{digest}" for name, dtype, shape, digest in arrays]
    return hashlib.sha256(("\n".join(lines) + "\n").encode()).hexdigest()


class StoreError(RuntimeError):
    """A store that is missing, incomplete or not of this layout."""


class StoreWriter:
    """Write a store row block by row block; atomic on success.

    ``with StoreWriter(path, languages, items, widths, attrs) as w: w.write(rows)``
    where ``rows`` is a list with one (batch, width) array per layer, batches in
    row order.  Rows are buffered to whole row chunks, so every chunk is written
    once.  On an exception the temporary store is deleted and ``path`` is untouched.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        languages: Sequence[str],
        items: Sequence[str],
        widths: Sequence[int],
        attrs: dict[str, Any] | None = None,
        dtype: str = "float32",
        row_chunk: int = ROW_CHUNK,
        col_chunk: int = COL_CHUNK,
        activity: dict[str, Any] | None = None,
    ):
        """``activity`` (where the counted activation value was read) makes the store
        hold ``n_tokens`` and ``active/``; ``write`` then needs both for every block."""
        if len(languages) != len(items):
            raise ValueError("languages and items must have one entry per sample")
        self.path = Path(path)
        self.tmp = temporary_path(self.path)
        self.n = len(items)
        self.widths = [int(w) for w in widths]
        self.dtype = np.dtype(dtype)
        self.row_chunk = max(1, min(row_chunk, self.n))
        self.col_chunk = col_chunk
        self.attrs = {
            "languages": list(languages),
            "items": list(items),
            "layers": [layer_name(i) for i in range(len(self.widths))],
            "widths": self.widths,
            "description": "mean over each sample's real tokens of the MLP neuron "
            "vector (input of the MLP output projection), one array per layer; "
            "rows are samples (see 'languages' and 'items'), not normalized",
            **(attrs or {}),
            **({"activity": dict(activity)} if activity is not None else {}),
            "complete": False,
        }
        self.counts = activity is not None
        self._row = 0
        self._buffer: list[list[np.ndarray]] = []
        self._buffered = 0

    def __enter__(self) -> Self:
        remove_stale_temporaries(self.path)  # this writer's own, and a killed one's
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.group = zarr.open_group(self.tmp, mode="w", zarr_format=3)
        self.arrays = []
        for name, width in zip(self.attrs["layers"], self.widths):
            array = self.group.create_array(
                name,
                shape=(self.n, width),
                dtype=self.dtype,
                chunks=(self.row_chunk, min(self.col_chunk, width)),
                dimension_names=["sample", "neuron"],
                fill_value=np.nan,
            )
            self.arrays.append(array)
        self.active_arrays = []
        if self.counts:
            group = self.group.create_group(ACTIVE_GROUP)
            for name, width in zip(self.attrs["layers"], self.widths):
                array = group.create_array(
                    name,
                    shape=(self.n, width),
                    dtype=np.int32,
                    chunks=(self.row_chunk, min(self.col_chunk, width)),
                    dimension_names=["sample", "neuron"],
                    fill_value=-1,
                )
                self.active_arrays.append(array)
            self.n_tokens_array = self.group.create_array(
                "n_tokens", shape=(self.n,), dtype=np.int32, dimension_names=["sample"]
            )
        for name in ("language", "item"):
            array = self.group.create_array(
                name, shape=(self.n,), dtype=str, dimension_names=["sample"]
            )
            array[:] = np.array(self.attrs[f"{name}s"], dtype=str)
        self._targets = [*self.arrays, *self.active_arrays]
        if self.counts:
            self._targets.append(self.n_tokens_array)
        # the content fingerprint, hashed as the rows are written (rows in order, each
        # block full width: the arrays' C-order bytes)
        self._digests = [hashlib.sha256() for _ in self._targets]
        return self

    def write(
        self,
        rows: Sequence[np.ndarray],
        active: Sequence[np.ndarray] | None = None,
        n_tokens: np.ndarray | None = None,
    ) -> None:
        """One block of rows: per layer, the means (and the activity counts), plus each
        row's real-token count when the store holds activity."""
        if len(rows) != len(self.arrays):
            raise ValueError(f"expected {len(self.arrays)} layers, got {len(rows)}")
        block = [np.asarray(r, dtype=self.dtype) for r in rows]
        if self.counts:
            if active is None or n_tokens is None or len(active) != len(rows):
                raise ValueError("this store holds activity: give active counts and n_tokens")
            block += [np.asarray(a, dtype=np.int32) for a in active]
            block.append(np.asarray(n_tokens, dtype=np.int32).reshape(-1))
        elif active is not None or n_tokens is not None:
            raise ValueError("activity counts given to a store made without `activity`")
        self._buffer.append(block)
        self._buffered += len(rows[0])
        if self._row + self._buffered > self.n:
            raise ValueError(f"more rows written than the store's {self.n} samples")
        if self._buffered >= self.row_chunk:
            self._flush()

    def _flush(self) -> None:
        if not self._buffered:
            return
        stop = self._row + self._buffered
        for index, array in enumerate(self._targets):
            rows = np.ascontiguousarray(np.concatenate([b[index] for b in self._buffer]))
            array[self._row : stop] = rows
            self._digests[index].update(rows.tobytes())
        self._row, self._buffer, self._buffered = stop, [], 0

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        self._flush()
        if self._row != self.n:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise StoreError(f"{self.path}: {self._row} of {self.n} rows written")
        fingerprint = content_fingerprint(
            self.attrs["languages"],
            self.attrs["items"],
            [
                (str(array.path), array.dtype.str, array.shape, digest.hexdigest())
                for array, digest in zip(self._targets, self._digests, strict=True)
            ],
        )
        self.group.attrs.update(
            {**self.attrs, "activations_fingerprint": fingerprint, "complete": True}
        )
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)


class ActivationStore:
    """Read access to a finished store, by layer or by blocks of neurons."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(f"{self.path}: no activation store here")
        try:
            self.group = zarr.open_group(self.path, mode="r")
        except Exception as err:  # zarr raises several types for a non-store
            raise StoreError(f"{self.path}: not a zarr group ({err})") from err
        self.attrs = dict(self.group.attrs)
        if not self.attrs.get("complete"):
            raise StoreError(f"{self.path}: store is incomplete (its writer did not finish)")
        self.languages: list[str] = list(self.attrs["languages"])
        self.items: list[str] = list(self.attrs["items"])
        self.layers: list[str] = list(self.attrs["layers"])
        self.widths: list[int] = [int(w) for w in self.attrs["widths"]]

    @property
    def has_activity(self) -> bool:
        """Whether the extraction counted active tokens (needed by LAPE, not by z-scores)."""
        return "activity" in self.attrs and ACTIVE_GROUP in self.group and "n_tokens" in self.group

    def require_activity(self) -> None:
        """Raise ``StoreError`` naming the fix when the store has no activity counts."""
        if not self.has_activity:
            raise StoreError(
                f"{self.path}: no activity counts (no '{ACTIVE_GROUP}' group or 'n_tokens'): "
                "the store was written before extraction counted them. Delete it and rerun "
                "the extraction to compute LAPE; the z-score metrics still run on it as it is."
            )

    def n_tokens(self) -> np.ndarray:
        """Real tokens per sample, int64."""
        self.require_activity()
        return np.asarray(self.group["n_tokens"][:], dtype=np.int64)

    @property
    def n_samples(self) -> int:
        return len(self.items)

    @property
    def n_neurons(self) -> int:
        return sum(self.widths)

    def iter_blocks(
        self, block_width: int = COL_CHUNK, dtype: str = "float64"
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(layer_index, first_neuron, block)`` with ``block`` of shape
        (samples, ≤ block_width), layer by layer, so peak memory grows with
        samples × block width, not with the total neuron count."""
        for index, name in enumerate(self.layers):
            array = self.group[name]
            width = self.widths[index]
            for start in range(0, width, block_width):
                stop = min(start + block_width, width)
                yield index, start, np.asarray(array[:, start:stop], dtype=dtype)

    def iter_active_blocks(
        self, block_width: int = COL_CHUNK
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """Like ``iter_blocks``, over the activity counts (int32): ``(layer, first, block)``."""
        self.require_activity()
        group = self.group[ACTIVE_GROUP]
        for index, name in enumerate(self.layers):
            array = group[name]
            for start in range(0, self.widths[index], block_width):
                stop = min(start + block_width, self.widths[index])
                yield index, start, np.asarray(array[:, start:stop])


#: What ``language_statistics`` computes over a language's samples.
STATISTICS = ("median", "mean")


def language_statistics(
    store: ActivationStore | str | os.PathLike,
    statistic: str = "median",
    block_width: int = COL_CHUNK,
) -> dict[str, dict[int, np.ndarray]]:
    """{language: {layer index: (width,) float32}}: the median or mean over each
    language's samples of every neuron's pooled activation (the store's rows): the
    values steering forces a language's neurons to, read from the store with no
    forward pass (docs/method.md §5, "Interventions beyond zeroing").  Streamed in
    blocks of neurons; computed in float64 (a median of an even count is the mean of
    the two middle values).  Languages in order of first appearance."""
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; known: {list(STATISTICS)}")
    if not isinstance(store, ActivationStore):
        store = ActivationStore(store)
    languages = list(dict.fromkeys(store.languages))
    sample_language = np.asarray(store.languages)
    rows = {lang: np.flatnonzero(sample_language == lang) for lang in languages}
    reduce = np.median if statistic == "median" else np.mean
    result = {
        lang: {m: np.empty(w, dtype=np.float32) for m, w in enumerate(store.widths)}
        for lang in languages
    }
    for m, start, block in store.iter_blocks(block_width):
        if not np.isfinite(block).all():
            row, col = (int(i[0]) for i in np.nonzero(~np.isfinite(block)))
            raise StoreError(
                f"{store.path}: {store.layers[m]} sample {row}, neuron {start + col}: "
                f"{block[row, col]} is not a number"
            )
        for lang in languages:
            result[lang][m][start : start + block.shape[1]] = reduce(block[rows[lang]], axis=0)
    return result
