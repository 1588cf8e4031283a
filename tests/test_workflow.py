"""The workflow as Snakemake sees it: planning, linting, config errors at start-up."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny_workflow import job_counts

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.workflow


def snakemake(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_dry_run_plans_the_toy_models():
    result = snakemake("-n", "--forceall")
    assert result.returncode == 0, result.stderr + result.stdout
    jobs = job_counts(result.stdout + result.stderr)
    assert jobs["train_toy"] == 3
    assert jobs["train_tokenizer"] == 1
    # both key-neuron methods for every checkpoint: LAPE's regions, their deactivation
    # (in the ablation job) and the overlap with the z-score regions (docs/method.md §9)
    demo = yaml.safe_load((ROOT / "workflow_config.yaml").read_text())
    assert demo["analysis"]["key_neuron_methods"] == ["zscore", "lape"]
    checkpoints = sum(len(m["checkpoints"]) for m in demo["models"].values())
    for rule in ("compute_metrics", "select_key_neurons", "ablate_key_neurons"):
        assert jobs[rule] == checkpoints, rule
    assert jobs["compare_key_neurons"] == checkpoints


@pytest.mark.parametrize(
    "args", [(), ("--configfile", "tests/tiny_config.yaml")], ids=["demo", "tiny"]
)
def test_lint_is_clean(args):
    result = snakemake("--lint", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_a_bad_config_stops_the_run_naming_the_key(tmp_path):
    config = yaml.safe_load((ROOT / "workflow_config.yaml").read_text())
    config["analysis"]["z_treshold"] = 3
    config["models"]["toy-bloom-s"]["dtype"] = "float8"
    del config["data"]["probe"]["source"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(bad))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "unknown key analysis.z_treshold" in output
    assert "models.toy-bloom-s.dtype: 'float8' is not one of" in output
    assert "missing required entry data.probe.source" in output


def test_a_whole_configfile_replaces_the_demo_config(tmp_path):
    """--configfile is not merged into the demo's models (Snakemake would merge)."""
    config = yaml.safe_load((ROOT / "workflow_config.yaml").read_text())
    config["models"] = {"toy-llama-s": config["models"]["toy-llama-s"]}
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--forceall", "--configfile", str(path))
    assert result.returncode == 0, result.stderr
    assert job_counts(result.stdout + result.stderr)["train_toy"] == 1


def test_rule_files_are_snakefmt_clean():
    files = ["Snakefile", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "rules").glob("*.smk"))]
    result = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", *files],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
