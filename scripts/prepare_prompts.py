"""Rule prepare_prompts: the generation prompts of every language (Genesis 1:1-1:3 for
a Bible corpus, else the config's or the first probe items)."""

from lingua_franca.corpora import prepare_prompts
from lingua_franca.logs import log_to

with log_to(snakemake.log[0]):
    prepare_prompts(
        snakemake.params.probe,
        snakemake.params.generation,
        snakemake.params.languages,
        snakemake.input.probe,
        snakemake.output[0],
    )
