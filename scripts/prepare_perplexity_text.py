"""Rule prepare_perplexity_text: one language's evaluation text for perplexity."""

from lingua_franca.corpora import prepare_perplexity_text
from lingua_franca.logs import log_to

with log_to(snakemake.log[0]):
    prepare_perplexity_text(
        snakemake.params.perplexity, snakemake.wildcards.lang, snakemake.output[0]
    )
