"""Rule fetch_item: download one item of the fetch plan; write its manifest."""

from lingua_franca.fetch import fetch_to_manifest, from_params
from lingua_franca.logs import log_to

with log_to(snakemake.log[0]):
    fetch_to_manifest(from_params(snakemake.params.item), snakemake.output[0])
