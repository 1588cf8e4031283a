# Key neurons by the further methods of analysis.key_neuron_methods (LAPE, AP, …;
# docs/method.md §9) on the same activation store as the paper's z-scores, and where
# the methods' regions agree. The z-score regions come from the metrics pass; the
# further methods' regions are deactivated in the ablation job (rules/ablation.smk).
# Both rules belong to the checkpoint's group: on a cluster, still one job.


rule select_key_neurons:
    input:
        rules.extract_activations.output[0],
    output:
        key_neurons="results/{model}/{checkpoint}/methods/{method}/key_neurons.parquet",
        summary="results/{model}/{checkpoint}/methods/{method}/selection.json",
        per_language="results/{model}/{checkpoint}/methods/{method}/key_neurons_per_language.csv",
        per_layer="results/{model}/{checkpoint}/methods/{method}/key_neurons_per_layer.csv",
    log:
        "logs/{model}/{checkpoint}/select_key_neurons_{method}.log",
    group:
        MODEL_WORK
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=method_resource("mem_mb"),  # each method's own, in its registry entry
        runtime=method_resource("runtime"),
    params:
        code=code_version("../scripts/select_key_neurons.py"),
        settings=lambda wildcards: method_settings(wildcards.method),
        block_width=CFG.analysis["block_width"],
    script:
        "../scripts/select_key_neurons.py"


rule compare_key_neurons:
    input:
        metrics=rules.compute_metrics.output.summary,
        zscore=rules.compute_metrics.output.key_neurons,
        further=expand(
            rules.select_key_neurons.output.key_neurons,
            method=FURTHER_METHODS,
            allow_missing=True,
        ),
    output:
        table=checkpoint_report("results/{model}/{checkpoint}/methods/overlap.csv"),
        figure=checkpoint_report("results/{model}/{checkpoint}/methods/overlap.png"),
    log:
        "logs/{model}/{checkpoint}/compare_key_neurons.log",
    group:
        MODEL_WORK
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_version("../scripts/compare_key_neurons.py"),
        methods=FURTHER_METHODS,  # in the order of input.further
    script:
        "../scripts/compare_key_neurons.py"
