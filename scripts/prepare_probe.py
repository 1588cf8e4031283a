"""Rule prepare_probe: load, validate and sample the probe corpus; write the one
probe file (language blocks, the same item order in each) that later rules read."""

from lingua_franca.corpora import prepare_probe
from lingua_franca.logs import log_to

with log_to(snakemake.log[0]):
    prepare_probe(
        snakemake.params.probe,
        snakemake.params.languages,
        snakemake.params.seed,
        snakemake.output.probe,
        snakemake.output.alignment,
    )
