"""Loading checkpoints and recording what was loaded.

Hub revisions and local checkpoint folders go through the same ``from_pretrained``
call, so an intermediate checkpoint saved by a training run is treated exactly like
a published one.  ``weights_fingerprint`` identifies the weight files that were
loaded, because published checkpoint series sometimes repeat a checkpoint under two
names.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .provenance import code_provenance, config_hash, package_versions

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class WeightsError(OSError):
    """A checkpoint's weight file that cannot be read (truncated, partly downloaded)."""


def torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"bfloat16"`` → ``torch.bfloat16``; only the three dtypes extraction supports."""
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[str(dtype).removeprefix("torch.")]
    except KeyError:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(DTYPES)}") from None


def load_model(
    name_or_path: str,
    revision: str | None = None,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    device_map: str | dict | None = None,
    trust_remote_code: bool = False,
    tokenizer: str | None = None,
    tokenizer_revision: str | None = None,
):
    """Load (model, tokenizer) from a Hub id (+ ``revision``) or a local folder.

    The tokenizer comes from ``tokenizer`` (+ ``tokenizer_revision``) when given, else
    from the checkpoint itself: published checkpoint series such as
    bigscience/bloom-*-intermediate hold no tokenizer files (docs/method.md §8).
    The model is in eval mode; safetensors are used where the checkpoint has them
    (``use_safetensors=None`` prefers them, falling back to ``.bin``).  Remote code runs
    only when asked.  A tokenizer without a pad token pads with eos (or unk): padded
    positions are masked everywhere, so which token fills them does not matter.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch_dtype(dtype)  # fail before any download
    source = (tokenizer, tokenizer_revision) if tokenizer else (name_or_path, revision)
    try:
        tok = _load("tokenizer", *source, AutoTokenizer, trust_remote_code=trust_remote_code)
    except ValueError as err:  # files there, but none a tokenizer can be built from
        raise ValueError(
            f"no usable tokenizer in {_where(*source)}: {err}. Checkpoints published without "
            "tokenizer files (e.g. bigscience/bloom-*-intermediate) need the model's "
            "`tokenizer` entry, e.g. tokenizer: {hub_id: bigscience/bloom-7b1}"
        ) from err
    try:
        model = _load(
            "model",
            name_or_path,
            revision,
            AutoModelForCausalLM,
            trust_remote_code=trust_remote_code,
            dtype=dtype,
            device_map=device_map,
            use_safetensors=None,
        )
    except Exception as err:
        # safetensors names no file (SafetensorError: "incomplete metadata, file not
        # fully covered"): find the one that fails, so the message says what to fetch
        broken = unreadable_weight_files(name_or_path, revision)
        if broken:
            raise WeightsError(
                f"{_where(name_or_path, revision)}: cannot read "
                + "; ".join(broken)
                + ". A truncated or interrupted download or copy? Replace the file."
            ) from err
        raise
    if device_map is None:
        model.to(device)
    model.eval()
    if tok.pad_token is None:
        fallback = tok.eos_token or tok.unk_token
        if fallback is not None:
            tok.pad_token = fallback
    tok.padding_side = "right"  # absolute-position models break on left padding
    model.lingua_franca_source = {
        "model": str(name_or_path),
        "revision": revision,
        "tokenizer": {"location": str(source[0]), "revision": source[1]},
    }
    return model, tok


def _where(location: str, revision: str | None) -> str:
    return f"{location}" + (f" (revision {revision})" if revision else "")


def _load(what: str, location: str, revision: str | None, auto, **kwargs):
    """``auto.from_pretrained``; a checkpoint that cannot be found is an error naming it
    (transformers' own message names neither the repository nor the revision)."""
    try:
        return auto.from_pretrained(location, revision=revision, **kwargs)
    except OSError as err:
        raise OSError(
            f"cannot load the {what} of {_where(location, revision)}: {err} Where jobs run "
            "offline, the fetch step downloads every checkpoint and tokenizer a config "
            "names into HF_HOME first, on a machine with a network: "
            "snakemake --configfile CONFIG fetch"
        ) from err


def unreadable_weight_files(name_or_path: str, revision: str | None = None) -> list[str]:
    """``"<file> (<error>)"`` for each safetensors file of a local folder, or of a Hub
    model's snapshot in the local cache, whose header safetensors cannot read."""
    from safetensors import SafetensorError, safe_open

    folder = Path(name_or_path)
    if not folder.is_dir():
        from huggingface_hub import try_to_load_from_cache

        config = try_to_load_from_cache(name_or_path, "config.json", revision=revision)
        if not isinstance(config, str):
            return []
        folder = Path(config).parent
    broken = []
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(path, framework="pt"):
                pass
        except (SafetensorError, OSError) as err:
            broken.append(f"{path} ({err})")
    return broken


#: What ``from_pretrained`` reads, in its order of preference (``use_safetensors=None``):
#: a sharded checkpoint's index names its shard files.
WEIGHT_FILES = (
    ("model.safetensors.index.json", "model.safetensors"),
    ("pytorch_model.bin.index.json", "pytorch_model.bin"),
)
#: Beside a local checkpoint's weight files: their sha256, keyed by size and mtime.
SHA256_CACHE = ".lingua_franca_sha256.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def checkpoint_folder(model: nn.Module) -> Path | None:
    """The folder ``load_model`` read the weights from: the local folder, or the Hub
    cache's snapshot of the revision; ``None`` for a model not loaded from files."""
    source = getattr(model, "lingua_franca_source", None) or {}
    name = source.get("model")
    if not name:
        return None
    if Path(name).is_dir():
        return Path(name)
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(
            name, "config.json", revision=source.get("revision") or "main"
        )
    except ValueError:  # not a Hub id either (e.g. a local folder since removed)
        return None
    return Path(found).parent if isinstance(found, str) else None


def snapshot_commit(folder: Path | None) -> str | None:
    """The commit of a Hub cache snapshot (``.../snapshots/<commit>``, the folder
    ``checkpoint_folder`` gives for a Hub model), else None.  transformers 5 no longer
    sets ``config._commit_hash`` when it loads from the cache offline."""
    in_cache = folder is not None and folder.parent.name == "snapshots"
    return folder.name if in_cache and re.fullmatch(r"[0-9a-f]{40}", folder.name) else None


def weight_files(folder: str | os.PathLike) -> list[str]:
    """Names (relative to ``folder``) of the weight files ``from_pretrained`` loads
    from it: safetensors when there are any, else the PyTorch pickles; every shard a
    sharded checkpoint's index lists.  Empty when the folder holds none."""
    folder = Path(folder)
    for index, single in WEIGHT_FILES:
        if (folder / index).is_file():
            weight_map = json.loads((folder / index).read_text(encoding="utf-8"))["weight_map"]
            return sorted(set(weight_map.values()))
        if (folder / single).is_file():
            return [single]
    return []


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256s(folder: str | os.PathLike, names: Sequence[str]) -> dict[str, str]:
    """sha256 of each named file in ``folder``, hashing as little as possible.

    A file of the Hugging Face cache is a link to ``blobs/<sha256 of the file>`` (for
    weights, which the Hub stores in LFS): its name is the hash, nothing is read.  Any
    other file is hashed once and the result kept beside it in ``SHA256_CACHE``, keyed
    by size and modification time, so a changed file is hashed again and an unchanged
    one never is.  A folder that cannot be written to is hashed every time (a warning
    says so).
    """
    folder = Path(folder)
    cache_path = folder / SHA256_CACHE
    try:
        cache = json.loads(cache_path.read_text(encoding="utf-8"))["files"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        cache = {}
    out, changed = {}, False
    for name in names:
        path = folder / name
        blob = path.resolve().name
        if path.is_symlink() and _SHA256.match(blob):
            out[name] = blob
            continue
        stat = path.stat()
        key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        entry = cache.get(name)
        if not (isinstance(entry, dict) and {k: entry.get(k) for k in key} == key):
            log.info("hashing %s (%.1f MB), once", path, stat.st_size / 1e6)
            entry = cache[name] = {**key, "sha256": _hash_file(path)}
            changed = True
        out[name] = entry["sha256"]
    if changed:
        tmp = cache_path.with_name(f"{SHA256_CACHE}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps({"files": cache}, indent=1) + "\n", encoding="utf-8")
            tmp.replace(cache_path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            log.warning(
                "cannot cache weight hashes in %s (%s): they are hashed again next time",
                folder,
                err,
            )
    return out


def weights_files(model: nn.Module) -> dict[str, str] | None:
    """{weight file: sha256} of the files ``model`` was loaded from; ``None`` for a
    model not loaded from files (built in memory)."""
    folder = checkpoint_folder(model)
    if folder is None:
        return None
    names = weight_files(folder)
    if not names:
        raise FileNotFoundError(
            f"{folder}: no weight file ({', '.join(n for pair in WEIGHT_FILES for n in pair)})"
        )
    return file_sha256s(folder, names)


def weights_fingerprint(model: nn.Module) -> str | None:
    """sha256 over the names and sha256s of the weight files the model was loaded from
    (docs/method.md §7): equal digests mean byte-identical weight files, whatever the
    checkpoint is called and whichever dtype it is loaded in, offloaded weights
    included.  Reading it costs nothing for Hub models and one hash per local file
    ever (``file_sha256s``).  ``None`` for a model not loaded from files."""
    files = weights_files(model)
    if files is None:
        return None
    return _fingerprint(files)


def _fingerprint(files: Mapping[str, str]) -> str:
    lines = "".join(f"{name}\t{files[name]}\n" for name in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def _model_config(model: nn.Module) -> dict[str, Any]:
    config = model.config.to_dict()
    for key in ("_name_or_path", "transformers_version"):
        config.pop(key, None)
    return config


def provenance_attrs(model: nn.Module, tokenizer, **settings: Any) -> dict[str, Any]:
    """Store attributes saying which weights, tokenizer and settings made a store.

    ``settings`` (e.g. add_special_tokens, neuron_module) are recorded and enter
    ``config_hash`` together with the model's config.
    """
    source = getattr(model, "lingua_franca_source", {})
    config = getattr(model, "config", None)
    files = weights_files(model)
    return {
        "model": source.get(
            "model", getattr(config, "_name_or_path", None) or type(model).__name__
        ),
        "revision": source.get("revision"),
        "commit": getattr(config, "_commit_hash", None)
        or snapshot_commit(checkpoint_folder(model)),
        "model_type": getattr(config, "model_type", None),
        "weights_fingerprint": None if files is None else _fingerprint(files),
        "weights_files": files,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "tokenizer": {
            "name_or_path": getattr(tokenizer, "name_or_path", None),
            "revision": source.get("tokenizer", {}).get("revision"),
            "class": type(tokenizer).__name__,
            "vocab_size": len(tokenizer),
            "add_special_tokens": settings.get("add_special_tokens"),
        },
        "extraction": settings,
        "config_hash": config_hash({"model": _model_config(model), "extraction": settings}),
        "package_versions": package_versions(),
        "code": code_provenance(),
    }
