"""Rule check_hub_access: ask the Hub for every repository of the fetch plan; stop,
naming each refused one, before any download."""

from lingua_franca.fetch import check_access_to_record
from lingua_franca.logs import log_to

with log_to(snakemake.log[0]):
    repos = {
        (repo_type, repo_id): purposes for repo_type, repo_id, purposes in snakemake.params.repos
    }
    check_access_to_record(repos, snakemake.output[0])
