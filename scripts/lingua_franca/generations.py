"""Generations under deactivation: the paper's greedy table (docs/method.md §5; paper
Appendix A, Tables 2 and 3) and the sampling protocol of the language statistics
(docs/method.md §11).

Every condition (the full model and each language's key region zeroed) continues
every prompt of every language: prompt language × condition, as in the paper's
tables.  Greedy decoding is the argmax of the model's own logits for exactly
``max_new_tokens`` tokens: an end-of-sequence token does not stop it, and where the
first one came is recorded, because what a damaged model does after that point is
part of what the table shows.  Sampling (:func:`sample`) draws from the temperature-
and top-p-filtered distribution with end-of-sequence suppressed, for exactly
``max_new_tokens`` tokens, each batch from its own seed.

Prompts are batched with left padding and an attention mask; ``generate`` derives
the positions from the mask, so a batch gives the tokens one prompt at a time gives,
for absolute-position models too (tested on every architecture of
``architectures.KNOWN``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
    return _neutral_generate(model, prompts, max_new_tokens, pad_id)


def _neutral_generate(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    pad_id: int,
    processors: Sequence = (),
) -> list[list[int]]:
    """``generate`` under a neutral greedy config (see :func:`greedy`), with the
    extra logits ``processors``; exactly ``max_new_tokens`` new ids per prompt."""
    from transformers import GenerationConfig, LogitsProcessorList

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
            logits_processor=LogitsProcessorList(processors),
        )
    finally:
        model.generation_config = saved
    new = out[:, input_ids.shape[1] :].tolist()
    if any(len(row) != max_new_tokens for row in new):
        raise RuntimeError(
            f"generation stopped early: {[len(r) for r in new]} new tokens, {max_new_tokens} asked"
        )
    return new


@dataclass(frozen=True)
class Sampling:
    """The sampling protocol (docs/method.md §11): temperature, nucleus (top-p), and the
    seed of the first batch (batch b of a run draws from seed + b, whatever the
    condition, so two conditions see the same random numbers)."""

    temperature: float = 0.8
    top_p: float = 0.9
    seed: int = 0
    #: rows one ``generate`` call computes (None: a whole batch): a batch is computed in
    #: parts of this size, each row drawing the random numbers it draws in the whole
    #: batch, so the texts do not change (up to a batched product's rounding); smaller
    #: parts are faster on a CPU, whose cache holds them
    rows_per_call: int | None = None


class NucleusSampler:
    """A logits processor that draws the next token itself: softmax(logits /
    temperature) with ``suppress`` removed, cut to the nucleus (the most probable
    tokens, in order, while the mass before them is below ``top_p``: the tokens the
    library's top-p warper keeps), renormalised, and sampled by inverse CDF from its
    own seeded generator.  It returns logits that are -inf but at the drawn token, so
    ``generate`` runs greedy and keeps everything else it does (caches, masks,
    positions).

    Why not the library's sampling: its warper sorts the whole vocabulary at every
    step (7 ms for 64 × 2,048 on a CPU core, 1.5 s for BLOOM's 250,880) and draws
    with ``torch.multinomial`` from the global RNG.  Here the nucleus is looked for
    among the ``candidates`` most probable tokens first (one ``topk``); only the rows
    whose candidates hold less than ``top_p`` sort the whole vocabulary (3% of the
    demo's rows; sorting every row at every step took 45% of its sampling time).  The
    kept set is the same, because a token outside the top ``candidates`` has at least
    their mass before it.

    At each step the generator draws one uniform number per row, in row order; with
    ``slots`` (one per row) it draws ``width`` (default ``max(slots) + 1``) and row i
    takes the ``slots[i]``-th, so a part of a batch (``Sampling.rows_per_call``) or rows of
    different cells packed into one batch (:func:`generate_cells`) draw what they
    would draw in their own whole batch."""

    def __init__(
        self,
        sampling: Sampling,
        seed: int,
        suppress: Sequence[int] = (),
        candidates: int = 256,
        slots: Sequence[int] | None = None,
        width: int | None = None,
    ):
        self.sampling, self.suppress, self.candidates = sampling, list(suppress), candidates
        self.seed, self.generator = seed, None
        self.slots = None if slots is None else torch.as_tensor(slots, dtype=torch.long)
        self.width = width or (None if slots is None else int(self.slots.max()) + 1)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.generator is None:
            self.generator = torch.Generator(device=scores.device).manual_seed(self.seed)
        logits = scores.float() / self.sampling.temperature
        if self.suppress:
            logits[:, self.suppress] = -math.inf
        probs = torch.softmax(logits, dim=-1)
        # one uniform number per row, drawn before the rows are split, so the draws do
        # not depend on which rows needed the whole sort
        drawn = len(probs) if self.slots is None else self.width
        u = torch.rand(drawn, 1, generator=self.generator, device=probs.device)
        if self.slots is not None:
            u = u[self.slots.to(u.device)]
        k = min(self.candidates, probs.shape[-1])
        top, index = torch.topk(probs, k, dim=-1)  # descending
        chosen = self._draw(top, index, u)
        beyond = top.sum(-1) < self.sampling.top_p  # a nucleus beyond the candidates
        if beyond.any():
            rows = beyond.nonzero().squeeze(1)
            whole, order = torch.sort(probs[rows], dim=-1, descending=True)
            chosen[rows] = self._draw(whole, order, u[rows])
        out = torch.full_like(scores, -math.inf)
        return out.scatter_(1, chosen, 0.0)

    def _draw(self, top: torch.Tensor, index: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The token drawn in each row from probabilities ``top`` (descending, with
        their vocabulary ``index``) cut to the nucleus, ``u`` uniform in [0, 1)."""
        before = torch.cumsum(top, dim=-1) - top  # mass strictly before each token
        kept = torch.where(before < self.sampling.top_p, top, torch.zeros_like(top))
        kept[:, 0] = top[:, 0]  # the most probable token is always kept
        cdf = torch.cumsum(kept, dim=-1)
        pick = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp_(max=cdf.shape[-1] - 1)
        return index.gather(1, pick)


@torch.inference_mode()
def sample(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    pad_id: int,
    sampling: Sampling,
    seed: int,
    suppress: Sequence[int] = (),
    slots: Sequence[int] | None = None,
    width: int | None = None,
) -> list[list[int]]:
    """Exactly ``max_new_tokens`` sampled token ids after each prompt (a batch), from
    ``seed``, ``slots`` and ``width`` (:class:`NucleusSampler`); the tokens of
    ``suppress`` (end-of-sequence) are never drawn.

    As in :func:`greedy`, a neutral generation config stands in for the model's (no
    top-k, repetition penalty or banned n-grams): nothing but temperature and top-p
    shapes the distribution.  The caller's random state is not touched."""
    sampler = NucleusSampler(sampling, seed, suppress, slots=slots, width=width)
    return _neutral_generate(model, prompts, max_new_tokens, pad_id, [sampler])


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
    sampling: Sampling | None = None,
) -> list[dict]:
    """One record per (condition, prompt language, prompt), in that order.

    ``conditions``: (name, neurons) pairs; ``deactivate(neurons)`` is the context
    manager that zeroes them (``interventions.zero_neurons``).  ``prompts``:
    language → [{"item": id or None, "text": prompt}]; a prompt with ``"ids"`` (token
    ids, e.g. the beginning-of-text token alone) is not tokenized.  ``progress``: a
    tqdm bar advanced by prompts.  Greedy, or with ``sampling`` sampled with
    end-of-sequence suppressed (batch b from ``sampling.seed + b``: every condition
    draws the same random numbers).  The decoded text keeps special tokens (an
    end-of-sequence shows where it came); bytes that do not form valid UTF-8 decode
    to U+FFFD.
    """
    flat = [(lang, i, p) for lang, some in prompts.items() for i, p in enumerate(some)]
    if not flat:
        return []
    ids = _prompt_ids(tokenizer, [(f"language {lang!r}", i, p) for lang, i, p in flat])
    eos = tokenizer.eos_token_id
    pad = next((t for t in (tokenizer.pad_token_id, eos) if t is not None), 0)
    suppress = [eos] if eos is not None else []
    records = []
    for name, neurons in conditions:
        with deactivate(neurons):
            outputs, seeds = [], []
            for b, start in enumerate(range(0, len(flat), batch_size)):
                batch = ids[start : start + batch_size]
                if sampling is None:
                    outputs += greedy(model, batch, max_new_tokens, pad)
                else:
                    seed, rows = sampling.seed + b, sampling.rows_per_call or len(batch)
                    for first in range(0, len(batch), rows):  # each part: its batch's draws
                        part = batch[first : first + rows]
                        slots = range(first, first + len(part))
                        outputs += sample(
                            model,
                            part,
                            max_new_tokens,
                            pad,
                            sampling,
                            seed,
                            suppress,
                            slots,
                            len(batch),
                        )
                    seeds += [seed] * len(batch)
                if progress is not None:
                    progress.update(len(ids[start : start + batch_size]))
        for j, ((lang, i, prompt), new) in enumerate(zip(flat, outputs)):
            seed = seeds[j] if sampling is not None else None
            records.append(
                {"condition": name, "language": lang} | _record(tokenizer, i, prompt, new, seed)
            )
    return records


def _record(tokenizer, index: int, prompt: Mapping, new: list[int], seed: int | None) -> dict:
    """One continuation's record (see :func:`generate_all`)."""
    return {
        "prompt_index": index,
        "item": prompt.get("item"),
        "prompt": prompt["text"],
        "continuation": tokenizer.decode(new, skip_special_tokens=False),
        "continuation_ids": new,
        "new_tokens": len(new),
        "first_eos": first_eos(new, tokenizer.eos_token_id),
        **({"seed": seed} if seed is not None else {}),
    }


def _prompt_ids(tokenizer, prompts: Sequence[tuple[str, int, Mapping]]) -> list[list[int]]:
    """Each prompt's token ids: its ``ids``, or its text tokenized (all in one call)."""
    texts = [p["text"] for _, _, p in prompts if "ids" not in p]
    tokenized = iter(tokenize(tokenizer, texts) if texts else [])
    ids = [list(p["ids"]) if "ids" in p else next(tokenized) for _, _, p in prompts]
    for (where, i, _), x in zip(prompts, ids):
        if not x:
            raise ValueError(f"prompt {i} of {where} has no tokens")
    return ids


def generate_cells(
    model: nn.Module,
    tokenizer,
    cells: Sequence[tuple[object, Sequence[Mapping]]],
    max_new_tokens: int,
    batch_size: int,
    apply_rows,
    progress=None,
    sampling: Sampling | None = None,
) -> list[list[dict]]:
    """Continue every cell's prompts under its own condition, several cells to a batch:
    for each cell (``(condition, prompts)``, prompts as :func:`generate_all` takes them)
    the list of its records, as :func:`generate_all` makes them (without ``condition``
    and ``language``).  ``apply_rows(conditions, rows)`` is the context manager that
    applies ``conditions[rows[i]]`` to row i of the batch
    (``interventions.intervene_rows``).

    A cell's prompt r is in its chunk ``r // batch_size`` and draws, with ``sampling``,
    what :func:`generate_all` draws for it in that chunk: the seed ``sampling.seed +
    chunk``, and at each step the ``r mod batch_size``-th of the batch's uniform
    numbers (:class:`NucleusSampler` ``slots``).  Pieces of the same chunk and size
    share calls of at most ``batch_size`` rows (``sampling.rows_per_call`` when set), in the
    order given; so every cell draws the same random numbers, whichever cells share
    its calls."""
    ids = _prompt_ids(
        tokenizer,
        [(f"cell {k}", i, p) for k, (_, ps) in enumerate(cells) for i, p in enumerate(ps)],
    )
    starts = [0]
    for _, prompts in cells:
        starts.append(starts[-1] + len(prompts))
    groups: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    for k, (_, prompts) in enumerate(cells):
        for chunk, first in enumerate(range(0, len(prompts), batch_size)):
            last = min(first + batch_size, len(prompts))
            groups.setdefault((chunk, last - first), []).append((k, first, last))
    eos = tokenizer.eos_token_id
    pad = next((t for t in (tokenizer.pad_token_id, eos) if t is not None), 0)
    suppress = [eos] if eos is not None else []
    new: dict[int, dict[int, list[int]]] = {k: {} for k in range(len(cells))}
    cap = (sampling.rows_per_call if sampling is not None else None) or batch_size
    for (chunk, size), whole in groups.items():
        # a piece longer than a call's rows is cut into parts that keep their slots
        pieces = [
            (k, part, min(part + cap, last), first)
            for k, first, last in whole
            for part in range(first, last, cap)
        ]
        per_batch = max(1, cap // size)
        for at in range(0, len(pieces), per_batch):
            batch = pieces[at : at + per_batch]
            rows = [j for j, (_, first, last, _) in enumerate(batch) for _ in range(first, last)]
            prompts = [
                ids[starts[k] + r] for k, first, last, _ in batch for r in range(first, last)
            ]
            with apply_rows([cells[k][0] for k, *_ in batch], rows):
                if sampling is None:
                    out = greedy(model, prompts, max_new_tokens, pad)
                else:
                    slots = [r - o for _, first, last, o in batch for r in range(first, last)]
                    seed = sampling.seed + chunk
                    out = sample(
                        model, prompts, max_new_tokens, pad, sampling, seed, suppress, slots, size
                    )
            it = iter(out)
            for k, first, last, _ in batch:
                new[k].update({r: next(it) for r in range(first, last)})
            if progress is not None:
                progress.update(len(prompts))
    return [
        [
            _record(
                tokenizer,
                r,
                prompt,
                new[k][r],
                None if sampling is None else sampling.seed + r // batch_size,
            )
            for r, prompt in enumerate(prompts)
        ]
        for k, (_, prompts) in enumerate(cells)
    ]


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


def _cell(text: str, eos: int | None, language: str | None = None) -> str:
    shown = html.escape(text).replace("\n", "<br>")
    shown = shown.replace(
        "\ufffd", '<span class="bad" title="bytes that are not UTF-8">\ufffd</span>'
    )
    note = (
        f'<div class="eos">end-of-sequence first at new token {eos}</div>'
        if eos is not None
        else ""
    )
    if language is not None:
        note += f'<div class="lang">identified: {html.escape(language)}</div>'
    return shown + note


def write_html(
    records: Sequence[Mapping],
    path,
    title: str = "",
    sampled: Sequence[Mapping] = (),
    sampled_caption: str = "",
) -> None:
    """The table as a self-contained HTML page (for the report): a language's own
    deactivation is shaded; U+FFFD (undecodable bytes) is marked; each cell notes
    where the first end-of-sequence token came, if any, and the language its
    continuation was identified as, when the records carry a ``label``.  With
    ``sampled`` (records of the same form from the sampling protocol of
    docs/method.md §11) a second table of them follows, under ``sampled_caption``:
    a toy's greedy text repeats itself, its sampled text reads as its language."""
    n_tokens = {r["new_tokens"] for r in records}
    caption = (
        f"{title}: greedy continuations of {'/'.join(map(str, sorted(n_tokens)))} "
        "new tokens, no stop at end-of-sequence"
        if records
        else f"{title}: no prompts, no generations"
    )
    tables = [_table_html(records, caption)]
    if sampled:
        tables.append(_table_html(sampled, f"{title}: {sampled_caption}"))
    style = (
        "body{font-family:sans-serif;font-size:13px} table{border-collapse:collapse} "
        "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;max-width:28em} "
        "td.own{background:#fde8e8} .bad{background:#f4c542} .eos,.lang{color:#777;font-size:11px} "
        "caption{text-align:left;font-weight:bold;padding:12px 0 4px}"
    )
    page = (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><style>{style}</style></head>"
        "<body>\n" + "\n".join(tables) + "\n</body></html>\n"
    )
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(page)


def _table_html(records: Sequence[Mapping], caption: str) -> str:
    """One table of :func:`write_html`: a row per prompt, a column per condition."""
    eos = {(r["condition"], r["language"], r["prompt_index"]): r.get("first_eos") for r in records}
    found = {(r["condition"], r["language"], r["prompt_index"]): r.get("label") for r in records}
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
            cell = _cell(row[c], eos[c, lang, index], found[c, lang, index])
            cells.append(f"<td{own}>{cell}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f"<table>\n<caption>{html.escape(caption)}</caption>\n"
        f"<tr>{''.join(f'<th>{html.escape(h)}</th>' for h in heads)}</tr>\n"
        + "\n".join(rows)
        + "\n</table>"
    )
