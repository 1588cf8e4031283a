"""Rule compare_key_neurons: where the key-neuron methods' regions agree."""

from lingua_franca.logs import log_to
from lingua_franca.pipeline import compare_key_neurons

with log_to(snakemake.log[0]):
    compare_key_neurons(
        snakemake.input.metrics,
        {
            "zscore": snakemake.input.zscore,
            **dict(zip(snakemake.params.methods, snakemake.input.further)),
        },
        dict(snakemake.output.items()),
    )
