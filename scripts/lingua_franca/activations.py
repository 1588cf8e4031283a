"""Batched extraction: one mean-pooled neuron vector per sample and layer (docs/method.md §2),
and, in the same forward, the activity counts LAPE needs (docs/method.md §9.1).

Batches are right-padded by hand (left padding shifts absolute positions in GPT-2,
OPT and XGLM) and the attention mask keeps padding out of both the model and the
mean.  Only the decoder body runs: the LM head is never needed and is ~40% of a
small model's forward.  Samples are sorted by length within windows of rows to
waste less compute on padding; rows still come out in input order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import closing
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .architectures import NeuronReader, find_activity, find_neurons
from .corpora.probe import PROBE_COLUMNS
from .models import provenance_attrs
from .store import StoreWriter


class RowBlock(NamedTuple):
    """Rows in input order: per layer (rows, width) means and activity counts."""

    means: list[np.ndarray]  # float32
    active: list[np.ndarray] | None  # int32 real tokens with activation value > 0
    n_tokens: np.ndarray  # (rows,) int32 real tokens


class NonFiniteActivationError(FloatingPointError):
    """A layer produced NaN or inf for a sample: the run stops rather than store it."""


def tokenize(tokenizer, texts: Sequence[str], add_special_tokens: bool = False) -> list[list[int]]:
    """Token ids per text, unpadded; no BOS/EOS unless asked (the reference code's choice)."""
    return tokenizer(list(texts), add_special_tokens=add_special_tokens)["input_ids"]


def right_pad(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), real tokens first, padding after."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = torch.as_tensor(x, dtype=torch.long)
        mask[i, : len(x)] = 1
    return input_ids, mask


def _body(model: nn.Module) -> nn.Module:
    """The decoder without the LM head (the causal-LM wrapper's base model)."""
    return getattr(model, "base_model", model)


def pooled_neurons(
    model: nn.Module,
    tokenizer,
    texts: Sequence[str],
    *,
    batch_size: int = 8,
    add_special_tokens: bool = False,
    neuron_module: str | None = None,
    names: Sequence[str] | None = None,
    sort_window: int = 256,
    progress: bool = True,
    count_active: bool = True,
) -> Iterator[RowBlock]:
    """Yield blocks of rows, in input order: per layer, (rows, width) float32 means and
    (``count_active``) int32 counts of real tokens with activation value > 0.

    ``names`` label samples in errors (default "row i").  Rows are sorted by length
    inside each window of ``sort_window`` rows (1 disables sorting); a window is the
    unit that is buffered, so memory grows with it, not with the whole probe.
    """
    names = list(names) if names is not None else [f"row {i}" for i in range(len(texts))]
    ids = tokenize(tokenizer, texts, add_special_tokens)
    for i, x in enumerate(ids):
        if not x:
            raise ValueError(f"{names[i]}: the text has no tokens")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = model.get_input_embeddings().weight.device
    body = _body(model)
    window = max(sort_window, batch_size, 1)
    bar = tqdm(total=len(ids), unit="sample", desc="activations", disable=not progress)
    reader = NeuronReader(model, neuron_module, count_active=count_active)
    with reader, torch.inference_mode(), bar:
        for start in range(0, len(ids), window):
            rows = range(start, min(start + window, len(ids)))
            order = sorted(rows, key=lambda r: -len(ids[r])) if sort_window > 1 else list(rows)
            block: RowBlock | None = None
            for b in range(0, len(order), batch_size):
                batch = order[b : b + batch_size]
                input_ids, mask = right_pad([ids[r] for r in batch], pad_id)
                input_ids, mask = input_ids.to(device), mask.to(device)
                forward = partial(body, input_ids=input_ids, attention_mask=mask, use_cache=False)
                got = reader.read(forward, mask)
                _check_finite(got.means, [names[r] for r in batch])
                if block is None:
                    block = _empty_block(len(rows), [p.shape[1] for p in got.means], count_active)
                at = [r - start for r in batch]
                for layer, p in enumerate(got.means):
                    block.means[layer][at] = p.cpu().numpy()
                for layer, a in enumerate(got.active or []):
                    block.active[layer][at] = a.cpu().numpy()
                block.n_tokens[at] = got.n_tokens.cpu().numpy()
                bar.update(len(batch))
            yield block


def _empty_block(rows: int, widths: list[int], count_active: bool) -> RowBlock:
    return RowBlock(
        [np.empty((rows, w), np.float32) for w in widths],
        [np.empty((rows, w), np.int32) for w in widths] if count_active else None,
        np.empty(rows, np.int32),
    )


def _check_finite(pooled: list[torch.Tensor], names: list[str]) -> None:
    for layer, p in enumerate(pooled):
        bad = (~torch.isfinite(p)).any(dim=1)
        if bad.any():
            sample = names[int(bad.nonzero()[0])]
            raise NonFiniteActivationError(f"layer {layer}: NaN or inf neuron values for {sample}")


def extract_to_store(
    model: nn.Module,
    tokenizer,
    probe,
    path: str | os.PathLike,
    *,
    batch_size: int,
    add_special_tokens: bool = False,
    neuron_module: str | None = None,
    attrs: dict[str, Any] | None = None,
    progress: bool = True,
    store_dtype: str = "float32",
    count_active: bool = True,
    checksums: bool = True,
) -> Path:
    """Pool every probe row through ``model`` into an activation store at ``path``,
    with the activity counts for LAPE unless ``count_active`` is false.

    ``probe`` is a DataFrame with columns row, lang, item, text in row order.  The
    store carries ``provenance_attrs`` (weights fingerprint, tokenizer, dtype, config
    hash, package versions); ``attrs`` (e.g. model name and checkpoint) override them.
    ``checksums=False`` leaves the chunks' checksums out (benchmarks only).
    """
    missing = [c for c in PROBE_COLUMNS if c not in probe.columns]
    if missing:
        raise ValueError(f"probe lacks columns {missing}")
    if len(probe) == 0 or list(probe["row"]) != list(range(len(probe))):
        raise ValueError("probe rows must be 0 … n-1 in order (and at least one)")
    langs = [str(x) for x in probe["lang"]]
    items = [str(x) for x in probe["item"]]
    names = [
        f"row {r} (language {lang}, item {item})"
        for r, lang, item in zip(probe["row"], langs, items)
    ]
    blocks = pooled_neurons(
        model,
        tokenizer,
        list(probe["text"]),
        batch_size=batch_size,
        add_special_tokens=add_special_tokens,
        neuron_module=neuron_module,
        names=names,
        progress=progress,
        count_active=count_active,
    )
    settings = {
        "add_special_tokens": add_special_tokens,
        "neuron_module": find_neurons(model, neuron_module).pattern,
        "batch_size": batch_size,
        "pooling": "mean over real tokens",
    }
    meta = {**provenance_attrs(model, tokenizer, **settings), **(attrs or {})}
    activity = find_activity(model, neuron_module).attrs() if count_active else None
    with closing(blocks):  # closing the generator removes its hooks, also on error
        first = next(blocks)  # widths come from the data, so any hooked module works
        widths = [a.shape[1] for a in first.means]
        with StoreWriter(
            path,
            langs,
            items,
            widths,
            attrs=meta,
            dtype=store_dtype,
            activity=activity,
            checksums=checksums,
        ) as writer:
            for block in chain([first], blocks):
                writer.write(block.means, block.active, block.n_tokens if count_active else None)
    return Path(path)
