"""A killed job's temporaries: never taken for output, removed by a later writer of
the output once the process that wrote them is gone (lingua_franca.atomic); a writer
that a newer run of its job has taken over never puts its output in place."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
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
    debris = tmp_path / f".activations.zarr.tmp-{writer.pid}@{socket.gethostname()}"
    claim = tmp_path / ".activations.zarr.writer"  # the killed writer's, stale
    assert sorted(tmp_path.iterdir()) == sorted([debris, claim])
    assert any(p.is_file() for p in debris.rglob("*"))  # rows were on disk
    with pytest.raises(StoreError, match="no activation store here"):
        ActivationStore(path)  # never taken for the output...
    with pytest.raises(StoreError, match="incomplete"):
        ActivationStore(debris)  # ...even when opened by its own name

    write_store(path)  # the next run of the job
    assert sorted(tmp_path.iterdir()) == [path]
    assert ActivationStore(path).group["layer_001"].shape == (8, 24)


def dead_pid() -> int:
    """The id of a process that has finished."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout)


def test_only_the_outputs_own_temporaries_of_gone_writers_are_removed(tmp_path):
    host, other = socket.gethostname(), "another-node.cluster"
    output = tmp_path / "xstorycloze.json"
    old = time.time() - 2 * 24 * 3600
    dead = [
        tmp_path / f".xstorycloze.json.tmp-{dead_pid()}@{host}",  # this host, process gone
        tmp_path / f".xstorycloze.json.tmp-{os.getpid() + 10**7}@{host}",
        tmp_path / f".xstorycloze.json.tmp-77@{other}",  # another node, silent for 2 days
        tmp_path / ".xstorycloze.json.tmp-9",  # named before hosts were, silent for 2 days
    ]
    alive = [
        tmp_path / f".xstorycloze.json.tmp-{os.getpid()}@{host}",  # a running process
        tmp_path / f".xstorycloze.json.tmp-78@{other}",  # another node, written to just now
        tmp_path / ".xstorycloze.json.tmp-10",
    ]
    others = [tmp_path / ".xstorycloze.json2.tmp-1", tmp_path / ".ablation.json.tmp-1"]
    for path in dead + alive + others:
        path.write_text("{")
    folder = tmp_path / f".xstorycloze.json.tmp-{dead_pid()}@{host}"  # a folder too
    folder.mkdir()
    (folder / "part").write_text("x")
    dead.append(folder)
    for path in dead[2:4] + others:
        os.utime(path, (old, old))
    removed = remove_stale_temporaries(output)
    assert sorted(removed) == sorted(dead)
    assert sorted(tmp_path.iterdir()) == sorted(alive + others)
    mine = temporary_path(output)
    assert mine == tmp_path / f".xstorycloze.json.tmp-{os.getpid()}@{host}"


# Writer A: writes half its rows, says so, waits for a line on stdin, writes the rest.
ORPHAN = """
import sys
import numpy as np
from lingua_franca.store import StoreError, StoreWriter
languages, items = ["en"] * 4 + ["fr"] * 4, [str(i % 4) for i in range(8)]
try:
    with StoreWriter(sys.argv[1], languages, items, [16, 24], row_chunk=4) as writer:
        writer.write([np.ones((4, 16)), np.ones((4, 24))])
        print("half written", flush=True)
        sys.stdin.readline()
        writer.write([np.ones((4, 16)), np.ones((4, 24))])
except StoreError as err:
    print(f"StoreError: {err}", flush=True)
    sys.exit(3)
print("renamed into place", flush=True)
"""


def test_an_orphaned_writer_never_replaces_the_store_of_the_run_that_took_over(tmp_path):
    """Snakemake killed during an extraction leaves its job running (A); the rerun's
    writer (B) takes the output over and finishes; then A finishes: A must leave B's
    store in place, say why, and remove its own temporary."""
    path = tmp_path / "activations.zarr"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "scripts")}
    orphan = subprocess.Popen(
        [sys.executable, "-c", ORPHAN, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert orphan.stdout.readline().strip() == "half written"
        write_store(path)  # B: the rerun, start to finish, while A still runs
        (kept,) = [p for p in tmp_path.iterdir() if p.name.startswith(".activations.zarr.tmp-")]
        assert kept.name.startswith(f".activations.zarr.tmp-{orphan.pid}@")  # A's, alive
        orphan.stdin.write("finish\n")
        orphan.stdin.flush()
        said = orphan.stdout.read()
        orphan.wait(timeout=60)
    finally:
        orphan.kill()
        orphan.wait(timeout=60)
    assert orphan.returncode == 3, said
    assert "another writer" in said and "took over" in said, said
    assert str(path) in said, said
    store = ActivationStore(path)  # B's store, whole
    np.testing.assert_array_equal(store.group["layer_001"][:], np.full((8, 24), 2.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["activations.zarr"]


def test_a_writer_checks_its_store_before_putting_it_in_place(tmp_path, monkeypatch):
    """A store that lost an array while it was written (what deleting a running
    writer's temporary did) is never renamed into place."""
    path = tmp_path / "activations.zarr"
    write_store(path)
    before = ActivationStore(path).group["layer_000"][:]
    with (
        pytest.raises(StoreError, match=r"layer_001.*not renamed into place"),
        StoreWriter(path, LANGUAGES, ITEMS, WIDTHS, row_chunk=4) as writer,
    ):
        writer.write([np.full((8, w), 5.0) for w in WIDTHS])
        shutil.rmtree(writer.tmp / "layer_001")
    np.testing.assert_array_equal(ActivationStore(path).group["layer_000"][:], before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["activations.zarr"]


def test_write_results_clears_a_killed_writers_temporary(tmp_path):
    output = tmp_path / "xstorycloze.json"
    killed = tmp_path / f".xstorycloze.json.tmp-{dead_pid()}@{socket.gethostname()}"
    killed.write_text('{"half": ')
    write_results({"languages": {}}, output)
    assert sorted(tmp_path.iterdir()) == [output]
    assert json.loads(output.read_text()) == {"languages": {}}
