"""Rule aggregate: the summary tables and figures across checkpoints and scales."""

from lingua_franca.logs import log_to
from lingua_franca.pipeline import aggregate

with log_to(snakemake.log[0]):
    aggregate(
        snakemake.params.checkpoints,
        {
            kind: list(snakemake.input[kind])
            for kind in (
                "metrics",
                "xstorycloze",
                "ablation",
                "bootstrap",
                "overlap",
                "methods_ablation",
                "language",
                "steering",
            )
        },
        list(snakemake.output),
        methods=snakemake.params.methods,
        samples=snakemake.params.samples,
        steering=snakemake.params.steering,
    )
