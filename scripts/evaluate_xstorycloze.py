"""Rule evaluate_xstorycloze: lm-eval's accuracy per language, both task kinds."""

import torch
from lingua_franca.logs import log_to
from lingua_franca.pipeline import evaluate

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    evaluate(
        snakemake.params.settings,
        snakemake.input.stories,
        snakemake.output[0],
        device=snakemake.params.device,
        batch_size=snakemake.params.batch_size,
        limit=snakemake.params.limit,
    )
