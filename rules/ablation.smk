# Deactivating key linguistic regions: perplexity of every language with the full
# model, with each language's key neurons zeroed, and with random neurons zeroed;
# the percent-increase table and heatmap; greedy generations of every prompt language
# under the full model and every language's deactivation (paper Appendix A); sampled
# continuations under every condition of every method, and the language each is
# written in (docs/method.md §11).
# The same job, on the same loaded model, deactivates the regions of every further
# key-neuron method (LAPE; rules/methods.smk) and writes their tables under
# methods/<name>/ (lists in the order of FURTHER_METHODS).
# Every window's NLL is kept; with analysis.bootstrap.resamples > 0 each increase gets
# a paired bootstrap interval over the windows (docs/method.md §10).


rule ablate_key_neurons:
    input:
        unpack(model_inputs),
        metrics=rules.compute_metrics.output.summary,
        key_neurons=rules.compute_metrics.output.key_neurons,
        prompts=rules.prepare_prompts.output[0],
        texts=expand(rules.prepare_perplexity_text.output[0], lang=LANGUAGES),
        methods=expand(
            rules.select_key_neurons.output.key_neurons,
            method=FURTHER_METHODS,
            allow_missing=True,
        ),
        # not read: after XStoryCloze in the checkpoint's group, so that two jobs
        # never hold the model at once (rules/common.smk, MODEL_WORK)
        after=rules.evaluate_xstorycloze.output[0],
        # the per-language statistics that steering forces neurons to
        store=rules.extract_activations.output[0] if STEERING else [],
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
        # the language of sampled continuations under every condition (docs/method.md §11)
        language_table=checkpoint_report(
            "results/{model}/{checkpoint}/language_of_generations.csv"
        ),
        language_texts="results/{model}/{checkpoint}/sampled_generations.jsonl",
        language_summary="results/{model}/{checkpoint}/language_of_generations.json",
        language_retention=checkpoint_report(
            "results/{model}/{checkpoint}/language_retention.png"
        ),
        language_destinations=checkpoint_report(
            "results/{model}/{checkpoint}/language_destinations.png"
        ),
        # steering (docs/method.md §12), when analysis.steering is enabled: for a model
        # it does not steer, the files say so
        steering_table=steering_output("results/{model}/{checkpoint}/steering.csv"),
        steering_texts=steering_output(
            "results/{model}/{checkpoint}/steering_texts.jsonl", report=False
        ),
        steering_summary=steering_output(
            "results/{model}/{checkpoint}/steering.json", report=False
        ),
        steering_figure=steering_output(
            "results/{model}/{checkpoint}/steering_targets.png"
        ),
        steering_sizes=steering_output(
            "results/{model}/{checkpoint}/steering_sizes.png"
        ),
        methods_perplexity=method_report(
            expand(
                "results/{{model}}/{{checkpoint}}/methods/{method}/perplexity.csv",
                method=FURTHER_METHODS,
            ),
            "perplexity",
        ),
        methods_seeds=expand(
            "results/{{model}}/{{checkpoint}}/methods/{method}/perplexity_random_seeds.csv",
            method=FURTHER_METHODS,
        ),
        methods_increase=expand(
            "results/{{model}}/{{checkpoint}}/methods/{method}/ppl_increase.csv",
            method=FURTHER_METHODS,
        ),
        methods_increase_ci=expand(
            "results/{{model}}/{{checkpoint}}/methods/{method}/ppl_increase_ci.csv",
            method=FURTHER_METHODS,
        ),
        methods_window_nll=expand(
            "results/{{model}}/{{checkpoint}}/methods/{method}/window_nll.parquet",
            method=FURTHER_METHODS,
        ),
        methods_conditions=expand(
            "results/{{model}}/{{checkpoint}}/methods/{method}/conditions.csv",
            method=FURTHER_METHODS,
        ),
        methods_heatmap=method_report(
            expand(
                "results/{{model}}/{{checkpoint}}/methods/{method}/ppl_increase.png",
                method=FURTHER_METHODS,
            ),
            "ppl_increase",
        ),
        methods_summary=expand(
            "results/{{model}}/{{checkpoint}}/methods/{method}/ablation.json",
            method=FURTHER_METHODS,
        ),
    log:
        "logs/{model}/{checkpoint}/ablate_key_neurons.log",
    group:
        MODEL_WORK
    conda:
        ENV
    threads: MODEL_THREADS
    resources:
        mem_mb=model_mem_mb,
        runtime=model_runtime,
        gpu=model_gpus,
    params:
        code=code_version("../scripts/ablate_key_neurons.py"),
        settings=job_settings,
        languages=LANGUAGES,
        device=CFG.analysis["device"],
        seqlen=CFG.analysis["seqlen"],
        batch_size=CFG.analysis["batch_size"],
        seeds=CFG.analysis["random_baseline_seeds"],
        generation=CFG.analysis["generation"],
        methods=FURTHER_METHODS,  # in the order of input.methods and output.methods_*
        bootstrap=CFG.analysis["bootstrap"],
        recorded=recorded("summary"),  # for the captions (the report)
        steering=lambda wildcards: (
            CFG.analysis["steering"] if CFG.steered(wildcards.model) else None
        ),
    script:
        "../scripts/ablate_key_neurons.py"
