"""Checksummed store chunks (lingua_franca.store): every chunk of every array carries a
crc32c after its compression; a damaged or missing chunk is named with its store,
array and chunk and the remedy, and the store is set aside so that it is never taken
as up to date again (the next plan extracts it again). A store written before
checksums existed stays readable."""

import json
import logging

import numpy as np
import pytest
import zarr
from lingua_franca.store import ActivationStore, StoreError, StoreWriter

LANGUAGES, ITEMS, WIDTHS = ["en"] * 4 + ["fr"] * 4, [str(i % 4) for i in range(8)], [16, 24]


def write_store(path, activity=True):
    rng = np.random.default_rng(0)
    with StoreWriter(
        path,
        LANGUAGES,
        ITEMS,
        WIDTHS,
        row_chunk=4,
        col_chunk=8,
        activity={"module": "x"} if activity else None,
    ) as writer:
        means = [rng.normal(size=(8, w)).astype(np.float32) for w in WIDTHS]
        if activity:
            writer.write(means, [np.ones((8, w), np.int32) for w in WIDTHS], np.full(8, 3))
        else:
            writer.write(means)
    return means


def chunk_file(store, array, coords):
    """The file of one chunk: zarr v3's default key encoding, c/<i>/<j>."""
    return store / array / "c" / "/".join(map(str, coords))


def read_all(path):
    store = ActivationStore(path)
    return [block for _, _, block in store.iter_blocks(block_width=64)]


def test_every_array_checksums_its_chunks_after_compressing_them(tmp_path):
    path = tmp_path / "activations.zarr"
    write_store(path)
    group = zarr.open_group(path, mode="r")
    for name in ["layer_000", "layer_001", "active/layer_000", "active/layer_001", "n_tokens"]:
        codecs = [c["name"] for c in json.loads((path / name / "zarr.json").read_text())["codecs"]]
        assert codecs[-1] == "crc32c", (name, codecs)
        assert "zstd" in codecs and codecs.index("zstd") < codecs.index("crc32c"), (name, codecs)
    assert group["layer_001"].shape == (8, 24)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_chunk_is_named_with_its_remedy_and_the_store_set_aside(tmp_path, damage):
    path = tmp_path / "activations.zarr"
    write_store(path)
    target = chunk_file(path, "layer_001", (1, 2))
    data = bytearray(target.read_bytes())
    if damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
    else:  # same length, one bit: only a checksum sees it
        data[len(data) // 2] ^= 0x01
        target.write_bytes(bytes(data))
    with pytest.raises(StoreError) as caught:
        read_all(path)
    message = str(caught.value)
    assert str(path) in message
    assert "layer_001" in message and "(1, 2)" in message, message
    assert "Delete the store and extract it again" in message, message
    # never taken as up to date again: the output is gone, the damaged copy kept aside
    assert not path.exists()
    aside = sorted(tmp_path.glob(".activations.zarr.damaged-*"))
    assert len(aside) == 1 and str(aside[0]) in message
    with pytest.raises(StoreError, match="no activation store here"):
        ActivationStore(path)
    # the next writer of the store clears it
    write_store(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["activations.zarr"]


def test_a_damaged_activity_chunk_is_named_too(tmp_path):
    path = tmp_path / "activations.zarr"
    write_store(path)
    target = chunk_file(path, "active/layer_000", (0, 1))
    target.write_bytes(target.read_bytes()[:-3])
    store = ActivationStore(path)
    with pytest.raises(StoreError, match=r"active/layer_000.*\(0, 1\)"):
        list(store.iter_active_blocks(block_width=64))


def test_a_missing_chunk_is_found_when_the_store_is_opened(tmp_path):
    """zarr reads a chunk file that is not there as the fill value: the store is checked
    for every chunk before anything is read from it."""
    path = tmp_path / "activations.zarr"
    write_store(path)
    chunk_file(path, "layer_000", (1, 0)).unlink()
    with pytest.raises(StoreError, match=r"layer_000.*\(1, 0\).*Delete the store"):
        ActivationStore(path)
    assert not path.exists()


def test_an_intact_store_reads_back_exactly(tmp_path):
    path = tmp_path / "activations.zarr"
    means = write_store(path)
    store = ActivationStore(path)
    for index, start, block in store.iter_blocks(block_width=5, dtype="float32"):
        np.testing.assert_array_equal(block, means[index][:, start : start + 5])
    assert store.checksums


def test_a_store_written_before_checksums_is_still_read_with_a_note(tmp_path, caplog):
    """The layout of before: zarr's default codecs (zstd, no crc32c)."""
    path = tmp_path / "activations.zarr"
    group = zarr.open_group(path, mode="w", zarr_format=3)
    values = np.arange(8 * 16, dtype=np.float32).reshape(8, 16)
    array = group.create_array("layer_000", shape=(8, 16), dtype="float32", chunks=(4, 8))
    array[:] = values
    for name, column in (("language", LANGUAGES), ("item", ITEMS)):
        group.create_array(name, shape=(8,), dtype=str)[:] = np.array(column, dtype=str)
    group.attrs.update(
        {
            "languages": LANGUAGES,
            "items": ITEMS,
            "layers": ["layer_000"],
            "widths": [16],
            "complete": True,
        }
    )
    with caplog.at_level(logging.WARNING):
        store = ActivationStore(path)
        (block,) = [b for _, _, b in store.iter_blocks(block_width=64, dtype="float32")]
    np.testing.assert_array_equal(block, values)
    assert not store.checksums
    assert "no chunk checksums" in caplog.text and "extract it again" in caplog.text


@pytest.mark.workflow
def test_a_damaged_store_fails_its_reader_by_name_and_is_extracted_again(tiny_run, tmp_path):
    """The issue's scenario: one chunk truncated after a complete run, the metrics job
    forced. It stops naming the store, the array, the chunk and the remedy; the next
    plan extracts the store again (it is no longer taken as up to date)."""
    import shutil

    from tiny_workflow import parse_jobs, run_snakemake

    workdir = shutil.copytree(tiny_run[0], tmp_path / "wf", symlinks=True)

    def snakemake(*args):
        return run_snakemake(workdir, *args)

    store = workdir / "results" / "toy-bloom" / "step-6" / "activations.zarr"
    target = chunk_file(store, "layer_000", (0, 0))
    target.write_bytes(target.read_bytes()[:-7])
    status, output = snakemake(
        "--forcerun", "compute_metrics", "results/toy-bloom/step-6/metrics.json"
    )
    assert status != 0, output[-3000:]
    log = (workdir / "logs" / "toy-bloom" / "step-6" / "compute_metrics.log").read_text()
    named = "results/toy-bloom/step-6/activations.zarr"
    for part in (named, "layer_000", "(0, 0)", "Delete the store and extract it again"):
        assert part in log, log[-3000:]
    status, output = snakemake("-n")
    assert status == 0, output[-3000:]
    planned = {str(j) for j in parse_jobs(output) if j.rule == "extract_activations"}
    assert planned == {"extract_activations[model=toy-bloom,checkpoint=step-6]"}, output[-3000:]
