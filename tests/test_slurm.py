"""Cluster runs through profiles/slurm (snakemake-executor-plugin-slurm 2.8.0).

Fast checks: `--profile slurm` resolves from the repository root, the profile's
settings (executor, retries, account and partition from the environment, the status
command) reach Snakemake, and the plugin turns the rules' `gpu` resource into the
right sbatch flags (gpu=0: none).

The real run (marker `slurm`): installs Debian's SLURM and munge, starts a one-node
cluster on loopback (tests/slurm/cluster.sh), runs the tiny workflow through the toy
training and the whole model work of two checkpoints (extraction, metrics, LAPE
selection, ablation, the methods' comparison, XStoryCloze: one sbatch job per
checkpoint, rules/common.smk MODEL_WORK) as real sbatch
jobs, counts and checks the submissions and the outputs, and stops every daemon by
its PID. Skipped, with the reason, only where
the cluster cannot be set up (not root, no apt-get, a SLURM already configured).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from tiny_workflow import copy_workflow, parse_jobs

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
VENV_BIN = Path(sys.executable).parent
SNAKEMAKE = VENV_BIN / "snakemake"  # the venv's entry point, as a user runs it
RUN_TIMEOUT = 900  # seconds; `timeout -k` ends a run whose status checks hang


def clean_env(**extra):
    """The environment without SLURM settings of whoever runs the tests."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "SBATCH_", "SALLOC_", "SNAKEMAKE_SLURM"))
    }
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", **extra)
    return env


# --- the profile, without a cluster ---------------------------------------------------

PARSE = """
import json, sys
from snakemake.cli import get_profile_dir, parse_args
_, args = parse_args(sys.argv[1:])
found = get_profile_dir("slurm")
print("PARSED" + json.dumps({
    "profile_file": str(found[1].resolve()) if found else None,
    "executor": args.executor,
    "jobs": args.jobs,
    "retries": args.retries,
    "latency_wait": args.latency_wait,
    "keep_going": args.keep_going,
    "default_resources": list(getattr(args.default_resources, "args", None) or []),
    "status_command": getattr(args, "slurm_status_command", "<no such option>"),
}, default=repr))
"""


def parse_profile(tmp_path, accounting="accounting_storage/slurmdbd", cwd=ROOT, **env):
    """What Snakemake makes of `--profile slurm` run in ``cwd``, with a fake
    `scontrol` that reports ``accounting`` (the profile asks it)."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    scontrol = fake / "scontrol"
    scontrol.write_text(
        f"#!/bin/sh\necho 'AccountingStorageType   = {accounting}'\necho 'MinJobAge = 300 sec'\n"
    )
    scontrol.chmod(0o755)
    result = subprocess.run(
        [sys.executable, "-c", PARSE, "--profile", "slurm", "-n"],
        cwd=cwd,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(PATH=f"{fake}:{os.environ['PATH']}", **env),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("PARSED"))
    return json.loads(line[len("PARSED") :])


def test_profile_name_resolves_from_the_repository_root(tmp_path):
    """Snakemake looks a profile name up in the working directory (then
    ~/.config/snakemake, /etc/xdg/snakemake), never in profiles/: the `slurm` link
    at the repository root makes `snakemake --profile slurm` work there."""
    assert (ROOT / "slurm").is_symlink()
    assert os.readlink(ROOT / "slurm") == "profiles/slurm"  # relative: survives a clone
    parsed = parse_profile(tmp_path)
    assert parsed["profile_file"] == str(ROOT / "profiles" / "slurm" / "config.yaml")
    assert parsed["executor"] == "slurm"


def test_the_literal_invocation_plans_the_workflow(tmp_path):
    result = subprocess.run(
        [str(SNAKEMAKE), "--profile", "slurm", "-n"],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_env(),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert re.search(r"^Using profiles? slurm", output, re.MULTILINE), output[:2000]
    assert "Job stats:" in output or "Nothing to be done" in output


def test_account_and_partition_come_from_the_environment(tmp_path):
    plain = parse_profile(tmp_path)
    assert plain["retries"] == 2 and plain["jobs"] == 100
    assert not any(
        r.startswith(("slurm_account", "slurm_partition")) for r in plain["default_resources"]
    )

    parsed = parse_profile(tmp_path, SBATCH_ACCOUNT="proj-42", SBATCH_PARTITION="gpu-a100")
    resources = parsed["default_resources"]
    assert "slurm_account='proj-42'" in resources, (
        f"{resources}: the slurm profile's default-resources are lost. A workflow "
        "profile (profiles/default, which Snakemake reads on every run) that sets "
        "default-resources replaces those of --profile slurm: keep default-resources, "
        "latency-wait and keep-going out of profiles/default/config.yaml."
    )
    assert "slurm_partition='gpu-a100'" in resources
    assert parsed["latency_wait"] == 60 and parsed["keep_going"] is True
    # the other spelling of the variables works too
    other = parse_profile(tmp_path, SLURM_ACCOUNT="proj-7", SLURM_PARTITION="cpu")
    assert {"slurm_account='proj-7'", "slurm_partition='cpu'"} <= set(other["default_resources"])


def test_the_status_command_follows_the_clusters_accounting(tmp_path):
    """Without accounting, sacct fails and plugin 2.8.0 would wait forever: the
    profile then asks squeue; with accounting it leaves the plugin's choice."""
    assert parse_profile(tmp_path, "accounting_storage/none")["status_command"] == "squeue"
    assert parse_profile(tmp_path, "accounting_storage/slurmdbd")["status_command"] != "squeue"


class _Resources(dict):
    __getattr__ = dict.__getitem__


def _sbatch(**resources):
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    job = SimpleNamespace(resources=_Resources(resources), threads=2)
    params = {
        "run_uuid": "u",
        "slurm_logfile": "l",
        "comment_str": "c",
        "account": "",
        "partition": " -p main",
        "workdir": "/w",
    }
    return get_submit_command(job, params) + set_gres_string(job)


def test_the_gpu_resource_becomes_sbatch_flags():
    """How plugin 2.8.0 turns the rules' resources into sbatch flags."""
    gpu = _sbatch(gpu=1, mem_mb=16000, runtime=100)
    assert "--gpus=1" in gpu and "--mem 16000" in gpu and "-t 100" in gpu
    assert "--cpus-per-task=2" in gpu and "--ntasks" not in gpu
    # gpu=0 (analysis.device cpu) is harmless: no GPU flag, an ordinary CPU job
    cpu = _sbatch(gpu=0, mem_mb=4000, runtime=30)
    assert "--gpus" not in cpu and "--gres" not in cpu
    assert "--ntasks=1" in cpu and "--cpus-per-task=2" in cpu
    assert cpu == _sbatch(mem_mb=4000, runtime=30)  # the same as no gpu resource at all
    assert "--gpus=4" in _sbatch(gpu=4, mem_mb=1, runtime=1)


# --- a real cluster ---------------------------------------------------------------------

EXTRA_RULES = """

# --- added by tests/test_slurm.py: what a job sees, and a retry ------------------------
rule slurm_job_environment:
    output:
        "results/slurm/job_environment.json",
    resources:
        gpu=1,
        mem_mb=500,
        runtime=5,
    run:
        import json, os, shutil, sys
        import snakemake as sm

        env = {k: os.environ.get(k) for k in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES", "PATH")}
        env.update(python=sys.executable, snakemake_module=sm.__file__,
                   snakemake_on_path=shutil.which("snakemake"))
        with open(output[0], "w") as fh:
            json.dump(env, fh, indent=1)


rule slurm_retry:
    output:
        "results/slurm/retry.txt",
    resources:
        gpu=0,
        mem_mb=lambda wc, attempt: 300 * attempt,
        runtime=lambda wc, attempt: 2 * attempt,
    shell:
        "if [ {resources.mem_mb} -lt 600 ]; then echo 'attempt 1 fails' >&2; exit 1; fi; "
        "echo job=$SLURM_JOB_ID mem_mb={resources.mem_mb} runtime={resources.runtime} > {output}"
"""
CHECKPOINTS = ("step-0", "step-6")
MODEL_WORK = (  # sorted, as Snakemake names a group job after its rules
    "ablate_key_neurons",
    "compare_key_neurons",
    "compute_metrics",
    "evaluate_xstorycloze",
    "extract_activations",
    "select_key_neurons",
)
# Snakemake's GroupJob.name: the group id and its first five rules, then "..."
GROUP_RULES = "_".join([*MODEL_WORK[:5], "..."] if len(MODEL_WORK) > 5 else MODEL_WORK)
TARGETS = [
    # the group's last jobs: the ablation and the methods' comparison
    *(f"results/toy-bloom/{c}/ablation.json" for c in CHECKPOINTS),
    *(f"results/toy-bloom/{c}/methods/overlap.csv" for c in CHECKPOINTS),
    "results/slurm/job_environment.json",
    "results/slurm/retry.txt",
]


def _run(cmd, timeout=600, **kw):
    return subprocess.run(
        [str(c) for c in cmd], check=False, capture_output=True, text=True, timeout=timeout, **kw
    )


@pytest.fixture(scope="module")
def cluster():
    check = _run([CLUSTER, "check"])
    if check.returncode == 3:
        pytest.skip(f"no SLURM test cluster on this machine: {check.stdout.strip()}")
    assert check.returncode == 0, check.stdout + check.stderr
    install = _run([CLUSTER, "install"], timeout=900)
    assert install.returncode == 0, f"installing SLURM failed:\n{install.stdout}\n{install.stderr}"
    print(install.stdout)
    # not under pytest's tmp folder (mode 700): munged runs as user munge
    work = Path(tempfile.mkdtemp(prefix="lingua-franca-slurm-")) / "cluster"
    work.parent.chmod(0o755)
    pids = []
    try:
        start = _run([CLUSTER, "start", work], timeout=120)
        assert start.returncode == 0, f"starting SLURM failed:\n{start.stdout}\n{start.stderr}"
        pids = [
            int((work / f).read_text())
            for f in ("run/slurmctld.pid", "run/slurmd.pid", "munge/munged.pid")
        ]
        yield work
    finally:
        stop = _run([CLUSTER, "stop", work], timeout=120)
        print(stop.stdout, stop.stderr)
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists(), f"daemon {pid} still running"
        shutil.rmtree(work.parent, ignore_errors=True)


def _sbatch_calls(log: str) -> dict[str, list[str]]:
    """rule (or group job: '<group id>_<its rules>') -> its sbatch command lines (the
    --wrap payload cut off)."""
    calls: dict[str, list[str]] = {}
    for line in log.splitlines():
        if line.startswith("sbatch call: "):
            call = line.split(" --wrap=")[0]
            rule = re.search(r"--comment '?rule_([^' ]+?)(?:_wildcards_[^' ]*)?'? ", call)
            calls.setdefault(rule.group(1) if rule else "?", []).append(call)
    return calls


@pytest.mark.slurm
def test_the_tiny_workflow_runs_as_sbatch_jobs(cluster, tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    with open(workdir / "Snakefile", "a") as fh:
        fh.write(EXTRA_RULES)
    # the venv's bin folder is not on PATH: jobs must find the venv by themselves
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != VENV_BIN)
    cmd = [
        "timeout",
        "-k",
        "10",
        RUN_TIMEOUT,
        SNAKEMAKE,
        "--profile",
        "slurm",
        "--slurm-init-seconds-before-status-checks",
        "5",
        "--slurm-keep-successful-logs",
        "--set-resources",
        "extract_activations:gpu=1",  # model jobs on the fake GPU
        "ablate_key_neurons:gpu=1",
        "evaluate_xstorycloze:gpu=1",
        "--verbose",
        *TARGETS,
    ]
    result = _run(
        cmd,
        timeout=RUN_TIMEOUT + 30,
        cwd=workdir,
        env=clean_env(PATH=path, SBATCH_PARTITION="main"),
    )
    log = result.stdout + result.stderr
    (tmp_path / "snakemake.log").write_text(log)
    assert result.returncode == 0, f"rc {result.returncode}\n{log[-6000:]}"

    # every submission was a SLURM job of its own
    ids = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    assert len(ids) == len(set(ids)) >= 7
    calls = _sbatch_calls(log)
    for rule in ("prepare_probe", "prepare_toy_text", "train_tokenizer", "train_toy"):
        assert rule in calls, f"{rule} was not submitted: {sorted(calls)}"
    assert "slurm_job_environment" in calls

    # one SLURM job per checkpoint's model work: its jobs run in one allocation
    assert not set(MODEL_WORK) & set(calls), sorted(calls)
    groups = {name: c for name, c in calls.items() if name.startswith("model_work_")}
    assert sorted(groups) == [f"model_work_toy-bloom_{c}_{GROUP_RULES}" for c in CHECKPOINTS], (
        sorted(calls)
    )
    assert all(len(c) == 1 for c in groups.values())  # submitted once each
    jobs = [j for j in parse_jobs(log) if j.rule in MODEL_WORK]
    assert len(jobs) == len(MODEL_WORK) * len(CHECKPOINTS)
    for (call,) in groups.values():
        group = re.search(r"rule_(model_work_toy-bloom_step-\d+)_", call).group(1)
        members = [j for j in jobs if j.group == group]
        assert sorted(j.rule for j in members) == sorted(MODEL_WORK)
        # the group's request (rules/common.smk, MODEL_WORK): Snakemake runs a
        # submitted group's jobs one at a time, so the largest memory and GPU count of
        # any of them and the sum of their runtimes
        mem = max(int(j.resources["mem_mb"]) for j in members)
        runtime = sum(int(j.resources["runtime"]) for j in members)
        assert f" --mem {mem} " in call and f" -t {runtime} " in call, call
        assert "--gpus=1" in call and "--gpus=2" not in call, call
    assert all("--gpus" not in c for r in ("train_toy", "slurm_retry") for c in calls[r])
    assert all(" -p main " in c for cs in calls.values() for c in cs)

    # a failed job came back with more memory and time (profile: retries)
    retry = calls["slurm_retry"]
    assert len(retry) == 2 and " --mem 300 " in retry[0] and " --mem 600 " in retry[1]
    assert " -t 2 " in retry[0] and " -t 4 " in retry[1]
    assert "mem_mb=600 runtime=4" in (workdir / "results/slurm/retry.txt").read_text()
    # the profile chose squeue for this cluster without accounting
    assert "status command is not 'sacct'" in log

    # inside a job: the SLURM allocation, the fake GPU, the repository's venv
    env = json.loads((workdir / "results/slurm/job_environment.json").read_text())
    assert env["SLURM_JOB_ID"] in ids
    assert env["CUDA_VISIBLE_DEVICES"] == "0"
    assert Path(env["python"]).parent == VENV_BIN
    assert Path(env["snakemake_module"]).is_relative_to(VENV_BIN.parent)

    # the outputs
    for checkpoint in CHECKPOINTS:
        folder = workdir / "results/toy-bloom" / checkpoint
        assert json.loads((folder / "metrics.json").read_text())
        assert json.loads((folder / "ablation.json").read_text())["seqlen"] == 32
        assert json.loads((folder / "xstorycloze.json").read_text())["languages"]
        assert (folder / "activations.zarr").is_dir()
    assert (workdir / "results/toy/toy-bloom/step-6").is_dir()
    assert not (workdir / "results/summary").exists()  # not asked for
