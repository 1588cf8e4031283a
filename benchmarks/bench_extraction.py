"""Benchmark of activation extraction (issue 8; not a test).

    .venv/bin/python benchmarks/bench_extraction.py                  # CPU, scaled shape
    .venv/bin/python benchmarks/bench_extraction.py --items 10 --repeats 2   # quicker
    .venv/bin/python benchmarks/bench_extraction.py --profile        # + torch.profiler tables
    .venv/bin/python benchmarks/bench_extraction.py --full-560m      # GPU: 24 × 1024, bf16, cuda

Every figure is a ratio of two things timed in the same run, interleaved: each
round runs every variant once, in an order rotated from round to round, and each
variant's time is the median over rounds.  Throughput is real (unpadded) probe
tokens per second.  Variants, all on the same random-weight model and probe:

- ``bare``: the decoder body alone (``model.base_model``: no hooks, no LM head) over
  exactly the batches extraction forms (same length sorting, same right padding),
  pre-tokenized and pre-padded: the floor extraction can reach.
- ``extraction``: ``activations.pooled_neurons`` end to end (tokenizing, padding,
  pooling inside the hooks, counting each neuron's active tokens for LAPE, the
  finiteness check, copying rows out).
- ``no_counts``: the same with ``count_active=False`` (means only, as before issue 15):
  ``extraction`` / ``no_counts`` is what counting the active tokens costs (goal ≥ 0.95).
- ``store``: ``activations.extract_to_store`` end to end (the above plus the weights
  fingerprint, provenance and the zarr write), into a temporary folder.  The model is
  saved to a folder and loaded back with ``models.load_model``, as a workflow job
  loads a checkpoint, so the fingerprint takes its real path: the weight files'
  sha256s, hashed once (before timing; the time is printed) and read from the cache
  beside them in every timed run, as in every job after a checkpoint's first.
- ``store_no_checksums``: ``store`` with the chunks written without their crc32c
  checksums, as stores were before issue 25: ``store`` / ``store_no_checksums`` is
  what the checksums cost (goal ≥ 0.98).
- ``write`` and ``write_no_checksums``: the store write alone (``StoreWriter``, with
  its check before the rename) of the rows ``extraction`` computed, with and without
  checksums, in rounds of their own (``--write-rounds``, default 30: a write takes a
  fraction of a second, and the forward pass's noise would hide its cost): what the
  checksums add where the forward pass costs nothing (a bound for a fast GPU), and,
  divided by ``store``'s time, their share of an extraction.
- ``reference``: the paper's code (X-LANCE/LinguaFranca ``generate_hidden_states_bloom``):
  one sentence at a time through ``model.generate(max_new_tokens=1)`` with a forward
  hook on every layer's ``mlp.gelu_impl`` that means the neurons over the tokens,
  moves them to the CPU and concatenates the layers.  Its vectors are checked
  against ``extraction``'s.
- ``proto``: a candidate package change, checked for equality with ``extraction``:
  ``pooled_neurons`` with the pooling of ``NeuronReader._pool`` done as one batched
  matrix product (mask × neurons, in float32) instead of ``where`` + ``sum``, and one
  finiteness test and one device→host copy per batch instead of one per layer.

Model: a random-weight BLOOM (``BloomForCausalLM(BloomConfig(...))``, seeded) with
BLOOM-560m's width (hidden 1024, 16 heads, MLP 4096) and, on CPU, 4 layers instead of
24 and a vocabulary of 41,856 instead of 250,880: 4/24 of the layers and ~1/6 of the
vocabulary keep the LM head's share of a token's work as in BLOOM-560m (vocab × hidden
against 12 × hidden² per layer: 0.85 in both), which matters for the ablation
benchmark (perplexity needs every token's logits).  The ``reference``'s ``generate``
runs the head on the last position only (transformers 5 passes ``logits_to_keep=1``;
older versions computed every position's logits, so the paper's runs paid more).
``--full-560m`` is the real shape (24 layers, vocab 250,880), by default in bfloat16
on cuda.  ``--arch llama`` builds a random-weight LLaMA of the same hidden size, heads
and layers instead, with LLaMA-2's MLP ratio (intermediate 2.6875 × hidden: 2,752 for
1,024): a gated MLP, where LAPE's activity is read by a second hook on ``mlp.act_fn``.

Tokenizer: a byte-level BPE (vocabulary 32,000) trained in ~1 s on the embedded
training corpus (``resources/corpus/train_part*.tsv``; the probe is not in it), so the
probe sentences have realistic lengths (mean ~21 tokens, 8–65); ``--tokenizer DIR``
uses a saved one instead (e.g. the toy tokenizer ``results/data/tokenizer``).
Probe: ``resources/corpus/probe.tsv`` (``read_parallel_tsv``), ``--items`` items drawn
as the demo does (``sample_items(..., "random", seed 0)``) in the paper's 9 languages.

CPU threads: ``--threads`` (default 1).  On a shared, loaded 2-core machine two
OpenMP threads wait on each other's barriers whenever another process holds a
core, and forward times swing by ×3 from one call to the next; one thread is slower
but steady, which is what ratios need.  The load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_UPDATE_DOWNLOAD_COUNTS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from lingua_franca import activations as act
from lingua_franca.architectures import NeuronReader, find_neurons
from lingua_franca.corpora.parallel import read_parallel_tsv
from lingua_franca.corpora.probe import make_probe, sample_items

LANGUAGES = ["en", "zh", "fr", "es", "pt", "ar", "vi", "hi", "id"]
CORPUS = ROOT / "resources" / "corpus"
# (layers, hidden, heads, vocab) of the scaled CPU model and of BLOOM-560m
SCALED = (4, 1024, 16, 41856)
FULL_560M = (24, 1024, 16, 250880)


# ------------------------------------------------------------------ set-up, shared


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """Options shared by bench_extraction and bench_ablation."""
    parser.add_argument(
        "--full-560m",
        action="store_true",
        help="BLOOM-560m's real shape (24 layers, vocab 250880); "
        "device cuda and dtype bfloat16 unless given",
    )
    parser.add_argument(
        "--arch",
        choices=["bloom", "llama"],
        default="bloom",
        help="bloom (default) or llama: a gated MLP of LLaMA-2's width ratio",
    )
    parser.add_argument(
        "--layers", type=int, help=f"default {SCALED[0]} ({FULL_560M[0]} with --full-560m)"
    )
    parser.add_argument("--hidden", type=int, help="default 1024")
    parser.add_argument("--heads", type=int, help="default 16")
    parser.add_argument(
        "--vocab",
        type=int,
        help=f"model vocabulary; default {SCALED[3]} ({FULL_560M[3]} with --full-560m)",
    )
    parser.add_argument("--device", help="cpu (default) or cuda (default with --full-560m)")
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        help="default float32 (bfloat16 with --full-560m)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--tokenizer",
        type=Path,
        help="a saved tokenizer folder instead of training a BPE (e.g. results/data/tokenizer)",
    )
    parser.add_argument("--bpe-vocab", type=int, default=32000)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="extraction: samples per batch (default 16, the workflow's "
        "analysis.batch_size); ablation: windows per batch (default 4)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="rounds; medians over them (extraction 4, ablation 2)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")


def resolve_model_args(args: argparse.Namespace) -> None:
    shape = FULL_560M if args.full_560m else SCALED
    for name, value in zip(("layers", "hidden", "heads", "vocab"), shape):
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.device = args.device or ("cuda" if args.full_560m else "cpu")
    args.dtype = args.dtype or ("bfloat16" if args.full_560m else "float32")
    torch.set_num_threads(args.threads)


def build_tokenizer(args: argparse.Namespace):
    """A PreTrainedTokenizerFast: a byte-level BPE trained on the embedded training
    corpus, or the saved one at ``--tokenizer``."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if args.tokenizer:
        tok = AutoTokenizer.from_pretrained(str(args.tokenizer))
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = []
    for path in sorted(CORPUS.glob("train_part*.tsv")):
        texts += list(read_parallel_tsv(path)["text"])
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=args.bpe_vocab,
        special_tokens=["<pad>", "</s>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="</s>")


def build_model(args: argparse.Namespace, tokenizer):
    """Random-weight BLOOM (or LLaMA, ``--arch``) of the requested shape, seeded, in eval
    mode on the device."""
    from transformers import AutoModelForCausalLM, BloomConfig, LlamaConfig

    if args.vocab < len(tokenizer):
        raise SystemExit(f"--vocab {args.vocab} is smaller than the tokenizer's {len(tokenizer)}")
    tokens = {
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.eos_token_id,
    }
    if getattr(args, "arch", "bloom") == "llama":
        config = LlamaConfig(
            vocab_size=args.vocab,
            hidden_size=args.hidden,
            intermediate_size=round(args.hidden * 11008 / 4096 / 32) * 32,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            num_key_value_heads=args.heads,
            **tokens,
        )
    else:
        config = BloomConfig(
            vocab_size=args.vocab,
            hidden_size=args.hidden,
            n_layer=args.layers,
            n_head=args.heads,
            **tokens,
        )
    torch.manual_seed(args.seed)
    with torch.device(args.device):
        model = AutoModelForCausalLM.from_config(config)
    model = model.to(dtype=getattr(torch, args.dtype)).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def describe_model(model) -> str:
    c = model.config
    n = sum(p.numel() for p in model.parameters())
    width = getattr(c, "intermediate_size", None) or 4 * c.hidden_size
    layers = c.num_hidden_layers
    return (
        f"random-weight {c.model_type.upper()}: {layers} layers, hidden {c.hidden_size}, "
        f"{c.num_attention_heads} heads, MLP {width}, vocab {c.vocab_size:,}; "
        f"{n / 1e6:.1f}M parameters (K = {layers * width:,} neurons); "
        f"{next(model.parameters()).dtype} on {next(model.parameters()).device}"
    )


def load_probe(n_items: int, seed: int = 0):
    df = read_parallel_tsv(CORPUS / "probe.tsv")
    return make_probe(df, LANGUAGES, sample_items(df, n_items, "random", seed))


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def environment() -> dict:
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def interleaved(
    variants: dict[str, Callable[[], object]],
    repeats: int,
    device,
    log: Callable[[str], None] = print,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Run every variant once per round, the order rotated by one each round; seconds
    of ``clock`` (wall by default; ``time.process_time`` counts this process's CPU time,
    which other jobs on a loaded CPU-only machine disturb far less)."""
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            sync(device)
            start = clock()
            variants[name]()
            sync(device)
            times[name].append(clock() - start)
        log(
            f"  round {r + 1}/{repeats}: "
            + ", ".join(f"{n} {times[n][-1]:.2f} s" for n in names)
            + f"; load {load()}"
        )
    return times


def ratio(times: dict[str, list[float]], num: str, den: str) -> dict:
    """Throughput of ``num`` relative to ``den`` (= den time / num time): the ratio of the
    medians, and the per-round paired ratios (their spread shows the load noise)."""
    paired = [d / n for n, d in zip(times[num], times[den])]
    return {
        "ratio": statistics.median(times[den]) / statistics.median(times[num]),
        "per_round": [round(x, 3) for x in paired],
    }


# ------------------------------------------------------------------ the variants


def extraction_batches(ids: list[list[int]], batch_size: int, sort_window: int = 256):
    """The batches ``pooled_neurons`` forms: rows sorted by length (longest first)
    inside windows of ``sort_window`` rows, cut into ``batch_size`` rows."""
    window = max(sort_window, batch_size, 1)
    for start in range(0, len(ids), window):
        rows = range(start, min(start + window, len(ids)))
        order = sorted(rows, key=lambda r: -len(ids[r])) if sort_window > 1 else list(rows)
        for b in range(0, len(order), batch_size):
            yield order[b : b + batch_size]


@torch.inference_mode()
def bare_forward(body, padded) -> None:
    for input_ids, mask in padded:
        body(input_ids=input_ids, attention_mask=mask, use_cache=False)


def run_extraction(model, tokenizer, texts, batch_size, count_active=True) -> list[np.ndarray]:
    blocks = list(
        act.pooled_neurons(
            model,
            tokenizer,
            texts,
            batch_size=batch_size,
            progress=False,
            count_active=count_active,
        )
    )
    return [np.concatenate([b.means[m] for b in blocks]) for m in range(len(blocks[0].means))]


def run_write(blocks, probe, folder: Path, checksums=True) -> None:
    """The store write of ``extract_to_store`` alone, for rows already computed."""
    from lingua_franca.store import StoreWriter

    widths = [m.shape[1] for m in blocks[0].means]
    langs, items = list(map(str, probe["lang"])), list(map(str, probe["item"]))
    path = folder / "activations.zarr"
    with StoreWriter(
        path, langs, items, widths, activity={"benchmark": True}, checksums=checksums
    ) as writer:
        for block in blocks:
            writer.write(block.means, block.active, block.n_tokens)


def run_store(model, tokenizer, probe, batch_size, folder: Path, checksums=True) -> None:
    path = folder / "activations.zarr"
    act.extract_to_store(
        model, tokenizer, probe, path, batch_size=batch_size, progress=False, checksums=checksums
    )


class ReferenceHook:
    """The paper code's hook (SaveActivationHookBloom), re-written: each layer's neurons
    are meaned over the batch and the tokens and moved to the CPU; once every layer has
    reported, the concatenation enters a running mean over forward calls (one call per
    sentence with max_new_tokens=1)."""

    def __init__(self, n_layers: int, side: str):
        self.n_layers, self.side = n_layers, side
        self.initialize()

    def initialize(self) -> None:
        self.results, self.n_tokens, self.final = [], 0, None

    def __call__(self, module, args, output) -> None:
        x = output if self.side == "output" else args[0]
        self.results.append((x.sum(0) / x.shape[0]).sum(0).div(x.shape[1]).detach().to("cpu"))
        if len(self.results) >= self.n_layers:
            cat = torch.cat(self.results).float()
            n = x.shape[0]
            self.final = (
                cat
                if self.final is None
                else ((self.final * self.n_tokens + cat) / (self.n_tokens + n))
            )
            self.n_tokens += n
            self.results = []


@torch.inference_mode()
def run_reference(model, tokenizer, texts) -> list[torch.Tensor]:
    """One sentence at a time through ``generate(max_new_tokens=1)``, as the paper's code."""
    site = find_neurons(model)
    hook = ReferenceHook(len(site), site.side)
    handles = [m.register_forward_hook(hook) for m in site.modules]
    device = model.get_input_embeddings().weight.device
    out = []
    try:
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
            model.generate(inputs=ids.to(device), max_new_tokens=1)
            out.append(hook.final)
            hook.initialize()
    finally:
        for h in handles:
            h.remove()
    return out


def _pool_matmul(self: NeuronReader, layer: int, x: torch.Tensor) -> None:
    """Prototype of ``NeuronReader._pool``: the sum over real tokens as one batched
    matrix product (batch, 1, tokens) @ (batch, tokens, width), instead of ``where``
    (a full-size temporary) + ``sum``."""
    mask = self._mask.to(x.device)
    if x.dim() == 2:  # OPT flattens to (batch·tokens, width)
        x = x.reshape(*mask.shape, -1)
    # float32 sums and result as in the package; half precision is upcast first (on CPU
    # bmm has no out_dtype; the upcast + bmm is still ~3× faster than where + sum)
    total = torch.bmm(mask.float()[:, None, :], x.float())[:, 0]
    self._pooled[layer] = total / mask.sum(1, keepdim=True, dtype=torch.float32)


def proto_pooled_neurons(
    model,
    tokenizer,
    texts,
    *,
    batch_size=8,
    add_special_tokens=False,
    neuron_module=None,
    names=None,
    sort_window=256,
    progress=False,
):
    """Prototype of ``activations.pooled_neurons``: the same loop, with the matmul
    pooling above and one device→host transfer and one finiteness test per batch
    (layers stacked first) instead of one ``isfinite().any()`` and one ``.cpu()`` per
    layer: 2 host syncs per batch instead of 2 × layers (on cuda each one stalls the
    queue; on the CPU they cost nothing).  The package's per-layer check still runs,
    for its message, when the batch holds a NaN or inf."""
    names = list(names) if names is not None else [f"row {i}" for i in range(len(texts))]
    ids = act.tokenize(tokenizer, texts, add_special_tokens)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = model.get_input_embeddings().weight.device
    body = act._body(model)
    window = max(sort_window, batch_size, 1)
    original, NeuronReader._pool = NeuronReader._pool, _pool_matmul
    try:
        with NeuronReader(model, neuron_module) as reader, torch.inference_mode():
            for start in range(0, len(ids), window):
                rows = range(start, min(start + window, len(ids)))
                order = sorted(rows, key=lambda r: -len(ids[r])) if sort_window > 1 else list(rows)
                block = None
                for b in range(0, len(order), batch_size):
                    batch = order[b : b + batch_size]
                    input_ids, mask = act.right_pad([ids[r] for r in batch], pad_id)
                    input_ids, mask = input_ids.to(device), mask.to(device)
                    pooled = reader.pooled(
                        partial(body, input_ids=input_ids, attention_mask=mask, use_cache=False),
                        mask,
                    )
                    flat = torch.cat(pooled, dim=1)  # (batch, K): one check, one transfer
                    if not bool(torch.isfinite(flat).all()):
                        act._check_finite(pooled, [names[r] for r in batch])
                    flat = flat.cpu().numpy()
                    if block is None:
                        widths = [p.shape[1] for p in pooled]
                        bounds = np.cumsum([0, *widths])
                        block = [np.empty((len(rows), w), np.float32) for w in widths]
                    at = [r - start for r in batch]
                    for layer in range(len(block)):
                        block[layer][at] = flat[:, bounds[layer] : bounds[layer + 1]]
                yield block
    finally:
        NeuronReader._pool = original


def run_proto(model, tokenizer, texts, batch_size) -> list[np.ndarray]:
    blocks = list(proto_pooled_neurons(model, tokenizer, texts, batch_size=batch_size))
    return [np.concatenate([b[m] for b in blocks]) for m in range(len(blocks[0]))]


def time_fingerprint(model) -> dict:
    """Seconds of ``models.weights_fingerprint`` on the loaded checkpoint: the first
    call with no hash cache beside the weight files (what a checkpoint's first job
    pays, once), then a call that reads the cache (what every later job pays)."""
    from lingua_franca.models import (
        SHA256_CACHE,
        checkpoint_folder,
        weight_files,
        weights_fingerprint,
    )

    folder = checkpoint_folder(model)
    (folder / SHA256_CACHE).unlink(missing_ok=True)
    mb = sum((folder / name).stat().st_size for name in weight_files(folder)) / 1e6
    start = time.perf_counter()
    first = weights_fingerprint(model)
    hashing = time.perf_counter() - start
    start = time.perf_counter()
    assert weights_fingerprint(model) == first
    cached = time.perf_counter() - start
    return {"first_seconds": hashing, "cached_seconds": cached, "mb": mb, "mb_per_s": mb / hashing}


def load_as_checkpoint(model, tokenizer, folder: Path, dtype: str, device: str):
    """``model`` saved to ``folder`` (with ``tokenizer``) and loaded back as a workflow
    job loads one; the tokenizer in use stays ``tokenizer``."""
    from lingua_franca.models import load_model

    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    loaded, _ = load_model(str(folder), dtype=dtype, device=device)
    return loaded


# ------------------------------------------------------------------ profile


def profile_once(model, tokenizer, texts, batch_size, padded, top: int = 12) -> str:
    """torch.profiler tables (self CPU time) of one bare pass and one extraction pass."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if torch.device(model.device).type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    out = []
    for name, fn in [
        ("bare", lambda: bare_forward(model.base_model, padded)),
        ("extraction", lambda: run_extraction(model, tokenizer, texts, batch_size)),
        ("proto", lambda: run_proto(model, tokenizer, texts, batch_size)),
    ]:
        with profile(activities=activities) as prof:
            fn()
        key = "self_cuda_time_total" if len(activities) > 1 else "self_cpu_time_total"
        out.append(f"--- {name}\n" + prof.key_averages().table(sort_by=key, row_limit=top))
    return "\n".join(out)


# ------------------------------------------------------------------ main


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(parser)
    parser.add_argument(
        "--items",
        type=int,
        default=None,
        help="probe items per language (default 30 on cpu, 100 with --full-560m)",
    )
    parser.add_argument(
        "--ref-items",
        type=int,
        default=None,
        help="run the reference on the first N probe items of every language "
        "only (default: all); compared per token",
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="time variants by wall clock (default) or by this process's CPU time "
        "(CPU device only: steadier on a machine shared with other jobs)",
    )
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--no-store", action="store_true")
    parser.add_argument(
        "--write-rounds",
        type=int,
        default=30,
        help="rounds of the store write alone, with and without checksums (default 30)",
    )
    parser.add_argument("--no-proto", action="store_true")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also print torch.profiler tables of one bare and one extraction pass",
    )
    args = parser.parse_args(argv)
    resolve_model_args(args)
    if args.items is None:
        args.items = 100 if args.full_560m else 30
    args.batch_size = args.batch_size or 16
    args.repeats = args.repeats or 4
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()

    print("== extraction benchmark (issue 8)")
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    t0 = time.perf_counter()
    tokenizer = build_tokenizer(args)
    checkpoint = tempfile.TemporaryDirectory(prefix="bench_extraction_checkpoint_")
    model = load_as_checkpoint(
        build_model(args, tokenizer), tokenizer, Path(checkpoint.name), args.dtype, args.device
    )
    probe = load_probe(args.items, args.seed)
    texts = list(probe["text"])
    ids = act.tokenize(tokenizer, texts)
    lengths = np.array([len(x) for x in ids])
    n_tokens = int(lengths.sum())
    pad_id = tokenizer.pad_token_id
    batches = list(extraction_batches(ids, args.batch_size))
    padded = [
        tuple(t.to(args.device) for t in act.right_pad([ids[r] for r in b], pad_id))
        for b in batches
    ]
    padded_tokens = sum(int(p[0].numel()) for p in padded)
    print(describe_model(model))
    print(
        f"probe: {len(texts)} samples ({args.items} items × {len(LANGUAGES)} languages), "
        f"{n_tokens:,} tokens (mean {lengths.mean():.1f}, min {lengths.min()}, max "
        f"{lengths.max()}), {len(batches)} batches of {args.batch_size}, "
        f"{padded_tokens:,} padded positions ({padded_tokens / n_tokens - 1:.1%} padding); "
        f"tokenizer vocab {len(tokenizer):,}"
    )
    print(f"set-up {time.perf_counter() - t0:.1f} s; environment {environment()}; load {load()}")

    ref_rows = list(range(len(texts)))
    if args.ref_items is not None:
        keep = set(list(dict.fromkeys(probe["item"]))[: args.ref_items])
        ref_rows = [i for i, item in enumerate(probe["item"]) if item in keep]
    ref_texts = [texts[i] for i in ref_rows]
    ref_tokens = int(lengths[ref_rows].sum())

    # correctness first (also warms every path up)
    ours = run_extraction(model, tokenizer, texts, args.batch_size)
    checks = {}
    plain = run_extraction(model, tokenizer, texts, args.batch_size, count_active=False)
    checks["no_counts_same_means"] = all(np.array_equal(a, b) for a, b in zip(ours, plain))
    if not args.no_proto:
        proto = run_proto(model, tokenizer, texts, args.batch_size)
        checks["proto_max_abs_diff"] = max(float(np.abs(a - b).max()) for a, b in zip(ours, proto))
    if not args.no_reference:
        few = ref_texts[: min(len(ref_texts), 18)]
        ref = torch.stack(run_reference(model, tokenizer, few)).numpy()
        mine = np.concatenate(ours, axis=1)[[ref_rows[i] for i in range(len(few))]]
        checks["reference_max_rel_diff"] = float(np.abs(ref - mine).max() / np.abs(mine).max())
    bare_forward(model.base_model, padded[:2])
    print(f"checks: {json.dumps(checks)}")
    fingerprint = time_fingerprint(model)
    print(
        f"weights_fingerprint of the weight files ({fingerprint['mb']:,.0f} MB): "
        f"{fingerprint['first_seconds']:.2f} s to hash them, once per checkpoint "
        f"({fingerprint['mb_per_s']:,.0f} MB/s; none for Hub models, whose cache names each "
        f"file by its sha256), then {fingerprint['cached_seconds'] * 1e3:.1f} ms in every "
        "extract_to_store"
    )

    variants: dict[str, Callable[[], object]] = {
        "bare": lambda: bare_forward(model.base_model, padded),
        "extraction": lambda: run_extraction(model, tokenizer, texts, args.batch_size),
        "no_counts": lambda: run_extraction(model, tokenizer, texts, args.batch_size, False),
    }
    tmp = tempfile.TemporaryDirectory(prefix="bench_extraction_")
    if not args.no_store:
        variants["store"] = lambda: run_store(
            model, tokenizer, probe, args.batch_size, Path(tmp.name)
        )
        variants["store_no_checksums"] = lambda: run_store(
            model, tokenizer, probe, args.batch_size, Path(tmp.name), checksums=False
        )

    if not args.no_proto:
        variants["proto"] = lambda: run_proto(model, tokenizer, texts, args.batch_size)
    ref_share = ref_tokens / n_tokens
    if not args.no_reference:
        variants["reference"] = lambda: run_reference(model, tokenizer, ref_texts)
    print(
        f"timing {args.repeats} interleaved rounds of {', '.join(variants)}"
        + (
            f" (reference on {len(ref_texts)} of the {len(texts)} samples, {ref_tokens:,} tokens)"
            if not args.no_reference
            else ""
        )
    )
    if args.clock == "cpu" and torch.device(args.device).type != "cpu":
        raise SystemExit("--clock cpu measures CPU work only: use it with --device cpu")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"clock: {args.clock}")
    times = interleaved(variants, args.repeats, args.device, clock=clock)
    if not args.no_store:
        rows = list(
            act.pooled_neurons(model, tokenizer, texts, batch_size=args.batch_size, progress=False)
        )
        writes = {
            "write": lambda: run_write(rows, probe, Path(tmp.name)),
            "write_no_checksums": lambda: run_write(rows, probe, Path(tmp.name), checksums=False),
        }
        print(f"timing {args.write_rounds} interleaved rounds of the store write alone")
        times.update(
            interleaved(writes, args.write_rounds, args.device, log=lambda _: None, clock=clock)
        )
    tmp.cleanup()
    checkpoint.cleanup()
    # the reference may run on a subset: compare throughputs (tokens/s), not times
    if "reference" in times:
        times["reference"] = [t / ref_share for t in times["reference"]]
    tps = {name: n_tokens / statistics.median(t) for name, t in times.items()}

    figures = {
        "extraction_vs_bare": ratio(times, "extraction", "bare"),
        "counts_vs_no_counts": ratio(times, "extraction", "no_counts"),
        "no_counts_vs_bare": ratio(times, "no_counts", "bare"),
    }
    if "store" in times:
        figures["store_vs_bare"] = ratio(times, "store", "bare")
        figures["checksums_vs_none"] = ratio(times, "store", "store_no_checksums")
        figures["write_checksums_vs_none"] = ratio(times, "write", "write_no_checksums")
        added = statistics.median(times["write"]) - statistics.median(times["write_no_checksums"])
        figures["checksums_share"] = {
            "ratio": 1 - added / statistics.median(times["store"]),
            "per_round": [],
        }
    if "proto" in times:
        figures["proto_vs_bare"] = ratio(times, "proto", "bare")
        figures["proto_vs_extraction"] = ratio(times, "proto", "extraction")
    if "reference" in times:
        figures["extraction_vs_reference"] = ratio(times, "extraction", "reference")
    print(
        f"throughput (tokens/s, median of {args.repeats}): "
        + ", ".join(f"{k} {v:,.0f}" for k, v in tps.items())
    )
    labels = {
        "extraction_vs_bare": "extraction / bare body forward (aim >= 0.9)",
        "counts_vs_no_counts": "extraction with activity counts / without (goal >= 0.95)",
        "no_counts_vs_bare": "extraction without activity counts / bare body forward",
        "store_vs_bare": "extract_to_store / bare body forward",
        "checksums_vs_none": "extract_to_store with chunk checksums / without (goal >= 0.98)",
        "write_checksums_vs_none": "store write alone with chunk checksums / without",
        "checksums_share": "extract_to_store with checksums / without, from the write's medians",
        "proto_vs_bare": "prototype (matmul pooling, 2 syncs a batch) / bare body forward",
        "proto_vs_extraction": "prototype (matmul pooling, 2 syncs a batch) / extraction",
        "extraction_vs_reference": "extraction / paper's generate-per-sentence reference",
    }
    for key, fig in figures.items():
        print(f"FIGURE {labels[key]}: {fig['ratio']:.3f}  (per round {fig['per_round']})")
    print(f"load average after: {load()}")
    if args.profile:
        print(profile_once(model, tokenizer, texts, args.batch_size, padded))
    result = {
        "benchmark": "extraction",
        "command": " ".join(sys.argv),
        "model": describe_model(model),
        "samples": len(texts),
        "tokens": n_tokens,
        "padded_positions": padded_tokens,
        "reference_samples": len(ref_texts),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "clock": args.clock,
        "seconds": times,
        "tokens_per_s": tps,
        "figures": {k: {**v, "label": labels[k]} for k, v in figures.items()},
        "checks": checks,
        "fingerprint": fingerprint,
        "environment": environment(),
        "load_after": load(),
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
