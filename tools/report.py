"""`make report`: the HTML report, built only from results that are complete and up to
date.

    .venv/bin/python tools/report.py [REPORT.html] [snakemake options, e.g. --configfile X]

Run from the repository root, as snakemake is. First it asks Snakemake, with the same
options, what is not done: `snakemake --summary` gives every output with its status
and plan, `snakemake -n` the jobs it would run (an output marked incomplete shows only
there). If any output is missing or to be made again (a changed setting or code, newer
input, an incomplete job), or a figure does not decode, the report is refused and each
of them named, with its rule and why. Otherwise `snakemake --report REPORT.html`
builds it (default report.html). Every caption takes its values from what the results
record (README "The report"), so the report describes exactly what was run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

FIGURES = (".png", ".jpg", ".jpeg")
SHOWN = 10  # folders named per rule and reason; the rest are counted
# --summary's status of an output to be made again although its own job is as it was
FOLLOWS = "an input is to be made again"
RULE = re.compile(r"^\s*(?:local)?rule (\S+):$")
REASON = re.compile(r"^\s*reason: (.*)$")


def snakemake(*args: str) -> subprocess.CompletedProcess:
    """snakemake ARGS. It runs no job, so the device is not checked here (on a cluster's
    login node it is not the jobs' machine): LINGUA_FRANCA_DEVICE_CHECK=job."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "LINGUA_FRANCA_DEVICE_CHECK": "job"},
    )


def not_done(summary: str) -> dict[tuple[str, str], list[str]]:
    """(rule, status) -> the outputs `snakemake --summary` says are missing or plans to
    make again (a missing output nothing needs is planned by no one, yet missing)."""
    rows = [line.split("\t") for line in summary.splitlines() if "\t" in line]
    header = rows[0] if rows else []
    if header[:1] != ["output_file"] or "plan" not in header or "status" not in header:
        raise SystemExit(f"could not read `snakemake --summary`:\n{summary[-3000:]}")
    at = {name: header.index(name) for name in ("output_file", "rule", "status", "plan")}
    found = defaultdict(list)
    for row in rows[1:]:
        if len(row) < len(header):
            continue
        status, plan = row[at["status"]], row[at["plan"]]
        if plan == "no update" and status == "missing":
            status = "missing, and no job to run needs it: `snakemake <file>` makes it again"
        elif plan == "no update":
            continue
        reason = FOLLOWS if status == "ok" else status
        found[(row[at["rule"]], reason)].append(row[at["output_file"]])
    return found


def planned(dry_run: str) -> dict[str, list[str]]:
    """rule -> the reason of each job `snakemake -n` would run."""
    jobs, rule = defaultdict(list), None
    for line in dry_run.splitlines():
        if found := RULE.match(line):
            rule = found.group(1)
        elif (found := REASON.match(line)) and rule not in (None, "all"):
            jobs[rule].append(found.group(1))
            rule = None
    return jobs


def named(files: list[str]) -> str:
    """``files``, one per folder (the first) with how many more are there."""
    folders: dict[str, list[str]] = {}
    for file in files:
        folders.setdefault(str(Path(file).parent), []).append(file)
    shown = [
        first + (f" (and {len(rest)} more there)" if rest else "")
        for first, *rest in list(folders.values())[:SHOWN]
    ]
    more = len(folders) - SHOWN
    return ", ".join(shown) + (f", and files in {more} more folders" if more > 0 else "")


def undecodable(summary: str) -> list[str]:
    """The figures among the outputs that are there but do not decode."""
    from PIL import Image

    bad = []
    for line in summary.splitlines()[1:]:
        path = Path(line.split("\t")[0])
        if path.suffix.lower() in FIGURES and path.is_file():
            try:
                with Image.open(path) as image:
                    image.load()  # decodes every byte: a truncated file fails here
            except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for a broken image
                bad.append(f"{path} ({err})")
    return bad


def problems(options: list[str]) -> list[str]:
    """Everything that keeps the results from being complete and up to date."""
    summary, dry_run = snakemake("--summary", *options), snakemake("-n", *options)
    for name, done in (("--summary", summary), ("-n", dry_run)):
        if done.returncode != 0:
            return [f"`snakemake {name}` failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"]
    found = []
    listed = set()
    for (rule, status), files in sorted(not_done(summary.stdout).items()):
        found.append(f"{rule} ({status}): {named(files)}")
        listed.add(rule)
    for rule, reasons in sorted(planned(dry_run.stdout).items()):
        if rule not in listed:
            why = "; ".join(sorted(set(reasons)))
            found.append(f"{rule}: {len(reasons)} job(s) to run ({why})")
    found += [f"a figure that does not decode: {bad}" for bad in undecodable(summary.stdout)]
    return found


def main(argv: list[str]) -> int:
    report = argv[0] if argv and not argv[0].startswith("-") else "report.html"
    options = argv[1:] if argv and not argv[0].startswith("-") else argv
    pending = problems(options)
    if pending:
        lines = "\n".join(f"  - {p}" for p in pending)
        print(
            f"report not built: the results are not complete and up to date.\n{lines}\n"
            "Run the workflow (`snakemake`, or `make demo` for the demo) and make the report"
            " again; `snakemake -n` says what it would run and why.",
            file=sys.stderr,
        )
        return 1
    built = snakemake("--report", report, *options)
    sys.stdout.write(built.stdout)
    sys.stderr.write(built.stderr)
    return built.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
