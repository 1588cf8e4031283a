"""Rule compute_metrics: LRDS, SADS, key neurons, SKLR and figures from one store."""

from lingua_franca.logs import log_to
from lingua_franca.pipeline import metrics

with log_to(snakemake.log[0]):
    metrics(
        snakemake.input.store,
        dict(snakemake.output.items()),
        z_threshold=snakemake.params.z_threshold,
        block_width=snakemake.params.block_width,
        bootstrap=snakemake.params.bootstrap,
        device=snakemake.params.device,
        threads=snakemake.threads,
    )
