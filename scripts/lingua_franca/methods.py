"""The registry of key-neuron methods: ways of finding the neurons specific to a
language on one activation store (docs/method.md §4, §9).

A method is one module of this package with one function,

    key_neurons(store, *, block_width, **settings) -> KeyNeurons

that streams the store in blocks of neurons and returns a table with one row per
(language, neuron of its region): ``language``, ``layer``, ``neuron`` (index within
its layer) and ``score``, the method's own measure of how specific the neuron is (a
method may add columns after these).  Its entry in ``METHODS`` names the module, how
its settings are read from the config's ``analysis`` section and what its score means.

* ``zscore`` (docs/method.md §4), the paper's.  The workflow computes it in the metrics
  pass, beside LRDS and SADS, and keeps its files where they always were
  (``key_neurons.parquet`` with the score in column ``z``, ``metrics.json``, the
  deactivation table of docs/method.md §5); its registry function gives the same table.
* ``lape`` (docs/method.md §9.1) and ``ap`` (§9.2), further methods: each selected by
  its own job, its regions deactivated in the same ablation job as the z-score regions,
  and compared with them (§9).

Adding a method: its module, one entry in ``METHODS``, its name in the enum of
``analysis.key_neuron_methods`` in the config schema (with its settings, if any, under
``analysis``), its section of docs/method.md §9 and its test; tests/test_methods.py
keeps the schema and this registry in sync and runs every entry on a small store.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lingua_franca.outputs import OutputFiles

__all__ = [
    "COLUMNS",
    "METHODS",
    "PAPER_METHOD",
    "KeyNeurons",
    "Method",
    "SelectionFiles",
    "further_methods",
    "select",
]

COLUMNS = ("language", "layer", "neuron", "score")  # every method's table starts so
PAPER_METHOD = "zscore"  # computed in the metrics pass; the others by select_key_neurons


@dataclass
class KeyNeurons:
    """One method's regions on one store: the table and what it is relative to."""

    method: str
    table: pd.DataFrame  # COLUMNS first, sorted by language (probe order), layer, neuron
    languages: list[str]
    layer_names: list[str]
    widths: list[int]
    summary: dict[str, Any] = field(default_factory=dict)  # the method's settings, thresholds…

    def __post_init__(self) -> None:
        if list(self.table.columns[: len(COLUMNS)]) != list(COLUMNS):
            raise ValueError(
                f"{self.method}: the table's columns must start with {list(COLUMNS)}, "
                f"got {list(self.table.columns)}"
            )
        unknown = sorted(set(map(str, self.table["language"])) - set(self.languages))
        layer = self.table["layer"].to_numpy(np.int64)
        neuron = self.table["neuron"].to_numpy(np.int64)
        inside = (layer >= 0) & (layer < len(self.widths))
        inside[inside] &= (neuron[inside] >= 0) & (
            neuron[inside] < np.asarray(self.widths)[layer[inside]]
        )
        if unknown or not inside.all():
            raise ValueError(
                f"{self.method}: rows outside the store (languages {unknown}, "
                f"{int((~inside).sum())} neurons outside the layer widths {self.widths})"
            )

    @property
    def n_neurons(self) -> int:
        return int(sum(self.widths))

    def counts(self) -> np.ndarray:
        """(L, M): neurons of language l's region within layer m."""
        index = {lang: i for i, lang in enumerate(self.languages)}
        counts = np.zeros((len(self.languages), len(self.widths)), dtype=np.int64)
        lang = self.table["language"].map(index).to_numpy(np.int64)
        np.add.at(counts, (lang, self.table["layer"].to_numpy(np.int64)), 1)
        return counts

    def per_language(self) -> pd.DataFrame:
        """language, key_neurons, key_fraction (of all K neurons)."""
        n = self.counts().sum(axis=1)
        return pd.DataFrame(
            {"language": self.languages, "key_neurons": n, "key_fraction": n / self.n_neurons}
        )

    def per_layer(self) -> pd.DataFrame:
        """layer, name, width, key_neurons (summed over languages: a neuron in two
        regions counts twice, as SKLR does), key_neurons_unique, then one column per
        language."""
        counts = self.counts()
        unique = self.table.drop_duplicates(["layer", "neuron"])["layer"].to_numpy(np.int64)
        table = pd.DataFrame(
            {
                "layer": np.arange(len(self.widths)),
                "name": self.layer_names,
                "width": self.widths,
                "key_neurons": counts.sum(axis=0),
                "key_neurons_unique": np.bincount(unique, minlength=len(self.widths)),
            }
        )
        for lang, row in zip(self.languages, counts):
            table[f"key_neurons_{lang}"] = row
        return table

    def overview(self) -> dict[str, Any]:
        """What selection.json holds besides the method's own summary."""
        per_language = self.counts().sum(axis=1)
        return {
            "method": self.method,
            "score": METHODS[self.method].score if self.method in METHODS else None,
            "languages": self.languages,
            "n_layers": len(self.widths),
            "n_neurons": self.n_neurons,
            "key_neurons": int(per_language.sum()),
            "key_neurons_unique": len(self.table.drop_duplicates(["layer", "neuron"])),
            "key_neurons_per_language": dict(zip(self.languages, map(int, per_language))),
        }

    def write(self, files: SelectionFiles, extra: Mapping[str, Any] | None = None) -> None:
        """Every file of ``files``: the table, the counts and selection.json (the
        method's summary, then ``extra``: provenance)."""
        files.make_folders()
        self.table.to_parquet(files.key_neurons, index=False)
        self.per_language().to_csv(files.per_language, index=False)
        self.per_layer().to_csv(files.per_layer, index=False)
        summary = {**self.summary, **self.overview(), **(extra or {})}
        files.summary.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")


@dataclass(frozen=True)
class SelectionFiles(OutputFiles):
    """What a further method's selection job writes (rule select_key_neurons)."""

    key_neurons: Path = field(metadata={"suffix": ".parquet"})  # language, layer, neuron, score
    summary: Path = field(metadata={"suffix": ".json"})  # selection.json
    per_language: Path = field(metadata={"suffix": ".csv"})
    per_layer: Path = field(metadata={"suffix": ".csv"})


@dataclass(frozen=True)
class Method:
    """A registry entry: the module holding ``key_neurons``, the function that reads
    its settings from the config's ``analysis`` section, and what ``score`` means;
    the selection job's resources (memory in MB and minutes on a cluster, for the
    largest model of the experiment configs); and ``small``, settings (over those read
    from the config) under which a store of a few dozen neurons gives every language a
    region, where the defaults may select nothing: what tests and tiny workflows use."""

    name: str
    module: str
    settings: Callable[[Mapping[str, Any]], dict[str, Any]]
    score: str
    mem_mb: int = 4000
    runtime: int = 30
    small: Mapping[str, Any] = field(default_factory=dict)
    # the name of a function of the module, ``shrink(table, fraction) -> table``, that
    # gives the regions a selection ``fraction`` as large would keep, without selecting
    # again: steering's sweep of region sizes (docs/method.md §12); None: no sweep
    shrink: str | None = None

    def function(self) -> Callable[..., KeyNeurons]:
        return importlib.import_module(self.module).key_neurons  # imported when used

    def shrinker(self) -> Callable[[pd.DataFrame, float], pd.DataFrame] | None:
        """``shrink`` of the module, or None."""
        return getattr(importlib.import_module(self.module), self.shrink) if self.shrink else None

    def select(self, store, settings: Mapping[str, Any], block_width: int = 4096) -> KeyNeurons:
        """This method's regions on ``store`` (an ActivationStore or a path)."""
        return self.function()(store, block_width=block_width, **settings)


METHODS: dict[str, Method] = {
    "zscore": Method(
        "zscore",
        "lingua_franca.zscore",
        lambda analysis: {"z_threshold": analysis["z_threshold"]},
        "z-score across languages of the neuron's contribution to the language's "
        "similarity; higher is more specific, key when > z_threshold",
        small={"z_threshold": 1.0},  # over 3 or 4 languages no z exceeds √(L−1)
    ),
    "lape": Method(
        "lape",
        "lingua_franca.lape",
        lambda analysis: dict(analysis["lape"]),
        "LAPE, the entropy over languages of the neuron's activation probability; "
        "lower is more specific",
        small={"top_rate": 0.3, "filter_rate": 0.8},  # 1% of 32 neurons is none
    ),
    "ap": Method(
        "ap",
        "lingua_franca.ap",
        lambda analysis: dict(analysis["ap"]),
        "average precision of retrieving the language's samples ranked by the neuron's "
        "pooled activation (top: highest first; bottom: lowest first); higher is more "
        "specific, chance = the language's share of the samples",
        # BENCHMARKS.md: 441 MiB peak on a BLOOM-7b1-shaped store; LLaMA-2-70b's K is 4.7×
        mem_mb=2000,
        small={"top": 3, "bottom": 2},
        shrink="shrink",  # the N of top and bottom
    ),
}


def further_methods(methods: Sequence[str]) -> list[str]:
    """The configured methods other than the paper's, in config order: each has its own
    selection job and its own folder, methods/<name>/."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown key-neuron methods {unknown}; known: {list(METHODS)}")
    return [m for m in methods if m != PAPER_METHOD]


def select(method: str, store, settings: Mapping[str, Any], block_width: int = 4096) -> KeyNeurons:
    """The regions of ``method`` (a name in ``METHODS``) on ``store``."""
    if method not in METHODS:
        raise ValueError(f"unknown key-neuron method {method!r}; known: {list(METHODS)}")
    return METHODS[method].select(store, settings, block_width)
