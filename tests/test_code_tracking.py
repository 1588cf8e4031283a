"""What reruns when code changes (README "What reruns when"), on copies of the tiny
workflow after a complete run (conftest.py's tiny_run):

- editing a module of the package reruns exactly the rules whose scripts import it
  (directly, through another module, or through the key-neuron registry), and the
  jobs that read what those rewrite; nothing else;
- touching every code file without changing it reruns nothing;
- every result records the code that made it.
"""

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from tiny_workflow import parse_jobs, run_snakemake

pytestmark = pytest.mark.workflow


def snakemake(workdir, *args):
    status, output = run_snakemake(workdir, *args)
    assert status == 0, output[-4000:]
    return output


@pytest.fixture
def workdir(tiny_run, tmp_path):
    """A copy of the complete tiny run (times and .snakemake kept)."""
    return shutil.copytree(tiny_run[0], tmp_path / "wf", symlinks=True)


def plan(workdir):
    return [j for j in parse_jobs(snakemake(workdir, "-n")) if j.rule != "all"]


def edit(path: Path) -> None:
    """A real change of the file's content (what a fix does), dated later."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\n# an edit\n")
    later = time.time() + 5
    os.utime(path, (later, later))


@pytest.mark.parametrize(
    ("module", "importers"),
    [
        # imported by name only in the key-neuron registry (methods.METHODS)
        ("lape.py", {"select_key_neurons"}),
        # imported inside pipeline.evaluate alone
        ("evaluation.py", {"evaluate_xstorycloze"}),
    ],
)
def test_a_module_edit_reruns_exactly_the_rules_that_import_it(
    tiny_run, workdir, module, importers
):
    assert "Nothing to be done" in snakemake(workdir, "-n")
    edit(workdir / "scripts" / "lingua_franca" / module)
    jobs = plan(workdir)
    changed = {j.rule for j in jobs if "params" in j.reason.lower()}
    assert changed == importers, [(str(j), j.reason) for j in jobs]
    ran = parse_jobs(tiny_run[1])
    for rule in importers:  # every job of those rules, every checkpoint
        assert {str(j) for j in jobs if j.rule == rule} == {str(j) for j in ran if j.rule == rule}
    # the rest reads what those jobs rewrite, and nothing else is planned
    rest = [j for j in jobs if j.rule not in importers]
    assert all(j.reason.startswith("Input files updated by another job") for j in rest), [
        (str(j), j.reason) for j in rest
    ]
    assert not {"extract_activations", "compute_metrics", "train_toy", "prepare_probe"} & {
        j.rule for j in jobs
    }


def test_touching_code_without_changing_it_reruns_nothing(workdir):
    later = time.time() + 5
    code = [workdir / "Snakefile", *(workdir / "rules").glob("*.smk")]
    code += (workdir / "scripts").rglob("*.py")
    for path in code:
        os.utime(path, (later, later))
    output = snakemake(workdir, "-n")
    assert "Nothing to be done" in output, output[-3000:]


def test_every_result_records_the_code_that_made_it(tiny_run):
    from lingua_franca.provenance import package_hash

    folder = tiny_run[0] / "results" / "toy-bloom" / "step-6"
    package = package_hash(tiny_run[0] / "scripts" / "lingua_franca")
    records = {
        "metrics.json": json.loads((folder / "metrics.json").read_text())["provenance"]["code"],
        "ablation.json": json.loads((folder / "ablation.json").read_text())["code"],
        "xstorycloze.json": json.loads((folder / "xstorycloze.json").read_text())["code"],
        "selection.json": json.loads((folder / "methods" / "lape" / "selection.json").read_text())[
            "provenance"
        ]["code"],
    }
    import zarr

    records["activations.zarr"] = dict(zarr.open_group(folder / "activations.zarr").attrs)["code"]
    for name, code in records.items():
        assert code["package"] == package, name
        assert code["git"] is None, name  # the tiny copy is not a git repository
