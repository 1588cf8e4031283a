"""LAPE, language activation probability entropy (docs/method.md §9.1; Tang et al., ACL 2024).

A second way to find language-specific neurons, from the activity counts that
extraction stores beside the means (``n_tokens``, ``active/layer_NNN``):

* ``activation_probabilities`` streams the counts in blocks of neurons and returns
  p_l(k), token-weighted, as an (L, K) float64 array;
* ``lape_from_probabilities`` takes the entropies, the two global thresholds (the
  k-th smallest of all L·K probabilities) and the selection;
* ``compute_lape`` is both, from a store;
* ``key_neurons`` is ``compute_lape`` as the registry of key-neuron methods calls it
  (:mod:`lingua_franca.methods`): the regions as a table with the LAPE in ``score``.

Memory: the thresholds need every p of every layer, so the whole (L, K) array is kept
(9 languages × BLOOM-7b1's 491,520 neurons: 35 MB) plus one partitioned copy of it;
the counts are read one (samples × block width) block at a time, so nothing grows
with samples × K.
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
    "LapeResult",
    "activation_probabilities",
    "compute_lape",
    "key_neurons",
    "kth_smallest",
    "lape_entropy",
    "lape_from_probabilities",
]

KEY_COLUMNS = ("language", "layer", "neuron", "score", "p")
#: The authors' defaults (docs/method.md §9.1); the config's ``analysis.lape`` overrides them.
DEFAULTS = {"top_rate": 0.01, "filter_rate": 0.95, "activation_bar_ratio": 0.95}
_ENTROPY_CHUNK = 1 << 16  # neurons per entropy step: bounds the (L, chunk) temporaries


def activation_probabilities(
    store: ActivationStore, block_width: int = 4096
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(languages, p, tokens): p[l, k] = active tokens of language l / its tokens.

    Token-weighted over all real tokens of the language's samples, not a mean of
    per-sample fractions.  Languages in order of first appearance; neurons layer by
    layer.  A store without activity counts raises ``StoreError`` (re-extract it).
    """
    store.require_activity()
    if block_width < 1:
        raise ValueError("block_width must be positive")
    languages = list(dict.fromkeys(store.languages))
    sample_lang = np.array([languages.index(x) for x in store.languages])
    onehot = (sample_lang[None, :] == np.arange(len(languages))[:, None]).astype(np.float64)
    n_tokens = store.n_tokens()
    if len(n_tokens) != store.n_samples or np.any(n_tokens < 1):
        raise StoreError(
            f"{store.path}: n_tokens must be ≥ 1 for each of the {store.n_samples} samples"
        )
    tokens = onehot @ n_tokens
    offsets = np.concatenate([[0], np.cumsum(store.widths)])
    p = np.empty((len(languages), store.n_neurons))
    for m, start, block in store.iter_active_blocks(block_width):
        bad = (block < 0) | (block > n_tokens[:, None])
        if bad.any():
            row, col = (int(i[0]) for i in np.nonzero(bad))
            raise StoreError(
                f"{store.path}: active/{store.layers[m]} sample {row}, neuron {start + col}: "
                f"{int(block[row, col])} active tokens of {int(n_tokens[row])}"
            )
        at = offsets[m] + start
        p[:, at : at + block.shape[1]] = (onehot @ block) / tokens[:, None]
    return languages, p, tokens.astype(np.int64)


def lape_entropy(p: np.ndarray) -> np.ndarray:
    """−Σ_l p'_l log p'_l with p' = p / Σ_l p (over axis 0); p' = 0 where Σ_l p = 0,
    and 0 · log 0 = 0, so a neuron active in no language has entropy 0."""
    p = np.asarray(p, dtype=np.float64)
    total = p.sum(axis=0)
    share = np.divide(p, total, out=np.zeros_like(p), where=total > 0)
    logs = np.log(share, out=np.zeros_like(share), where=share > 0)
    return -(share * logs).sum(axis=0)


def kth_smallest(size: int, rate: float) -> int:
    """The 1-based rank of the threshold: round(size · rate) with Python's ``round``
    (half to even), as the authors' code; clamped to 1 … size for tiny arrays."""
    return min(max(round(size * rate), 1), size)


@dataclass
class LapeResult:
    """Thresholds, the selected neurons and their languages."""

    languages: list[str]
    layer_names: list[str]
    widths: list[int]
    settings: dict[str, float]  # top_rate, filter_rate, activation_bar_ratio
    tokens: np.ndarray  # (L,) real tokens per language
    filter_value: float  # q(filter_rate)
    activation_bar: float  # q(activation_bar_ratio)
    n_candidates: int  # neurons with some p_l(k) > q(filter_rate)
    n_target: int  # round(K · top_rate)
    selected: np.ndarray  # global neuron indices, ascending
    entropy: np.ndarray  # LAPE of each selected neuron
    probabilities: np.ndarray  # (selected, L) p_l(k)
    cut: dict  # entropy at the cut, neurons tied there, how many of them were kept

    @property
    def n_neurons(self) -> int:
        return int(sum(self.widths))

    @property
    def member(self) -> np.ndarray:
        """(selected, L): the selected neuron belongs to language l (p > activation bar)."""
        return self.probabilities > self.activation_bar

    def _layer_neuron(self) -> tuple[np.ndarray, np.ndarray]:
        offsets = np.concatenate([[0], np.cumsum(self.widths)])
        layer = np.searchsorted(offsets, self.selected, side="right") - 1
        return layer, self.selected - offsets[layer]

    @property
    def key_counts(self) -> np.ndarray:
        """(L, M): neurons of language l's region within layer m."""
        layer, _ = self._layer_neuron()
        counts = np.zeros((len(self.languages), len(self.widths)), dtype=np.int64)
        for lang in range(len(self.languages)):
            counts[lang] = np.bincount(layer[self.member[:, lang]], minlength=len(self.widths))
        return counts

    def key_neurons(self) -> pd.DataFrame:
        """One row per (language, selected neuron of its region): language, layer,
        neuron (index within its layer), score (the neuron's LAPE, lower = more
        specific), p (its activation probability in that language); sorted by
        language (probe order), layer, neuron."""
        layer, neuron = self._layer_neuron()
        row, lang = np.nonzero(self.member)
        order = np.lexsort((row, lang))  # selected is ascending: (layer, neuron) order
        row, lang = row[order], lang[order]
        return pd.DataFrame(
            {
                "language": pd.Series(np.array(self.languages, dtype=object)[lang], dtype="str"),
                "layer": layer[row].astype(np.int32),
                "neuron": neuron[row].astype(np.int32),
                "score": self.entropy[row].astype(np.float64),
                "p": self.probabilities[row, lang].astype(np.float64),
            },
            columns=list(KEY_COLUMNS),
        )

    def summary(self) -> dict:
        k = self.n_neurons
        counts = self.key_counts
        per_language = counts.sum(axis=1)
        return {
            "method": "lape",
            "languages": self.languages,
            "n_layers": len(self.widths),
            "n_neurons": k,
            **self.settings,
            "tokens_per_language": dict(zip(self.languages, map(int, self.tokens))),
            "filter_value": self.filter_value,
            "activation_bar": self.activation_bar,
            "candidates": self.n_candidates,
            "target": self.n_target,
            "selected": len(self.selected),
            "selected_in_no_language": int((~self.member.any(axis=1)).sum()),
            "cut": self.cut,
            "key_neurons_per_language": dict(zip(self.languages, map(int, per_language))),
            "key_fraction_per_language": {
                lang: int(c) / k for lang, c in zip(self.languages, per_language)
            },
            "key_neurons_per_layer": counts.sum(axis=0).tolist(),
            "definitions": {
                "p": "active tokens of the language / its real tokens (token-weighted); "
                "active = activation value > 0",
                "score": "LAPE = entropy of p normalised over languages; lower = more specific",
                "threshold": "q(r) = the round(L*K*r)-th smallest of all L*K values of p",
                "candidates": "neurons with some p > q(filter_rate); the others are dropped",
                "selection": "the round(K*top_rate) candidates of lowest LAPE; ties at the "
                "cut go to the higher max-over-languages p, then the lower (layer, neuron)",
                "region": "a selected neuron is in language l's region when p_l > "
                "q(activation_bar_ratio); it may be in several or in none",
            },
        }


def _check_rate(name: str, value: float) -> float:
    value = float(value)
    if not 0 < value <= 1:
        raise ValueError(f"LAPE {name} must be in (0, 1], got {value}")
    return value


def lape_from_probabilities(
    p: np.ndarray,
    widths: Sequence[int],
    languages: Sequence[str],
    *,
    top_rate: float = DEFAULTS["top_rate"],
    filter_rate: float = DEFAULTS["filter_rate"],
    activation_bar_ratio: float = DEFAULTS["activation_bar_ratio"],
    tokens: np.ndarray | None = None,
    layer_names: Sequence[str] | None = None,
) -> LapeResult:
    """Select LAPE neurons from p (L, K), neurons layer by layer (docs/method.md §9.1)."""
    settings = {
        "top_rate": _check_rate("top_rate", top_rate),
        "filter_rate": _check_rate("filter_rate", filter_rate),
        "activation_bar_ratio": _check_rate("activation_bar_ratio", activation_bar_ratio),
    }
    p = np.asarray(p, dtype=np.float64)
    widths = [int(w) for w in widths]
    if p.ndim != 2 or p.shape != (len(languages), sum(widths)) or p.size == 0:
        raise ValueError(
            f"p has shape {p.shape}, expected ({len(languages)} languages, {sum(widths)} neurons)"
        )
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError("activation probabilities must lie in [0, 1] (NaN is not allowed)")
    n_lang, k = p.shape

    ranks = [kth_smallest(p.size, settings[r]) for r in ("filter_rate", "activation_bar_ratio")]
    flat = np.partition(p.ravel(), sorted({r - 1 for r in ranks}))
    filter_value, bar = (float(flat[r - 1]) for r in ranks)
    del flat

    entropy = np.empty(k)
    for start in range(0, k, _ENTROPY_CHUNK):
        entropy[start : start + _ENTROPY_CHUNK] = lape_entropy(p[:, start : start + _ENTROPY_CHUNK])
    candidates = np.flatnonzero((p > filter_value).any(axis=0))
    n_target = round(k * settings["top_rate"])
    # lowest entropy first; among equal entropies the neuron that fires more often in
    # its most active language, then the lower (layer, neuron)
    peak = p.max(axis=0)[candidates]
    order = np.lexsort((candidates, -peak, entropy[candidates]))
    chosen = candidates[order[:n_target]]
    cut: dict = {"entropy": None, "tied": 0, "tied_kept": 0}
    if len(chosen):
        at_cut = entropy[chosen[-1]]
        tied = entropy[candidates] == at_cut
        cut = {
            "entropy": float(at_cut),
            "tied": int(tied.sum()),
            "tied_kept": int((entropy[chosen] == at_cut).sum()),
        }
    selected = np.sort(chosen)
    return LapeResult(
        languages=[str(x) for x in languages],
        layer_names=list(layer_names or [f"layer_{m:03d}" for m in range(len(widths))]),
        widths=widths,
        settings=settings,
        tokens=np.zeros(n_lang, np.int64) if tokens is None else np.asarray(tokens),
        filter_value=filter_value,
        activation_bar=bar,
        n_candidates=len(candidates),
        n_target=n_target,
        selected=selected,
        entropy=entropy[selected],
        probabilities=p[:, selected].T.copy(),
        cut=cut,
    )


def compute_lape(
    store: ActivationStore | str | os.PathLike,
    *,
    top_rate: float = DEFAULTS["top_rate"],
    filter_rate: float = DEFAULTS["filter_rate"],
    activation_bar_ratio: float = DEFAULTS["activation_bar_ratio"],
    block_width: int = 4096,
) -> LapeResult:
    """LAPE regions of one activation store, its counts streamed in blocks of neurons.

    A store written before extraction counted activity raises ``StoreError`` saying
    to re-extract it (the z-score metrics still run on it).
    """
    if isinstance(store, (str, os.PathLike)):
        store = ActivationStore(store)
    languages, p, tokens = activation_probabilities(store, block_width)
    return lape_from_probabilities(
        p,
        store.widths,
        languages,
        top_rate=top_rate,
        filter_rate=filter_rate,
        activation_bar_ratio=activation_bar_ratio,
        tokens=tokens,
        layer_names=store.layers,
    )


def key_neurons(
    store: ActivationStore | str | os.PathLike, *, block_width: int = 4096, **settings: float
) -> KeyNeurons:
    """The LAPE regions of ``store`` for the registry (:mod:`lingua_franca.methods`):
    ``compute_lape``'s table (language, layer, neuron, score = LAPE, p) and summary."""
    result = compute_lape(store, block_width=block_width, **settings)
    return KeyNeurons(
        "lape",
        result.key_neurons(),
        result.languages,
        result.layer_names,
        result.widths,
        summary=result.summary(),
    )
