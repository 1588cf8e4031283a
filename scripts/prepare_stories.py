"""Rule prepare_stories: XStoryCloze stories per story language (its own list, not the
probe languages), and which requested languages have none."""

from lingua_franca.corpora import prepare_stories
from lingua_franca.logs import log_to

with log_to(snakemake.log[0]):
    prepare_stories(snakemake.params.xstorycloze, snakemake.output[0])
