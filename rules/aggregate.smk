# Every model × checkpoint → one table (metrics.csv, duplicated weights flagged), the
# figures across checkpoints and scales, and the summary page of the report. The input
# lists and params.checkpoints follow the config's grid in the same order. Each
# checkpoint's resampled metrics (same item draws) give the step-to-step changes
# their paired intervals (changes.csv).


rule aggregate:
    input:
        metrics=per_checkpoint(rules.compute_metrics.output.summary),
        xstorycloze=per_checkpoint(rules.evaluate_xstorycloze.output[0]),
        ablation=per_checkpoint(rules.ablate_key_neurons.output.summary),
        # the further key-neuron methods (none: empty lists)
        overlap=(
            per_checkpoint(rules.compare_key_neurons.output.table)
            if FURTHER_METHODS
            else []
        ),
        methods_ablation=per_checkpoint_and_method(
            rules.ablate_key_neurons.output.methods_summary
        ),
        bootstrap=per_checkpoint(rules.compute_metrics.output.bootstrap),
        # the language of sampled continuations (docs/method.md §11)
        language=per_checkpoint(rules.ablate_key_neurons.output.language_summary),
        # steering (docs/method.md §12), when enabled
        steering=(
            per_checkpoint(rules.ablate_key_neurons.output.steering_summary)
            if STEERING
            else []
        ),
    output:
        summary_outputs("results/summary/{name}"),
    log:
        "logs/summary/aggregate.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        code=code_version("../scripts/aggregate.py"),
        checkpoints=CHECKPOINTS,  # in the order of each input list
        methods=[PAPER_METHOD, *FURTHER_METHODS],
        recorded=recorded(PROVENANCE),  # for the captions: what the results record
        samples=CFG.analysis["generation"]["samples"],
        steering=STEERING,
    script:
        "../scripts/aggregate.py"
