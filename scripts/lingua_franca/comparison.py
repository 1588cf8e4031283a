"""Where two key-neuron methods agree (docs/method.md §9): the overlap of their regions
on one checkpoint, and the comparison across checkpoints and scales.

* ``overlap_table``: for every pair of methods, language (and ``any``: the union of
  every language's region) and layer (and ``all``), the two regions' sizes, their
  intersection and union, the Jaccard index and the intersection expected by chance;
* ``write_overlap``: ``overlap.csv`` and its figure (``OverlapFiles``);
* ``method_summary_names`` / ``write_method_summary``: the tables and figures of
  ``results/summary/`` that set the methods side by side for every checkpoint: region
  sizes, own-vs-others perplexity increase under deactivation (each method's
  ``ablation.json``) and the overlap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lingua_franca.aggregate import (
    deactivation_columns,
    file_stem,
    grid_of,
    last_checkpoints,
    read_result,
)
from lingua_franca.outputs import OutputFiles

ANY_LANGUAGE = "any"  # the union of every language's region
ALL_LAYERS = "all"
OVERLAP_COLUMNS = [
    "method_a",
    "method_b",
    "language",
    "layer",
    "neurons",  # K, or the layer's width: the scope both regions are drawn from
    "size_a",
    "size_b",
    "intersection",
    "union",
    "jaccard",
    "expected_intersection",
]
SUMMARY_TABLES = ("methods.csv", "methods_overlap.csv")
SUMMARY_FIGURES = ("methods_evolution", "methods_scale")  # one of each per family


# ------------------------------------------------------------------ one checkpoint


def region_indices(
    table: pd.DataFrame, languages: Sequence[str], widths: Sequence[int]
) -> dict[str, np.ndarray]:
    """{language: sorted global neuron indices of its region} (and ``any``: their union)
    from a key-neuron table's language, layer and neuron columns."""
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
    unknown = sorted(set(map(str, table["language"])) - set(languages))
    if unknown:
        raise ValueError(f"regions of languages {unknown} not among {list(languages)}")
    index = offsets[table["layer"].to_numpy(np.int64)] + table["neuron"].to_numpy(np.int64)
    lang = table["language"].astype(str).to_numpy()
    regions = {name: np.unique(index[lang == name]) for name in languages}
    regions[ANY_LANGUAGE] = np.unique(index)
    return regions


def _jaccard(intersection: int, union: int) -> float:
    """|A∩B| / |A∪B|; two empty regions agree (1), as region stability counts them
    (docs/method.md §10)."""
    return intersection / union if union else 1.0


def overlap_table(
    tables: Mapping[str, pd.DataFrame], languages: Sequence[str], widths: Sequence[int]
) -> pd.DataFrame:
    """One row per pair of methods (in the order of ``tables``) × language (then
    ``any``) × layer (then ``all``): see ``OVERLAP_COLUMNS``.  ``expected_intersection``
    is |A|·|B| / neurons, the mean intersection of two uniform random sets of those
    sizes drawn from the same neurons."""
    widths = [int(w) for w in widths]
    offsets = np.concatenate([[0], np.cumsum(widths)])
    regions = {m: region_indices(t, languages, widths) for m, t in tables.items()}
    scopes = [(m, int(offsets[m]), int(offsets[m + 1])) for m in range(len(widths))]
    scopes.append((ALL_LAYERS, 0, int(offsets[-1])))
    rows = []
    for a, b in combinations(tables, 2):
        for lang in [*languages, ANY_LANGUAGE]:
            for layer, start, stop in scopes:
                part = [r[(r >= start) & (r < stop)] for r in (regions[a][lang], regions[b][lang])]
                inter = len(np.intersect1d(part[0], part[1], assume_unique=True))
                union = len(part[0]) + len(part[1]) - inter
                rows.append(
                    {
                        "method_a": a,
                        "method_b": b,
                        "language": lang,
                        "layer": str(layer),
                        "neurons": stop - start,
                        "size_a": len(part[0]),
                        "size_b": len(part[1]),
                        "intersection": inter,
                        "union": union,
                        "jaccard": _jaccard(inter, union),
                        "expected_intersection": len(part[0]) * len(part[1]) / (stop - start),
                    }
                )
    return pd.DataFrame(rows, columns=OVERLAP_COLUMNS)


@dataclass(frozen=True)
class OverlapFiles(OutputFiles):
    """What rule compare_key_neurons writes."""

    table: Path = field(metadata={"suffix": ".csv"})  # overlap.csv
    figure: Path = field(metadata={"suffix": ".png"})


def write_overlap(overlap: pd.DataFrame, files: OverlapFiles, title: str = "") -> None:
    from lingua_franca.plots import plot_overlap  # matplotlib only when the figure is drawn

    files.make_folders()
    overlap.to_csv(files.table, index=False)
    plot_overlap(overlap, files.figure, title=title)


# ------------------------------------------------------------ across checkpoints


def method_summary_names(grid: Iterable[tuple[str, str, str]], methods: Sequence[str]) -> list[str]:
    """The summary files that compare the methods, for ``grid`` = (model, family,
    checkpoint) triples and the configured ``methods``: none with a single method."""
    if len(methods) < 2:
        return []
    families = dict.fromkeys(family for _, family, _ in grid)
    return [*SUMMARY_TABLES] + [
        f"{figure}_{file_stem(f)}.png" for f in families for figure in SUMMARY_FIGURES
    ]


def _deactivation(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A method's regions and its deactivation table (ablation.json) in one row, with
    the columns metrics.csv has for it (intervals included)."""
    regions = [c for c in doc.get("conditions", []) if c.get("kind") == "language"]
    k = doc.get("n_neurons")
    size = sum(int(c["neurons"]) for c in regions)
    return {
        "key_neurons": size,
        "key_fraction": size / k if k else None,
        "languages_with_region": sum(int(c["neurons"]) > 0 for c in regions),
        "random_fraction": doc.get("random_fraction"),
        **deactivation_columns(doc),
    }


def method_tables(
    records: Iterable[Mapping[str, Any]], methods: Sequence[str]
) -> dict[str, pd.DataFrame]:
    """``methods.csv``: one row per checkpoint × method (its regions, deactivation and
    Jaccard index with the first method, over every language's region together
    (``any``) and averaged over the languages with a region under either method);
    ``methods_overlap.csv``: every checkpoint's
    overlap rows.  A record holds ``ablation`` (the first method's ablation.json),
    ``methods_ablation`` ({further method: its ablation.json}) and ``overlap``; without a
    configured parameter count, its ``metrics`` (metrics.json) gives the measured one."""
    ident_keys = ["model", "family", "checkpoint", "step", "parameters"]
    rows, overlaps = [], []
    first = methods[0]
    for record in records:
        ident = {key: record.get(key) for key in ident_keys}
        if ident["parameters"] is None and record.get("metrics"):  # as metrics.csv counts them
            provenance = read_result(record["metrics"], record).get("provenance") or {}
            ident["parameters"] = provenance.get("n_parameters")
        overlap = pd.read_csv(record["overlap"], dtype={"layer": str})
        overlaps.append(overlap.assign(**ident)[ident_keys + list(overlap.columns)])
        whole = overlap[(overlap["layer"] == ALL_LAYERS) & (overlap["method_a"] == first)]
        docs = {first: record["ablation"], **record["methods_ablation"]}
        for method in methods:
            pair = whole[whole["method_b"] == method]
            # languages without a region under either method would count as agreement
            compared = (pair["language"] != ANY_LANGUAGE) & (pair["union"] > 0)
            per_language = pair[compared]["jaccard"]
            any_language = pair[pair["language"] == ANY_LANGUAGE]["jaccard"]
            rows.append(
                {
                    **ident,
                    "method": method,
                    **_deactivation(read_result(docs[method], record)),
                    f"jaccard_{first}": any_language.iloc[0] if len(any_language) else None,
                    f"mean_jaccard_{first}": per_language.mean() if len(per_language) else None,
                }
            )
    columns = [*ident_keys, "method", *_deactivation({}), f"jaccard_{first}"]
    return {
        "methods.csv": pd.DataFrame(rows, columns=[*columns, f"mean_jaccard_{first}"]),
        "methods_overlap.csv": (
            pd.concat(overlaps, ignore_index=True)
            if overlaps
            else pd.DataFrame(columns=ident_keys + OVERLAP_COLUMNS)
        ),
    }


def write_method_summary(
    records: Sequence[Mapping[str, Any]],
    methods: Sequence[str],
    paths: Mapping[str, str | Path],
) -> dict[str, Path]:
    """Write ``methods.csv``, ``methods_overlap.csv`` and the figures per family, each
    to ``paths[name]`` (every name ``method_summary_names`` gives); returns them."""
    from lingua_franca.plots import methods as figures  # matplotlib only here

    names = method_summary_names(grid_of(records), methods)
    absent = [name for name in names if name not in paths]
    if absent:
        raise ValueError(f"no path given for summary files {absent}")
    paths = {name: Path(paths[name]) for name in names}
    if not names:
        return paths
    tables = method_tables(records, methods)
    for name in SUMMARY_TABLES:
        tables[name].to_csv(paths[name], index=False)
    table = tables["methods.csv"]
    for family, rows in table.groupby("family", sort=False):
        stem = file_stem(family)
        figures.plot_methods_evolution(
            rows, paths[f"methods_evolution_{stem}.png"], methods, family=family
        )
        last = last_checkpoints(rows.drop_duplicates(["model", "checkpoint"]))
        chosen = rows.merge(last[["model", "checkpoint"]], on=["model", "checkpoint"])
        figures.plot_methods_scale(
            chosen, paths[f"methods_scale_{stem}.png"], methods, family=family
        )
    return paths
