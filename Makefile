# Two commands do everything (see README "Quick start"):
#   make demo   install into .venv if needed, then run the demo workflow end to end
#   make test   install into .venv if needed, then run the test suite
#   make report the HTML report of the last run, refused while anything is pending;
#               make bench: the benchmarks
#   make lint   snakemake --lint, snakefmt, ruff check and ruff format --check
#   make test-fast  the unit tests only (no workflow, rehearsal or SLURM runs)
# The venv is rebuilt when requirements.txt changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_UPDATE_DOWNLOAD_COUNTS=0

.PHONY: demo test test-fast report bench lint venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

demo: venv
	$(OFFLINE) $(BIN)/snakemake   # profiles/default is the workflow profile

test: venv
	$(OFFLINE) $(BIN)/pytest

test-fast: venv
	$(OFFLINE) $(BIN)/pytest -m "not workflow and not slurm"

report: venv
	$(OFFLINE) $(BIN)/python tools/report.py report.html

bench: venv
	$(OFFLINE) $(BIN)/python benchmarks/run_all.py

lint: venv
	$(OFFLINE) $(BIN)/snakemake --lint
	$(OFFLINE) $(BIN)/snakemake --lint --configfile tests/tiny_config.yaml
	$(BIN)/snakefmt --check Snakefile rules/
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf results logs .snakemake report.html
