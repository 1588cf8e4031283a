"""Rule select_key_neurons: a further key-neuron method's regions from one store."""

from lingua_franca.logs import log_to
from lingua_franca.pipeline import select_key_neurons

with log_to(snakemake.log[0]):
    select_key_neurons(
        snakemake.wildcards.method,
        snakemake.input[0],
        dict(snakemake.output.items()),
        settings=snakemake.params.settings,
        block_width=snakemake.params.block_width,
    )
