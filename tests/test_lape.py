"""LAPE (docs/method.md §9.1) against a direct, slow transcription of the definition."""

import json
import math

import numpy as np
import pytest
from lingua_franca.lape import (
    DEFAULTS,
    compute_lape,
    kth_smallest,
    lape_entropy,
    lape_from_probabilities,
)
from lingua_franca.store import ActivationStore, StoreError, StoreWriter

ACTIVITY = {"pattern": "test", "side": "output", "kind": "neuron", "active": "value > 0"}


def write_store(path, active, n_tokens, langs):
    """A store holding the given activity counts (means are noise, unused by LAPE)."""
    rng = np.random.default_rng(0)
    items = [str(i) for i in range(len(langs))]
    widths = [a.shape[1] for a in active]
    with StoreWriter(path, langs, items, widths, activity=ACTIVITY, row_chunk=5) as writer:
        for start in range(0, len(langs), 4):  # several blocks, not aligned with the chunks
            rows = slice(start, start + 4)
            means = [rng.standard_normal((len(n_tokens[rows]), w)) for w in widths]
            writer.write(means, [a[rows] for a in active], n_tokens[rows])
    return ActivationStore(path)


def slow_lape(active, n_tokens, langs, top_rate, filter_rate, activation_bar_ratio):
    """The definition, one neuron and one language at a time, in plain Python."""
    languages = list(dict.fromkeys(langs))
    neurons = [(m, j) for m, a in enumerate(active) for j in range(a.shape[1])]
    p = {}
    for lang in languages:
        rows = [i for i, x in enumerate(langs) if x == lang]
        tokens = sum(int(n_tokens[i]) for i in rows)
        for m, j in neurons:
            p[lang, m, j] = sum(int(active[m][i, j]) for i in rows) / tokens
    values = sorted(p.values())

    def q(rate):  # the k-th smallest, k = round(|P| · rate), 1-based
        return values[min(max(round(len(values) * rate), 1), len(values)) - 1]

    entropy = {}
    for m, j in neurons:
        total = sum(p[lang, m, j] for lang in languages)
        h = 0.0
        for lang in languages:
            share = p[lang, m, j] / total if total > 0 else 0.0
            if share > 0:
                h -= share * math.log(share)
        if not any(p[lang, m, j] > q(filter_rate) for lang in languages):
            h = math.inf  # dropped by the filter
        entropy[m, j] = h
    peak = {n: max(p[lang, *n] for lang in languages) for n in neurons}
    ranked = sorted(neurons, key=lambda n: (entropy[n], -peak[n], n))
    kept = sorted(n for n in ranked[: round(len(neurons) * top_rate)] if entropy[n] < math.inf)
    rows = [
        (lang, m, j, entropy[m, j], p[lang, m, j])
        for lang in languages
        for m, j in kept
        if p[lang, m, j] > q(activation_bar_ratio)
    ]
    return rows, kept, q(filter_rate), q(activation_bar_ratio)


def random_counts(seed, n_per_lang=(3, 4, 2, 3), widths=(230, 170), max_tokens=30):
    rng = np.random.default_rng(seed)
    langs = [f"l{i}" for i, n in enumerate(n_per_lang) for _ in range(n)]
    rng.shuffle(langs)  # languages need not come in blocks
    n_tokens = rng.integers(1, max_tokens, len(langs)).astype(np.int32)
    # per language and neuron a firing rate, some neurons dead in some languages
    rates = rng.uniform(0, 1, (len(n_per_lang), sum(widths))) ** 3
    rates[rng.uniform(size=rates.shape) < 0.3] = 0
    lang_index = np.array([int(x[1:]) for x in langs])
    counts = rng.binomial(n_tokens[:, None], rates[lang_index]).astype(np.int32)
    active = np.split(counts, np.cumsum(widths)[:-1], axis=1)
    return active, n_tokens, langs


def assert_same(result, slow):
    rows, kept, filter_value, bar = slow
    table = result.key_neurons()
    assert list(table.columns) == ["language", "layer", "neuron", "score", "p"]
    assert list(zip(table.language, table.layer, table.neuron)) == [r[:3] for r in rows]
    np.testing.assert_allclose(table.score, [r[3] for r in rows], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(table.p, [r[4] for r in rows], rtol=1e-12)
    offsets = np.concatenate([[0], np.cumsum(result.widths)])
    assert result.selected.tolist() == [offsets[m] + j for m, j in kept]
    assert (result.filter_value, result.activation_bar) == (filter_value, bar)


SETTINGS = [
    DEFAULTS,
    {"top_rate": 0.2, "filter_rate": 0.5, "activation_bar_ratio": 0.7},
    {"top_rate": 0.3, "filter_rate": 0.8, "activation_bar_ratio": 0.4},  # bar below filter
    {"top_rate": 1.0, "filter_rate": 0.9, "activation_bar_ratio": 0.9},  # every candidate
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("settings", SETTINGS)
def test_lape_equals_slow_transcription(tmp_path, seed, settings):
    active, n_tokens, langs = random_counts(seed)
    store = write_store(tmp_path / "a.zarr", active, n_tokens, langs)
    slow = slow_lape(active, n_tokens, langs, **settings)
    result = compute_lape(store, **settings, block_width=64)  # blocks cross no layer edge
    assert_same(result, slow)
    assert result.n_target == round(400 * settings["top_rate"])
    assert len(result.selected) == min(result.n_target, result.n_candidates)
    if settings is DEFAULTS:
        assert len(result.key_neurons()) > 0
    # the block width changes nothing
    again = compute_lape(store, **settings, block_width=4096)
    assert again.key_neurons().equals(result.key_neurons())
    assert result.languages == list(dict.fromkeys(langs))
    assert result.tokens.tolist() == [
        sum(int(n) for n, x in zip(n_tokens, langs) if x == lang) for lang in result.languages
    ]


def hand_store(tmp_path, columns, tokens_per_sample=8, samples_per_lang=1):
    """One layer; ``columns`` = per neuron, the active count in each language's sample(s)."""
    counts = np.array(columns, dtype=np.int32).T  # (languages, neurons)
    n_lang = counts.shape[0]
    counts = np.repeat(counts, samples_per_lang, axis=0)
    langs = [f"l{i}" for i in range(n_lang) for _ in range(samples_per_lang)]
    n_tokens = np.full(len(langs), tokens_per_sample, dtype=np.int32)
    return [counts], n_tokens, langs


def test_dead_everywhere_and_filtered_neurons(tmp_path):
    columns = [
        [0, 0, 0],  # 0: active in no language: entropy 0 but dropped by the filter
        [8, 8, 8],  # 1: active everywhere: maximal entropy, in every region if selected
        [1, 0, 0],  # 2: entropy 0, but p = 1/8 is not above q(filter): dropped
        [8, 0, 0],  # 3: entropy 0, p = 1 > q: selected for l0
        [0, 7, 6],  # 4
        [2, 3, 0],  # 5
        [0, 0, 5],  # 6: entropy 0, selected for l2
        [4, 4, 0],  # 7
    ]
    active, n_tokens, langs = hand_store(tmp_path, columns)
    store = write_store(tmp_path / "h.zarr", active, n_tokens, langs)
    settings = {"top_rate": 0.25, "filter_rate": 0.75, "activation_bar_ratio": 0.75}
    result = compute_lape(store, **settings)
    assert_same(result, slow_lape(active, n_tokens, langs, **settings))
    # 24 probabilities; the 18th smallest is 5/8, so only p in {6/8, 7/8, 1} passes
    assert result.filter_value == 5 / 8
    assert result.n_candidates == 3  # neurons 1, 3, 4 (neuron 6 has p = 5/8, not above)
    assert result.selected.tolist() == [3, 4]  # entropy 0, then neuron 4's
    assert 0 not in result.selected and 2 not in result.selected
    everything = compute_lape(store, top_rate=1.0, filter_rate=0.75, activation_bar_ratio=0.75)
    table = everything.key_neurons()
    assert set(table[table.neuron == 1].language) == {"l0", "l1", "l2"}  # active everywhere
    assert math.isclose(table[table.neuron == 1].score.iloc[0], math.log(3))
    assert 0 not in everything.selected and 2 not in everything.selected


def test_ties_at_the_cut(tmp_path):
    """Entropies tie at the cut: the higher peak p goes first, then the lower index."""
    columns = [
        [3, 0, 0],  # 0: entropy 0, peak 3/8
        [8, 0, 0],  # 1: entropy 0, peak 1
        [0, 6, 0],  # 2: entropy 0, peak 6/8
        [0, 0, 6],  # 3: entropy 0, peak 6/8 (ties with 2 on both keys)
        [6, 6, 0],  # 4: entropy log 2
        [0, 0, 8],  # 5: entropy 0, peak 1
        [4, 2, 0],  # 6: same shares as 7, lower peak
        [8, 4, 0],  # 7
    ]
    active, n_tokens, langs = hand_store(tmp_path, columns, samples_per_lang=2)
    store = write_store(tmp_path / "t.zarr", active, n_tokens, langs)
    for top_rate in (0.25, 0.375, 0.5, 0.625, 0.75):
        settings = {"top_rate": top_rate, "filter_rate": 0.1, "activation_bar_ratio": 0.1}
        result = compute_lape(store, **settings)
        assert_same(result, slow_lape(active, n_tokens, langs, **settings))
    # 5 neurons have entropy 0; a cut at 3 keeps the peaks 1, 1, then 6/8 with the lower index
    result = compute_lape(store, top_rate=0.375, filter_rate=0.1, activation_bar_ratio=0.1)
    assert result.selected.tolist() == [1, 2, 5]
    assert result.cut == {"entropy": 0.0, "tied": 5, "tied_kept": 3}
    # proportional profiles have bit-identical entropies: the higher peak (7) first
    h = lape_entropy(np.array([[4, 8], [2, 4], [0, 0]]) / 16)
    assert h[0] == h[1]
    result = compute_lape(store, top_rate=0.75, filter_rate=0.1, activation_bar_ratio=0.1)
    assert 7 in result.selected and 6 not in result.selected and 4 not in result.selected


def test_entropy_definition():
    p = np.array([[0.0, 0.5, 0.2, 0.0], [0.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.6, 0.0]])
    h = lape_entropy(p)
    assert h[0] == 0.0 and h[3] == 0.0  # sum 0: p' = 0, 0·log 0 = 0
    assert math.isclose(h[1], math.log(2))
    assert math.isclose(h[2], -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))


def test_kth_smallest_rounds_like_python():
    assert kth_smallest(4423680, 0.95) == 4202496  # BLOOM-7b1, 9 languages
    assert kth_smallest(10, 0.25) == 2  # 2.5 rounds half to even
    assert kth_smallest(10, 0.35) == 4  # 3.5 → 4
    assert kth_smallest(3, 0.1) == 1 and kth_smallest(3, 1.0) == 3  # clamped to 1 … size


def test_bad_settings_and_inputs(tmp_path):
    p = np.full((2, 4), 0.5)
    for key in DEFAULTS:
        for bad in (0, -0.1, 1.5, float("nan")):
            with pytest.raises(ValueError, match=key):
                lape_from_probabilities(p, [4], ["a", "b"], **{key: bad})
    with pytest.raises(ValueError, match="shape"):
        lape_from_probabilities(p, [3], ["a", "b"])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lape_from_probabilities(p * 3, [4], ["a", "b"])
    active, n_tokens, langs = hand_store(tmp_path, [[9, 0], [1, 1]])  # 9 of 8 tokens
    store = write_store(tmp_path / "bad.zarr", active, n_tokens, langs)
    with pytest.raises(
        StoreError, match="active/layer_000 sample 0, neuron 0: 9 active tokens of 8"
    ):
        compute_lape(store)


def test_summary_and_counts(tmp_path):
    active, n_tokens, langs = random_counts(3, widths=(30, 30, 20))
    store = write_store(tmp_path / "s.zarr", active, n_tokens, langs)
    result = compute_lape(store, top_rate=0.1)
    table = result.key_neurons()
    summary = result.summary()
    counts = result.key_counts
    assert counts.shape == (4, 3) and counts.sum() == len(table)
    for lang, n in summary["key_neurons_per_language"].items():
        assert n == (table.language == lang).sum()
    assert summary["key_neurons_per_layer"] == [int((table.layer == m).sum()) for m in range(3)]
    assert summary["selected"] == len(result.selected) == 8
    assert summary["top_rate"] == 0.1 and summary["filter_rate"] == DEFAULTS["filter_rate"]
    assert (table.score >= 0).all() and (table.p > result.activation_bar).all()
    assert json.loads(json.dumps(summary, allow_nan=False))["cut"] == result.cut
