# Corpora: the probe set every later rule reads (one file, one order), the
# generation prompts, the perplexity text per language, the XStoryCloze stories, and
# the toy training text.
# Everything is validated here, before any model is loaded.


rule prepare_probe:
    input:
        local_source_files("probe"),
    output:
        probe="results/data/probe.tsv",
        alignment="results/data/probe_alignment.json",
    log:
        "logs/data/prepare_probe.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        code=code_version("../scripts/prepare_probe.py"),
        probe=CFG.data["probe"],
        languages=LANGUAGES,
        seed=CFG.analysis["seed"],
    script:
        "../scripts/prepare_probe.py"


rule prepare_prompts:
    input:
        local_source_files("probe"),
        probe=rules.prepare_probe.output.probe,
    output:
        "results/data/prompts.json",
    log:
        "logs/data/prepare_prompts.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        code=code_version("../scripts/prepare_prompts.py"),
        probe=CFG.data["probe"],
        generation=CFG.analysis["generation"],
        languages=LANGUAGES,
    script:
        "../scripts/prepare_prompts.py"


rule prepare_perplexity_text:
    input:
        local_source_files("perplexity"),
    output:
        "results/data/perplexity/{lang}.txt",
    log:
        "logs/data/prepare_perplexity_text/{lang}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        code=code_version("../scripts/prepare_perplexity_text.py"),
        perplexity=CFG.data["perplexity"],
    script:
        "../scripts/prepare_perplexity_text.py"


rule prepare_stories:
    input:
        local_source_files("xstorycloze"),
    output:
        "results/data/xstorycloze.json",
    log:
        "logs/data/prepare_stories.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        code=code_version("../scripts/prepare_stories.py"),
        xstorycloze=CFG.data["xstorycloze"],
    script:
        "../scripts/prepare_stories.py"
