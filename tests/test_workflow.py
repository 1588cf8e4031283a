"""The workflow as Snakemake sees it: planning, linting, config errors at start-up."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from lingua_franca.methods import METHODS, PAPER_METHOD, further_methods
from tiny_workflow import job_counts, parse_jobs

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
    # every configured key-neuron method for every checkpoint: each further method's
    # regions, their deactivation (in the ablation job) and the overlap with the
    # z-score regions (docs/method.md §9)
    demo = yaml.safe_load((ROOT / "workflow_config.yaml").read_text())
    further = further_methods(demo["analysis"]["key_neuron_methods"])
    assert further  # the demo shows the comparison
    checkpoints = sum(len(m["checkpoints"]) for m in demo["models"].values())
    for rule in ("compute_metrics", "ablate_key_neurons", "compare_key_neurons"):
        assert jobs[rule] == checkpoints, rule
    assert jobs["select_key_neurons"] == checkpoints * len(further)


def test_config_on_the_command_line_overrides_the_demo_config():
    """--config changes the demo config (Snakemake's merge), or a --configfile's; each
    selection job asks for its method's own resources (its registry entry)."""
    every = [PAPER_METHOD, *further_methods(list(METHODS))]
    override = f"analysis={{key_neuron_methods: [{', '.join(every)}]}}"
    result = snakemake("-n", "--forceall", "--config", override)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert job_counts(output)["train_toy"] == 3  # the demo's models
    selections = [j for j in parse_jobs(output) if j.rule == "select_key_neurons"]
    assert {j.wildcards["method"] for j in selections} == set(every[1:])
    for job in selections:
        method = METHODS[job.wildcards["method"]]
        assert int(job.resources["mem_mb"]) == method.mem_mb, job
        assert int(job.resources["runtime"]) == method.runtime, job
    result = snakemake(
        "-n", "--forceall", "--configfile", "tests/tiny_config.yaml", "--config", override
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    jobs = job_counts(output)
    assert jobs["train_toy"] == 1  # the tiny config's one model, not the demo's
    assert jobs["select_key_neurons"] == 2 * (len(every) - 1)  # its 2 checkpoints


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
    config["analysis"]["steering"]["models"] = None  # the demo steers toy-bloom-m
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
