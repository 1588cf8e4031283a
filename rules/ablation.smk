# Deactivating key linguistic regions: perplexity of every language with the full
# model, with each language's key neurons zeroed, and with random neurons zeroed;
# the percent-increase table and heatmap; greedy generations of every prompt language
# under the full model and every language's deactivation (paper Appendix A).
# Every window's NLL is kept; with analysis.bootstrap.resamples > 0 each increase gets
# a paired bootstrap interval over the windows (docs/method.md §10).


rule ablate_key_neurons:
    input:
        unpack(model_inputs),
        metrics=rules.compute_metrics.output.summary,
        key_neurons=rules.compute_metrics.output.key_neurons,
        prompts=rules.prepare_prompts.output[0],
        texts=expand(rules.prepare_perplexity_text.output[0], lang=LANGUAGES),
    output:
        perplexity=checkpoint_report("results/{model}/{checkpoint}/perplexity.csv"),
        seeds="results/{model}/{checkpoint}/perplexity_random_seeds.csv",
        increase="results/{model}/{checkpoint}/ppl_increase.csv",
        increase_ci="results/{model}/{checkpoint}/ppl_increase_ci.csv",
        window_nll="results/{model}/{checkpoint}/window_nll.parquet",
        conditions="results/{model}/{checkpoint}/conditions.csv",
        heatmap=checkpoint_report("results/{model}/{checkpoint}/ppl_increase.png"),
        generations="results/{model}/{checkpoint}/generations.jsonl",
        generations_table=checkpoint_report(
            "results/{model}/{checkpoint}/generations.html"
        ),
        summary="results/{model}/{checkpoint}/ablation.json",
    log:
        "logs/{model}/{checkpoint}/ablate_key_neurons.log",
    group:
        MODEL_WORK
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=model_mem_mb,
        runtime=model_runtime,
        gpu=model_gpus,
    params:
        settings=job_settings,
        languages=LANGUAGES,
        device=CFG.analysis["device"],
        seqlen=CFG.analysis["seqlen"],
        batch_size=CFG.analysis["batch_size"],
        seeds=CFG.analysis["random_baseline_seeds"],
        generation=CFG.analysis["generation"],
        bootstrap=CFG.analysis["bootstrap"],
    script:
        "../scripts/ablate_key_neurons.py"
