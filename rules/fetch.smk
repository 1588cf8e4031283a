# The fetch step, for clusters whose compute nodes have no network: on the login node,
#   snakemake --configfile CONFIG fetch
# first checks that the Hub lets it read every repository (gated ones need an accepted
# licence and a token), then downloads every Hub checkpoint, tokenizer source and data
# file the config reads, into HF_HOME (models) and the data sources' folders
# (data/...), with one manifest per item in data/fetched/. Every other job then runs
# offline. Local rules: under --profile slurm they still run where Snakemake runs,
# never as SLURM jobs.

from lingua_franca.fetch import ACCESS_RECORD, as_params, hub_repos, plan as fetch_plan

FETCH_PLAN = fetch_plan(CFG)  # item name -> what to download (lingua_franca.fetch)


wildcard_constraints:
    item=_alternatives(FETCH_PLAN),


localrules:
    check_hub_access,
    fetch,
    fetch_item,


rule fetch:
    input:
        expand("data/fetched/{item}.json", item=FETCH_PLAN),


# every download waits for it: a refused gated repository stops the step before
# anything is downloaded. A change of the config's repositories checks again (params);
# ancient(): a new check does not make the finished downloads outdated
rule check_hub_access:
    output:
        ACCESS_RECORD,
    log:
        "logs/fetch/check_hub_access.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=code_version("../scripts/check_hub_access.py"),
        repos=[[*key, purposes] for key, purposes in hub_repos(FETCH_PLAN).items()],
    script:
        "../scripts/check_hub_access.py"


rule fetch_item:
    input:
        ancient(rules.check_hub_access.output),
    output:
        "data/fetched/{item}.json",
    log:
        "logs/fetch/{item}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=240,
    params:
        code=code_version("../scripts/fetch_item.py"),
        item=lambda wc: as_params(FETCH_PLAN[wc.item]),
    script:
        "../scripts/fetch_item.py"
