"""Nothing stale, nothing lost, tried as a new user would on the tiny workflow after a
complete run (conftest.py's tiny_run):

- a typo or an impossible value in the config stops `snakemake -n` and `snakemake`
  at planning, naming the key and the path or value, and every file under results/
  is still there, untouched; putting the config back leaves nothing to do;
- editing a local text file reruns the one job that reads it; removing it stops
  planning;
- the aggregate leaves in results/summary/ only what the current grid makes;
- run from a subfolder, the workflow says where to run it;
- a device this machine lacks (analysis.device: cuda without CUDA) stops the plan of
  the jobs that use it when jobs run here, and each such job before it touches a file
  when they run on a cluster (LINGUA_FRANCA_DEVICE_CHECK=job, which the SLURM profile
  sets).

(A killed job's temporaries: tests/test_atomic.py, with a real SIGKILL.)
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_workflow import parse_jobs, tiny_config, write_config

pytestmark = pytest.mark.workflow
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def snakemake(workdir, *args, cwd=None, env=None):
    """(exit status, output) of snakemake in ``workdir`` (or ``cwd``), with ``env``
    added to the environment."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args],
        cwd=cwd or workdir,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        env={**ENV, **(env or {})},
    )
    return result.returncode, result.stdout + result.stderr


def results(workdir) -> dict[str, tuple[int, int]]:
    """Every file under results/: size and modification time (ns)."""
    return {
        str(p.relative_to(workdir)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted((Path(workdir) / "results").rglob("*"))
        if p.is_file()
    }


def probe_dir(config):
    config["data"]["probe"]["options"]["dir"] = "resources/corpus_typo"


def local_model(config):
    config["models"]["bloom-560m"] = {"path": "models/bloom-560m"}


def n_items(config):
    config["data"]["probe"]["n_items"] = 1000  # the demo corpus holds 120


def gpu(config):
    config["analysis"]["device"] = "gpu"


def z_threshold(config):
    config["analysis"]["z_threshold"] = -1


def tsv_without_path(config):
    config["data"]["probe"] = {"source": "tsv", "n_items": 4}


def device_typo(config):
    config["analysis"]["device"] = "cuda:one"


MISTAKES = {
    # scenario 1: a local path that is not there
    probe_dir: "data.probe.options.dir: no such folder (resources/corpus_typo)",
    local_model: "models.bloom-560m.path: no such folder (models/bloom-560m)",
    # scenario 2: what would fail only at job time, after deleting the outputs
    n_items: "data.probe.n_items: 1000 is more than the corpus holds, 120 items",
    gpu: "analysis.device: 'gpu' is not a device; use cpu, cuda, cuda:N or mps",
    # scenario 3: out of range, or incomplete
    z_threshold: "analysis.z_threshold: -1 is less than or equal to the minimum of 0",
    tsv_without_path: "missing required entry data.probe.options.path",
    device_typo: "analysis.device: 'cuda:one' is not a device",
}


@pytest.mark.parametrize("mistake", MISTAKES, ids=[f.__name__ for f in MISTAKES])
def test_a_config_mistake_stops_planning_and_deletes_nothing(tiny_run, mistake):
    workdir, _ = tiny_run
    before = results(workdir)
    assert "results/data/probe.tsv" in before and len(before) > 50
    config = tiny_config()
    mistake(config)
    write_config(workdir, config)
    try:
        for args in (["-n"], []):  # the plan, then a real run
            status, output = snakemake(workdir, *args)
            assert status != 0, output[-3000:]
            assert MISTAKES[mistake] in output, output[-3000:]
            assert "Building DAG of jobs" not in output  # stopped before planning a job
    finally:
        write_config(workdir, tiny_config())
    assert results(workdir) == before


def test_putting_the_config_back_leaves_nothing_to_do(tiny_run):
    workdir, _ = tiny_run
    status, output = snakemake(workdir, "-n")
    assert status == 0 and "Nothing to be done" in output, output[-3000:]


def test_an_edited_text_file_reruns_its_reader_alone(tiny_run, tmp_path):
    workdir = shutil.copytree(tiny_run[0], tmp_path / "wf", symlinks=True)
    texts = workdir / "texts"
    texts.mkdir()
    for lang in ("en", "es", "zh"):
        (texts / f"{lang}.txt").write_text(f"{lang}: " + "some running text. " * 40)
    config = tiny_config()
    config["data"]["perplexity"] = {"source": "text_files", "options": {"dir": "texts"}}
    write_config(workdir, config)
    targets = [f"results/data/perplexity/{lang}.txt" for lang in ("en", "es", "zh")]
    status, output = snakemake(workdir, *targets)
    assert status == 0, output[-3000:]

    later = time.time() + 5  # surely newer than the outputs
    with open(texts / "es.txt", "a", encoding="utf-8") as handle:
        handle.write("An added sentence.\n")
    os.utime(texts / "es.txt", (later, later))
    status, output = snakemake(workdir, "-n")
    assert status == 0, output[-3000:]
    rerun = [j.wildcards["lang"] for j in parse_jobs(output) if j.rule == "prepare_perplexity_text"]
    assert rerun == ["es"], output[-3000:]

    (texts / "zh.txt").unlink()
    before = results(workdir)
    status, output = snakemake(workdir, "-n")
    assert status != 0
    assert "data.perplexity.options.dir: no such file (texts/zh.txt)" in output, output[-3000:]
    assert results(workdir) == before


def test_the_summary_holds_only_what_the_current_grid_makes(tiny_run, tmp_path):
    workdir = shutil.copytree(tiny_run[0], tmp_path / "wf", symlinks=True)
    summary = workdir / "results" / "summary"
    current = sorted(p.name for p in summary.iterdir())
    # what an earlier config with another model left there
    for name in ("evolution_old-family.png", "key_layers_old-model.png", "scale_old-family.png"):
        shutil.copy(summary / "evolution_toy-bloom.png", summary / name)
    config = tiny_config()
    del config["models"]["toy-bloom"]["checkpoints"]["step-0"]  # the aggregate reruns
    write_config(workdir, config)
    status, output = snakemake(workdir)
    assert status == 0, output[-3000:]
    assert "aggregate" in {j.rule for j in parse_jobs(output)}
    assert sorted(p.name for p in summary.iterdir()) == current


def test_a_run_from_a_subfolder_says_where_to_run(tiny_run):
    workdir, _ = tiny_run
    status, output = snakemake(workdir, "-n", "--snakefile", "../Snakefile", cwd=workdir / "rules")
    assert status != 0
    assert f"run snakemake from the repository root, {workdir}" in output, output[-3000:]
    assert not (workdir / "rules" / "results").exists()


NO_GPU = {"CUDA_VISIBLE_DEVICES": ""}  # whatever this machine has, torch sees no CUDA
DEVICE_MISSING = {
    "cuda": "analysis.device: 'cuda' is not available here",
    "cuda:1": "analysis.device: 'cuda:1' is not available here",
    "mps": "analysis.device: 'mps' is not available here",
}


@pytest.mark.parametrize("device", DEVICE_MISSING)
def test_a_device_this_machine_lacks_stops_planning_and_deletes_nothing(tiny_run, device):
    workdir, _ = tiny_run
    before = results(workdir)
    config = tiny_config()
    config["analysis"]["device"] = device
    write_config(workdir, config)
    try:
        for args in (["-n"], []):  # stopped when the jobs that use the device are planned
            status, output = snakemake(workdir, *args, env=NO_GPU)
            assert status != 0, output[-3000:]
            assert DEVICE_MISSING[device] in output, output[-3000:]
        # what does not use the device is planned whatever it is: the fetch step
        status, output = snakemake(workdir, "-n", "fetch", env=NO_GPU)
        assert status == 0, output[-3000:]
    finally:
        write_config(workdir, tiny_config())
    assert results(workdir) == before


# how a cluster job runs its job: the arguments the SLURM plugin gives `snakemake`
REMOTE_JOB = [
    "--target-jobs",
    "extract_activations:model=toy-bloom,checkpoint=step-6",
    "--allowed-rules",
    "extract_activations",
    "--force",
    "--nolock",
    "--ignore-incomplete",
    "--mode",
    "remote",
]


def test_on_a_cluster_each_job_checks_the_device_before_it_touches_a_file(tiny_run, tmp_path):
    """The login node plans without a GPU; the job on its node stops with the same
    message before Snakemake deletes its outputs (the store here)."""
    workdir = shutil.copytree(tiny_run[0], tmp_path / "wf", symlinks=True)
    config = tiny_config()
    config["analysis"]["device"] = "cuda"
    write_config(workdir, config)
    cluster = {**NO_GPU, "LINGUA_FRANCA_DEVICE_CHECK": "job"}
    status, output = snakemake(workdir, "-n", env=cluster)
    assert status == 0, output[-3000:]
    assert "extract_activations" in {j.rule for j in parse_jobs(output)}
    before = results(workdir)
    status, output = snakemake(workdir, *REMOTE_JOB, env=cluster)
    assert status != 0, output[-3000:]
    assert DEVICE_MISSING["cuda"] in output, output[-3000:]
    assert results(workdir) == before
    assert (workdir / "results" / "toy-bloom" / "step-6" / "activations.zarr").is_dir()
