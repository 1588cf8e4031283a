"""Loading checkpoints and recording what was loaded.

Hub revisions and local checkpoint folders go through the same ``from_pretrained``
call, so an intermediate checkpoint saved by a training run is treated exactly like
a published one.  ``weights_fingerprint`` hashes the weights themselves, because
published checkpoint series sometimes repeat a checkpoint under two names.
"""

from __future__ import annotations

import hashlib
from itertools import chain
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .provenance import config_hash, package_versions

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


def weights_fingerprint(model: nn.Module) -> str:
    """sha256 over every parameter and buffer: name, shape, dtype and raw bytes.

    Equal digests mean identical weights (same dtype), whatever the checkpoint is called.
    """
    digest = hashlib.sha256()
    tensors = dict(chain(model.named_parameters(), model.named_buffers()))
    for name in sorted(tensors):
        tensor = tensors[name].detach()
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype};".encode())
        if tensor.device.type == "meta":  # offloaded by a device_map: no bytes here
            digest.update(b"meta")
            continue
        flat = tensor.to("cpu").contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


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
    return {
        "model": source.get(
            "model", getattr(config, "_name_or_path", None) or type(model).__name__
        ),
        "revision": source.get("revision"),
        "commit": getattr(config, "_commit_hash", None),
        "model_type": getattr(config, "model_type", None),
        "weights_fingerprint": weights_fingerprint(model),
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
    }
