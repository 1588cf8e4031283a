"""The report describes what was run, on copies of the tiny workflow after a complete
run (conftest.py's tiny_run):

- every caption takes its values (interval level, resamples, seed, thresholds,
  methods) from the results' own records, never from the config of the moment: a
  report built after analysis.bootstrap.level changed to 0.9, with nothing rerun,
  says 95%, as the results are;
- `make report` (tools/report.py) refuses while anything is pending, naming it: jobs
  to run (a changed setting, a missing store) or a figure that does not decode.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_workflow import run_snakemake, tiny_config, write_config

pytestmark = pytest.mark.workflow
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
REPORT = [sys.executable, str(ROOT / "tools" / "report.py"), "report.html"]


def run(workdir, command):
    result = subprocess.run(
        command, cwd=workdir, check=False, capture_output=True, text=True, timeout=900, env=ENV
    )
    return result.returncode, result.stdout + result.stderr


@pytest.fixture
def workdir(tiny_run, tmp_path):
    return shutil.copytree(tiny_run[0], tmp_path / "wf", symlinks=True)


def at_90_percent(workdir):
    config = tiny_config()
    config["analysis"]["bootstrap"] = {"level": 0.9}
    write_config(workdir, config)


def captions(report: Path) -> str:
    text = report.read_text(encoding="utf-8")
    return " ".join(re.findall(r'"caption": "((?:[^"\\]|\\.)*)"', text))


def test_a_report_under_a_changed_config_says_what_the_results_hold(workdir):
    at_90_percent(workdir)
    status, output = run_snakemake(workdir, "--report", "report.html")
    assert status == 0, output[-3000:]
    text = captions(workdir / "report.html")
    assert "90%" not in text and "90 %" not in text
    assert text.count("95%") >= 6, text[:3000]  # evolution, scale, key layers/languages, ppl
    assert "B = 1000" in text
    assert "z &gt; 1" in text or "z > 1" in text  # the threshold the metrics recorded


def test_make_report_refuses_while_a_changed_setting_is_pending(workdir):
    at_90_percent(workdir)
    status, output = run(workdir, REPORT)
    assert status != 0, output[-3000:]
    assert "results/toy-bloom/step-6/metrics.json" in output, output[-3000:]
    assert "compute_metrics" in output and "params changed" in output, output[-3000:]
    assert not (workdir / "report.html").exists()


def test_make_report_refuses_a_missing_store_and_a_figure_that_does_not_decode(workdir):
    shutil.rmtree(workdir / "results" / "toy-bloom" / "step-0" / "activations.zarr")
    figure = workdir / "results" / "summary" / "evolution_toy-bloom.png"
    figure.write_bytes(figure.read_bytes()[:200])
    status, output = run(workdir, REPORT)
    assert status != 0, output[-3000:]
    assert "results/toy-bloom/step-0/activations.zarr" in output, output[-3000:]
    assert "results/summary/evolution_toy-bloom.png" in output, output[-3000:]
    assert not (workdir / "report.html").exists()


def test_make_report_refuses_an_output_marked_incomplete(workdir):
    """As Snakemake marks the outputs of a job that did not finish (its own record,
    .snakemake/incomplete/<the path in base64>)."""
    import base64

    path = "results/toy-bloom/step-6/metrics.json"
    marker = workdir / ".snakemake" / "incomplete" / base64.b64encode(path.encode()).decode()
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    status, output = run(workdir, REPORT)
    assert status != 0, output[-3000:]
    assert "compute_metrics: 1 job(s) to run" in output, output[-3000:]
    assert not (workdir / "report.html").exists()


def test_make_report_builds_the_report_when_nothing_is_pending(workdir):
    status, output = run(workdir, REPORT)
    assert status == 0, output[-3000:]
    assert (workdir / "report.html").stat().st_size > 100_000


@pytest.mark.parametrize(
    "caption",
    sorted((ROOT / "resources" / "report").glob("*.rst")),
    ids=lambda p: p.name,
)
def test_every_caption_is_clean_restructuredtext(caption):
    """A column name such as ``n_`` written bare is a reStructuredText reference: the
    report then prints a docutils error where the caption should be."""
    import io

    import docutils.core

    warnings = io.StringIO()
    docutils.core.publish_string(
        caption.read_text(encoding="utf-8"),
        writer_name="html",
        settings_overrides={"warning_stream": warnings, "report_level": 2},
    )
    assert warnings.getvalue() == ""
