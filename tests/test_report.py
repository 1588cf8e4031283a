"""The HTML report: `snakemake --report` after a plain `snakemake` run of a tiny copy
of the workflow, rendered in headless Chromium, with every figure in it loading.

Chromium is Debian's `chromium` package (.ci/run installs it); without it the
rendering test is skipped with the reason.
"""

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny_workflow import copy_workflow

pytestmark = pytest.mark.workflow
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Appended to a copy of the report: once the page has loaded, decode every image
# result the report embeds, as the report itself would show it, and write what
# loaded and what failed into the page for --dump-dom to return.
CHECK = """
<script>
window.addEventListener("load", async () => {
  const out = {loaded: [], failed: [], results: Object.keys(results).length};
  const images = Object.entries(results).filter(([p, e]) => (e.mime_type || "").startsWith("image/"));
  await Promise.all(images.map(([path, entry]) => new Promise(done => {
    const img = new Image();
    img.onload = () => { out.loaded.push([path, img.naturalWidth, img.naturalHeight]); done(); };
    img.onerror = () => { out.failed.push(path); done(); };
    img.src = entry.data_uri;
  })));
  const pre = document.createElement("pre");
  pre.id = "lf-report-check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def snakemake(workdir, *args):
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args],
        check=False,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=900,
        env=ENV,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("report") / "wf")
    snakemake(workdir)  # the default target: everything, the report's inputs included
    assert "Nothing to be done" in snakemake(workdir, "-n")
    snakemake(workdir, "--report", "report.html")
    return workdir / "report.html"


def expected_figures(workdir: Path) -> set[str]:
    return {str(p.relative_to(workdir)) for p in (workdir / "results").rglob("*.png")}


def test_report_holds_every_figure_with_a_caption(report):
    text = report.read_text(encoding="utf-8")
    match = re.search(r"var results = (\{.*?\});\n", text)
    assert match, "the report's results table was not found"
    results = json.loads(match.group(1))
    figures = {path for path, entry in results.items() if entry["mime_type"] == "image/png"}
    assert figures == expected_figures(report.parent)
    assert all(results[path]["caption"].strip() for path in results)
    assert "results/summary/metrics.csv" in results and "results/summary/summary.html" in results


def test_the_run_covers_every_story_language_and_every_generation(report):
    """The tiny run's probe languages are en, es, zh; its story source (the demo's)
    also holds ar, hi and id, which XStoryCloze evaluates all the same; the generations
    are every condition × every prompt language, each exactly the configured length."""
    workdir = report.parent
    config = yaml.safe_load((workdir / "workflow_config.yaml").read_text())
    folder = workdir / "results" / "toy-bloom" / "step-6"
    xsc = json.loads((folder / "xstorycloze.json").read_text(encoding="utf-8"))
    assert set(xsc["languages"]) == {"en", "zh", "es", "ar", "hi", "id"}
    assert not set(xsc["languages"]) <= set(config["languages"])
    assert all(entry["cross"]["n"] == 2 for entry in xsc["languages"].values())
    ablation = json.loads((folder / "ablation.json").read_text(encoding="utf-8"))
    conditions = ablation["generation"]["conditions"]
    without = ablation["languages_without_key_neurons"]
    assert conditions == ["full"] + [x for x in config["languages"] if x not in without]
    assert len(conditions) > 1  # z_threshold 1.0 < √2: key regions to deactivate
    generation = config["analysis"]["generation"]
    gens = [json.loads(x) for x in (folder / "generations.jsonl").read_text().splitlines()]
    assert sorted((g["condition"], g["language"], g["prompt_index"]) for g in gens) == sorted(
        (c, lang, i)
        for c in conditions
        for lang in config["languages"]
        for i in range(generation["prompts_per_language"])
    )
    assert {len(g["continuation_ids"]) for g in gens} == {generation["max_new_tokens"]}
    text = report.read_text(encoding="utf-8")
    match = re.search(r"var results = (\{.*?\});\n", text)
    results = json.loads(match.group(1))
    assert "results/toy-bloom/step-6/generations.html" in results


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"
)
def test_report_renders_in_headless_chromium_and_every_figure_loads(report, tmp_path):
    page = tmp_path / "report.html"
    head, tail = report.read_text(encoding="utf-8").rsplit("</body>", 1)  # the page's own, last
    page.write_text(head + CHECK + "</body>" + tail)
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=30000",
            "--dump-dom",
            page.as_uri(),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r'<div id="app"><div[^>]*>.*?<nav', dom, re.DOTALL), (
        "the report app did not render"
    )
    check = re.search(r'<pre id="lf-report-check">(.*?)</pre>', dom, re.DOTALL)
    assert check, "the check script did not finish"
    outcome = json.loads(html.unescape(check.group(1)))
    assert outcome["failed"] == []
    loaded = {path for path, width, height in outcome["loaded"] if width > 0 and height > 0}
    assert loaded == expected_figures(report.parent)
