"""Rule train_tokenizer: byte-level BPE on the toy training text."""

from lingua_franca.logs import get_logger, log_to
from lingua_franca.toy import read_documents, train_tokenizer

with log_to(snakemake.log[0]):
    opts = snakemake.params.tokenizer
    tok = train_tokenizer(
        read_documents(snakemake.input[0]),
        opts["vocab_size"],
        snakemake.output[0],
        opts["min_frequency"],
    )
    get_logger("train_tokenizer").info("vocabulary: %d tokens", len(tok))
