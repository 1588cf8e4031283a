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
temporary name, checked, and renamed at the end, and carries ``complete: true`` only
then, so a killed job never leaves something that looks finished; a later writer of
the store removes what a killed one left, and a writer that a newer one took over
never renames its store into place (:mod:`lingua_franca.atomic`).

Every chunk of every array carries a crc32c checksum after its compression. A chunk
that fails it, fails to decompress or is missing is named, with its array and store,
in a :class:`StoreError` that says to delete the store and extract it again; the
store is then moved aside (``.activations.zarr.damaged-…``), so that the workflow
plans its extraction again instead of taking it as up to date. A store written before
checksums existed is still read; its damage shows only when a chunk fails to
decompress.

Attribute ``activations_fingerprint`` identifies the store's content (docs/method.md
§7): two checkpoints whose stores carry the same one gave identical activations on
the same probe, whatever files their weights came from. The writer hashes each
array as it writes it, so the store is never read for it (``content_fingerprint``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from lingua_franca.atomic import (
    Claim,
    Heartbeat,
    TakenOver,
    remove_stale_temporaries,
    replace,
    set_aside,
    temporary_path,
)

log = logging.getLogger(__name__)

LAYER_PREFIX = "layer_"
ACTIVE_GROUP = "active"
ROW_CHUNK = 256
COL_CHUNK = 4096
# zarr's own default compression, then a checksum of the compressed bytes; every chunk
# written, even one that equals the fill value, so that a missing chunk is damage
CODECS = {
    "compressors": (ZstdCodec(level=0), Crc32cCodec()),
    "config": {"write_empty_chunks": True},
}
CHECKSUM = "crc32c"
REMEDY = "Delete the store and extract it again"


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
        checksums: bool = True,
    ):
        """``activity`` (where the counted activation value was read) makes the store
        hold ``n_tokens`` and ``active/``; ``write`` then needs both for every block.
        ``checksums=False`` writes chunks as stores were written before they had
        checksums (benchmarks compare the two)."""
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
        self.claim = Claim(self.path)
        self.checksums = checksums
        self._row = 0
        self._buffer: list[list[np.ndarray]] = []
        self._buffered = 0

    def __enter__(self) -> Self:
        remove_stale_temporaries(self.path)  # what writers that are gone left
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.claim.take()  # from now on, an older writer of this store cannot finish
        self.group = zarr.open_group(self.tmp, mode="w", zarr_format=3)
        self.heartbeat = Heartbeat(self.tmp).__enter__()
        codecs = CODECS if self.checksums else {}
        self.arrays = []
        for name, width in zip(self.attrs["layers"], self.widths):
            array = self.group.create_array(
                name,
                shape=(self.n, width),
                dtype=self.dtype,
                chunks=(self.row_chunk, min(self.col_chunk, width)),
                dimension_names=["sample", "neuron"],
                fill_value=np.nan,
                **codecs,
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
                    **codecs,
                )
                self.active_arrays.append(array)
            self.n_tokens_array = self.group.create_array(
                "n_tokens", shape=(self.n,), dtype=np.int32, dimension_names=["sample"], **codecs
            )
        for name in ("language", "item"):
            array = self.group.create_array(
                name, shape=(self.n,), dtype=str, dimension_names=["sample"], **codecs
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
        self._check_claim()  # a newer writer took over: stop before more work
        if not self._buffered:
            return
        stop = self._row + self._buffered
        for index, array in enumerate(self._targets):
            rows = np.ascontiguousarray(np.concatenate([b[index] for b in self._buffer]))
            array[self._row : stop] = rows
            self._digests[index].update(rows.tobytes())
        self._row, self._buffer, self._buffered = stop, [], 0

    def __exit__(self, exc_type, exc, tb) -> None:
        self.heartbeat.__exit__(None, None, None)
        try:
            if exc_type is not None:
                return
            self._flush()
            if self._row != self.n:
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
            self._verify()
            self._check_claim()  # still the current writer: nobody started since
            replace(self.tmp, self.path)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)  # gone when renamed into place
            self.claim.release()

    def _check_claim(self) -> None:
        try:
            self.claim.check()
        except TakenOver as err:
            raise StoreError(str(err)) from None

    def _verify(self) -> None:
        """Open the finished temporary again as a reader would, and check that it holds
        every array, whole, before it is renamed into place."""
        expected = {name: (self.n, w) for name, w in zip(self.attrs["layers"], self.widths)}
        if self.counts:
            expected |= {f"{ACTIVE_GROUP}/{k}": v for k, v in expected.items()}
            expected["n_tokens"] = (self.n,)
        expected |= {"language": (self.n,), "item": (self.n,)}
        try:
            group = zarr.open_group(self.tmp, mode="r")
            complete = dict(group.attrs).get("complete") is True
            problems = [] if complete else ["not marked complete"]
            for name, shape in expected.items():
                try:
                    array = group[name]
                except KeyError:
                    problems.append(f"array '{name}' is missing")
                    continue
                if array.shape != shape:
                    problems.append(f"array '{name}' has shape {array.shape}, not {shape}")
                missing = missing_chunks(self.tmp, name, array)
                if missing:
                    problems.append(f"array '{name}' lacks chunk(s) {missing[:5]}")
        except Exception as err:  # zarr raises several types for a broken group
            raise StoreError(
                f"{self.path}: the store written at {self.tmp} cannot be opened again ({err});"
                " not renamed into place"
            ) from err
        if problems:
            raise StoreError(
                f"{self.path}: the store written at {self.tmp} is not whole: "
                f"{'; '.join(problems)}; not renamed into place"
            )


def _chunk_keys(array) -> Iterator[tuple[tuple[int, ...], str]]:
    """(chunk coordinates, key relative to the array's folder) of every chunk."""
    for coords in itertools.product(*(range(n) for n in array.cdata_shape)):
        yield coords, array.metadata.encode_chunk_key(coords)


def missing_chunks(store: Path, name: str, array) -> list[tuple[int, ...]]:
    """The chunks of array ``name`` with no file in the store folder ``store`` (zarr
    reads a missing chunk as the fill value)."""
    folder = Path(store) / name
    return [coords for coords, key in _chunk_keys(array) if not (folder / key).is_file()]


class ActivationStore:
    """Read access to a finished store, by layer or by blocks of neurons. Opening it
    checks that every chunk is there; every read checks the chunks' checksums."""

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
        names = [*self.layers, "language", "item"]
        if self.has_activity:
            names += [f"{ACTIVE_GROUP}/{name}" for name in self.layers] + ["n_tokens"]
        self.checksums = True
        self._arrays = {}
        for name in names:
            try:
                array = self._arrays[name] = self.group[name]
            except KeyError:
                raise StoreError(self._damaged(name, None, "the array is missing")) from None
            missing = missing_chunks(self.path, name, array)
            if missing:
                raise StoreError(self._damaged(name, missing[0], "the chunk's file is missing"))
            codecs = [getattr(c, "to_dict", dict)().get("name") for c in array.metadata.codecs]
            self.checksums &= CHECKSUM in codecs
        if not self.checksums:
            log.warning(
                "%s: no chunk checksums (written before stores had them): damage shows only"
                " when a chunk fails to decompress. Delete the store and extract it again"
                " to add them.",
                self.path,
            )

    def _damaged(self, name: str, chunk: tuple[int, ...] | None, why: str) -> str:
        """The message for damage found in array ``name``, after moving the store aside
        so that it is no longer taken for an up-to-date output."""
        where = f"array '{name}'" + (f", chunk {chunk}" if chunk is not None else "")
        try:
            aside = f"it has been moved aside to {set_aside(self.path)}"
        except OSError as err:
            aside = f"it could not be moved aside ({err})"
        return (
            f"{self.path}: {where}: {why.rstrip('.')}. {REMEDY}: {aside}, so that the next"
            " run of the workflow extracts it again (and removes the damaged copy)."
        )

    def _read(self, name: str, selection: tuple[slice, ...]) -> np.ndarray:
        """``self.group[name][selection]``; damage is named, chunk by chunk."""
        array = self._arrays[name]
        try:
            data = array[selection]
        except Exception:  # a checksum (ValueError) or decompression error: which chunk?
            for coords, _ in _chunk_keys(array):
                if not _overlaps(array, coords, selection):
                    continue
                try:
                    array.get_block_selection(coords)
                except Exception as chunk_err:  # as above, for this chunk alone
                    raise StoreError(self._damaged(name, coords, str(chunk_err))) from chunk_err
            raise
        if not self.path.exists():  # moved aside meanwhile: the read may hold fill values
            raise StoreError(
                f"{self.path}: the store was moved aside while it was read (another job found"
                f" it damaged). {REMEDY}."
            )
        return data

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
        return np.asarray(self._read("n_tokens", (slice(None),)), dtype=np.int64)

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
            width = self.widths[index]
            for start in range(0, width, block_width):
                stop = min(start + block_width, width)
                block = self._read(name, (slice(None), slice(start, stop)))
                yield index, start, np.asarray(block, dtype=dtype)

    def iter_active_blocks(
        self, block_width: int = COL_CHUNK
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """Like ``iter_blocks``, over the activity counts (int32): ``(layer, first, block)``."""
        self.require_activity()
        for index, name in enumerate(self.layers):
            for start in range(0, self.widths[index], block_width):
                stop = min(start + block_width, self.widths[index])
                block = self._read(f"{ACTIVE_GROUP}/{name}", (slice(None), slice(start, stop)))
                yield index, start, np.asarray(block)


def _overlaps(array, coords: tuple[int, ...], selection: tuple[slice, ...]) -> bool:
    """Whether chunk ``coords`` of ``array`` holds any element of ``selection``."""
    for c, size, extent, part in zip(coords, array.chunks, array.shape, selection):
        start, stop, _ = part.indices(extent)
        if c * size >= stop or (c + 1) * size <= start:
            return False
    return True


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
