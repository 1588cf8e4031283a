"""A planted language neuron, where the answer is known: the harness of key-neuron
selection and steering (extraction → AP regions → per-language medians → forcing the
region through the real hooks → generation) must find it and switch the language of
what the model writes, and a count-matched random region must not.

The model is a real 1-layer LLaMA (transformers' LlamaForCausalLM, the project's
hooks on ``mlp.down_proj``) whose weights are set by hand:

* two token sets, "language" A (a00 … a19) and B (b00 … b19); every embedding has a
  constant 1 on dimension 0, its language's sign (+1 for A, −1 for B and for the
  beginning-of-text token) on dimension 1, −0.5 on dimension 2 (a prior for B), and
  small random values on the others;
* attention adds nothing (its output projection is 0);
* neuron UNIT = silu(8 · x̂₁) · x̂₀ (x̂: the RMS-normalised input) is large on A
  tokens and ≈ 0 on B tokens; the output projection writes 0.1 × it to dimension 2;
* the LM head scores A tokens by +10 × dimension 2 and B tokens by −10 × it, plus
  small random readouts of the other dimensions (which token within the set);
* every other neuron reads and writes only the random dimensions 3 …, so it cannot
  change the language.

So the model continues A text in A and B text (or the beginning of text) in B, and
setting UNIT to A's median pooled activation at every position makes it write A.
"""

import numpy as np
import pandas as pd
import pytest
import torch
from lingua_franca import ap, steering
from lingua_franca.ablation import regions_by_language
from lingua_franca.activations import extract_to_store, tokenize
from lingua_franca.generations import Sampling, greedy
from lingua_franca.interventions import Intervention, intervene, intervene_rows, random_like
from lingua_franca.store import ActivationStore, language_statistics
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

HIDDEN, WIDTH, UNIT = 16, 24, 13
A = [f"a{i:02d}" for i in range(20)]
B = [f"b{i:02d}" for i in range(20)]
SPECIAL = ["<s>", "<pad>", "<unk>"]


def planted_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(SPECIAL + A + B)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", pad_token="<pad>", unk_token="<unk>"
    )


def planted_model(seed: int = 0) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(SPECIAL) + len(A) + len(B),
        hidden_size=HIDDEN,
        intermediate_size=WIDTH,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=None,
    )
    model = LlamaForCausalLM(config).eval()
    g = torch.Generator().manual_seed(seed)
    noise = lambda *shape, scale: torch.randn(*shape, generator=g) * scale
    n_vocab, rest = config.vocab_size, HIDDEN - 3
    sign = torch.tensor([-1.0, 0.0, 0.0] + [1.0] * len(A) + [-1.0] * len(B))  # <s> like B
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        embed = torch.zeros(n_vocab, HIDDEN)
        embed[:, 0], embed[:, 1], embed[:, 2] = 1.0, sign, -0.5
        embed[:, 3:] = noise(n_vocab, rest, scale=0.3)
        model.model.embed_tokens.weight.copy_(embed)
        layer = model.model.layers[0]
        for norm in (layer.input_layernorm, layer.post_attention_layernorm, model.model.norm):
            norm.weight.fill_(1.0)
        mlp = layer.mlp
        mlp.gate_proj.weight[:, 3:] = noise(WIDTH, rest, scale=0.5)
        mlp.up_proj.weight[:, 3:] = noise(WIDTH, rest, scale=0.5)
        mlp.down_proj.weight[3:, :] = noise(rest, WIDTH, scale=0.3)
        mlp.gate_proj.weight[UNIT], mlp.up_proj.weight[UNIT] = 0.0, 0.0
        mlp.down_proj.weight[:, UNIT] = 0.0
        mlp.gate_proj.weight[UNIT, 1] = 8.0  # on A tokens silu(+large), on B silu(−large) ≈ 0
        mlp.up_proj.weight[UNIT, 0] = 1.0
        mlp.down_proj.weight[2, UNIT] = 0.1  # the decision channel
        head = torch.zeros(n_vocab, HIDDEN)
        head[:, 2] = 10.0 * sign
        head[:3, 2] = -10.0  # never the special tokens
        head[:, 3:] = noise(n_vocab, rest, scale=0.5)
        model.lm_head.weight.copy_(head)
    return model


def probe(rng, n_items=20):
    """n_items samples per language, 5 to 9 random tokens of its set."""
    rows = []
    for lang, words in (("A", A), ("B", B)):
        for v in range(n_items):
            text = " ".join(rng.choice(words, int(rng.integers(5, 10))))
            rows.append({"row": len(rows), "lang": lang, "item": f"v{v}", "text": text})
    return pd.DataFrame(rows)


def share_in(generated, words, tokenizer):
    ids = set(tokenizer.convert_tokens_to_ids(words))
    tokens = [t for row in generated for t in row]
    return sum(t in ids for t in tokens) / len(tokens)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    model, tokenizer = planted_model(), planted_tokenizer()
    rng = np.random.default_rng(0)
    store_path = tmp_path_factory.mktemp("planted") / "activations.zarr"
    extract_to_store(model, tokenizer, probe(rng), store_path, batch_size=8, progress=False)
    store = ActivationStore(store_path)
    # prompts: the beginning of text alone (unconditional) and the start of new samples
    held_out = probe(np.random.default_rng(1), n_items=8)
    prompts = {
        lang: [ids[:3] for ids in tokenize(tokenizer, held_out[held_out.lang == lang].text)]
        for lang in ("A", "B")
    }
    prompts["B"].insert(0, [tokenizer.bos_token_id])  # it writes B from the beginning of text
    return model, tokenizer, store, prompts


def test_ap_finds_the_planted_unit(planted):
    _, _, store, _ = planted
    found = ap.key_neurons(store, top=1, bottom=1)
    table = found.table.set_index(["language", "direction"])
    # top for A (high activation marks A), bottom for B (low activation marks B)
    assert (table.loc[("A", "top"), ["layer", "neuron"]].tolist()) == [0, UNIT]
    assert (table.loc[("B", "bottom"), ["layer", "neuron"]].tolist()) == [0, UNIT]
    assert table.loc[("A", "top"), "ap_high"] == 1.0
    assert table.loc[("B", "bottom"), "ap_low"] == 1.0
    result = ap.compute_ap(store)  # no other neuron separates A first, or B last, perfectly
    assert np.delete(result.high[0], UNIT).max() < 1.0
    assert np.delete(result.low[1], UNIT).max() < 1.0


def generate(model, prompts, interventions, max_new_tokens=12):
    with intervene(model, interventions):
        return greedy(model, prompts, max_new_tokens, pad_id=1)


@pytest.mark.parametrize(("target", "source"), [("A", "B"), ("B", "A")])
def test_forcing_the_region_switches_the_language_and_a_random_one_does_not(
    planted, target, source
):
    model, tokenizer, store, prompts = planted
    words = {"A": A, "B": B}
    found = ap.key_neurons(store, top=1, bottom=1)
    region = regions_by_language(found.table, found.languages, found.widths)[target]
    # the planted unit, and the target's other list's best (which only moves the
    # random dimensions): forced together, as Kojima et al. force top and bottom
    assert list(region) == [0] and UNIT in region[0] and len(region[0]) == 2
    medians = language_statistics(store, "median")[target]
    forced = Intervention.from_statistics(region, medians)  # Kojima's forcing
    # B's prompts include the beginning of text alone: unconditional generation
    given = prompts[source]
    unforced = generate(model, given, [])
    assert share_in(unforced, words[target], tokenizer) <= 0.05  # it continues in the source
    steered = generate(model, given, [forced])
    assert share_in(steered, words[target], tokenizer) >= 0.95
    for seed in range(5):  # the same count in the same layer, forced to the target's values
        control = random_like(forced, found.widths, seed, statistics=medians)
        assert control.counts() == forced.counts() and UNIT not in control.neurons[0]
        assert share_in(generate(model, given, [control]), words[target], tokenizer) <= 0.05


def test_adding_the_difference_of_medians_steers_too(planted):
    """``add`` with α × (A's median − B's median) on the unit, from B's prompts."""
    model, tokenizer, store, prompts = planted
    statistics = language_statistics(store, "median")
    shift = {0: statistics["A"][0] - statistics["B"][0]}
    added = Intervention.from_statistics({0: [UNIT]}, shift, "add", alpha=1.0)
    assert share_in(generate(model, prompts["B"], [added]), A, tokenizer) >= 0.95
    weak = Intervention.from_statistics({0: [UNIT]}, shift, "add", alpha=0.01)
    assert share_in(generate(model, prompts["B"], [weak]), A, tokenizer) <= 0.05


class SetIdentifier:
    """The planted model's two "languages": a text is A or B by the majority of its
    tokens' sets, unknown when empty (the role lid.176 plays for real languages)."""

    def labels(self, texts):
        rows = []
        for text in texts:
            words = text.split()
            a, b = sum(w in A for w in words), sum(w in B for w in words)
            rows.append("unknown" if a == b else "A" if a > b else "B")
        return pd.DataFrame(
            {
                "label": rows,
                "probability": 1.0,
                "raw_label": rows,
                "reason": "identified",
                "second_label": rows,
            }
        )

    def provenance(self):
        return {"identifier": "token sets"}


def test_the_steering_experiment_finds_what_was_planted(planted):
    """The whole steering harness (docs/method.md §12): AP regions, per-language
    statistics from the store, Intervention values, sampled generation under
    intervene, identification, the cells and the verdicts."""
    model, tokenizer, store, _ = planted
    found = ap.key_neurons(store, top=1, bottom=1)
    settings = steering.SteeringSettings(samples=12, alpha=1.0, start="bos", seed=0)
    regions = steering.regions({"ap": found.table}, ["A", "B"], found.widths)
    median, mean = language_statistics(store, "median"), language_statistics(store, "mean")
    conditions = steering.conditions(regions, median, mean, found.widths, settings)
    assert [(c.target, c.condition) for c in conditions] == [
        (t, c) for t in ("A", "B") for c in ("forced", "add", "random")
    ]
    held_out = probe(np.random.default_rng(2), n_items=12)
    samples = {
        lang: [
            {"item": r.item, "text": " ".join(r.text.split()[:3])}
            for r in held_out[held_out.lang == lang].itertuples()
        ]
        for lang in ("A", "B")
    }
    result = steering.run(
        model,
        tokenizer,
        conditions,
        samples,
        ["A", "B"],
        settings=settings,
        max_new_tokens=8,
        batch_size=8,
        sampling=Sampling(temperature=0.8, top_p=0.9, seed=0),
        apply_rows=lambda conditions, rows: intervene_rows(model, conditions, rows),
        identifier=SetIdentifier(),
        progress=False,
    )
    cells = result.cells.set_index(["target", "source", "condition"])
    share = cells["target_share"]
    # from the beginning of text the model writes B: forcing A's region switches it
    assert (
        share["A", "unconditional", "unforced"] == 0
        and share["B", "unconditional", "unforced"] == 1
    )
    assert share["A", "unconditional", "forced"] == 1 and share["A", "unconditional", "add"] == 1
    assert share["A", "unconditional", "random"] == 0
    # from the other language's prompts, either way
    assert share["A", "prompted", "forced"] == 1 and share["B", "prompted", "forced"] == 1
    assert share["A", "prompted", "random"] == 0 and share["B", "prompted", "random"] == 0
    assert (cells["n"] == 12).all() and np.isfinite(cells["fluency"]).all()
    beats = result.summary["methods"]["ap"]
    # B from the beginning of text is what the model writes anyway: nothing to beat
    assert beats["unconditional"]["beats_both"]["forced"] == "1/2"
    assert beats["prompted"]["beats_both"]["forced"] == "2/2"
    # the prompted continuations came from the other language's prompts
    texts = result.texts
    prompted = texts[(texts["source"] == "prompted") & (texts["target"] == "A")]
    assert set(prompted["prompt_language"]) == {"B"}
