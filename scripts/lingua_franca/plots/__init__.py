"""Every figure of the project, one function per figure, from tables or arrays only:
functions take plain arrays or pandas objects (never a store or a result object)
and a path, and write one PNG.

- ``checkpoint``: one model × checkpoint — similarity map (paper Fig. 2),
  layer-wise LRDS/SADS (Fig. 3), key neurons per layer (Fig. 5) and per language (Fig. 6)
- ``ablation``: perplexity increase under deactivation (Table 1 as a heatmap)
- ``methods``: two key-neuron methods compared, per checkpoint and across checkpoints
- ``evolution``: across checkpoints (Fig. 4) and scales (Fig. 7, 10), key neurons
  over layers and languages for every checkpoint of a model (Fig. 5, 6)
- ``common``: the bare Agg figure and how it is saved

Matplotlib is imported only when a figure is drawn: callers import these modules
inside the functions that draw.
"""

from lingua_franca.plots.ablation import plot_ppl_increase
from lingua_franca.plots.checkpoint import (
    plot_key_neurons_per_language,
    plot_key_neurons_per_layer,
    plot_layerwise_scores,
    plot_similarity_map,
)
from lingua_franca.plots.evolution import (
    plot_evolution,
    plot_key_languages,
    plot_key_layers,
    plot_scale,
)
from lingua_franca.plots.methods import plot_overlap

__all__ = [
    "plot_evolution",
    "plot_key_languages",
    "plot_key_layers",
    "plot_key_neurons_per_language",
    "plot_key_neurons_per_layer",
    "plot_layerwise_scores",
    "plot_overlap",
    "plot_ppl_increase",
    "plot_scale",
    "plot_similarity_map",
]
