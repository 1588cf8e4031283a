# The fetch step, for clusters whose compute nodes have no network: on the login node,
#   snakemake --configfile CONFIG fetch
# downloads every Hub checkpoint, tokenizer source and data file the config reads,
# into HF_HOME (models) and the data sources' folders (data/...), with one manifest
# per item in data/fetched/. Every other job then runs offline. Local rules: under
# --profile slurm they still run where Snakemake runs, never as SLURM jobs.

from lingua_franca.fetch import as_params, plan as fetch_plan

FETCH_PLAN = fetch_plan(CFG)  # item name -> what to download (lingua_franca.fetch)


wildcard_constraints:
    item=_alternatives(FETCH_PLAN),


localrules:
    fetch,
    fetch_item,


rule fetch:
    input:
        expand("data/fetched/{item}.json", item=FETCH_PLAN),


rule fetch_item:
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
