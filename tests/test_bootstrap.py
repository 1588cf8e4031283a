"""The item bootstrap (docs/method.md §10) against a slow, direct bootstrap.

The slow way builds every resample explicitly: the drawn items' samples, duplicated
as new samples that keep their ORIGINAL item id, in every language, scored by the
pure functions of ``metrics`` (``similarity``, ``lrds_sads``, ``contribution_scores``
with items, ``zscores``, ``key_regions``).  The streamed pass must give the same
values resample by resample, and the intervals must be the percentiles of those.
"""

import copy
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import synthetic_activations, write_activation_store
from lingua_franca import bootstrap as BS
from lingua_franca import metrics as M
from lingua_franca.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
LANGS = ["en", "zh", "fr", "ar", "es", "pt", "vi"]  # 7 languages: z can reach √6 > 2
ITEMS = ["v3", "v1", "v4", "v0", "v2", "v5"]
WIDTHS = [6, 4, 7]  # layer 1, neuron 2 is dead in every sample (σ = 0)


@pytest.fixture(scope="module")
def probe():
    return synthetic_activations(LANGS, ITEMS, WIDTHS, seed=3)


@pytest.fixture(scope="module")
def store(tmp_path_factory, probe):
    layers, langs, items = probe
    return write_activation_store(tmp_path_factory.mktemp("boot") / "a.zarr", layers, langs, items)


def slow_bootstrap(layers, langs, items, draws, tau):
    """Per resample: LRDS, SADS (global, per layer), key counts (L, M), key regions."""
    n_lang, n = len(dict.fromkeys(langs)), len(draws[0])
    concat = np.concatenate(layers, axis=1)
    offsets = np.cumsum([0] + [x.shape[1] for x in layers])
    out = {"lrds": [], "sads": [], "layer_lrds": [], "layer_sads": [], "counts": [], "regions": []}
    for drawn in draws:
        # the resampled probe: language blocks, drawn items in draw order, original ids
        rows = np.array([lang * n + item for lang in range(n_lang) for item in drawn])
        r_langs, r_items = np.asarray(langs)[rows], np.asarray(items)[rows]
        lrds, sads = M.lrds_sads(M.similarity(concat[rows]), r_langs, r_items)
        per_layer = [M.lrds_sads(M.similarity(x[rows]), r_langs, r_items) for x in layers]
        a = M.normalize_rows(concat)[rows]  # a sample's vector is its own: not renormalised
        z = M.zscores(M.contribution_scores(a, r_langs, r_items))
        regions = M.key_regions(z, tau)
        out["lrds"].append(lrds)
        out["sads"].append(sads)
        out["layer_lrds"].append([s[0] for s in per_layer])
        out["layer_sads"].append([s[1] for s in per_layer])
        out["counts"].append(
            [
                [np.sum((r >= lo) & (r < hi)) for lo, hi in itertools.pairwise(offsets)]
                for r in regions
            ]
        )
        out["regions"].append([set(r.tolist()) for r in regions])
    return {k: (v if k == "regions" else np.array(v)) for k, v in out.items()}


def full_regions(layers, langs, tau):
    a = M.normalize_rows(np.concatenate(layers, axis=1))
    return [set(r.tolist()) for r in M.key_regions(M.zscores(M.contribution_scores(a, langs)), tau)]


# ------------------------------------------------------------------ draws


def test_draws_depend_only_on_seed_items_and_resamples():
    a = BS.draw_items(100, 50, seed=7)
    assert a.shape == (50, 100) and a.min() >= 0 and a.max() < 100
    np.testing.assert_array_equal(a, BS.draw_items(100, 50, seed=7))
    assert not np.array_equal(a, BS.draw_items(100, 50, seed=8))
    np.testing.assert_array_equal(BS.draw_items(100, 20, seed=7), a[:20])  # B only adds rows
    w = BS.item_weights(a, 100)
    assert w.shape == (50, 100) and np.all(w.sum(axis=1) == 100)
    np.testing.assert_array_equal(w[3], np.bincount(a[3], minlength=100))


def test_two_runs_give_identical_intervals(store):
    settings = BS.BootstrapSettings(resamples=40, level=0.9, seed=11)
    first = M.compute_metrics(store, z_threshold=1.5, block_width=5, bootstrap=settings)
    second = M.compute_metrics(store, z_threshold=1.5, block_width=5, bootstrap=settings)
    assert first.summary()["ci"] == second.summary()["ci"]
    np.testing.assert_array_equal(first.bootstrap.draws, BS.draw_items(len(ITEMS), 40, 11))


def test_settings_are_checked():
    for bad in ({"resamples": -1}, {"level": 1.0}, {"level": 0}, {"seed": -3}, {"resamples": 2.5}):
        with pytest.raises(ValueError, match="bootstrap"):
            BS.BootstrapSettings(**bad)
    assert not BS.BootstrapSettings(resamples=0).enabled


# --------------------------------------------------------------- formulas


def test_contribution_scores_leave_out_pairs_of_one_item():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(8, 5))
    langs = ["en"] * 5 + ["fr"] * 3
    items = ["a", "b", "a", "c", "a", "b", "b", "c"]  # drawn twice or thrice
    expected = np.zeros((2, 5))
    for index, lang in enumerate(["en", "fr"]):
        rows = [i for i in range(8) if langs[i] == lang]
        for i, j in itertools.combinations(rows, 2):
            if items[i] != items[j]:
                expected[index] += a[i] * a[j]
    np.testing.assert_allclose(M.contribution_scores(a, langs, items), expected, atol=1e-14)
    distinct = ["a", "b", "c", "d", "e", "a", "b", "c"]  # one sample per item: no change
    np.testing.assert_allclose(
        M.contribution_scores(a, langs, distinct), M.contribution_scores(a, langs), atol=1e-14
    )


@pytest.mark.parametrize(
    "tau, dtype, workers, sub_width, block_width",
    [
        (1.5, "float64", 0, None, 4096),  # inline, whole blocks: the GPU's code path
        (1.5, "float64", 2, 3, 5),  # threads, sub-blocks with tails
        (2.0, "float32", 2, 4, 4),
        (-0.5, "float64", 1, 2, 7),  # τ < 0: the dead neuron (z = 0) is key everywhere
    ],
)
def test_streamed_bootstrap_equals_slow_bootstrap(
    store, probe, tau, dtype, workers, sub_width, block_width, monkeypatch
):
    layers, langs, items = probe
    if sub_width:  # force small sub-blocks and resample chunks on a tiny probe
        init = BS.KeyRegionResampler.__init__

        def small(self, *args, **kwargs):
            init(self, *args, **{**kwargs, "sub_width": sub_width, "chunk": 7})

        monkeypatch.setattr(BS.KeyRegionResampler, "__init__", small)
    settings = BS.BootstrapSettings(resamples=30, level=0.9, seed=5)
    result = M.compute_metrics(
        store,
        z_threshold=tau,
        block_width=block_width,
        bootstrap=settings,
        workers=workers,
        bootstrap_dtype=dtype,
    )
    boot = result.bootstrap
    slow = slow_bootstrap(layers, langs, items, boot.draws, tau)
    np.testing.assert_allclose(boot.lrds, slow["lrds"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(boot.sads, slow["sads"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(boot.layer_lrds, slow["layer_lrds"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(boot.layer_sads, slow["layer_sads"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(boot.key_counts, slow["counts"])
    assert boot.key_counts.sum() > 0 and len(set(boot.sklr.tolist())) > 1  # it varies
    full = full_regions(layers, langs, tau)
    overlap = [[len(f & r) for f, r in zip(full, regions)] for regions in slow["regions"]]
    np.testing.assert_array_equal(boot.key_overlap, overlap)
    jaccard = [
        [len(f & r) / len(f | r) if f | r else 1.0 for f, r in zip(full, regions)]
        for regions in slow["regions"]
    ]
    np.testing.assert_allclose(boot.jaccard, jaccard, atol=1e-15)
    if tau < 0:
        dead = WIDTHS[0] + 2
        assert all(dead in r for regions in slow["regions"] for r in regions)

    # the intervals are the percentiles of the slow values
    ci = result.summary()["ci"]
    lo, hi = (1 - 0.9) / 2, (1 + 0.9) / 2
    assert ci["lrds"] == pytest.approx(np.quantile(slow["lrds"], [lo, hi]), abs=1e-12)
    assert ci["sads"] == pytest.approx(np.quantile(slow["sads"], [lo, hi]), abs=1e-12)
    sklr = slow["counts"].sum(axis=(1, 2))
    assert ci["sklr"] == pytest.approx(np.quantile(sklr, [lo, hi]))
    for i, lang in enumerate(LANGS):
        per_lang = slow["counts"][:, i].sum(axis=1)
        assert ci["key_neurons_per_language"][lang] == pytest.approx(
            np.quantile(per_lang, [lo, hi])
        )
        assert ci["region_stability"][lang] == pytest.approx(np.mean(np.array(jaccard)[:, i]))
    for m, row in enumerate(ci["per_layer"]):
        assert row["layer"] == m
        assert row["lrds"] == pytest.approx(np.quantile(slow["layer_lrds"][:, m], [lo, hi]))
        assert row["sads"] == pytest.approx(np.quantile(slow["layer_sads"][:, m], [lo, hi]))
        per_layer = slow["counts"][:, :, m].sum(axis=1)
        assert row["key_neurons"] == pytest.approx(np.quantile(per_layer, [lo, hi]))


def test_drawing_every_item_once_reproduces_the_full_data(store, probe):
    """A 'resample' of weight 1 per item is the probe itself: same scores, same regions."""
    layers, langs, _ = probe
    for dtype in ("float64", "float32"):
        full = M.compute_metrics(store, z_threshold=1.5)
        weights = np.ones((2, len(ITEMS)))
        sampler = BS.KeyRegionResampler(weights, len(LANGS), len(WIDTHS), 1.5, dtype=dtype)
        inv_norm = 1 / np.linalg.norm(np.concatenate(layers, axis=1), axis=1, keepdims=True)
        with sampler:
            for m, x in enumerate(layers):
                a = x * inv_norm
                is_key = M.zscores(M.contribution_scores(a, langs)) > 1.5
                sampler.add(m, a, is_key)
        np.testing.assert_array_equal(sampler.counts[0], full.key_counts)
        np.testing.assert_array_equal(sampler.overlap[0], full.key_counts.sum(axis=1))
        lrds, sads = BS.resampled_lrds_sads(full.similarity, len(LANGS), weights)
        np.testing.assert_allclose(lrds, full.lrds, atol=1e-14)
        np.testing.assert_allclose(sads, full.sads, atol=1e-14)


# ------------------------------------------------------------ degenerate data


def test_identical_items_give_zero_width_intervals(tmp_path):
    """Every item is the same vector within a language: no resample can change
    anything, so every interval is a point and every region is fully stable."""
    rng = np.random.default_rng(4)
    n_items, widths = 5, [5, 6]
    layers = []
    for w in widths:
        per_lang = 1.0 + rng.normal(0, 1, (len(LANGS), 1, w)) ** 2
        layers.append(np.repeat(per_lang, n_items, axis=1).reshape(-1, w))
    items = [f"v{i}" for i in range(n_items)]
    langs = [lang for lang in LANGS for _ in items]
    store = write_activation_store(tmp_path / "same.zarr", layers, langs, items * len(LANGS))
    result = M.compute_metrics(
        store, z_threshold=1.0, bootstrap=BS.BootstrapSettings(resamples=50, seed=2)
    )
    ci = result.summary()["ci"]
    assert result.sklr > 0
    assert ci["lrds"][0] == pytest.approx(ci["lrds"][1], abs=1e-12)
    assert ci["lrds"][0] == pytest.approx(result.lrds, abs=1e-12)
    assert ci["sads"] == pytest.approx([0, 0], abs=1e-12) and result.sads == pytest.approx(0)
    assert ci["sklr"] == [result.sklr, result.sklr]
    for lang, count in result.summary()["key_neurons_per_language"].items():
        assert ci["key_neurons_per_language"][lang] == [count, count]
        assert ci["region_stability"][lang] == 1.0
    for m, row in enumerate(ci["per_layer"]):
        assert row["key_neurons"] == [result.key_counts[:, m].sum()] * 2


def test_undefined_resamples_give_no_interval(tmp_path):
    """Two items: a resample that draws one item twice has no pair of different
    items, so its LRDS and SADS are undefined, and so is the interval."""
    layers, langs, items = synthetic_activations(LANGS[:3], ["a", "b"], WIDTHS)
    store = write_activation_store(tmp_path / "two.zarr", layers, langs, items)
    result = M.compute_metrics(store, z_threshold=0.5, bootstrap=BS.BootstrapSettings(resamples=10))
    boot, ci = result.bootstrap, result.summary()["ci"]
    same = boot.draws[:, 0] == boot.draws[:, 1]
    assert same.any() and not same.all()
    assert np.all(np.isnan(boot.lrds[same])) and np.all(np.isfinite(boot.lrds[~same]))
    assert math.isfinite(result.lrds) and ci["lrds"] is None and ci["sads"] is None
    assert ci["per_layer"][0]["lrds"] is None
    assert ci["sklr"] is not None  # key regions are defined in every resample
    assert BS.percentile_interval(np.array([1.0, np.nan]), 0.95) is None
    assert BS.percentile_interval(np.array([1.0, 3.0]), 0.5) == [1.5, 2.5]


# ---------------------------------------------------------------- outputs


def test_no_resamples_changes_nothing(store, tmp_path):
    plain = M.compute_metrics(store, z_threshold=1.5, block_width=4)
    off = M.compute_metrics(
        store, z_threshold=1.5, block_width=4, bootstrap=BS.BootstrapSettings(resamples=0)
    )
    assert off.bootstrap is None and "ci" not in off.summary()
    assert json.dumps(off.summary()) == json.dumps(plain.summary())


def test_metrics_json_carries_the_intervals(store, tmp_path):
    settings = BS.BootstrapSettings(resamples=25, level=0.8, seed=3)
    result = M.compute_metrics(store, z_threshold=1.5, bootstrap=settings)
    files = M.MetricsFiles.in_folder(tmp_path / "out")
    M.write_outputs(result, files)
    ci = json.loads(files.summary.read_text())["ci"]
    assert {k: ci[k] for k in ("level", "resamples", "seed", "unit")} == {
        "level": 0.8,
        "resamples": 25,
        "seed": 3,
        "unit": "item",
    }
    for key in ("lrds", "sads", "sklr"):
        lo, hi = ci[key]
        assert lo <= hi
    assert set(ci["key_neurons_per_language"]) == set(LANGS)
    assert all(0 <= v <= 1 for v in ci["region_stability"].values())
    assert [row["layer"] for row in ci["per_layer"]] == list(range(len(WIDTHS)))
    assert all({"lrds", "sads", "key_neurons"} <= set(row) for row in ci["per_layer"])


def test_config_fills_and_checks_bootstrap():
    demo = yaml.safe_load((ROOT / "workflow_config.yaml").read_text())
    config = copy.deepcopy(demo)
    config["analysis"].pop("bootstrap", None)
    assert load_config(config).analysis["bootstrap"] == {
        "resamples": 1000,
        "level": 0.95,
        "seed": 0,
    }
    for key, bad in (("level", 1.5), ("resamples", -1), ("seed", -1)):
        config = copy.deepcopy(demo)
        config["analysis"]["bootstrap"] = {key: bad}
        with pytest.raises(ConfigError, match=f"analysis.bootstrap.{key}"):
            load_config(config)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_identical_languages_have_no_key_neurons_in_any_resample(tmp_path, dtype):
    """Three languages with the same data: every neuron's scores are equal (σ = 0,
    z = 0) in every resample, even at τ = 0, where any rounding noise would count."""
    layers, _, items = synthetic_activations(["en"], ITEMS, [40, 300])
    layers = [np.tile(x, (3, 1)) for x in layers]
    langs = [lang for lang in ["en", "fr", "es"] for _ in ITEMS]
    store = write_activation_store(tmp_path / "same.zarr", layers, langs, items * 3)
    result = M.compute_metrics(
        store,
        z_threshold=0.0,
        bootstrap=BS.BootstrapSettings(resamples=40),
        bootstrap_dtype=dtype,
    )
    assert result.sklr == 0 and result.bootstrap.key_counts.sum() == 0
    assert result.summary()["ci"]["sklr"] == [0, 0]


def test_metrics_bootstrap_npz_keeps_every_resample(store, tmp_path):
    """Plain arrays, read back without pickle: every resample's values and the draws."""
    settings = BS.BootstrapSettings(resamples=20, level=0.8, seed=6)
    result = M.compute_metrics(store, z_threshold=1.5, bootstrap=settings)
    files = M.MetricsFiles.in_folder(tmp_path / "out")
    M.write_outputs(result, files, extra={"source": {"model": "m", "checkpoint": "c"}})
    boot = result.bootstrap
    with np.load(files.bootstrap, allow_pickle=False) as data:
        saved = {name: data[name] for name in data.files}
    assert (int(saved["resamples"]), float(saved["level"]), int(saved["seed"])) == (20, 0.8, 6)
    assert (str(saved["model"]), str(saved["checkpoint"])) == ("m", "c")
    assert saved["items"].tolist() == ITEMS and saved["languages"].tolist() == LANGS
    np.testing.assert_array_equal(saved["draws"], boot.draws)
    for name, values in {
        "lrds": boot.lrds,
        "sads": boot.sads,
        "sklr": boot.sklr,
        "layer_lrds": boot.layer_lrds,
        "layer_sads": boot.layer_sads,
        "key_per_layer": boot.key_per_layer,
        "key_per_language": boot.key_per_language,
    }.items():
        np.testing.assert_array_equal(saved[name], values, err_msg=name)
        assert saved[name].dtype == np.float64 and len(saved[name]) == 20
    # without resamples: the items, and resamples = 0
    off = M.compute_metrics(store, z_threshold=1.5, bootstrap=BS.BootstrapSettings(resamples=0))
    M.write_outputs(off, files)
    with np.load(files.bootstrap, allow_pickle=False) as data:
        assert int(data["resamples"]) == 0 and data["items"].tolist() == ITEMS


def test_step_changes_are_paired_against_a_slow_bootstrap(tmp_path):
    """Two checkpoints (different activations, the same probe) are resampled with the
    same draws; the interval of a change is the percentile interval of the
    resample-by-resample differences of the slow bootstrap's values."""
    from lingua_franca.aggregate import collect_tables, step_changes

    settings = BS.BootstrapSettings(resamples=30, level=0.9, seed=8)
    records, slow = [], []
    for step, seed in ((100, 3), (200, 9)):
        layers, langs, items = synthetic_activations(LANGS, ITEMS, WIDTHS, seed=seed)
        store = write_activation_store(tmp_path / f"s{step}.zarr", layers, langs, items)
        result = M.compute_metrics(store, z_threshold=1.5, bootstrap=settings)
        files = M.MetricsFiles.in_folder(tmp_path / f"step-{step}")
        source = {"model": "m", "checkpoint": f"step-{step}"}
        M.write_outputs(result, files, extra={"source": source})
        records.append(
            {
                **source,
                "family": "f",
                "step": step,
                "metrics": files.summary,
                "bootstrap": files.bootstrap,
            }
        )
        slow.append(slow_bootstrap(layers, langs, items, result.bootstrap.draws, 1.5))
        np.testing.assert_array_equal(result.bootstrap.draws, BS.draw_items(len(ITEMS), 30, 8))
    changes = step_changes(records, collect_tables(records)["metrics"]).set_index("metric")
    for metric, values in (
        ("lrds", [s["lrds"] for s in slow]),
        ("sads", [s["sads"] for s in slow]),
        ("sklr", [s["counts"].sum(axis=(1, 2)) for s in slow]),
    ):
        diffs = [values[1][b] - values[0][b] for b in range(30)]
        lo, hi = np.quantile(diffs, [0.05, 0.95])
        row = changes.loc[metric]
        assert (row["from"], row["to"]) == ("step-100", "step-200")
        assert [row["lo"], row["hi"]] == pytest.approx([lo, hi], abs=1e-12)
        assert row["outside_noise"] == (not lo <= 0 <= hi)
        summary = [json.loads(r["metrics"].read_text()) for r in records]
        assert row["change"] == pytest.approx(summary[1][metric] - summary[0][metric])
