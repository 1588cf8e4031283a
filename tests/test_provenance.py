"""The code a result records and a rule is rerun for (lingua_franca.provenance): the
package's source hash, the git state, and each rule script's code version, derived
from what the script imports, transitively, within the package."""

import re
import subprocess
import textwrap
from pathlib import Path

import pytest
from lingua_franca.provenance import code_files, code_provenance, code_version, package_hash

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "scripts" / "lingua_franca"


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def package(tmp_path):
    """A small package named like ours, beside a rule script that calls one function."""
    write(
        tmp_path / "scripts",
        {
            "rule.py": """
                from lingua_franca.logs import log_to
                from lingua_franca.pipeline import job
                job()
            """,
            "lingua_franca/__init__.py": '__version__ = "0"\n',
            "lingua_franca/logs.py": "def log_to(path): pass\n",
            "lingua_franca/pipeline.py": """
                from lingua_franca.outputs import OutputFiles

                def _helper():
                    from lingua_franca.registry import lookup
                    return lookup

                def job():
                    from .science import compute
                    return compute(), _helper()

                def other_job():
                    from lingua_franca.unrelated import thing
                    return thing
            """,
            "lingua_franca/outputs.py": "class OutputFiles: pass\n",
            "lingua_franca/science.py": """
                import numpy as np
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from lingua_franca.unrelated import thing

                def compute():
                    return np.zeros(1)
            """,
            "lingua_franca/registry.py": """
                import importlib
                ENTRIES = {"new": "lingua_franca.methods.new_method"}

                def lookup(name):
                    return importlib.import_module(ENTRIES[name])
            """,
            "lingua_franca/methods/__init__.py": "",
            "lingua_franca/methods/new_method.py": "def key_neurons(): pass\n",
            "lingua_franca/unrelated.py": "thing = 1\n",
        },
    )
    return tmp_path / "scripts"


def test_the_code_of_a_rule_is_what_its_script_runs(package):
    names = {str(p.relative_to(package)) for p in code_files(package / "rule.py")}
    assert names == {
        "rule.py",
        "lingua_franca/__init__.py",
        "lingua_franca/logs.py",
        "lingua_franca/pipeline.py",
        "lingua_franca/outputs.py",  # imported by the module the script imports
        "lingua_franca/science.py",  # imported inside the function the script calls
        "lingua_franca/registry.py",  # ... and inside a helper that function calls
        "lingua_franca/methods/__init__.py",
        "lingua_franca/methods/new_method.py",  # a module named in a registry
    }  # not unrelated.py: only another job's function and a type check import it


def test_a_code_version_changes_with_content_not_with_time(package):
    script = package / "rule.py"
    before = code_version(script)
    science = package / "lingua_franca" / "science.py"
    science.touch()
    assert code_version(script) == before
    science.write_text(science.read_text() + "\n# a fix\n")
    assert code_version(script) != before
    unrelated = package / "lingua_franca" / "unrelated.py"
    changed = code_version(script)
    unrelated.write_text("thing = 2\n")
    assert code_version(script) == changed
    # a module added to the package and imported is covered without any list to edit
    (package / "lingua_franca" / "fresh.py").write_text("VALUE = 1\n")
    (package / "lingua_franca" / "logs.py").write_text(
        "from lingua_franca.fresh import VALUE\n\ndef log_to(path): pass\n"
    )
    assert package / "lingua_franca" / "fresh.py" in code_files(script)


def test_every_rule_with_a_script_takes_its_code_version_as_a_parameter():
    """So that Snakemake reruns a rule when its code changes, and only then (the
    workflow profile leaves out the `code` rerun trigger, which compares times)."""
    missing = []
    for rules in sorted((ROOT / "rules").glob("*.smk")):
        blocks = re.split(r"\n(?=(?:local)?rule |checkpoint )", rules.read_text())
        for block in blocks:
            script = re.search(r'\n    script:\n        "([^"]+)"', block)
            if not script:
                continue
            name = block.split(":")[0].split()[-1]
            if f'code=code_version("{script.group(1)}")' not in block:
                missing.append(f"{rules.name}: rule {name}")
    assert missing == []
    profile = (ROOT / "profiles" / "default" / "config.yaml").read_text()
    triggers = re.search(r"rerun-triggers: \[([^]]*)\]", profile)
    assert triggers and set(triggers.group(1).replace(" ", "").split(",")) == {
        "mtime",
        "params",
        "input",
        "software-env",
    }


def test_the_package_hash_covers_every_module():
    before = package_hash(PACKAGE)
    assert re.fullmatch(r"[0-9a-f]{64}", before)
    assert package_hash(PACKAGE) == before


def test_results_record_the_git_commit_and_whether_the_tree_was_clean():
    code = code_provenance()
    assert code["package"] == package_hash(PACKAGE)
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    assert code["git"]["commit"] == head.stdout.strip()
    status = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert code["git"]["dirty"] == bool(status.stdout.strip())


def test_a_model_jobs_provenance_records_torch_threads():
    """A float sum, hence now and then a sampled token, can differ in its last bit
    between one thread and two: the JSON results say how many the job used."""
    import torch
    from lingua_franca.pipeline import _provenance

    keys = ("model", "checkpoint", "family", "hub_id", "revision", "step", "location", "tokenizer")
    settings = dict.fromkeys(keys)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert _provenance(settings)["torch_threads"] == threads
    finally:
        torch.set_num_threads(before)
