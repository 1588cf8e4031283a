"""Metrics against the formulas of docs/method.md computed the slow way (explicit loops over pairs).

Small random probes (4 languages × 5 items × 3 layers of uneven width) are scored
by ``metrics_from_arrays`` and by the streaming ``compute_metrics`` over a real
store, and both are compared with direct transcriptions of docs/method.md §2–4.
"""

import itertools
import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from helpers import DEAD, synthetic_activations, write_activation_store
from lingua_franca import metrics as M

LANGS = ["en", "zh", "fr", "ar"]
ITEMS = ["v3", "v1", "v4", "v0", "v2"]  # any order, as long as every block shares it
WIDTHS = [6, 4, 7]


# ----------------------------------------------------------- slow references


def slow_normalize(rows):
    out = []
    for row in rows:
        norm = math.sqrt(sum(float(v) * float(v) for v in row))
        out.append([float(v) / norm for v in row])
    return out


def slow_similarity(rows):
    a = slow_normalize(rows)
    n = len(a)
    return [[sum(x * y for x, y in zip(a[i], a[j])) for j in range(n)] for i in range(n)]


def slow_lrds_sads(s, langs, items):
    same_lang, cross_same_item, cross_other = [], [], []
    for i in range(len(s)):
        for j in range(len(s)):
            if i == j:
                continue
            if langs[i] == langs[j] and items[i] != items[j]:
                same_lang.append(s[i][j])
            elif langs[i] != langs[j] and items[i] == items[j]:
                cross_same_item.append(s[i][j])
            elif langs[i] != langs[j] and items[i] != items[j]:
                cross_other.append(s[i][j])
    base = sum(cross_other) / len(cross_other)
    return (
        sum(same_lang) / len(same_lang) - base,
        sum(cross_same_item) / len(cross_same_item) - base,
    )


def slow_contributions(a, langs):
    order = list(dict.fromkeys(langs))
    scores = []
    for lang in order:
        rows = [a[i] for i in range(len(a)) if langs[i] == lang]
        scores.append(
            [
                sum(
                    rows[i][k] * rows[j][k]
                    for i in range(len(rows))
                    for j in range(i + 1, len(rows))
                )
                for k in range(len(a[0]))
            ]
        )
    return scores


def slow_z(c):
    n_lang, n_k = len(c), len(c[0])
    z = [[0.0] * n_k for _ in range(n_lang)]
    for k in range(n_k):
        col = [c[l][k] for l in range(n_lang)]
        mu = sum(col) / n_lang
        sigma = math.sqrt(sum((v - mu) ** 2 for v in col) / n_lang)
        for l in range(n_lang):
            z[l][k] = 0.0 if sigma == 0 else (col[l] - mu) / sigma
    return z


@pytest.fixture(scope="module")
def probe():
    layers, langs, items = synthetic_activations(LANGS, ITEMS, WIDTHS)
    concat = np.concatenate(layers, axis=1)
    z = slow_z(slow_contributions(slow_normalize(concat.tolist()), langs))
    return layers, langs, items, np.array(z)


# ------------------------------------------------------------------ formulas


def test_similarity_normalizes_whole_vector_once(probe):
    layers, _, _, _ = probe
    concat = np.concatenate(layers, axis=1)
    expected = np.array(slow_similarity(concat.tolist()))
    np.testing.assert_allclose(M.similarity(concat), expected, rtol=0, atol=1e-12)
    a = M.normalize_rows(concat)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-14)
    per_layer_first = np.concatenate([M.normalize_rows(x) for x in layers], axis=1)
    assert not np.allclose(M.similarity(per_layer_first), expected)  # a different quantity


def test_lrds_sads_global_and_per_layer_match_pair_loops(probe):
    layers, langs, items, _ = probe
    result = M.metrics_from_arrays(layers, langs, items, z_threshold=1.0)
    s = slow_similarity(np.concatenate(layers, axis=1).tolist())
    assert result.lrds == pytest.approx(slow_lrds_sads(s, langs, items)[0], abs=1e-12)
    assert result.sads == pytest.approx(slow_lrds_sads(s, langs, items)[1], abs=1e-12)
    for m, x in enumerate(layers):
        lrds, sads = slow_lrds_sads(slow_similarity(x.tolist()), langs, items)
        assert result.layer_lrds[m] == pytest.approx(lrds, abs=1e-12)
        assert result.layer_sads[m] == pytest.approx(sads, abs=1e-12)
    assert result.lrds > 0  # the probe has a language component


def test_lrds_sads_do_not_depend_on_row_order(probe):
    layers, langs, items, _ = probe
    s = M.similarity(np.concatenate(layers, axis=1))
    perm = np.random.default_rng(1).permutation(len(langs))
    shuffled = M.lrds_sads(s[np.ix_(perm, perm)], np.array(langs)[perm], np.array(items)[perm])
    np.testing.assert_allclose(shuffled, M.lrds_sads(s, langs, items), atol=1e-14)


def test_contribution_closed_form_matches_pair_loop(probe):
    layers, langs, _, _ = probe
    a = M.normalize_rows(np.concatenate(layers, axis=1))
    expected = np.array(slow_contributions(a.tolist(), langs))
    got = M.contribution_scores(a, langs)
    assert got.shape == (len(LANGS), sum(WIDTHS))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    interleaved = np.arange(len(langs)).reshape(len(LANGS), -1).T.ravel()  # not in blocks
    np.testing.assert_allclose(
        M.contribution_scores(a[interleaved], np.array(langs)[interleaved]), expected, atol=1e-15
    )


def test_zscores_match_formula_with_population_sigma(probe):
    layers, langs, _, slow = probe
    c = M.contribution_scores(M.normalize_rows(np.concatenate(layers, axis=1)), langs)
    z = M.zscores(c)
    np.testing.assert_allclose(z, slow, atol=1e-9)
    live = np.any(z != 0, axis=0)
    np.testing.assert_allclose((z[:, live] ** 2).mean(axis=0), 1.0)  # ddof = 0
    dead = WIDTHS[0] + DEAD[1]
    assert np.all(z[:, dead] == 0)


def test_sigma_zero_gives_z_zero():
    c = np.array([[0.1, 0.0, 3.0], [0.1, 0.0, 1.0], [0.1, 0.0, 2.0]])  # 0.1 * 3 / 3 != 0.1
    z = M.zscores(c)
    assert np.all(z[:, :2] == 0) and np.all(np.isfinite(z))
    np.testing.assert_allclose(z[:, 2], [1.224744871391589, -1.224744871391589, 0.0])
    assert np.all(M.zscores(np.array([[1.0, -2.0, 0.0]])) == 0)  # one language only


def test_identical_languages_have_no_key_neurons():
    layers, langs, items = synthetic_activations(["en"], ITEMS, WIDTHS)
    layers = [np.tile(x, (3, 1)) for x in layers]  # three languages, identical data
    langs = [lang for lang in ["en", "fr", "es"] for _ in ITEMS]
    a = M.normalize_rows(np.concatenate(layers, axis=1))
    assert np.all(M.zscores(M.contribution_scores(a, langs)) == 0)  # σ = 0 for every neuron
    assert M.metrics_from_arrays(layers, langs, items * 3, z_threshold=0.0).sklr == 0


def test_key_regions_and_sklr_match_slow(probe):
    layers, langs, items, slow = probe
    tau = 1.0
    result = M.metrics_from_arrays(layers, langs, items, z_threshold=tau)
    expected = {(LANGS[l], k) for l, k in zip(*np.nonzero(slow > tau))}
    offsets = np.cumsum([0] + WIDTHS)
    got = {
        (row.language, offsets[row.layer] + row.neuron) for row in result.key_neurons().itertuples()
    }
    assert got == expected and len(expected) > 0
    assert result.sklr == len(expected)
    summary = result.summary()
    assert summary["sklr_fraction"] == len(expected) / sum(WIDTHS)
    per_lang = {lang: sum(1 for l, _ in expected if l == lang) for lang in LANGS}
    assert summary["key_neurons_per_language"] == per_lang
    per_layer = [sum(1 for _, k in expected if a <= k < b) for a, b in itertools.pairwise(offsets)]
    assert [row["key_neurons"] for row in summary["per_layer"]] == per_layer
    regions = M.key_regions(slow, tau)
    assert sum(len(r) for r in regions) == len(expected)


# ---------------------------------------------------------------- streaming


@pytest.mark.parametrize("block_width", [1, 3, 4, 5, 4096])
def test_streaming_equals_in_memory(tmp_path, probe, block_width):
    layers, langs, items, _ = probe
    store = write_activation_store(tmp_path / "a.zarr", layers, langs, items)
    expected = M.metrics_from_arrays(layers, langs, items, z_threshold=1.0)
    got = M.compute_metrics(store, z_threshold=1.0, block_width=block_width)
    assert got.similarity.dtype == np.float64
    np.testing.assert_allclose(got.similarity, expected.similarity, atol=1e-13)
    assert got.lrds == pytest.approx(expected.lrds, abs=1e-13)
    assert got.sads == pytest.approx(expected.sads, abs=1e-13)
    np.testing.assert_allclose(got.layer_lrds, expected.layer_lrds, atol=1e-13)
    np.testing.assert_allclose(got.layer_sads, expected.layer_sads, atol=1e-13)
    np.testing.assert_array_equal(got.key_counts, expected.key_counts)
    np.testing.assert_array_equal(got.key_union, expected.key_union)
    for name in ("key_language", "key_layer", "key_neuron"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))
    np.testing.assert_allclose(got.key_z, expected.key_z, atol=1e-10)
    assert got.layer_names == ["layer_000", "layer_001", "layer_002"]


def test_compute_metrics_accepts_a_path(tmp_path, probe):
    layers, langs, items, _ = probe
    write_activation_store(tmp_path / "a.zarr", layers, langs, items)
    assert M.compute_metrics(tmp_path / "a.zarr", z_threshold=1.0).sklr > 0


# ------------------------------------------------------------------ outputs


def test_write_outputs(tmp_path, probe):
    layers, langs, items, _ = probe
    store = write_activation_store(tmp_path / "a.zarr", layers, langs, items)
    result = M.compute_metrics(store, z_threshold=1.0, block_width=3)
    files = M.MetricsFiles.in_folder(tmp_path / "out")
    M.write_outputs(result, files, title="toy", extra={"model": "toy"})
    assert sorted((tmp_path / "out").iterdir()) == sorted(files.paths().values())
    for path in files.paths().values():
        assert path.stat().st_size > 0
    summary = json.loads(files.summary.read_text())
    for key in (
        "lrds",
        "sads",
        "sklr",
        "sklr_fraction",
        "n_neurons",
        "z_threshold",
        "per_layer",
        "key_neurons_per_language",
        "n_samples",
        "languages",
        "n_items",
    ):
        assert key in summary
    assert summary["model"] == "toy" and summary["n_neurons"] == sum(WIDTHS)
    assert summary["languages"] == LANGS and summary["n_items"] == len(ITEMS)
    assert [row["layer"] for row in summary["per_layer"]] == [0, 1, 2]
    assert {"layer", "name", "lrds", "sads", "key_neurons"} <= set(summary["per_layer"][0])
    assert summary["files"] == {"similarity": "similarity.npy", "labels": "labels.tsv"}
    keys = pd.read_parquet(files.key_neurons)
    assert list(keys.columns) == ["language", "layer", "neuron", "z"]
    assert len(keys) == result.sklr and (keys.z > 1.0).all()
    s = np.load(files.similarity, allow_pickle=False)
    assert s.dtype == np.float32 and s.shape == (20, 20)
    labels = pd.read_csv(files.labels, sep="\t")
    assert list(labels.language) == langs and list(labels.item) == items


def test_threshold_no_neuron_passes(tmp_path, probe):
    layers, langs, items, _ = probe
    store = write_activation_store(tmp_path / "a.zarr", layers, langs, items)
    with pytest.warns(UserWarning, match="can never be exceeded"):
        result = M.compute_metrics(store, z_threshold=2.0, block_width=4)  # max z = √3
    assert result.sklr == 0 and result.key_counts.shape == (4, 3)
    files = M.MetricsFiles.in_folder(tmp_path / "out")
    M.write_outputs(result, files)
    summary = json.loads(files.summary.read_text())
    assert summary["sklr"] == 0 and summary["sklr_fraction"] == 0
    assert summary["key_neurons_per_language"] == dict.fromkeys(LANGS, 0)
    keys = pd.read_parquet(files.key_neurons)
    assert list(keys.columns) == ["language", "layer", "neuron", "z"] and len(keys) == 0
    assert keys.layer.dtype == np.int32 and keys.z.dtype == np.float64
    assert files.per_layer.stat().st_size > 0


def test_one_language(tmp_path):
    layers, langs, items = synthetic_activations(["en"], ITEMS, WIDTHS)
    store = write_activation_store(tmp_path / "a.zarr", layers, langs, items)
    with pytest.warns(UserWarning):
        result = M.compute_metrics(store, z_threshold=0.0)
    assert result.sklr == 0 and math.isnan(result.lrds)
    files = M.MetricsFiles.in_folder(tmp_path / "out")
    M.write_outputs(result, files)
    summary = json.loads(files.summary.read_text())
    assert summary["lrds"] is None and summary["per_layer"][0]["sads"] is None


# --------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "langs, items, message",
    [
        (["en", "en", "fr"], ["a", "b", "a"], "different numbers of items"),
        (["en", "en", "fr", "fr"], ["a", "b", "b", "a"], "item order of 'fr'"),
        (["en", "fr", "en", "fr"], ["a", "a", "b", "b"], "more than one block"),
        (["en", "en", "fr", "fr"], ["a", "a", "a", "a"], "more than once"),
        (["en", "en"], ["a"], "2 language labels for 1 items"),
    ],
)
def test_layout_errors(langs, items, message):
    with pytest.raises(M.MetricsInputError, match=message):
        M.probe_layout(langs, items)


def test_nan_in_store_names_the_layer(tmp_path, probe):
    layers, langs, items, _ = probe
    layers = [x.copy() for x in layers]
    layers[2][7, 5] = np.nan
    store = write_activation_store(tmp_path / "a.zarr", layers, langs, items)
    with pytest.raises(M.MetricsInputError, match=r"layer_002: NaN in sample 7 \(zh"):
        M.compute_metrics(store, z_threshold=1.0)


def test_bad_store_order_is_refused(tmp_path, probe):
    layers, langs, items, _ = probe
    store = write_activation_store(tmp_path / "a.zarr", layers, langs, items[:5] + items[5:][::-1])
    with pytest.raises(M.MetricsInputError, match="item order of 'zh'"):
        M.compute_metrics(store)


def test_zero_vector_is_refused(tmp_path, probe):
    layers, langs, items, _ = probe
    layers = [x.copy() for x in layers]
    for x in layers:
        x[3] = 0
    store = write_activation_store(tmp_path / "a.zarr", layers, langs, items)
    with pytest.raises(M.MetricsInputError, match=r"samples \[3\] are all zero"):
        M.compute_metrics(store, z_threshold=1.0)


def test_no_warning_when_threshold_is_reachable(probe):
    layers, langs, items, _ = probe
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M.metrics_from_arrays(layers, langs, items, z_threshold=1.0)
