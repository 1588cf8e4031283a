# Activation store → similarity map, LRDS and SADS (whole vector and per layer),
# key linguistic neurons (z-scores of contribution scores), SKLR, and their figures.
# Streams blocks of neurons: memory grows with samples × block width, not with K.
# With analysis.bootstrap.resamples > 0 the same pass gives every metric's interval
# (docs/method.md §10); its matrix products use a GPU when analysis.device is one.
# metrics_bootstrap.npz keeps every resample's values: the aggregate differences two
# checkpoints' resamples (same draws) for the intervals of step-to-step changes.


BOOTSTRAP = CFG.analysis["bootstrap"]["resamples"] > 0


rule compute_metrics:
    input:
        unpack(device_checked),  # its matrix products use analysis.device
        store=rules.extract_activations.output[0],
    output:
        summary="results/{model}/{checkpoint}/metrics.json",
        key_neurons="results/{model}/{checkpoint}/key_neurons.parquet",
        similarity="results/{model}/{checkpoint}/similarity.npy",
        labels="results/{model}/{checkpoint}/similarity_labels.tsv",
        similarity_map=checkpoint_report("results/{model}/{checkpoint}/similarity.png"),
        layerwise=checkpoint_report("results/{model}/{checkpoint}/layerwise.png"),
        per_layer=checkpoint_report(
            "results/{model}/{checkpoint}/key_neurons_per_layer.png"
        ),
        per_language=checkpoint_report(
            "results/{model}/{checkpoint}/key_neurons_per_language.png"
        ),
        bootstrap="results/{model}/{checkpoint}/metrics_bootstrap.npz",
    log:
        "logs/{model}/{checkpoint}/compute_metrics.log",
    group:
        MODEL_WORK
    conda:
        ENV
    threads: MODEL_THREADS if BOOTSTRAP else 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1 if BOOTSTRAP and ON_GPU else 0,
    params:
        code=code_version("../scripts/compute_metrics.py"),
        z_threshold=CFG.analysis["z_threshold"],
        block_width=CFG.analysis["block_width"],
        bootstrap=CFG.analysis["bootstrap"],
        device=CFG.analysis["device"] if BOOTSTRAP else "cpu",
        recorded=recorded("summary"),  # for the captions (the report)
    script:
        "../scripts/compute_metrics.py"
