"""Summary tables and evolution / scale figures from fabricated per-checkpoint results.

Two families: ``evo`` is one model with three checkpoints (the last two with the
same weights fingerprint: a published duplicate); ``sz`` is two sizes, the small
one with a single checkpoint that has no training step, no configured parameter
count and a null LRDS.  XStoryCloze has no French, one checkpoint lacks Chinese
cross-lingual data, one has Spanish stories too (outside the probe languages), and one
checkpoint has no XStoryCloze file at all.
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
RESULT_FILES = ("metrics", "xstorycloze", "ablation")  # a record's files
LANGS = ["en", "zh", "fr"]
WIDTH = 8  # two layers of 8 neurons: K = 16


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
        "provenance": {"weights_fingerprint": fingerprint, "n_parameters": n_parameters},
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
        write_json(
            folder / "metrics.json", fake_metrics(model, ckpt, counts, lrds, sads, fp, measured)
        )
        record = {
            "model": model,
            "family": family,
            "checkpoint": ckpt,
            "step": step,
            "parameters": params,
            "revision": None,
            "metrics": folder / "metrics.json",
        }
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


def test_duplicate_fingerprints(summary):
    m = read(summary[0], "metrics")
    flagged = m["duplicate_of"].dropna()
    assert flagged.to_dict() == {("evo-1b", "step-300"): "evo-1b/step-200"}
    assert m.loc[("evo-1b", "step-300"), "weights_fingerprint"] == "bbb"


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
        else:
            assert data.startswith(b"model,family,checkpoint,step,"), name


def test_summary_names_from_the_grid_alone():
    grid = [("org/m 1", "fam/x", "main"), ("m2", "fam/x", "main"), ("m2", "fam/x", "step-1")]
    assert summary_names(grid) == [
        "metrics.csv",
        "key_neurons_per_layer.csv",
        "key_neurons_per_language.csv",
        "xstorycloze.csv",
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
    expected = [*summary_names(grid_of(records)), "summary.html"]
    aggregate_job(identities, inputs, [outdir / name for name in expected])
    assert sorted(p.name for p in outdir.iterdir()) == sorted(expected)
    assert "<h2>metrics.csv</h2>" in (outdir / "summary.html").read_text()


def test_the_aggregate_wants_its_outputs_in_one_folder(fabricated, tmp_path):
    from lingua_franca.pipeline import aggregate as aggregate_job

    records = [dict(r) for r in fabricated if r["family"] == "evo"]
    names = [*summary_names(grid_of(records)), "summary.html"]
    outputs = [tmp_path / ("a" if i else "b") / name for i, name in enumerate(names)]
    with pytest.raises(ValueError, match="in one folder"):
        aggregate_job(records, {"metrics": [r["metrics"] for r in records]}, outputs)
    assert not any(tmp_path.iterdir())
