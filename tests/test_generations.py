"""Greedy generations (docs/method.md §5, paper Appendix A): exactly N new tokens, no
stop at end-of-sequence, batched equal to one prompt at a time, the Table 2 layout,
and the choice of prompts (Genesis 1:1–1:3 for a Bible corpus)."""

import contextlib
import dataclasses
import math
from collections import Counter

import pandas as pd
import pytest
import torch
from helpers import (
    ARCHS,
    CORPUS,
    FIXTURES,
    all_hooks,
    opus_with_two_english_documents,
    tiny_model,
    tiny_tokenizer,
)
from lingua_franca.activations import tokenize
from lingua_franca.corpora import CorpusError, choose_prompts
from lingua_franca.generations import (
    NucleusSampler,
    Sampling,
    generate_all,
    generate_cells,
    greedy,
    left_pad,
    sample,
    table,
    write_html,
)
from lingua_franca.interventions import Intervention, intervene, intervene_rows

PROMPTS = [
    "the cat sat on the mat",
    "le chat",
    CORPUS[4],
    "der Hund schläft",
    "a",
]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@torch.no_grad()
def by_hand(model, ids, n):
    """Greedy by hand: the argmax of a full forward over everything so far, n times."""
    seq = list(ids)
    for _ in range(n):
        logits = model(input_ids=torch.tensor([seq])).logits[0, -1]
        seq.append(int(logits.argmax()))
    return seq[len(ids) :]


def test_left_pad():
    ids, mask = left_pad([[5, 6, 7], [8]], 0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


@pytest.mark.parametrize("arch", ARCHS)
def test_batched_equals_one_prompt_at_a_time(arch, tokenizer):
    """Left padding with the attention mask: the positions come from the mask, so
    absolute-position models (GPT-2, OPT, XGLM) continue a padded prompt as an
    unpadded one."""
    model = tiny_model(arch)
    ids = tokenize(tokenizer, PROMPTS)
    alone = [greedy(model, [x], 6, tokenizer.eos_token_id)[0] for x in ids]
    assert greedy(model, ids, 6, tokenizer.eos_token_id) == alone
    assert alone[0] == by_hand(model, ids[0], 6)


def test_plain_greedy_whatever_the_model_generation_config_says(tokenizer):
    """A checkpoint's generation config may ask for a repetition penalty, banned
    n-grams, suppressed tokens and an end-of-sequence stop: none of it applies."""
    model = tiny_model("llama")
    ids = tokenize(tokenizer, ["the cat sat on the mat"])[0]
    expected = by_hand(model, ids, 12)
    assert len(set(expected)) < len(expected)  # the plain greedy run repeats a token
    config = model.generation_config
    config.repetition_penalty, config.no_repeat_ngram_size = 3.0, 1
    config.suppress_tokens, config.eos_token_id = [expected[0]], expected[1]
    assert greedy(model, [ids], 12, 0) == [expected]
    assert model.generation_config is config  # restored


def test_end_of_sequence_does_not_stop_and_is_recorded(tokenizer):
    """A model that emits end-of-sequence first (the demo's toy models did, so every
    continuation was empty) still gives exactly N tokens; where it came is kept."""
    model = tiny_model("bloom")
    eos = tokenizer.eos_token_id
    # the head's end-of-sequence logit always wins
    model.lm_head.register_forward_hook(
        lambda m, a, out: out.index_fill(-1, torch.tensor([eos]), 1e4)
    )
    prompts = {"en": [{"item": "a", "text": "the cat"}], "de": [{"item": "b", "text": "der Hund"}]}
    records = generate_all(
        model, tokenizer, [("full", {})], prompts, 64, 8, lambda n: contextlib.nullcontext()
    )
    assert [len(r["continuation_ids"]) for r in records] == [64, 64]
    assert all(r["first_eos"] == 0 and r["continuation_ids"][0] == eos for r in records)
    assert records[0]["continuation"].startswith(tokenizer.eos_token)  # special tokens shown


def test_every_condition_continues_every_language(tokenizer):
    """The cross product, each condition inside its own deactivation, in batches."""
    model = tiny_model("llama")
    seen = []

    @contextlib.contextmanager
    def deactivate(neurons):
        seen.append(neurons)
        yield

    prompts = {
        "en": [{"item": "1", "text": "the cat"}, {"item": "2", "text": CORPUS[0]}],
        "fr": [{"item": "1", "text": "le chat"}, {"item": "2", "text": CORPUS[2]}],
    }
    runs = [("full", {}), ("en", {0: [1]}), ("fr", {1: [2]})]
    records = generate_all(model, tokenizer, runs, prompts, 3, 3, deactivate)
    assert seen == [{}, {0: [1]}, {1: [2]}]
    assert [(r["condition"], r["language"], r["prompt_index"]) for r in records] == [
        (c, lang, i) for c in ("full", "en", "fr") for lang in ("en", "fr") for i in (0, 1)
    ]
    assert all(r["item"] == str(r["prompt_index"] + 1) and r["new_tokens"] == 3 for r in records)
    assert all_hooks(model) == 0


def test_table_layout_and_html(tmp_path):
    records = [
        {
            "condition": c,
            "language": lang,
            "prompt_index": 0,
            "prompt": f"{lang} prompt <1>",
            "continuation": f"{c} says \ufffd\ufffd" if c == "zh" else f"{c} says hi",
            "new_tokens": 4,
            "first_eos": 2 if (c, lang) == ("full", "en") else None,
        }
        for c in ("full", "en", "zh")
        for lang in ("en", "zh")
    ]
    wide = table(records)
    assert list(wide.columns) == ["prompt", "full", "en", "zh"]
    assert list(wide.index) == [("en", 0), ("zh", 0)]
    assert wide.loc[("zh", 0), "zh"] == "zh says \ufffd\ufffd"
    write_html(records, tmp_path / "g.html", title="m @ c")
    page = (tmp_path / "g.html").read_text(encoding="utf-8")
    assert "original output (full model)" in page and "deactivating zh" in page
    assert page.count('class="bad"') == 4  # two marks, in two cells
    assert page.count('class="own"') == 2  # en under ×en, zh under ×zh
    assert "end-of-sequence first at new token 2" in page
    assert 'class="lang"' not in page  # unlabelled records: no language notes
    for record in records:
        record["label"] = "unknown" if record["condition"] == "zh" else record["language"]
    write_html(records, tmp_path / "g.html", title="m @ c")
    page = (tmp_path / "g.html").read_text(encoding="utf-8")
    assert page.count('<div class="lang">identified: unknown</div>') == 2
    assert page.count('<div class="lang">identified: en</div>') == 2
    assert "en prompt &lt;1&gt;" in page  # escaped
    write_html([], tmp_path / "empty.html", title="m @ c")
    assert "no generations" in (tmp_path / "empty.html").read_text(encoding="utf-8")
    # the sampled continuations follow in a second table, under their own caption
    sampled = [{**r, "continuation": f"sampled {r['condition']}"} for r in records]
    write_html(records, tmp_path / "g.html", title="m @ c", sampled=sampled, sampled_caption="S")
    page = (tmp_path / "g.html").read_text(encoding="utf-8")
    assert page.count("<table>") == 2 and "<caption>m @ c: S</caption>" in page
    assert page.index("greedy continuations") < page.index("sampled full") > 0
    assert page.count('class="own"') == 4


# ------------------------------------------------------------------ the prompts


GENERATION = {"prompts_per_language": 3, "prompts": None}


def probe_of(items, languages):
    rows = [(lang, i, f"{lang} {i}") for lang in languages for i in items]
    frame = pd.DataFrame(rows, columns=["lang", "item", "text"])
    frame.insert(0, "row", range(len(frame)))
    return frame


def test_bible_prompts_are_genesis_whatever_the_probe_sampled():
    section = {"source": "bible_ces", "options": {"dir": str(FIXTURES / "bible_ces")}}
    probe = probe_of(["b.GEN.1.5"], ["en", "fr", "zh"])  # Genesis 1:1-1:3 not sampled
    chosen = choose_prompts(section, GENERATION, ["en", "fr", "zh"], probe)
    assert chosen["source"] == "genesis"
    assert [p["item"] for p in chosen["prompts"]["zh"]] == ["b.GEN.1.1", "b.GEN.1.2", "b.GEN.1.3"]
    assert chosen["prompts"]["fr"][0]["text"] == "Au commencement, Dieu créa les cieux et la terre."
    assert chosen["prompts"]["zh"][0]["text"] == "起初，神创造天地。"
    # 1:4 is missing in French: asking for four verses says so
    with pytest.raises(CorpusError, match=r"b\.GEN\.1\.4 .*analysis\.generation\.prompts"):
        choose_prompts(section, {**GENERATION, "prompts_per_language": 4}, ["en", "fr"], probe)


def test_bible_opus_prompts_match_english_sentence_ids(tmp_path):
    section = {"source": "bible_opus", "options": {"dir": str(FIXTURES / "opus")}}
    chosen = choose_prompts(section, GENERATION, ["en", "fr"], probe_of(["x"], ["en", "fr"]))
    assert [p["item"] for p in chosen["prompts"]["fr"]] == ["b.GEN.1.1", "b.GEN.1.2", "b.GEN.1.3"]
    assert chosen["prompts"]["fr"][1]["text"].startswith("La terre était informe et vide")
    # with two English documents the item ids are "<document>#<verse>"
    opus_with_two_english_documents(tmp_path, "bible-uedin.en-fr.*")
    section = {"source": "bible_opus", "options": {"dir": str(tmp_path)}}
    chosen = choose_prompts(section, GENERATION, ["en", "fr"], probe_of(["x"], ["en", "fr"]))
    assert [p["item"] for p in chosen["prompts"]["en"]] == [
        "en/English.xml.gz#b.GEN.1.1",
        "en/English-WEB.xml.gz#b.GEN.1.2",
        "en/English.xml.gz#b.GEN.1.3",
    ]


def test_other_corpora_use_the_first_probe_items_or_the_config():
    section = {"source": "embedded", "options": {}}
    probe = probe_of(["p7", "p2", "p9", "p4"], ["en", "zh"])  # the sample's order
    chosen = choose_prompts(section, GENERATION, ["en", "zh"], probe)
    assert chosen["source"] == "probe"
    assert chosen["prompts"]["zh"] == [{"item": i, "text": f"zh {i}"} for i in ("p7", "p2", "p9")]
    given = {**GENERATION, "prompts": {"en": ["One", "Two", "Three", "Four"], "zh": ["一"]}}
    chosen = choose_prompts(section, given, ["en", "zh"], probe)
    assert chosen["source"] == "config"
    assert [p["text"] for p in chosen["prompts"]["en"]] == ["One", "Two", "Three"]
    assert chosen["prompts"]["zh"] == [{"item": None, "text": "一"}]
    with pytest.raises(CorpusError, match=r"no prompt for \['zh'\]"):
        choose_prompts(section, {**given, "prompts": {"en": ["One"]}}, ["en", "zh"], probe)


# ------------------------------------------------------------------ sampling (§11)


def _kept_by_transformers(logits, temperature, top_p):
    """The tokens transformers' own temperature and top-p warpers leave finite."""
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    scores = TemperatureLogitsWarper(temperature)(None, logits.clone())
    return torch.isfinite(TopPLogitsWarper(top_p)(None, scores))


@pytest.mark.parametrize("spread", [0.5, 3.0, 8.0])
def test_the_nucleus_is_the_one_transformers_keeps(spread):
    """NucleusSampler looks for the nucleus among the top candidates first and sorts
    the whole vocabulary only when they hold too little mass: it draws only tokens of
    the library's top-p set, and with many draws every token of that set."""
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 600, generator=generator) * spread
    sampling = Sampling(temperature=0.8, top_p=0.9)
    kept = _kept_by_transformers(logits, 0.8, 0.9)
    sampler = NucleusSampler(sampling, seed=0, candidates=16)
    drawn = torch.zeros_like(kept)
    for _ in range(3000):
        out = sampler(None, logits)
        assert (out == 0).sum(-1).tolist() == [1] * 4  # one token per row, the rest -inf
        drawn |= out == 0
    assert not (drawn & ~kept).any()
    small = kept.sum(-1) <= 40  # a nucleus small enough to be seen whole in 3000 draws
    assert (drawn[small] == kept[small]).all()
    # spread 0.5: every nucleus reaches beyond the 16 candidates (the whole sort);
    # spread 8: every one lies within them
    assert small.all() if spread == 8.0 else not small.any() or spread == 3.0


def test_the_drawn_shares_follow_the_renormalised_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    sampler = NucleusSampler(Sampling(temperature=1.0, top_p=0.9), seed=3)
    counts = Counter(int((sampler(None, logits) == 0).nonzero()[0, 1]) for _ in range(6000))
    assert 3 not in counts  # 0.5 + 0.3 + 0.15 = 0.95 ≥ 0.9 before it
    for token, p in ((0, 0.5 / 0.95), (1, 0.3 / 0.95), (2, 0.15 / 0.95)):
        assert counts[token] / 6000 == pytest.approx(p, abs=0.025)


def test_suppressed_tokens_are_never_drawn():
    logits = torch.zeros(2, 5)
    logits[:, 2] = 50.0  # the end-of-sequence token would win every draw
    sampler = NucleusSampler(Sampling(), seed=0, suppress=[2])
    assert all((sampler(None, logits)[:, 2] == -math.inf).all() for _ in range(50))


def test_sampling_is_seeded_exact_length_and_leaves_the_global_rng(tokenizer):
    model = tiny_model("llama")
    ids = tokenize(tokenizer, PROMPTS[:3])
    eos = tokenizer.eos_token_id
    state = torch.random.get_rng_state()
    first = sample(model, ids, 20, eos, Sampling(), seed=5, suppress=[eos])
    assert torch.equal(torch.random.get_rng_state(), state)
    assert sample(model, ids, 20, eos, Sampling(), seed=5, suppress=[eos]) == first
    assert sample(model, ids, 20, eos, Sampling(), seed=6, suppress=[eos]) != first
    assert [len(row) for row in first] == [20, 20, 20]
    assert all(eos not in row for row in first)


def test_sampled_records_carry_their_batch_seed(tokenizer):
    model = tiny_model("bloom")
    prompts = {"en": [{"item": str(i), "text": t} for i, t in enumerate(PROMPTS[:3])]}
    records = generate_all(
        model,
        tokenizer,
        [("full", {}), ("x", {})],
        prompts,
        4,
        2,
        lambda n: contextlib.nullcontext(),
        sampling=Sampling(seed=10),
    )
    assert [r["seed"] for r in records] == [10, 10, 11] * 2
    # the same batches and seeds under every condition: the same draws where nothing differs
    assert [r["continuation_ids"] for r in records[:3]] == [
        r["continuation_ids"] for r in records[3:]
    ]


def test_rows_beyond_the_candidates_draw_what_the_whole_sort_draws():
    """A batch mixing peaked rows (nucleus within the candidates) and flat ones (beyond
    them): the same seed draws the same tokens as a sampler whose candidates are the
    whole vocabulary, row by row."""
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(6, 300, generator=generator)
    logits[::2] *= 8.0  # rows 0, 2, 4 peaked; 1, 3, 5 flat
    sampling = Sampling(temperature=0.8, top_p=0.9)
    few = NucleusSampler(sampling, seed=4, candidates=16)
    whole = NucleusSampler(sampling, seed=4, candidates=300)
    for _ in range(200):
        assert torch.equal(few(None, logits), whole(None, logits))


@pytest.mark.parametrize(
    "sampling",
    [None, Sampling(seed=3), Sampling(seed=3, rows_per_call=3)],
    ids=["greedy", "sampled", "sampled-in-parts"],
)
def test_cells_sharing_batches_continue_as_each_would_alone(tokenizer, sampling):
    """generate_cells packs cells under different conditions into shared batches; each
    cell's continuations (and seeds) are generate_all's for that cell alone, with its
    chunks and random numbers, whatever it shares a batch with; computed in calls of
    fewer rows than a batch (rows_per_call), too."""
    model = tiny_model("llama")
    prompts = [{"item": str(i), "text": t} for i, t in enumerate(PROMPTS)]
    start = [{"item": None, "text": "", "ids": [tokenizer.eos_token_id]}] * 5
    conditions = [
        (),
        (Intervention({0: [1, 2, 3]}, "set", {0: [4.0, -4.0, 4.0]}),),
        (Intervention({1: [0, 5]}),),
        (Intervention({0: [7]}, "add", {0: [6.0]}, alpha=2.0),),
    ]
    cells = [(c, ps) for c in conditions for ps in (prompts, start)]
    made = generate_cells(
        model,
        tokenizer,
        cells,
        12,
        4,  # chunks of 4 and 1: one piece of 4 to a batch, four of 1
        lambda conditions, rows: intervene_rows(model, conditions, rows),
        sampling=sampling,
    )
    for (condition, ps), records in zip(cells, made):
        alone = generate_all(
            model,
            tokenizer,
            [("c", condition)],
            {"x": ps},
            12,
            4,
            lambda interventions: intervene(model, interventions),
            sampling=sampling and dataclasses.replace(sampling, rows_per_call=None),
        )
        for r in alone:
            del r["condition"], r["language"]
        assert records == alone
    ids = [[r["continuation_ids"] for r in records] for records in made]
    assert ids[0] != ids[2] and ids[1] != ids[3]  # the conditions did something
    assert all_hooks(model) == 0


def test_a_batch_computed_in_parts_draws_what_it_draws_whole(tokenizer):
    """Sampling.rows_per_call computes a batch in parts, each row with the random
    numbers of its slot in the whole batch: the same records as the whole batch."""
    model = tiny_model("gpt2")  # absolute positions: left padding differs between parts
    prompts = {"en": [{"item": str(i), "text": t} for i, t in enumerate(PROMPTS)]}

    def go(sampling):
        return generate_all(
            model,
            tokenizer,
            [("full", {})],
            prompts,
            10,
            5,
            lambda n: contextlib.nullcontext(),
            sampling=sampling,
        )

    whole = go(Sampling(seed=1))
    assert go(Sampling(seed=1, rows_per_call=2)) == whole
    assert go(Sampling(seed=1, rows_per_call=1)) == whole
    assert go(Sampling(seed=2, rows_per_call=2)) != whole
