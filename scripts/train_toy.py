"""Rule train_toy: train one toy model, saving a checkpoint at each save step."""

import torch
from lingua_franca.logs import log_to
from lingua_franca.toy import read_documents, train_toy_model

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    train_toy_model(
        snakemake.params.spec,
        snakemake.input.tokenizer,
        read_documents(snakemake.input.train),
        read_documents(snakemake.input.valid),
        snakemake.output[0],
    )
