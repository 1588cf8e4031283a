"""Rule ablate_key_neurons: perplexity under each deactivation, table, heatmap, generations,
the language of sampled generations."""

import torch
from lingua_franca.logs import log_to
from lingua_franca.pipeline import ablate

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    languages = snakemake.params.languages
    ablate(
        snakemake.params.settings,
        snakemake.input.metrics,
        snakemake.input.key_neurons,
        dict(zip(languages, snakemake.input.texts)),
        snakemake.input.prompts,
        dict(snakemake.output.items()),
        languages=languages,
        device=snakemake.params.device,
        seqlen=snakemake.params.seqlen,
        batch_size=snakemake.params.batch_size,
        seeds=snakemake.params.seeds,
        max_new_tokens=snakemake.params.generation["max_new_tokens"],
        prompts_per_language=snakemake.params.generation["prompts_per_language"],
        methods=dict(zip(snakemake.params.methods, snakemake.input.methods)),
        bootstrap=snakemake.params.bootstrap,
        sampling=snakemake.params.generation,
        steering=snakemake.params.steering,
        store_path=snakemake.input.store or None,
    )
