"""Test-wide settings: no network, few threads, deterministic torch; the tiny
workflow run once per session."""

import os
import subprocess
import sys

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
def tiny_run(tmp_path_factory):
    """The tiny workflow (tests/tiny_workflow.py) run to completion once per session:
    (its folder, the run's output). Tests plan in it, and may change its config if
    they put it back (tiny_workflow.write_config); a test that changes its results
    works on a copy (shutil.copytree(..., symlinks=True) keeps times and metadata)."""
    from tiny_workflow import copy_workflow

    workdir = copy_workflow(tmp_path_factory.mktemp("tiny-run") / "wf")
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2"],
        cwd=workdir,
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return workdir, output


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
