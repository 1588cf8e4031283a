"""The paper's key-neuron method as a registry entry (docs/method.md §4;
:mod:`lingua_franca.methods`).

The workflow never calls this: the metrics pass (``metrics.compute_metrics``) selects
the z-score regions block by block while it reads the store for LRDS and SADS, and
writes them to ``key_neurons.parquet`` with the score in column ``z``.  This function
runs the same pass for the registry (tests, notebooks, a new method's comparison), so
the table is the metrics' own, with ``z`` named ``score``.
"""

from __future__ import annotations

import os

from lingua_franca.methods import KeyNeurons
from lingua_franca.metrics import compute_metrics
from lingua_franca.store import ActivationStore


def key_neurons(
    store: ActivationStore | str | os.PathLike,
    *,
    block_width: int = 4096,
    z_threshold: float = 2.0,
) -> KeyNeurons:
    """The neurons with z_l(k) > ``z_threshold``, streamed as ``compute_metrics`` streams."""
    result = compute_metrics(store, z_threshold=z_threshold, block_width=block_width)
    table = result.key_neurons().rename(columns={"z": "score"})
    return KeyNeurons(
        "zscore",
        table,
        result.languages,
        list(result.layer_names),
        list(result.widths),
        summary={"z_threshold": result.z_threshold, "z_max_possible": result.z_max_possible},
    )
