"""A killed job's temporaries: never taken for output, removed by the next run of
that job (lingua_franca.atomic); and the aggregate's folder holds only what the
current grid makes."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lingua_franca.atomic import remove_stale_temporaries, temporary_path
from lingua_franca.evaluation import write_results
from lingua_franca.store import ActivationStore, StoreError, StoreWriter

ROOT = Path(__file__).resolve().parents[1]
LANGUAGES, ITEMS, WIDTHS = ["en"] * 4 + ["fr"] * 4, [str(i % 4) for i in range(8)], [16, 24]

# A writer that has written half of its rows and then waits to be killed.
WRITER = """
import sys, time
import numpy as np
from lingua_franca.store import StoreWriter
languages, items = ["en"] * 4 + ["fr"] * 4, [str(i % 4) for i in range(8)]
with StoreWriter(sys.argv[1], languages, items, [16, 24], row_chunk=4) as writer:
    writer.write([np.ones((4, 16)), np.ones((4, 24))])
    print("half written", flush=True)
    time.sleep(600)
"""


def write_store(path):
    with StoreWriter(path, LANGUAGES, ITEMS, WIDTHS, row_chunk=4) as writer:
        writer.write([np.full((8, w), 2.0) for w in WIDTHS])


def test_a_sigkilled_store_writer_leaves_no_output_and_the_next_one_clears_its_debris(
    tmp_path,
):
    path = tmp_path / "activations.zarr"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "scripts")}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert writer.stdout.readline().strip() == "half written"
        writer.send_signal(signal.SIGKILL)  # what the out-of-memory killer sends
    finally:
        writer.kill()
        writer.wait(timeout=60)
    assert writer.returncode == -signal.SIGKILL
    debris = tmp_path / f".activations.zarr.tmp-{writer.pid}"
    assert sorted(tmp_path.iterdir()) == [debris]
    assert any(p.is_file() for p in debris.rglob("*"))  # rows were on disk
    with pytest.raises(StoreError, match="no activation store here"):
        ActivationStore(path)  # never taken for the output...
    with pytest.raises(StoreError, match="incomplete"):
        ActivationStore(debris)  # ...even when opened by its own name

    write_store(path)  # the next run of the job
    assert sorted(tmp_path.iterdir()) == [path]
    assert ActivationStore(path).group["layer_001"].shape == (8, 24)


def test_only_the_outputs_own_temporaries_are_removed(tmp_path):
    output = tmp_path / "xstorycloze.json"
    stale = [tmp_path / ".xstorycloze.json.tmp-123", tmp_path / ".xstorycloze.json.tmp-9"]
    others = [tmp_path / ".xstorycloze.json2.tmp-1", tmp_path / ".ablation.json.tmp-1"]
    for path in stale + others:
        path.write_text("{")
    (tmp_path / ".xstorycloze.json.tmp-77").mkdir()
    (tmp_path / ".xstorycloze.json.tmp-77" / "part").write_text("x")
    removed = remove_stale_temporaries(output)
    assert sorted(removed) == sorted([*stale, tmp_path / ".xstorycloze.json.tmp-77"])
    assert sorted(tmp_path.iterdir()) == sorted(others)
    assert temporary_path(output) == tmp_path / f".xstorycloze.json.tmp-{os.getpid()}"


def test_write_results_clears_a_killed_writers_temporary(tmp_path):
    output = tmp_path / "xstorycloze.json"
    (tmp_path / ".xstorycloze.json.tmp-4242").write_text('{"half": ')
    write_results({"languages": {}}, output)
    assert sorted(tmp_path.iterdir()) == [output]
    assert json.loads(output.read_text()) == {"languages": {}}
