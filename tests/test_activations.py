"""Batched extraction, checkpoint loading and the activation store (docs/method.md §2)."""

import hashlib
import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import ARCHS, CORPUS, all_hooks, tiny_model, tiny_tokenizer
from lingua_franca import models
from lingua_franca.activations import (
    NonFiniteActivationError,
    extract_to_store,
    pooled_neurons,
    tokenize,
)
from lingua_franca.metrics import compute_metrics
from lingua_franca.models import (
    SHA256_CACHE,
    WeightsError,
    load_model,
    unreadable_weight_files,
    weights_fingerprint,
)
from lingua_franca.store import ActivationStore, StoreError

TEXTS = ["the cat", CORPUS[4], "le chat dort", CORPUS[1], "a", CORPUS[0], "el perro come en la"]


def stored_layer(store: ActivationStore, layer: int) -> np.ndarray:
    """One layer's (samples, width) array as written, read with plain zarr."""
    return np.asarray(store.group[store.layers[layer]][:], dtype=np.float32)


@pytest.fixture(scope="module")
def tokenizer():
    tok = tiny_tokenizer()
    tok.pad_token = tok.eos_token
    return tok


def probe_frame(texts=TEXTS):
    langs = ["eng", "eng", "fra", "deu", "eng", "eng", "spa"]
    return pd.DataFrame(
        {
            "row": range(len(texts)),
            "lang": langs[: len(texts)],
            "item": range(len(texts)),
            "text": texts,
        }
    )


def extract(model, tokenizer, texts=TEXTS, **kw):
    kw.setdefault("progress", False)
    blocks = list(pooled_neurons(model, tokenizer, texts, **kw))
    return [np.concatenate(layer) for layer in zip(*(b.means for b in blocks))]


@pytest.mark.parametrize("arch", ARCHS)
def test_padded_batches_equal_one_sample_at_a_time(arch, tokenizer):
    model = tiny_model(arch)
    single = extract(model, tokenizer, batch_size=1, sort_window=1)
    batched = extract(model, tokenizer, batch_size=3, sort_window=4)  # sorted, 2 windows
    for a, b in zip(single, batched):
        assert a.shape == b.shape == (len(TEXTS), a.shape[1]) and a.dtype == np.float32
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    # row i really is text i: an isolated run of one text gives the same row
    alone = extract(model, tokenizer, [TEXTS[3]], batch_size=1)
    np.testing.assert_allclose(alone[1][0], batched[1][3], rtol=1e-5, atol=1e-6)
    assert all_hooks(model) == 0


def test_lm_head_is_not_run(tokenizer):
    model = tiny_model("bloom")
    calls = []
    model.lm_head.register_forward_hook(lambda *a: calls.append(1))
    extract(model, tokenizer, batch_size=4)
    assert calls == []


def test_special_tokens_only_when_asked(tokenizer):
    plain, special = tokenize(tokenizer, ["the cat"]), tokenize(tokenizer, ["the cat"], True)
    assert special[0] == [tokenizer.bos_token_id] + plain[0]
    model = tiny_model("llama")
    with_bos = extract(model, tokenizer, ["the cat"], add_special_tokens=True)
    without = extract(model, tokenizer, ["the cat"])
    assert not np.allclose(with_bos[0], without[0])


def test_nan_names_layer_and_sample(tmp_path, tokenizer):
    model = tiny_model("llama")
    token = tokenize(tokenizer, ["perro"])[0][0]
    with torch.no_grad():
        model.model.embed_tokens.weight[token] = float("nan")
    with pytest.raises(
        NonFiniteActivationError, match=r"layer 0: .*row 6 \(language spa, item 6\)"
    ):
        extract_to_store(model, tokenizer, probe_frame(), tmp_path / "a.zarr", batch_size=2)
    assert all_hooks(model) == 0 and not any(tmp_path.iterdir())


def test_store_round_trip_with_attributes(tmp_path, tokenizer):
    model = tiny_model("gpt2")
    path = tmp_path / "results/tiny-gpt2/step100/activations.zarr"
    extract_to_store(
        model,
        tokenizer,
        probe_frame(),
        path,
        batch_size=3,
        progress=False,
        attrs={"model": "tiny-gpt2", "checkpoint": "step100"},
    )
    store = ActivationStore(path)
    expected = extract(model, tokenizer, batch_size=1)
    assert store.widths == [64, 64] and store.n_samples == len(TEXTS)
    for layer, values in enumerate(expected):
        np.testing.assert_allclose(stored_layer(store, layer), values, rtol=1e-5, atol=1e-6)
    a = store.attrs
    assert store.languages == list(probe_frame()["lang"]) and store.items == [
        str(i) for i in range(7)
    ]
    assert (a["model"], a["checkpoint"], a["revision"], a["dtype"]) == (
        "tiny-gpt2",
        "step100",
        None,
        "float32",
    )
    assert a["weights_fingerprint"] is None and a["weights_files"] is None  # built in memory
    assert a["tokenizer"]["class"] == type(tokenizer).__name__
    assert (
        a["tokenizer"]["vocab_size"] == len(tokenizer)
        and a["tokenizer"]["add_special_tokens"] is False
    )
    assert a["extraction"]["neuron_module"] == "transformer.h.{layer}.mlp.c_proj"
    assert len(a["config_hash"]) == 16 and a["package_versions"]["torch"] == torch.__version__
    assert a["complete"] is True
    assert all_hooks(model) == 0


def test_probe_must_be_in_row_order(tmp_path, tokenizer):
    probe = probe_frame().iloc[::-1]
    with pytest.raises(ValueError, match="row order|in order"):
        extract_to_store(tiny_model("gpt2"), tokenizer, probe, tmp_path / "x.zarr", batch_size=2)


def save_checkpoint(arch, folder, tokenizer):
    model = tiny_model(arch)
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)  # saved without a pad token
    return model


def test_local_checkpoint_round_trip(tmp_path, tokenizer):
    original = save_checkpoint("opt", tmp_path / "ckpt", tokenizer)
    model, tok = load_model(str(tmp_path / "ckpt"))
    assert not model.training
    assert tok.pad_token == tok.eos_token and tok.padding_side == "right"
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, original(input_ids=ids).logits)
    assert model.lingua_franca_source == {
        "model": str(tmp_path / "ckpt"),
        "revision": None,
        "tokenizer": {"location": str(tmp_path / "ckpt"), "revision": None},  # its own
    }
    assert (tmp_path / "ckpt" / "model.safetensors").exists()


def truncate(path):
    os.truncate(path, path.stat().st_size // 2)


def test_a_truncated_weight_file_is_named(tmp_path, tokenizer):
    save_checkpoint("llama", tmp_path / "ckpt", tokenizer)
    weights = tmp_path / "ckpt" / "model.safetensors"
    truncate(weights)
    with pytest.raises(WeightsError, match=rf"cannot read {weights} \(.*not fully covered"):
        load_model(str(tmp_path / "ckpt"))


def test_a_truncated_weight_file_in_the_hub_cache_is_named(tmp_path, tokenizer, monkeypatch):
    """The cache layout that from_pretrained reads offline: refs/<revision> holds the
    commit, snapshots/<commit>/ the files."""
    import huggingface_hub.constants

    repo = tmp_path / "hub" / "models--example-org--tiny"
    commit = "0123456789abcdef0123456789abcdef01234567"
    save_checkpoint("gpt2", repo / "snapshots" / commit, tokenizer)
    (repo / "refs").mkdir()
    (repo / "refs" / "step100").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert unreadable_weight_files("example-org/tiny", "step100") == []
    weights = repo / "snapshots" / commit / "model.safetensors"
    truncate(weights)
    (broken,) = unreadable_weight_files("example-org/tiny", "step100")
    assert broken.startswith(f"{weights} (")
    assert unreadable_weight_files("example-org/other", "main") == []  # not in the cache


def test_a_missing_local_checkpoint_folder_is_named(tmp_path):
    from lingua_franca.pipeline import load_checkpoint

    settings = {"model": "m", "checkpoint": "c", "revision": None}
    settings["location"] = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=f"m c: no model folder {tmp_path}/nowhere"):
        load_checkpoint(settings, "cpu")


def file_fingerprint(files):
    """The fingerprint computed directly: sha256 over "name<TAB>sha256 of the file" lines."""
    lines = "".join(
        f"{name}\t{hashlib.sha256(path.read_bytes()).hexdigest()}\n" for name, path in files
    )
    return hashlib.sha256(lines.encode()).hexdigest()


def no_hashing(monkeypatch):
    def refuse(path):
        raise AssertionError(f"{path} was hashed again")

    monkeypatch.setattr(models, "_hash_file", refuse)


def test_fingerprint_is_of_the_weight_files_hashed_once(tmp_path, tokenizer, monkeypatch):
    a = save_checkpoint("llama", tmp_path / "a", tokenizer)
    a.save_pretrained(tmp_path / "b")  # same weights, another name
    tiny_tokenizer().save_pretrained(tmp_path / "b")
    model_a, tok = load_model(str(tmp_path / "a"), dtype="bfloat16")
    fingerprint = weights_fingerprint(model_a)
    assert fingerprint == file_fingerprint(
        [("model.safetensors", tmp_path / "a/model.safetensors")]
    )
    # hashed once: the second look (any job of the checkpoint) reads the cache beside it
    cache = json.loads((tmp_path / "a" / SHA256_CACHE).read_text())["files"]
    assert set(cache) == {"model.safetensors"}
    no_hashing(monkeypatch)
    model_b, _ = load_model(str(tmp_path / "b"))
    monkeypatch.undo()
    assert weights_fingerprint(model_b) == fingerprint  # hashed now, for b
    no_hashing(monkeypatch)
    assert weights_fingerprint(model_a) == weights_fingerprint(model_b) == fingerprint
    path = tmp_path / "store.zarr"
    extract_to_store(model_a, tok, probe_frame(), path, batch_size=4, progress=False)
    attrs = ActivationStore(path).attrs
    assert attrs["weights_fingerprint"] == fingerprint and attrs["dtype"] == "bfloat16"
    assert attrs["weights_files"] == {"model.safetensors": cache["model.safetensors"]["sha256"]}
    monkeypatch.undo()
    # a changed file is hashed again: one weight differs
    with torch.no_grad():
        a.model.layers[1].mlp.down_proj.weight[0, 0] += 1e-3
    a.save_pretrained(tmp_path / "b")
    assert weights_fingerprint(model_b) != fingerprint


def test_fingerprint_covers_offloaded_weights(tmp_path, tokenizer):
    """Two checkpoints that differ only in a layer offloaded to disk (meta tensors in
    memory) are not the same weights."""
    a = save_checkpoint("llama", tmp_path / "a", tokenizer)
    with torch.no_grad():
        a.model.layers[1].mlp.down_proj.weight[0, 0] += 1e-3
    a.save_pretrained(tmp_path / "b")
    tiny_tokenizer().save_pretrained(tmp_path / "b")
    device_map = {
        "model.embed_tokens": "cpu",
        "model.layers.0": "cpu",
        "model.layers.1": "disk",
        "model.norm": "cpu",
        "model.rotary_emb": "cpu",
        "lm_head": "cpu",
    }
    loaded = [load_model(str(tmp_path / x), device_map=device_map)[0] for x in "ab"]
    assert all(m.model.layers[1].mlp.down_proj.weight.is_meta for m in loaded)
    assert weights_fingerprint(loaded[0]) != weights_fingerprint(loaded[1])


def test_fingerprint_of_a_sharded_checkpoint_covers_every_shard(tmp_path, tokenizer):
    model = tiny_model("llama")
    model.save_pretrained(tmp_path / "c", max_shard_size="20KB")
    tiny_tokenizer().save_pretrained(tmp_path / "c")
    shards = sorted(p.name for p in (tmp_path / "c").glob("model-*.safetensors"))
    assert len(shards) > 1
    loaded, _ = load_model(str(tmp_path / "c"))
    assert models.weight_files(tmp_path / "c") == shards
    assert weights_fingerprint(loaded) == file_fingerprint(
        [(s, tmp_path / "c" / s) for s in shards]
    )


def save_sharded_bin(model, folder, shards):
    """``model`` as PyTorch pickles in ``shards`` files with their index, as training
    branches are published (transformers 5 itself writes safetensors only)."""
    model.config.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    state, seen = {}, set()
    for name, tensor in model.state_dict().items():  # tied weights once
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            state[name] = tensor.detach().clone().contiguous()
    names, weight_map = list(state), {}
    for i in range(shards):
        file = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        torch.save({k: state[k] for k in names[i::shards]}, folder / file)
        weight_map.update(dict.fromkeys(names[i::shards], file))
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))


def store_content_read_back(path) -> str:
    """The activation store's content fingerprint computed directly from the finished
    store (docs/method.md §7): sha256 over its languages and items (JSON) and a
    "name, dtype, shape, sha256 of the bytes" line for every numeric array, read whole."""
    import zarr

    group = zarr.open_group(path, mode="r")
    attrs = dict(group.attrs)
    names = [*attrs["layers"], *(f"active/{name}" for name in attrs["layers"]), "n_tokens"]
    lines = [f"languages\t{json.dumps(attrs['languages'])}", f"items\t{json.dumps(attrs['items'])}"]
    for name in names:
        values = np.ascontiguousarray(group[name][:])
        digest = hashlib.sha256(values.tobytes()).hexdigest()
        lines.append(f"{name}\t{values.dtype.str}\t{list(values.shape)}\t{digest}")
    return hashlib.sha256(("\n".join(lines) + "\n").encode()).hexdigest()


def test_equal_models_in_other_files_have_the_same_activations_fingerprint(tmp_path, tokenizer):
    """docs/method.md §7: one model saved as one safetensors file and as sharded .bin
    files: the weight fingerprints differ, the stores' content fingerprints do not (and
    equal the one read back from the store); a weight changed by 1e-3, or another
    probe, changes it. (Bitwise equality needs the same extraction settings: another
    batch size pads otherwise, and the sums round otherwise.)"""
    a = save_checkpoint("llama", tmp_path / "a", tokenizer)
    save_sharded_bin(a, tmp_path / "b", shards=3)
    with torch.no_grad():
        a.model.layers[0].mlp.up_proj.weight[0, 0] += 1e-3
    a.save_pretrained(tmp_path / "c")
    tiny_tokenizer().save_pretrained(tmp_path / "c")
    attrs = {}
    for name, batch_size, texts in (
        ("a", 4, TEXTS),
        ("b", 4, TEXTS),
        ("c", 4, TEXTS),
        ("a-other-probe", 4, TEXTS[:-1] + ["el gato"]),
    ):
        model, tok = load_model(str(tmp_path / name.split("-")[0]))
        path = tmp_path / f"{name}.zarr"
        frame = probe_frame(texts)
        extract_to_store(model, tok, frame, path, batch_size=batch_size, progress=False)
        attrs[name] = ActivationStore(path).attrs
        assert attrs[name]["activations_fingerprint"] == store_content_read_back(path)
    assert attrs["a"]["weights_fingerprint"] != attrs["b"]["weights_fingerprint"]
    assert sorted(attrs["b"]["weights_files"]) == [
        f"pytorch_model-0000{i}-of-00003.bin" for i in (1, 2, 3)
    ]
    assert attrs["a"]["activations_fingerprint"] == attrs["b"]["activations_fingerprint"]
    assert attrs["a"]["activations_fingerprint"] != attrs["c"]["activations_fingerprint"]
    assert (
        attrs["a"]["activations_fingerprint"] != attrs["a-other-probe"]["activations_fingerprint"]
    )


def test_fingerprint_of_a_hub_model_reads_the_blob_names(tmp_path, tokenizer, monkeypatch):
    """In the Hugging Face cache a snapshot's weight file links to blobs/<its sha256>:
    nothing is hashed, and nothing is written into the cache."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = tmp_path / "hub" / "models--org--tiny"
    commit = "c" * 40
    snapshot = repo / "snapshots" / commit
    save_checkpoint("gpt2", snapshot, tokenizer)
    weights = snapshot / "model.safetensors"
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    (repo / "blobs").mkdir()
    weights.rename(repo / "blobs" / sha)
    weights.symlink_to(f"../../blobs/{sha}")
    (repo / "refs").mkdir()
    (repo / "refs" / "step100").write_text(commit)
    no_hashing(monkeypatch)
    model, _ = load_model("org/tiny", revision="step100")
    assert models.checkpoint_folder(model) == snapshot
    assert models.weights_files(model) == {"model.safetensors": sha}
    assert weights_fingerprint(model) == file_fingerprint([("model.safetensors", weights)])
    assert not (snapshot / SHA256_CACHE).exists()


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_path(tmp_path, tokenizer, dtype):
    save_checkpoint("bloom", tmp_path / "ckpt", tokenizer)
    reference = extract(tiny_model("bloom"), tokenizer, batch_size=3)
    model, tok = load_model(str(tmp_path / "ckpt"), dtype=dtype)
    assert next(model.parameters()).dtype == getattr(torch, dtype)
    path = tmp_path / "activations.zarr"
    extract_to_store(model, tok, probe_frame(), path, batch_size=3, progress=False)
    store = ActivationStore(path)
    assert store.attrs["dtype"] == dtype
    for layer, values in enumerate(reference):
        got = stored_layer(store, layer)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, values, rtol=0.05, atol=0.05)


def test_bad_dtype_is_rejected(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="float64"):
        load_model(str(tmp_path), dtype="float64")


def test_empty_text_is_an_error(tokenizer):
    with pytest.raises(ValueError, match="row 1: the text has no tokens"):
        extract(tiny_model("gpt2"), tokenizer, ["the cat", ""])


# ------------------------------------------------------ activity counts for LAPE (§9.1)


def counts(model, tokenizer, texts=TEXTS, **kw):
    kw.setdefault("progress", False)
    blocks = list(pooled_neurons(model, tokenizer, texts, **kw))
    active = [np.concatenate(layer) for layer in zip(*(b.active for b in blocks))]
    return active, np.concatenate([b.n_tokens for b in blocks])


@pytest.mark.parametrize("arch", ARCHS)
def test_activity_counts_batched_equal_one_sample_at_a_time(arch, tokenizer):
    model = tiny_model(arch)
    lengths = [len(x) for x in tokenize(tokenizer, TEXTS)]
    assert len(set(lengths)) > 3  # batches carry padding of different lengths
    single, n_single = counts(model, tokenizer, batch_size=1, sort_window=1)
    batched, n_batched = counts(model, tokenizer, batch_size=3, sort_window=4)
    assert n_single.tolist() == n_batched.tolist() == lengths and n_batched.dtype == np.int32
    for a, b in zip(single, batched):
        assert a.dtype == b.dtype == np.int32 and a.shape == (len(TEXTS), a.shape[1])
        np.testing.assert_array_equal(b, a)
        assert (b <= n_batched[:, None]).all() and 0 < b.sum() < (
            n_batched[:, None] * b.shape[1]
        ).sum()
    assert all_hooks(model) == 0


def test_extraction_without_counts(tokenizer):
    blocks = list(
        pooled_neurons(tiny_model("gpt2"), tokenizer, TEXTS, progress=False, count_active=False)
    )
    assert all(b.active is None for b in blocks)


def test_store_holds_activity_counts(tmp_path, tokenizer):
    model = tiny_model("llama")
    path = tmp_path / "activations.zarr"
    extract_to_store(model, tokenizer, probe_frame(), path, batch_size=3, progress=False)
    store = ActivationStore(path)
    assert store.has_activity
    active, n_tokens = counts(model, tokenizer, batch_size=1)
    np.testing.assert_array_equal(store.n_tokens(), n_tokens)
    for layer, expected in enumerate(active):
        array = store.group[f"active/{store.layers[layer]}"]
        assert array.dtype == np.int32 and array.shape == expected.shape
        np.testing.assert_array_equal(array[:], expected)
    blocks = list(store.iter_active_blocks(block_width=16))
    assert [(m, start) for m, start, _ in blocks] == [
        (0, 0),
        (0, 16),
        (0, 32),
        (1, 0),
        (1, 16),
        (1, 32),
    ]
    np.testing.assert_array_equal(
        np.concatenate([b for m, _, b in blocks if m == 1], axis=1), active[1]
    )
    activity = store.attrs["activity"]
    assert activity["pattern"] == "model.layers.{layer}.mlp.act_fn"
    assert (activity["kind"], activity["active"]) == ("gate_activation", "value > 0")


def test_store_without_counts_serves_zscores_but_not_lape(tmp_path, tokenizer):
    """A store written before activity counts (no `active` group) is reported as needing
    re-extraction for LAPE only."""
    from lingua_franca.lape import compute_lape

    langs, items = ["eng", "fra", "deu"], ["a", "b", "c", "d"]
    probe = pd.DataFrame(
        {
            "row": range(12),
            "lang": [lang for lang in langs for _ in items],
            "item": items * 3,
            "text": [CORPUS[i % 5] + " " + lang for lang in langs for i in range(4)],
        }
    )
    path = tmp_path / "old.zarr"
    extract_to_store(
        tiny_model("bloom"),
        tokenizer,
        probe,
        path,
        batch_size=4,
        progress=False,
        count_active=False,
    )
    store = ActivationStore(path)
    assert not store.has_activity and "activity" not in store.attrs and "active" not in store.group
    with pytest.raises(
        StoreError, match="no activity counts.*rerun the extraction to compute LAPE"
    ):
        compute_lape(path)
    with pytest.raises(StoreError, match="z-score metrics still run"):
        store.n_tokens()
    result = compute_metrics(path, z_threshold=0.5)
    assert np.isfinite(result.lrds) and result.key_counts.shape == (3, 2)
