"""The demo's toy model family: a byte-level BPE tokenizer and small BLOOM / LLaMA
models trained from scratch on CPU, saved as ordinary Hugging Face checkpoints.

Everything is deterministic for a seed: the tokenizer depends only on the text,
the model's initialisation and batch order only on ``seed``.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoTokenizer,
    BloomConfig,
    BloomForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from lingua_franca.corpora import read_parallel_tsv, validate_parallel
from lingua_franca.logs import get_logger

log = get_logger(__name__)


SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
}


def read_documents(path: str | Path) -> list[str]:
    """The documents of a prepared toy text file (JSON lines, one document each)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def documents(
    corpus: pd.DataFrame, paragraphs_per_document: int, rng: random.Random
) -> list[dict[str, Any]]:
    """Same-language documents: each language's items shuffled and cut into runs of
    ``paragraphs_per_document`` paragraphs (the last run may be shorter), joined by a
    newline; every document is one language (docs/method.md §11, the toy models).

    A model trained on single paragraphs of random languages, each closed by
    end-of-sequence, learns that a paragraph is followed by end-of-sequence and then
    by anything, usually its commonest language; within a document it learns that a
    paragraph is followed by more of the same language, as in real pretraining text.
    """
    docs = []
    for lang, part in corpus.groupby("lang", sort=True):
        rows = list(part[["id", "text"]].itertuples(index=False))
        rng.shuffle(rows)
        for start in range(0, len(rows), paragraphs_per_document):
            run = rows[start : start + paragraphs_per_document]
            docs.append(
                {"lang": lang, "items": [r.id for r in run], "text": "\n".join(r.text for r in run)}
            )
    rng.shuffle(docs)
    return docs


def write_training_split(
    paths: list[str],
    validation_fraction: float,
    seed: int,
    train_out: str | Path,
    valid_out: str | Path,
    paragraphs_per_document: int = 4,
) -> tuple[int, int]:
    """Hold out whole items (all their languages) for validation; group the rest into
    same-language documents (:func:`documents`), in shuffled order; write both as JSON
    lines.

    Every language of the training files is used, whichever languages are analysed:
    a toy model is trained once, like a published model, and analysing one more
    language retrains nothing. A document never holds an item's translations side by
    side: the toy models see no explicit parallel signal, like a real pretraining
    corpus.
    """
    frames = [read_parallel_tsv(p) for p in paths]
    corpus = pd.concat(frames, ignore_index=True)
    languages = sorted(corpus["lang"].unique())
    validate_parallel(corpus, languages, where=", ".join(map(str, paths)))
    items = sorted(corpus["id"].unique())
    rng = random.Random(seed)
    rng.shuffle(items)
    n_valid = max(1, round(len(items) * validation_fraction))
    valid_items = set(items[:n_valid])
    is_valid = corpus["id"].isin(valid_items)
    train = documents(corpus.loc[~is_valid], paragraphs_per_document, rng)
    valid = documents(corpus.loc[is_valid], paragraphs_per_document, rng)
    for docs, out in ((train, train_out), (valid, valid_out)):
        with open(out, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(doc, ensure_ascii=False) + "\n" for doc in docs)
    log.info(
        "%d training items in %d same-language documents of up to %d paragraphs, "
        "%d validation items, %d languages, %d training characters",
        len(items) - n_valid,
        len(train),
        paragraphs_per_document,
        n_valid,
        len(languages),
        sum(len(doc["text"]) for doc in train),
    )
    return len(train), len(valid)


def train_tokenizer(texts: list[str], vocab_size: int, out_dir: str | Path, min_frequency: int = 2):
    """Train a byte-level BPE on ``texts`` and save it as a Hugging Face tokenizer.

    Byte-level: every script (Chinese, Arabic, Devanagari …) is covered with no
    unknown tokens. No post-processor, so no BOS is added: the analysis tokenizes
    without special tokens by default, as the paper's code did.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
    fast.model_max_length = 1024
    fast.save_pretrained(str(out_dir))
    return fast


def build_model(spec: dict[str, Any], vocab_size: int, special: dict[str, int]) -> PreTrainedModel:
    """A randomly initialised toy model from its config entry (``models.X.toy``)."""
    torch.manual_seed(spec["seed"])
    hidden, layers, heads = spec["hidden_size"], spec["num_layers"], spec["num_heads"]
    if spec["architecture"] == "bloom":
        if spec.get("intermediate_size") not in (None, 4 * hidden):
            raise ValueError(
                "BLOOM's MLP width is fixed at 4 × hidden_size; leave intermediate_size unset"
            )
        config = BloomConfig(
            vocab_size=vocab_size, hidden_size=hidden, n_layer=layers, n_head=heads, **special
        )
        return BloomForCausalLM(config)
    if spec["architecture"] == "llama":
        config = LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=spec.get("intermediate_size") or 4 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            max_position_embeddings=max(512, spec["seqlen"]),
            tie_word_embeddings=True,
            **special,
        )
        return LlamaForCausalLM(config)
    raise ValueError(f"unknown toy architecture {spec['architecture']!r}")


def save_checkpoint(model: PreTrainedModel, tokenizer, folder: str | Path) -> None:
    """A self-contained Hugging Face checkpoint: weights (safetensors) and tokenizer."""
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))


def token_stream(texts: list[str], tokenizer) -> torch.Tensor:
    """All documents tokenized and joined, each followed by EOS (a document boundary:
    end-of-sequence comes only where a document ends)."""
    ids: list[int] = []
    for enc in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        ids.append(tokenizer.eos_token_id)
    return torch.tensor(ids, dtype=torch.long)


def _windows(stream: torch.Tensor, seqlen: int) -> torch.Tensor:
    n = (len(stream) - 1) // seqlen
    if n < 1:
        raise ValueError(f"training text too short: {len(stream)} tokens for seqlen {seqlen}")
    return stream[: n * seqlen + 1].unfold(0, seqlen + 1, seqlen)  # (n, seqlen+1), overlap 1


@torch.no_grad()
def evaluate_loss(model: PreTrainedModel, windows: torch.Tensor, batch_size: int = 32) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        batch = windows[i : i + batch_size]
        logits = model(input_ids=batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1), reduction="sum"
        )
        total += loss.item()
        count += batch[:, 1:].numel()
    model.train()
    return total / count


def train_toy_model(
    spec: dict[str, Any],
    tokenizer_dir: str | Path,
    train_texts: list[str],
    valid_texts: list[str],
    out_dir: str | Path,
    log: Callable[[str], None] = log.info,
) -> dict[str, Any]:
    """Train one toy model; save ``out_dir/step-N`` at each of ``spec['save_steps']``.

    Each checkpoint folder holds the model (safetensors) and the tokenizer, so it
    loads with ``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained`` alone.
    Returns (and writes to ``out_dir/training.json``) the loss history.
    """
    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    model = build_model(spec, len(tokenizer), special)
    seqlen, batch_size = spec["seqlen"], spec["batch_size"]
    train = _windows(token_stream(train_texts, tokenizer), seqlen)
    valid = _windows(token_stream(valid_texts, tokenizer), seqlen)
    generator = torch.Generator().manual_seed(spec["seed"])
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=spec["learning_rate"],
        weight_decay=spec["weight_decay"],
        betas=(0.9, 0.95),
    )
    steps, warmup = spec["steps"], spec["warmup_steps"]

    def lr_factor(step: int) -> float:  # linear warm-up, cosine decay to 10%
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    save_steps = sorted(s for s in spec["save_steps"] if s <= steps)
    if len(save_steps) != len(spec["save_steps"]):
        raise ValueError(f"save_steps {spec['save_steps']} go beyond steps={steps}")
    history: dict[str, Any] = {
        "n_parameters": model.num_parameters(),
        "train_tokens": train.numel(),
        "checkpoints": [],
        "train_loss": [],
    }

    def save(step: int) -> None:
        folder = out_dir / f"step-{step}"
        save_checkpoint(model, tokenizer, folder)
        valid_loss = evaluate_loss(model, valid)
        history["checkpoints"].append(
            {"step": step, "folder": folder.name, "valid_loss": valid_loss}
        )
        log(f"step {step}: saved {folder} (validation loss {valid_loss:.3f})")

    model.train()
    start = time.perf_counter()
    if 0 in save_steps:
        save(0)
    for step in range(1, steps + 1):
        index = torch.randint(len(train), (batch_size,), generator=generator)
        batch = train[index]
        logits = model(input_ids=batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1)
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        history["train_loss"].append(round(loss.item(), 5))
        if step % 50 == 0:
            log(f"step {step}/{steps}: loss {loss.item():.3f}")
        if step in save_steps:
            save(step)
    history["seconds"] = round(time.perf_counter() - start, 1)
    history["spec"] = spec
    (out_dir / "training.json").write_text(json.dumps(history, indent=1))
    return history
