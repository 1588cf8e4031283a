# Model × checkpoint → per-layer mean-pooled MLP neurons of every probe sample,
# in a chunked zarr store.


rule extract_activations:
    input:
        unpack(model_inputs),
        probe=rules.prepare_probe.output.probe,
    output:
        directory("results/{model}/{checkpoint}/activations.zarr"),
    log:
        "logs/{model}/{checkpoint}/extract_activations.log",
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
        code=code_version("../scripts/extract_activations.py"),
        settings=job_settings,
        languages=LANGUAGES,
        batch_size=CFG.analysis["batch_size"],
        device=CFG.analysis["device"],
        add_special_tokens=CFG.analysis["add_special_tokens"],
    script:
        "../scripts/extract_activations.py"
