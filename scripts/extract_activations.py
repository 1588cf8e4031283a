"""Rule extract_activations: the probe through one model × checkpoint into a zarr store."""

import torch
from lingua_franca.logs import log_to
from lingua_franca.pipeline import extract

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    extract(
        snakemake.params.settings,
        snakemake.input.probe,
        snakemake.output[0],
        languages=snakemake.params.languages,
        batch_size=snakemake.params.batch_size,
        device=snakemake.params.device,
        add_special_tokens=snakemake.params.add_special_tokens,
    )
