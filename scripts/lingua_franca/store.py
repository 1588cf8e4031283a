"""The activation store: one zarr v3 group per model × checkpoint.

Layout (readable with plain ``zarr``, or ``xarray.open_zarr(path, consolidated=False)``)::

    activations.zarr/
        layer_000 … layer_{M-1}   float32 (sample, neuron): mean-pooled MLP neurons
        language                  str (sample,): language of each row
        item                      str (sample,): parallel-corpus item id of each row
        attrs: languages, items, layers, widths, complete, provenance…

Rows are un-normalized; the metrics normalize.  A store is written under a
temporary name and renamed at the end, and carries ``complete: true`` only then,
so a killed job never leaves something that looks finished; the next writer of
the store removes what a killed one left (:mod:`lingua_franca.atomic`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import zarr

from lingua_franca.atomic import remove_stale_temporaries, temporary_path

LAYER_PREFIX = "layer_"
ROW_CHUNK = 256
COL_CHUNK = 4096


def layer_name(index: int) -> str:
    return f"{LAYER_PREFIX}{index:03d}"


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
    ):
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
            "complete": False,
        }
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
        for name in ("language", "item"):
            array = self.group.create_array(
                name, shape=(self.n,), dtype=str, dimension_names=["sample"]
            )
            array[:] = np.array(self.attrs[f"{name}s"], dtype=str)
        return self

    def write(self, rows: Sequence[np.ndarray]) -> None:
        if len(rows) != len(self.arrays):
            raise ValueError(f"expected {len(self.arrays)} layers, got {len(rows)}")
        self._buffer.append([np.asarray(r, dtype=self.dtype) for r in rows])
        self._buffered += len(rows[0])
        if self._row + self._buffered > self.n:
            raise ValueError(f"more rows written than the store's {self.n} samples")
        if self._buffered >= self.row_chunk:
            self._flush()

    def _flush(self) -> None:
        if not self._buffered:
            return
        stop = self._row + self._buffered
        for layer, array in enumerate(self.arrays):
            array[self._row : stop] = np.concatenate([b[layer] for b in self._buffer])
        self._row, self._buffer, self._buffered = stop, [], 0

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        self._flush()
        if self._row != self.n:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise StoreError(f"{self.path}: {self._row} of {self.n} rows written")
        self.group.attrs.update({**self.attrs, "complete": True})
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
