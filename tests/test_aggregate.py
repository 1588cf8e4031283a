"""Summary tables and evolution / scale figures from fabricated per-checkpoint results.

Two families: ``evo`` is one model with three checkpoints (the last two with the
same weights fingerprint: a published duplicate); ``sz`` is two sizes, the small
one with a single checkpoint that has no training step, no configured parameter
count and a null LRDS.  XStoryCloze has no French, one checkpoint lacks Chinese
cross-lingual data, one has Spanish stories too (outside the probe languages), and one
checkpoint has no XStoryCloze file at all.  The ``evo`` checkpoints carry bootstrap
intervals (metrics.json ``ci``) and their resampled values (metrics_bootstrap.npz,
the same draws for all three).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lingua_franca import aggregate
from lingua_franca.aggregate import (
    collect_tables,
    grid_of,
    last_checkpoints,
    summary_names,
    write_summary,
)
from lingua_franca.plots import evolution as plots_evolution

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RESULT_FILES = ("metrics", "xstorycloze", "ablation", "bootstrap")  # a record's files
LANGS = ["en", "zh", "fr"]
WIDTH = 8  # two layers of 8 neurons: K = 16


def fake_ci(lrds, sads, counts):
    """metrics.json's ``ci``, each interval a fixed distance around its value."""
    counts = np.asarray(counts)
    return {
        "level": 0.9,
        "resamples": 50,
        "seed": 0,
        "unit": "item",
        "lrds": [lrds - 0.01, lrds + 0.02],
        "sads": [sads - 0.005, sads + 0.005],
        "sklr": [int(counts.sum()) - 2, int(counts.sum()) + 1.5],
        "key_neurons_per_language": {
            lang: [int(c) - 1, int(c) + 0.5] for lang, c in zip(LANGS, counts.sum(axis=0))
        },
        "region_stability": dict(zip(LANGS, [0.9, 0.75, 1.0])),
        "per_layer": [
            {
                "layer": m,
                "lrds": [0.1 * m - 0.05, 0.1 * m + 0.05],
                "sads": None,
                "key_neurons": [int(row.sum()) - 1.5, int(row.sum()) + 1],
            }
            for m, row in enumerate(counts)
        ],
    }


def fake_metrics(model, checkpoint, counts, lrds, sads, fingerprint, n_parameters=None):
    """metrics.json as MetricsResult.summary() + pipeline.metrics write it;
    ``counts``: key neurons, layers × languages."""
    counts = np.asarray(counts)
    k = WIDTH * len(counts)
    return {
        "languages": LANGS,
        "n_layers": len(counts),
        "n_neurons": k,
        "z_threshold": 2.0,
        "lrds": lrds,
        "sads": sads,
        "sklr": int(counts.sum()),
        "sklr_fraction": counts.sum() / k,
        "key_neurons_per_language": dict(zip(LANGS, map(int, counts.sum(axis=0)))),
        "key_fraction_per_language": dict(zip(LANGS, (int(c) / k for c in counts.sum(axis=0)))),
        "per_layer": [
            {
                "layer": m,
                "name": f"layer_{m:03d}",
                "width": WIDTH,
                "lrds": 0.1 * m,
                "sads": None,
                "key_neurons": int(row.sum()),
                "key_neurons_per_language": dict(zip(LANGS, map(int, row))),
            }
            for m, row in enumerate(counts)
        ],
        "source": {"model": model, "checkpoint": checkpoint},
        "provenance": {
            "weights_fingerprint": fingerprint,
            "activations_fingerprint": ACTIVATIONS.get((model, checkpoint)),
            "n_parameters": n_parameters,
        },
    }


#: the stores' content fingerprints (docs/method.md §7): evo-1b step-300 has step-200's
#: weight files, so its activations too; sz-m step-20's weight files differ from
#: step-10's (which has no fingerprint: built in memory), its activations do not
ACTIVATIONS = {
    ("evo-1b", "step-100"): "s100",
    ("evo-1b", "step-200"): "s200",
    ("evo-1b", "step-300"): "s200",
    ("sz-s", "main"): "s-sz",
    ("sz-m", "step-10"): "s-m",
    ("sz-m", "step-20"): "s-m",
}


def fake_xstorycloze(model, checkpoint, cross, mono):
    """xstorycloze.json: ``cross``/``mono`` {lang: acc or None (missing kind)}; fr has no data."""

    def result(acc):
        return (
            {"missing": True, "reason": "no en twin"}
            if acc is None
            else {"acc": acc, "acc_stderr": 0.01, "n": 100}
        )

    languages = {lang: {"cross": result(cross[lang]), "mono": result(mono[lang])} for lang in cross}
    languages["fr"] = {"missing": True, "reason": "no XStoryCloze data for fr"}
    return {
        "lm_eval_version": "0.4",
        "limit": None,
        "languages": languages,
        "source": {"model": model, "checkpoint": checkpoint},
    }


# (model, family, checkpoint, step, parameters, fingerprint, lrds, sads, counts, cross, mono)
GRID = [
    (
        "evo-1b",
        "evo",
        "step-100",
        100,
        1e9,
        "aaa",
        0.30,
        0.05,
        [[3, 2, 1], [2, 2, 2]],
        {"en": 0.60, "zh": 0.50, "es": 0.40},  # es: a story language outside the probe's
        {"en": 0.70, "zh": 0.60, "es": 0.56},
    ),
    (
        "evo-1b",
        "evo",
        "step-200",
        200,
        1e9,
        "bbb",
        0.20,
        0.08,
        [[2, 1, 1], [1, 1, 0]],
        {"en": 0.65, "zh": 0.55},
        {"en": 0.72, "zh": 0.64},
    ),
    (
        "evo-1b",
        "evo",
        "step-300",
        300,
        1e9,
        "bbb",
        0.20,
        0.08,
        [[2, 1, 1], [1, 1, 0]],
        {"en": 0.66, "zh": None},
        {"en": 0.74, "zh": 0.62},
    ),
    (
        "sz-s",
        "sz",
        "main",
        None,
        None,
        "ccc",
        None,
        0.02,
        [[4, 4, 4], [0, 0, 0]],
        {"en": 0.52, "zh": 0.48},
        {"en": 0.55, "zh": 0.51},
    ),
    (
        "sz-m",
        "sz",
        "step-10",
        10,
        2e7,
        None,
        0.25,
        0.04,
        [[1, 0, 0], [0, 0, 1]],
        None,
        None,
    ),  # no xstorycloze.json
    (
        "sz-m",
        "sz",
        "step-20",
        20,
        2e7,
        "eee",
        0.15,
        0.09,
        [[0, 0, 0], [0, 0, 0]],
        {"en": 0.58, "zh": 0.56},
        {"en": 0.61, "zh": 0.59},
    ),
]


def fake_resamples(model, checkpoint, lrds, sads, sklr, seed):
    """metrics_bootstrap.npz: 50 resamples of 4 items, the same draws for every checkpoint."""
    from lingua_franca.bootstrap import draw_items

    rng = np.random.default_rng(seed)
    return {
        "resamples": np.int64(50),
        "level": np.float64(0.9),
        "seed": np.int64(0),
        "draws": draw_items(4, 50, 0),
        "items": np.array(["a", "b", "c", "d"]),
        "lrds": rng.normal(lrds, 0.01, 50),
        "sads": rng.normal(sads, 0.02, 50),
        "sklr": rng.integers(sklr - 3, sklr + 3, 50).astype(float),
        "model": np.array(model),
        "checkpoint": np.array(checkpoint),
    }


def write_npz(path, arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


@pytest.fixture(scope="module")
def fabricated(tmp_path_factory):
    """The per-checkpoint files, written once for the module; returns the records."""
    tmp_path = tmp_path_factory.mktemp("aggregate")
    out = []
    for model, family, ckpt, step, params, fp, lrds, sads, counts, cross, mono in GRID:
        folder = tmp_path / "results" / model / ckpt
        measured = 5_000_000 if params is None else int(params)
        doc = fake_metrics(model, ckpt, counts, lrds, sads, fp, measured)
        if family == "evo":
            doc["ci"] = fake_ci(lrds, sads, counts)
        write_json(folder / "metrics.json", doc)
        record = {
            "model": model,
            "family": family,
            "checkpoint": ckpt,
            "step": step,
            "parameters": params,
            "revision": None,
            "metrics": folder / "metrics.json",
        }
        if family == "evo":  # step-300 has step-200's weights: the same resampled values
            record["bootstrap"] = folder / "metrics_bootstrap.npz"
            seed = 200 if ckpt == "step-300" else step
            write_npz(
                record["bootstrap"],
                {
                    **fake_resamples(model, ckpt, lrds, sads, int(np.sum(counts)), seed),
                    "checkpoint": np.array(ckpt),
                },
            )
        if cross is not None:
            write_json(folder / "xstorycloze.json", fake_xstorycloze(model, ckpt, cross, mono))
            record["xstorycloze"] = folder / "xstorycloze.json"
        if (model, ckpt) == ("evo-1b", "step-200"):  # the only one with an ablation
            write_json(
                folder / "ablation.json",
                {
                    "diagonal_dominates": {"en": True, "zh": False, "fr": None},
                    "mean_diagonal_increase": 12.5,
                    "mean_off_diagonal_increase": 1.5,
                    "ci": {
                        "diagonal_dominates": {"en": False, "zh": False, "fr": None},
                        "mean_diagonal_increase": [9.0, 16.0],
                        "mean_off_diagonal_increase": None,
                    },
                    "source": {"model": model, "checkpoint": ckpt},
                },
            )
            record["ablation"] = folder / "ablation.json"
        out.append(record)
    return out


@pytest.fixture
def records(fabricated):
    return [dict(r) for r in fabricated]  # a test may edit its copy


@pytest.fixture(scope="module")
def summary(fabricated, tmp_path_factory):
    """write_summary once for the module (figures are the slow part)."""
    outdir = tmp_path_factory.mktemp("summary")
    return outdir, write_summary(fabricated, in_folder(outdir, fabricated))


def in_folder(outdir, records):
    """Every summary file of the records' grid, in ``outdir``."""
    return {name: outdir / name for name in summary_names(grid_of(records))}


def read(outdir, name):
    return pd.read_csv(outdir / f"{name}.csv").set_index(["model", "checkpoint"], drop=False)


def test_metrics_csv(summary):
    outdir, _ = summary
    m = read(outdir, "metrics")
    assert list(m["checkpoint"]) == [g[2] for g in GRID]
    evo100, evo300 = m.loc[("evo-1b", "step-100")], m.loc[("evo-1b", "step-300")]
    small = m.loc[("sz-s", "main")]
    assert evo100["family"] == "evo" and evo100["step"] == 100 and evo100["parameters"] == 1e9
    assert evo100[["lrds", "sads", "sklr", "n_neurons", "n_layers"]].tolist() == [
        0.30,
        0.05,
        12,
        16,
        2,
    ]
    assert evo100["sklr_fraction"] == pytest.approx(12 / 16)
    # unweighted mean over the non-English languages with data; fr (no data) never
    # counts, and English (whose "cross" prompt is monolingual) has columns of its own
    assert evo100["cross_acc_mean"] == pytest.approx((0.50 + 0.40) / 2)
    assert evo100["mono_acc_mean"] == pytest.approx((0.60 + 0.56) / 2)
    assert evo100[["cross_n_languages", "mono_n_languages"]].tolist() == [2, 2]
    assert evo100[["cross_acc_en", "mono_acc_en"]].tolist() == [0.60, 0.70]
    assert evo100["xstorycloze_missing"] == "fr"
    # zh cross missing at step-300: no cross-lingual mean at all (English is not one)
    assert np.isnan(evo300["cross_acc_mean"]) and evo300["cross_acc_en"] == 0.66
    assert evo300[["cross_n_languages", "mono_n_languages"]].tolist() == [0, 1]
    assert evo300["mono_acc_mean"] == pytest.approx(0.62)
    assert evo300["xstorycloze_missing"] == "zh;fr"
    # null step, null LRDS, parameter count measured (provenance) when not configured
    assert np.isnan(small["step"]) and np.isnan(small["lrds"]) and small["parameters"] == 5_000_000
    no_eval = m.loc[("sz-m", "step-10")]
    assert np.isnan(no_eval["cross_acc_mean"]) and no_eval["cross_n_languages"] == 0
    # deactivation: own vs others' increase, and for how many languages (of those with
    # a verdict; fr had no key region) the own one is the largest
    ablated = m.loc[("evo-1b", "step-200")]
    assert ablated[["ppl_diagonal_increase", "ppl_off_diagonal_increase"]].tolist() == [12.5, 1.5]
    assert ablated["diagonal_dominates"] == "1/2"
    assert np.isnan(evo100["ppl_diagonal_increase"])
    # with intervals: the interval rule's count, the mean's interval; none where absent
    assert ablated["diagonal_dominates_ci"] == "0/2"
    assert ablated[["ppl_diagonal_increase_lo", "ppl_diagonal_increase_hi"]].tolist() == [9, 16]
    assert np.isnan(ablated["ppl_off_diagonal_increase_lo"])
    assert np.isnan(evo100["diagonal_dominates_ci"])


def test_metrics_csv_interval_columns(summary):
    m = read(summary[0], "metrics")
    evo100 = m.loc[("evo-1b", "step-100")]
    assert evo100[["lrds_lo", "lrds_hi"]].tolist() == pytest.approx([0.29, 0.32])
    assert evo100[["sads_lo", "sads_hi"]].tolist() == pytest.approx([0.045, 0.055])
    assert evo100[["sklr_lo", "sklr_hi"]].tolist() == [10, 13.5]  # not rounded
    assert evo100[["sklr_fraction_lo", "sklr_fraction_hi"]].tolist() == [10 / 16, 13.5 / 16]
    columns = list(m.columns)
    assert columns.index("lrds_lo") == columns.index("lrds") + 1  # beside their value
    no_ci = m.loc[("sz-s", "main")]
    assert no_ci[["lrds_lo", "sads_hi", "sklr_lo", "sklr_fraction_hi"]].isna().all()


def test_duplicates_found_by_weight_files_or_by_activations(summary):
    """docs/method.md §7: equal weight files, or identical activation stores (equal
    models in different files), with the signals that found each duplicate."""
    m = read(summary[0], "metrics")
    flagged = m.dropna(subset=["duplicate_of"])
    assert flagged["duplicate_of"].to_dict() == {
        ("evo-1b", "step-300"): "evo-1b/step-200",
        ("sz-m", "step-20"): "sz-m/step-10",
    }
    assert flagged["duplicate_by"].to_dict() == {
        ("evo-1b", "step-300"): "weights+activations",
        ("sz-m", "step-20"): "activations",
    }
    assert m.loc[("evo-1b", "step-300"), "weights_fingerprint"] == "bbb"
    assert m.loc[("sz-m", "step-20"), "activations_fingerprint"] == "s-m"
    assert m["duplicate_by"].isna().sum() == len(GRID) - 2
    columns = list(m.columns)
    assert columns.index("duplicate_by") == columns.index("duplicate_of") + 1


def test_the_evolution_figure_names_each_duplicate_and_its_signal(records):
    m = collect_tables(records)["metrics"]
    assert plots_evolution.duplicate_notes(m) == [
        "same weight files and activations: evo-1b/step-300 = evo-1b/step-200",
        "same activations (other weight files): sz-m/step-20 = sz-m/step-10",
    ]
    assert plots_evolution.duplicate_notes(m[m["family"] == "evo"].iloc[:2]) == []


def test_long_tables(summary):
    outdir, _ = summary
    layers = read(outdir, "key_neurons_per_layer")
    assert len(layers) == 2 * len(GRID)
    row = layers.loc[("evo-1b", "step-100")].set_index("layer").loc[0]
    columns = ["key_neurons", "key_neurons_en", "key_neurons_zh", "key_neurons_fr", "step", "width"]
    assert row[columns].tolist() == [6, 3, 2, 1, 100, 8]
    langs = read(outdir, "key_neurons_per_language")
    evo = langs.loc[("evo-1b", "step-100")].set_index("language")
    assert evo["key_neurons"].to_dict() == {"en": 5, "zh": 4, "fr": 3}
    assert evo.loc["en", "key_fraction"] == pytest.approx(5 / 16)
    # intervals: per language and per layer, counts' bounds not rounded
    assert evo.loc["en", ["key_neurons_ci_lo", "key_neurons_ci_hi"]].tolist() == [4, 5.5]
    assert evo["region_stability"].to_dict() == {"en": 0.9, "zh": 0.75, "fr": 1.0}
    assert row[["key_neurons_ci_lo", "key_neurons_ci_hi", "lrds_lo", "lrds_hi"]].tolist() == [
        4.5,
        7,
        -0.05,
        0.05,
    ]
    assert np.isnan(row["sads_lo"])
    assert layers.loc[("sz-s", "main"), "key_neurons_ci_lo"].isna().all()

    xsc = read(outdir, "xstorycloze")
    assert len(xsc) == (4 + 4 * 3) * 2  # checkpoints with a file × languages × kinds
    fr = xsc[xsc["language"] == "fr"]
    assert fr["missing"].all() and (fr["reason"] == "no XStoryCloze data for fr").all()
    zh = xsc.loc[("evo-1b", "step-300")].set_index(["language", "kind"])
    assert zh.loc[("zh", "cross"), "missing"] and zh.loc[("zh", "cross"), "reason"] == "no en twin"
    assert not zh.loc[("zh", "mono"), "missing"] and zh.loc[("zh", "mono"), "acc"] == 0.62
    assert zh.loc[("en", "cross"), "n"] == 100


def test_last_checkpoints(records):
    last = last_checkpoints(collect_tables(records)["metrics"])
    assert list(zip(last["model"], last["checkpoint"])) == [
        ("evo-1b", "step-300"),
        ("sz-s", "main"),
        ("sz-m", "step-20"),
    ]


def test_every_promised_file_is_written(summary):
    outdir, paths = summary
    grid = [(g[0], g[1], g[2]) for g in GRID]
    promised = [str(outdir / name) for name in summary_names(grid)]
    assert sorted(map(str, paths.values())) == sorted(promised)
    assert sorted(map(str, outdir.iterdir())) == sorted(promised)
    assert f"{outdir}/evolution_evo.png" in promised and f"{outdir}/scale_sz.png" in promised
    assert f"{outdir}/key_layers_sz-m.png" in promised
    assert f"{outdir}/key_languages_evo-1b.png" in promised
    for name in promised:
        data = Path(name).read_bytes()
        if name.endswith(".png"):
            assert data[:8] == PNG_MAGIC and len(data) > 2000, name
        elif name.endswith("changes.csv"):
            assert data.startswith(b"model,from,to,metric,change,lo,hi,outside_noise\n")
        else:
            assert data.startswith(b"model,family,checkpoint,step,"), name


def test_summary_names_from_the_grid_alone():
    grid = [("org/m 1", "fam/x", "main"), ("m2", "fam/x", "main"), ("m2", "fam/x", "step-1")]
    assert summary_names(grid) == [
        "metrics.csv",
        "key_neurons_per_layer.csv",
        "key_neurons_per_language.csv",
        "xstorycloze.csv",
        "changes.csv",
        "evolution_fam_x.png",
        "scale_fam_x.png",
        "key_layers_org_m_1.png",
        "key_languages_org_m_1.png",
        "key_layers_m2.png",
        "key_languages_m2.png",
    ]
    with pytest.raises(ValueError, match="same summary file"):
        summary_names([("a", "f/1", "c"), ("b", "f 1", "c")])


def test_a_missing_output_path_is_an_error(fabricated, tmp_path):
    paths = in_folder(tmp_path, fabricated)
    del paths["scale_sz.png"]
    with pytest.raises(ValueError, match=r"no path given for summary files \['scale_sz.png'\]"):
        write_summary(fabricated, paths)


def test_wrong_file_for_record(records):
    records[0]["metrics"] = records[1]["metrics"]
    with pytest.raises(ValueError, match="step-200"):
        collect_tables(records)


def test_degenerate_figures(tmp_path, records):
    """One checkpoint without a step, no parameter count, no rows: still a figure."""
    tables = collect_tables(records[3:4])  # sz-s/main only
    m = tables["metrics"]
    plots_evolution.plot_evolution(m, tmp_path / "e.png", family="sz")
    plots_evolution.plot_scale(m.assign(parameters=pd.NA), tmp_path / "s.png", family="sz")
    empty = tables["key_neurons_per_layer"].iloc[:0]
    plots_evolution.plot_key_layers(empty, tmp_path / "l.png", model="none")
    no_languages = tables["key_neurons_per_language"].iloc[:0]
    plots_evolution.plot_key_languages(no_languages, tmp_path / "g.png")
    for name in ("e", "s", "l", "g"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == PNG_MAGIC


def test_records_pair_identities_with_the_rules_input_lists():
    from lingua_franca.config import load_config_file

    cfg = load_config_file(Path(__file__).parents[1] / "workflow_config.yaml")
    grid = aggregate.config_grid(cfg)
    assert ("toy-bloom-m", "toy-bloom", "step-600") in grid
    identities = [cfg.identity(c.model, c.name) for c in cfg.grid()]
    metrics = [f"m{i}.json" for i in range(len(grid))]
    ablations = [f"a{i}.json" for i in range(len(grid))]
    records = aggregate.checkpoint_records(identities, metrics=metrics, ablation=ablations)
    assert grid_of(records) == grid
    assert [(r["metrics"], r["ablation"]) for r in records] == list(zip(metrics, ablations))
    assert "xstorycloze" not in records[0]
    assert {r["family"] for r in records} == {"toy-bloom", "toy-llama"}
    with pytest.raises(ValueError, match="2 xstorycloze files for 7 checkpoints"):
        aggregate.checkpoint_records(identities, xstorycloze=["x", "y"])


def test_the_aggregate_leaves_only_the_current_grids_files(fabricated, tmp_path):
    """A model removed from the config leaves no figure of its own behind."""
    from lingua_franca.pipeline import aggregate as aggregate_job

    outdir = tmp_path / "summary"
    outdir.mkdir()
    for stale in ("evolution_gone.png", "key_layers_gone-7b.png", "notes.txt"):
        (outdir / stale).write_bytes(PNG_MAGIC)
    records = [dict(r) for r in fabricated if r["family"] == "evo"]
    identities = [{k: v for k, v in r.items() if k not in RESULT_FILES} for r in records]
    inputs = {kind: [r.get(kind) for r in records] for kind in RESULT_FILES}
    expected = [*summary_names(grid_of(records)), "summary.html", "provenance.json"]
    aggregate_job(identities, inputs, [outdir / name for name in expected])
    assert sorted(p.name for p in outdir.iterdir()) == sorted(expected)
    assert "<h2>metrics.csv</h2>" in (outdir / "summary.html").read_text()


def test_the_aggregate_wants_its_outputs_in_one_folder(fabricated, tmp_path):
    from lingua_franca.pipeline import aggregate as aggregate_job

    records = [dict(r) for r in fabricated if r["family"] == "evo"]
    names = [*summary_names(grid_of(records)), "summary.html", "provenance.json"]
    outputs = [tmp_path / ("a" if i else "b") / name for i, name in enumerate(names)]
    with pytest.raises(ValueError, match="in one folder"):
        aggregate_job(records, {"metrics": [r["metrics"] for r in records]}, outputs)
    assert not any(tmp_path.iterdir())


def test_step_changes_against_a_hand_computation(summary, fabricated):
    """Each change between consecutive checkpoints of a model, with the percentiles of
    the differences of the two checkpoints' resampled values, resample by resample."""
    changes = pd.read_csv(summary[0] / "changes.csv")
    assert list(changes.columns) == aggregate.CHANGE_COLUMNS
    pairs = list(dict.fromkeys(zip(changes["model"], changes["from"], changes["to"])))
    assert pairs == [
        ("evo-1b", "step-100", "step-200"),
        ("evo-1b", "step-200", "step-300"),
        ("sz-m", "step-10", "step-20"),  # sz-s has one checkpoint: no change
    ]
    by_name = {r["checkpoint"]: r for r in fabricated if r["model"] == "evo-1b"}
    metrics = read(summary[0], "metrics").loc["evo-1b"]
    for _, before, after in pairs[:2]:
        with np.load(by_name[before]["bootstrap"]) as a, np.load(by_name[after]["bootstrap"]) as b:
            for metric in ("lrds", "sads", "sklr"):
                diffs = [b[metric][i] - a[metric][i] for i in range(50)]
                lo, hi = np.quantile(diffs, [0.05, 0.95])
                row = changes[(changes["from"] == before) & (changes["metric"] == metric)].iloc[0]
                change = metrics.loc[after, metric] - metrics.loc[before, metric]
                assert row["change"] == pytest.approx(change)
                assert [row["lo"], row["hi"]] == pytest.approx([lo, hi])
                assert row["outside_noise"] == (not lo <= 0 <= hi)
    lrds = changes[(changes["from"] == "step-100") & (changes["metric"] == "lrds")].iloc[0]
    assert lrds["outside_noise"] and lrds["hi"] < 0  # -0.1 against a spread of ~0.01
    same = changes[changes["from"] == "step-200"]  # identical weights, identical resamples
    assert (same["lo"] == 0).all() and (same["hi"] == 0).all() and not same["outside_noise"].any()
    no_resamples = changes[changes["model"] == "sz-m"]
    assert no_resamples[["lo", "hi", "outside_noise"]].isna().all().all()
    assert no_resamples.set_index("metric").loc["lrds", "change"] == pytest.approx(-0.1)


def test_changes_refuse_resamples_drawn_differently(records, tmp_path):
    evo = [dict(r) for r in records if r["model"] == "evo-1b"]
    with np.load(evo[1]["bootstrap"]) as data:
        arrays = dict(data)
    other = tmp_path / "other.npz"
    write_npz(other, {**arrays, "draws": arrays["draws"][::-1]})
    evo[1]["bootstrap"] = other
    metrics = collect_tables(evo)["metrics"]
    with pytest.raises(ValueError, match="resampled differently"):
        aggregate.step_changes(evo, metrics)
    evo[1]["bootstrap"] = evo[0]["bootstrap"]  # another checkpoint's file
    with pytest.raises(ValueError, match="is for checkpoint 'step-100', not 'step-200'"):
        aggregate.step_changes(evo, metrics)


def test_a_hindi_count_is_not_an_interval(tmp_path):
    """key_neurons_hi is Hindi's count (an integer); a count's bounds are key_neurons_ci_*."""
    doc = fake_metrics("m", "c", [[3, 1, 2]], 0.2, 0.1, None)
    doc["languages"] = ["hi", "lo", "en"]
    doc["per_layer"][0]["key_neurons_per_language"] = {"hi": 3, "lo": 1, "en": 2}
    doc["ci"] = {"per_layer": [{"layer": 0, "key_neurons": [4.5, 7.0]}]}
    write_json(tmp_path / "metrics.json", doc)
    record = {
        "model": "m",
        "family": "f",
        "checkpoint": "c",
        "step": 1,
        "metrics": tmp_path / "metrics.json",
    }
    layer = collect_tables([record])["key_neurons_per_layer"].iloc[0]
    assert (layer["key_neurons_hi"], layer["key_neurons_lo"]) == (3, 1)
    assert (layer["key_neurons_ci_lo"], layer["key_neurons_ci_hi"]) == (4.5, 7.0)


def test_figures_draw_the_intervals(records, tmp_path):
    """Every figure across checkpoints and scales changes when its intervals are
    dropped from the tables: they are drawn."""
    tables = collect_tables(records)
    evo = {name: table[table["family"] == "evo"] for name, table in tables.items()}

    def without(table):
        return table.drop(columns=[c for c in table if c.endswith(("_lo", "_hi"))])

    figures = [
        (plots_evolution.plot_evolution, evo["metrics"]),
        (plots_evolution.plot_scale, last_checkpoints(tables["metrics"])),
        (plots_evolution.plot_key_layers, evo["key_neurons_per_layer"]),
        (plots_evolution.plot_key_languages, evo["key_neurons_per_language"]),
    ]
    for i, (draw, table) in enumerate(figures):
        draw(table, tmp_path / f"{i}-ci.png")
        draw(without(table), tmp_path / f"{i}-plain.png")
        with_ci, plain = ((tmp_path / f"{i}-{k}.png").read_bytes() for k in ("ci", "plain"))
        assert with_ci[:8] == PNG_MAGIC and with_ci != plain, draw.__name__
