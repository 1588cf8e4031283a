"""Greedy generations under deactivation, and their table (docs/method.md §5; paper
Appendix A, Tables 2 and 3).

Every condition (the full model and each language's key region zeroed) continues
every prompt of every language: prompt language × condition, as in the paper's
tables.  Decoding is plain greedy (the argmax of the model's own logits) for exactly
``max_new_tokens`` tokens: an end-of-sequence token does not stop it, and where the
first one came is recorded, because what a damaged model does after that point is
part of what the table shows.

Prompts are batched with left padding and an attention mask; ``generate`` derives
the positions from the mask, so a batch gives the tokens one prompt at a time gives,
for absolute-position models too (tested on every architecture of
``architectures.KNOWN``).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from .activations import tokenize


def left_pad(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) with padding first and every prompt ending at the
    last column, where generation continues."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        if len(x):
            input_ids[i, width - len(x) :] = torch.as_tensor(x, dtype=torch.long)
            mask[i, width - len(x) :] = 1
    return input_ids, mask


@torch.inference_mode()
def greedy(
    model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int, pad_id: int
) -> list[list[int]]:
    """Exactly ``max_new_tokens`` greedy token ids after each prompt (a batch).

    ``generate`` fills any setting left unset from the model's own generation config
    (a checkpoint may ship a repetition penalty, banned n-grams, suppressed tokens or
    its end-of-sequence token), so a neutral config stands in for the model's during
    the call: nothing but the argmax chooses a token, and an empty end-of-sequence
    list never stops a row.
    """
    from transformers import GenerationConfig

    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    device = model.get_input_embeddings().weight.device
    input_ids, mask = left_pad(prompts, pad_id)
    neutral = GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        min_new_tokens=None,
        eos_token_id=[],
        pad_token_id=pad_id,
    )
    saved = model.generation_config
    model.generation_config = neutral
    try:
        out = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=mask.to(device),
            generation_config=neutral,
        )
    finally:
        model.generation_config = saved
    new = out[:, input_ids.shape[1] :].tolist()
    if any(len(row) != max_new_tokens for row in new):
        raise RuntimeError(
            f"generation stopped early: {[len(r) for r in new]} new tokens, {max_new_tokens} asked"
        )
    return new


def first_eos(ids: Sequence[int], eos_id: int | None) -> int | None:
    """Index (among the new tokens) of the first end-of-sequence token, or None."""
    return next((i for i, t in enumerate(ids) if t == eos_id), None) if eos_id is not None else None


def generate_all(
    model: nn.Module,
    tokenizer,
    conditions: Sequence[tuple[str, object]],
    prompts: Mapping[str, Sequence[Mapping[str, str]]],
    max_new_tokens: int,
    batch_size: int,
    deactivate,
    progress=None,
) -> list[dict]:
    """One record per (condition, prompt language, prompt), in that order.

    ``conditions``: (name, neurons) pairs; ``deactivate(neurons)`` is the context
    manager that zeroes them (``interventions.zero_neurons``).  ``prompts``:
    language → [{"item": id or None, "text": prompt}].  ``progress``: a tqdm bar
    advanced by prompts.  The decoded text keeps special tokens (an end-of-sequence
    shows where it came); bytes that do not form valid UTF-8 decode to U+FFFD.
    """
    flat = [(lang, i, p) for lang, some in prompts.items() for i, p in enumerate(some)]
    if not flat:
        return []
    ids = tokenize(tokenizer, [p["text"] for _, _, p in flat])
    for (lang, i, _), x in zip(flat, ids):
        if not x:
            raise ValueError(f"prompt {i} of language {lang!r} has no tokens")
    eos = tokenizer.eos_token_id
    pad = next((t for t in (tokenizer.pad_token_id, eos) if t is not None), 0)
    records = []
    for name, neurons in conditions:
        with deactivate(neurons):
            outputs = []
            for start in range(0, len(flat), batch_size):
                outputs += greedy(model, ids[start : start + batch_size], max_new_tokens, pad)
                if progress is not None:
                    progress.update(len(ids[start : start + batch_size]))
        for (lang, i, prompt), new in zip(flat, outputs):
            records.append(
                {
                    "condition": name,
                    "language": lang,
                    "prompt_index": i,
                    "item": prompt.get("item"),
                    "prompt": prompt["text"],
                    "continuation": tokenizer.decode(new, skip_special_tokens=False),
                    "continuation_ids": new,
                    "new_tokens": len(new),
                    "first_eos": first_eos(new, eos),
                }
            )
    return records


# ------------------------------------------------------------------ the table


def table(records: Sequence[Mapping]) -> pd.DataFrame:
    """Table 2's layout: one row per (prompt language, prompt), one column per
    condition (``full`` first), cells the decoded continuations."""
    if not records:
        return pd.DataFrame()
    frame = pd.DataFrame(records)
    conditions = list(dict.fromkeys(frame["condition"]))
    wide = frame.pivot(
        index=["language", "prompt_index"], columns="condition", values="continuation"
    )
    order = list(dict.fromkeys(zip(frame["language"], frame["prompt_index"])))
    wide = wide.loc[order, conditions]
    prompts = frame.drop_duplicates(["language", "prompt_index"]).set_index(
        ["language", "prompt_index"]
    )["prompt"]
    wide.insert(0, "prompt", prompts.loc[order])
    wide.columns.name = None
    return wide


def _cell(text: str, eos: int | None) -> str:
    shown = html.escape(text).replace("\n", "<br>")
    shown = shown.replace(
        "\ufffd", '<span class="bad" title="bytes that are not UTF-8">\ufffd</span>'
    )
    note = (
        f'<div class="eos">end-of-sequence first at new token {eos}</div>'
        if eos is not None
        else ""
    )
    return shown + note


def write_html(records: Sequence[Mapping], path, title: str = "") -> None:
    """The table as a self-contained HTML page (for the report): a language's own
    deactivation is shaded; U+FFFD (undecodable bytes) is marked; each cell notes
    where the first end-of-sequence token came, if any."""
    eos = {(r["condition"], r["language"], r["prompt_index"]): r.get("first_eos") for r in records}
    wide = table(records)
    conditions = [c for c in wide.columns if c != "prompt"]
    heads = ["language", "prompt"] + [
        "original output (full model)" if c == "full" else f"deactivating {c}" for c in conditions
    ]
    rows = []
    for (lang, index), row in wide.iterrows():
        cells = [f"<th>{html.escape(str(lang))}</th>", f"<td>{html.escape(row['prompt'])}</td>"]
        for c in conditions:
            own = ' class="own"' if c == lang else ""
            cells.append(f"<td{own}>{_cell(row[c], eos[c, lang, index])}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    n_tokens = {r["new_tokens"] for r in records}
    caption = (
        f"{html.escape(title)}: greedy continuations of {'/'.join(map(str, sorted(n_tokens)))} "
        "new tokens, no stop at end-of-sequence"
        if records
        else f"{html.escape(title)}: no prompts, no generations"
    )
    style = (
        "body{font-family:sans-serif;font-size:13px} table{border-collapse:collapse} "
        "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;max-width:28em} "
        "td.own{background:#fde8e8} .bad{background:#f4c542} .eos{color:#777;font-size:11px}"
    )
    page = (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><style>{style}</style></head>"
        f"<body>\n<table>\n<caption>{caption}</caption>\n"
        f"<tr>{''.join(f'<th>{html.escape(h)}</th>' for h in heads)}</tr>\n"
        + "\n".join(rows)
        + "\n</table>\n</body></html>\n"
    )
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(page)
