"""Rule prepare_toy_text: the toy models' training and validation text."""

from lingua_franca.logs import log_to
from lingua_franca.toy import write_training_split

with log_to(snakemake.log[0]):
    write_training_split(
        snakemake.input,
        snakemake.params.validation_fraction,
        snakemake.params.seed,
        snakemake.output.train,
        snakemake.output.valid,
        snakemake.params.paragraphs_per_document,
    )
