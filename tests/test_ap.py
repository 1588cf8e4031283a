"""Average precision (docs/method.md §9.2) against a direct, slow computation: one
``sklearn.metrics.average_precision_score`` call per language and neuron."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import write_activation_store
from lingua_franca import ap, pipeline
from lingua_franca.methods import METHODS, SelectionFiles
from lingua_franca.store import StoreError
from sklearn.metrics import average_precision_score


def tied_block(rng, n, width):
    """Random columns, and columns built to tie: few distinct values, constant, all
    zero but one, and -0.0 beside 0.0 (equal values)."""
    x = rng.normal(size=(n, width)).astype(np.float32)
    x[:, 0] = 1.5  # constant: every sample at one threshold
    x[:, 1] = rng.integers(0, 3, n)  # three values
    x[:, 2] = 0.0
    x[rng.integers(n), 2] = 2.0  # one sample above all others
    x[:, 3] = np.where(rng.uniform(size=n) < 0.5, -0.0, 0.0)  # equal values, two signs
    x[:, 4] = np.round(x[:, 4], 1)  # ties among continuous values
    return x


def slow_ap(x, labels, n_labels):
    """AP of every (label, column), both rankings, by sklearn."""
    high = np.empty((n_labels, x.shape[1]))
    low = np.empty_like(high)
    for label in range(n_labels):
        for j in range(x.shape[1]):
            high[label, j] = average_precision_score(labels == label, x[:, j])
            low[label, j] = average_precision_score(labels == label, -x[:, j])
    return high, low


@pytest.mark.parametrize("seed", range(6))
def test_average_precisions_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 40))
    labels = rng.integers(0, 3, n)
    labels[:3] = [0, 1, 2]  # every label has a sample
    rng.shuffle(labels)
    if seed % 2:
        labels.sort()  # in blocks, as a store's languages are
    x = tied_block(rng, n, 30)
    high, low = ap.average_precisions(x, labels, 3)
    expected_high, expected_low = slow_ap(x, labels, 3)
    np.testing.assert_allclose(high, expected_high, rtol=1e-12, atol=0)
    np.testing.assert_allclose(low, expected_low, rtol=1e-12, atol=0)
    # a constant column ranks nothing: its AP is the label's share, both ways
    share = np.bincount(labels, minlength=3) / n
    np.testing.assert_allclose(high[:, 0], share)
    np.testing.assert_allclose(low[:, 0], share)


def test_a_perfect_ranking_has_ap_one_and_its_reverse_does_not():
    labels = np.array([0, 0, 1, 1, 1])
    x = np.array([[5.0], [4.0], [1.0], [2.0], [0.0]])
    high, low = ap.average_precisions(x, labels, 2)
    assert high[0, 0] == 1.0 and low[1, 0] == 1.0
    assert high[1, 0] < 1.0 and low[0, 0] < 1.0
    with pytest.raises(ValueError, match="label 2 has no sample"):
        ap.average_precisions(x, labels, 3)


def store_of(tmp_path, seed=0, widths=(23, 17), n_per_lang=(5, 4, 6)):
    """A store whose languages are interleaved, one neuron of each language placed to
    rank its samples first, others constant or tied."""
    rng = np.random.default_rng(seed)
    langs = [f"l{i}" for i, n in enumerate(n_per_lang) for _ in range(n)]
    rng.shuffle(langs)
    languages = list(dict.fromkeys(langs))
    labels = np.array([languages.index(x) for x in langs])
    layers = [tied_block(rng, len(langs), w).astype(np.float64) for w in widths]
    for label in range(len(languages)):
        layers[1][:, 5 + label] = (labels == label) * 3.0 + rng.uniform(0, 1, len(langs))
    items = [f"v{i}" for i in range(len(langs))]
    return write_activation_store(tmp_path / "a.zarr", layers, langs, items), layers, labels


def slow_regions(high, low, languages, widths, n_top, n_bottom):
    """The selection by its definition: per language, sort by (−AP, global index)."""
    offsets = np.concatenate([[0], np.cumsum(widths)])
    rows = []
    for lang, name in enumerate(languages):
        top = sorted(range(high.shape[1]), key=lambda k: (-high[lang, k], k))[:n_top]
        bottom = sorted(range(low.shape[1]), key=lambda k: (-low[lang, k], k))[:n_bottom]
        for k in sorted(set(top) | set(bottom)):
            m = int(np.searchsorted(offsets, k, side="right") - 1)
            in_top, in_bottom = k in top, k in bottom
            direction = "both" if in_top and in_bottom else "top" if in_top else "bottom"
            score = max(high[lang, k] if in_top else -1, low[lang, k] if in_bottom else -1)
            rank_top = top.index(k) + 1 if in_top else 0
            rank_bottom = bottom.index(k) + 1 if in_bottom else 0
            rows.append(
                (name, m, k - offsets[m], score, direction, rank_top, rank_bottom, high[lang, k])
            )
    return rows


@pytest.mark.parametrize(("top", "bottom"), [(4, 3), (0.1, 0.05), (0.6, 0.6), (2, 0), (40, 1)])
def test_the_regions_of_a_store_equal_the_slow_selection(tmp_path, top, bottom):
    store, layers, labels = store_of(tmp_path)
    found = ap.key_neurons(store, block_width=7, top=top, bottom=bottom)  # blocks cut chunks
    x = np.concatenate(layers, axis=1).astype(np.float32)
    high, low = slow_ap(x, labels, 3)
    k = x.shape[1]
    n_top, n_bottom = ap.region_size(top, k), ap.region_size(bottom, k)
    expected = slow_regions(high, low, found.languages, found.widths, n_top, n_bottom)
    table = found.table
    assert list(table.columns) == list(ap.KEY_COLUMNS)
    got = list(
        table[["language", "layer", "neuron", "direction", "rank_top", "rank_bottom"]].itertuples(
            index=False, name=None
        )
    )
    assert got == [(r[0], r[1], r[2], r[4], r[5], r[6]) for r in expected]
    np.testing.assert_allclose(table["score"], [r[3] for r in expected], rtol=1e-12)
    np.testing.assert_allclose(table["ap_high"], [r[7] for r in expected], rtol=1e-12)
    assert found.summary["top_neurons"] == n_top and found.summary["bottom_neurons"] == n_bottom
    assert found.counts().sum(axis=1).tolist() == [
        sum(r[0] == lang for r in expected) for lang in found.languages
    ]
    if (top, bottom) == (0.6, 0.6):  # large lists overlap: a neuron in both is one row
        assert (table["direction"] == "both").any()
        assert not table.duplicated(["language", "layer", "neuron"]).any()
    # each language's planted neuron (layer 1, neuron 5 + l) is its best by AP = 1
    if n_top:
        best = table[table["rank_top"] == 1]
        assert best["layer"].tolist() == [1, 1, 1]
        labels_of = [found.languages.index(name) for name in best["language"]]
        assert best["neuron"].tolist() == [5 + lab for lab in labels_of]
        assert (best["ap_high"] == 1.0).all()


def test_region_sizes():
    assert ap.region_size(0.02, 512) == 10  # round(10.24)
    assert ap.region_size(0.01, 32) == 1  # round(0.32) = 0, but a fraction asks for some
    assert ap.region_size(0.5, 5) == 2  # round half to even, as LAPE
    assert ap.region_size(7, 100) == 7 and ap.region_size(7.0, 100) == 7
    assert ap.region_size(5000, 512) == 512  # a count above K keeps K
    assert ap.region_size(0, 512) == 0 and ap.region_size(None, 512) == 0
    for bad in (-1, 1.5, 2.25):
        with pytest.raises(ValueError, match="a count .* or a fraction in"):
            ap.region_size(bad, 512)


def test_smaller_regions_equal_a_fresh_selection(tmp_path):
    store, _, _ = store_of(tmp_path, seed=3)
    large = ap.key_neurons(store, top=12, bottom=9).table
    for top, bottom in [(12, 9), (5, 2), (1, 0), (0, 3)]:
        fresh = ap.key_neurons(store, top=top, bottom=bottom).table
        pd.testing.assert_frame_equal(ap.smaller_regions(large, top=top, bottom=bottom), fresh)
    with pytest.raises(ValueError, match="select again for top 13"):
        ap.smaller_regions(large, top=13, bottom=1)


def test_a_non_finite_activation_is_named(tmp_path):
    store, layers, _ = store_of(tmp_path)
    layers[0][4, 6] = np.nan
    bad = write_activation_store(tmp_path / "bad.zarr", layers, store.languages, store.items)
    with pytest.raises(StoreError, match=r"layer_000 sample 4 .*neuron 6: nan"):
        ap.compute_ap(bad, block_width=5)


def test_the_selection_job_writes_the_ap_regions(tmp_path):
    store, _, _ = store_of(tmp_path)
    files = SelectionFiles.in_folder(tmp_path / "ap")
    settings = {"top": 3, "bottom": 0.05}
    pipeline.select_key_neurons(
        "ap",
        store.path,
        {name: str(path) for name, path in files.paths().items()},
        settings=settings,
        block_width=16,
    )
    expected = ap.key_neurons(store, **settings)
    pd.testing.assert_frame_equal(pd.read_parquet(files.key_neurons), expected.table)
    summary = json.loads(files.summary.read_text())
    assert summary["method"] == "ap" and summary["settings"] == settings
    assert summary["top_neurons"] == 3 and summary["bottom_neurons"] == 2  # round(40 × 0.05)
    assert summary["score"] == METHODS["ap"].score
    assert set(summary["cut_top"]) == set(store.languages)
