# Cross-lingual XStoryCloze (story in language X, endings in English) and the
# monolingual xstorycloze_<lang> formulation, through lm-evaluation-harness with
# task definitions of the project's own, on the model the job has loaded.


rule evaluate_xstorycloze:
    input:
        unpack(model_inputs),
        stories=rules.prepare_stories.output[0],
        # not read: joins this job to the checkpoint's group (rules/common.smk,
        # MODEL_WORK); XStoryCloze therefore reruns when the extraction does, and
        # the ablation (which follows it) when XStoryCloze does
        after=rules.extract_activations.output[0],
    output:
        "results/{model}/{checkpoint}/xstorycloze.json",
    log:
        "logs/{model}/{checkpoint}/evaluate_xstorycloze.log",
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
        code=code_version("../scripts/evaluate_xstorycloze.py"),
        settings=job_settings,
        device=CFG.analysis["device"],
        batch_size=CFG.analysis["eval_batch_size"],
        limit=CFG.data["xstorycloze"]["limit"],
    script:
        "../scripts/evaluate_xstorycloze.py"
