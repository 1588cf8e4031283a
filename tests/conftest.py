"""Test-wide settings: no network, few threads, deterministic torch."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_UPDATE_DOWNLOAD_COUNTS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def remote(tmp_path_factory):
    """The stand-in Hub and OPUS server of tests/hub_rehearsal.py (built once)."""
    import pandas as pd
    from hub_rehearsal import CORPUS, build_remote
    from lingua_franca.toy import train_tokenizer

    texts = pd.read_csv(
        CORPUS / "train_part1.tsv", sep="\t", dtype=str, quoting=3, keep_default_na=False
    )["text"].tolist()
    folder = tmp_path_factory.mktemp("remote") / "tokenizer"
    train_tokenizer(texts, 400, folder)
    return build_remote(folder)
