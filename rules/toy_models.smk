# The demo's toy models: a byte-level BPE tokenizer trained on the embedded training
# text, then each toy model trained from scratch on CPU, saving Hugging Face
# checkpoints (safetensors) at its save_steps. Which saved steps get analysed is the
# models' `checkpoints` entry: analysing another saved step retrains nothing.


rule prepare_toy_text:
    input:
        CFG.toy["training_text"] if CFG.toy else [],
    output:
        train="results/data/toy_train.jsonl",
        valid="results/data/toy_valid.jsonl",
    log:
        "logs/toy/prepare_toy_text.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_version("../scripts/prepare_toy_text.py"),
        validation_fraction=CFG.toy["validation_fraction"] if CFG.toy else None,
        paragraphs_per_document=(
            CFG.toy["paragraphs_per_document"] if CFG.toy else None
        ),
        seed=CFG.analysis["seed"],
    script:
        "../scripts/prepare_toy_text.py"


rule train_tokenizer:
    input:
        rules.prepare_toy_text.output.train,
    output:
        directory("results/data/tokenizer"),
    log:
        "logs/toy/train_tokenizer.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        code=code_version("../scripts/train_tokenizer.py"),
        tokenizer=CFG.toy["tokenizer"] if CFG.toy else None,
    script:
        "../scripts/train_tokenizer.py"


rule train_toy:
    input:
        tokenizer=rules.train_tokenizer.output[0],
        train=rules.prepare_toy_text.output.train,
        valid=rules.prepare_toy_text.output.valid,
    output:
        directory("results/toy/{toy}"),
    log:
        "logs/toy/train_toy/{toy}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        code=code_version("../scripts/train_toy.py"),
        spec=lambda wc: CFG.models[wc.toy].toy,
    script:
        "../scripts/train_toy.py"
