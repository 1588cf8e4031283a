"""Adding a key-neuron method is one module, one registry entry and its schema block
(then its docs section and its test; CONTRIBUTING.md): in a copy of the workflow, a
dummy fourth method added in exactly those places runs through the tiny workflow —
its selection job, the deactivation of its regions, the comparison with every other
method, the summary across checkpoints and the report's captions — and the tests
that keep the registry and the schema in sync pass on the copy, unchanged."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tiny_workflow import ROOT, copy_workflow, tiny_config

pytestmark = pytest.mark.workflow
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

MODULE = '''"""A test-only key-neuron method: per language, the ``count`` neurons whose mean
activation over the language's samples exceeds their mean over all samples the most."""

import numpy as np
import pandas as pd

from lingua_franca.methods import KeyNeurons
from lingua_franca.store import ActivationStore


def key_neurons(store, *, block_width=4096, count=2):
    if not isinstance(store, ActivationStore):
        store = ActivationStore(store)
    languages = list(dict.fromkeys(store.languages))
    sample = np.asarray(store.languages)
    gaps, where = [], []
    for m, start, block in store.iter_blocks(block_width):
        gaps.append([block[sample == lang].mean(0) - block.mean(0) for lang in languages])
        where += [(m, start + j) for j in range(block.shape[1])]
    gap = np.concatenate(gaps, axis=1)
    rows = []
    for lang, row in zip(languages, gap):
        for k in sorted(np.argsort(-row, kind="stable")[:count]):
            rows.append((lang, where[k][0], where[k][1], float(row[k])))
    table = pd.DataFrame(rows, columns=["language", "layer", "neuron", "score"])
    table = table.astype({"language": "str", "layer": "int32", "neuron": "int32"})
    return KeyNeurons("dummy", table, languages, store.layers, store.widths, {"count": count})
'''

ENTRY = """
METHODS["dummy"] = Method(
    "dummy",
    "lingua_franca.dummy",
    lambda analysis: dict(analysis["dummy"]),
    "mean activation in the language minus the mean over all samples; higher is more specific",
    mem_mb=1000,
    runtime=5,
)
"""


def add_dummy_method(workdir: Path) -> None:
    """What CONTRIBUTING.md says a new method touches in the package and the schema."""
    package = workdir / "scripts" / "lingua_franca"
    (package / "dummy.py").write_text(MODULE)
    with open(package / "methods.py", "a") as registry:
        registry.write(ENTRY)
    path = workdir / "resources" / "schemas" / "config.schema.yaml"
    schema = yaml.safe_load(path.read_text())
    analysis = schema["properties"]["analysis"]["properties"]
    analysis["key_neuron_methods"]["items"]["enum"].append("dummy")
    analysis["dummy"] = {
        "description": "A test-only method.",
        "type": "object",
        "additionalProperties": False,
        "default": {},
        "properties": {"count": {"type": "integer", "minimum": 1, "default": 2}},
    }
    path.write_text(yaml.safe_dump(schema, sort_keys=False, allow_unicode=True))


def run(workdir, *args, timeout=900):
    result = subprocess.run(
        args, cwd=workdir, check=False, capture_output=True, text=True, timeout=timeout, env=ENV
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def test_a_fourth_method_runs_through_the_workflow_from_its_registry_entry(tmp_path):
    config = tiny_config()
    config["analysis"]["key_neuron_methods"] = ["zscore", "lape", "ap", "dummy"]
    config["analysis"]["generation"]["methods"] = ["zscore", "dummy"]  # sampled: these two
    model = config["models"]["toy-bloom"]
    model["checkpoints"] = {"step-6": model["checkpoints"]["step-6"]}  # one is enough here
    workdir = copy_workflow(tmp_path / "wf", config)
    add_dummy_method(workdir)
    run(workdir, sys.executable, "-m", "snakemake", "--cores", "2")
    checkpoint = workdir / "results" / "toy-bloom" / "step-6"
    for method in ("lape", "ap", "dummy"):
        folder = checkpoint / "methods" / method
        table = pd.read_parquet(folder / "key_neurons.parquet")
        assert len(table) > 0, method
        assert (folder / "ablation.json").exists() and (folder / "ppl_increase.png").exists()
    dummy = pd.read_parquet(checkpoint / "methods" / "dummy" / "key_neurons.parquet")
    assert dummy.groupby("language").size().tolist() == [2, 2, 2]
    overlap = pd.read_csv(checkpoint / "methods" / "overlap.csv")
    pairs = set(zip(overlap.method_a, overlap.method_b))
    assert {("zscore", "dummy"), ("lape", "dummy"), ("ap", "dummy")} <= pairs
    sampled = pd.read_csv(checkpoint / "language_of_generations.csv")
    assert sampled["method"].unique().tolist() == ["none", "zscore", "dummy"]
    summary = pd.read_csv(workdir / "results" / "summary" / "methods.csv")
    assert summary["method"].unique().tolist() == ["zscore", "lape", "ap", "dummy"]
    # the captions name the configured methods, whatever they are
    run(workdir, sys.executable, "-m", "snakemake", "--report", "report.html")
    assert "zscore, lape, ap, dummy" in (workdir / "report.html").read_text(encoding="utf-8")
    # the registry's own tests, unchanged, on the copy's package
    shutil.copytree(ROOT / "tests", workdir / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", workdir / "pyproject.toml")
    output = run(
        workdir,
        sys.executable,
        "-m",
        "pytest",
        "-v",
        "-p",
        "no:cacheprovider",
        "tests/test_methods.py",
        "tests/test_config.py",
        "-k",
        "registered or every_method or key_neuron_methods",
    )
    assert "test_every_method_gives_its_table_from_the_store[dummy] PASSED" in output
    assert "test_the_schema_lists_exactly_the_registered_methods PASSED" in output
