"""The registry of key-neuron methods (docs/method.md §9): the schema and the registry
agree; every registered method gives its table from a store; a further method's selection job
writes what compute_lape finds; the overlap against a hand computation; the ablation
deactivates every method's regions in one job, on one model load; the summary across
checkpoints."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from helpers import (
    CORPUS,
    synthetic_activations,
    tiny_model,
    tiny_tokenizer,
    write_activation_store,
)
from lingua_franca import lape, pipeline, zscore
from lingua_franca.ablation import compute_ablation, compute_method_ablation, random_fraction
from lingua_franca.bootstrap import BootstrapSettings
from lingua_franca.comparison import (
    ANY_LANGUAGE,
    OVERLAP_COLUMNS,
    method_summary_names,
    method_tables,
    overlap_table,
    write_method_summary,
)
from lingua_franca.config import load_schema, validate
from lingua_franca.methods import (
    COLUMNS,
    METHODS,
    PAPER_METHOD,
    KeyNeurons,
    SelectionFiles,
    further_methods,
    select,
)
from lingua_franca.metrics import compute_metrics
from lingua_franca.store import ActivationStore, StoreError, StoreWriter

LANGS = ["en", "fr", "zh", "de"]
ITEMS = [f"v{i}" for i in range(6)]
WIDTHS = [20, 12]
ACTIVITY = {"pattern": "test", "side": "output", "kind": "neuron", "active": "value > 0"}


def store_with_activity(path, seed=0):
    """Synthetic means (language blocks, as the metrics need) and activity counts in
    which a few neurons fire mostly in one language."""
    layers, langs, items = synthetic_activations(LANGS, ITEMS, WIDTHS, seed)
    rng = np.random.default_rng(seed)
    n_tokens = rng.integers(4, 20, len(langs)).astype(np.int32)
    k = sum(WIDTHS)
    rates = np.tile(rng.uniform(0.2, 0.6, k), (len(LANGS), 1))
    for lang in range(len(LANGS)):
        rates[lang, rng.choice(k, 3, replace=False)] = 0.95
        rates[lang, rng.choice(k, 3, replace=False)] = 0.0
    lang_index = np.repeat(np.arange(len(LANGS)), len(ITEMS))
    counts = rng.binomial(n_tokens[:, None], rates[lang_index]).astype(np.int32)
    active = np.split(counts, np.cumsum(WIDTHS)[:-1], axis=1)
    with StoreWriter(path, langs, items, WIDTHS, activity=ACTIVITY, row_chunk=5) as writer:
        writer.write(layers, active, n_tokens)
    return ActivationStore(path)


def analysis_defaults(**changes):
    """The config's analysis section with every default filled (the schema's)."""
    config = validate(
        {
            "languages": ["en", "fr"],
            "data": {kind: {"source": "embedded"} for kind in ("probe", "perplexity")}
            | {"xstorycloze": {"source": "embedded"}},
            "models": {"m": {"path": "."}},
        }
    )
    return {**config["analysis"], **changes}


# ------------------------------------------------------------------ the registry


def test_the_schema_lists_exactly_the_registered_methods():
    entry = load_schema()["properties"]["analysis"]["properties"]["key_neuron_methods"]
    assert entry["items"]["enum"] == list(METHODS)
    assert entry["contains"] == {"const": PAPER_METHOD}
    assert PAPER_METHOD in entry["default"] and set(entry["default"]) <= set(METHODS)
    analysis = analysis_defaults()
    assert analysis["key_neuron_methods"] == entry["default"]
    for name, method in METHODS.items():
        assert method.name == name and method.score
        assert callable(method.function())
        assert isinstance(method.settings(analysis), dict)  # read from the defaults
        assert set(method.small) <= set(method.settings(analysis))  # overrides, no new keys
        assert method.mem_mb > 0 and method.runtime > 0  # the selection job's resources
    assert further_methods(["zscore", "lape"]) == ["lape"]
    with pytest.raises(ValueError, match="unknown key-neuron methods"):
        further_methods(["zscore", "nope"])


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_gives_its_table_from_the_store(tmp_path, name):
    store = store_with_activity(tmp_path / "a.zarr")
    # the config's defaults, then the entry's own settings for a store of 32 neurons
    settings = {**METHODS[name].settings(analysis_defaults()), **METHODS[name].small}
    found = select(name, store, settings, block_width=7)  # blocks that cut across chunks
    assert isinstance(found, KeyNeurons) and found.method == name
    assert list(found.table.columns[:4]) == list(COLUMNS)
    assert len(found.table) > 0
    assert not found.table.duplicated(["language", "layer", "neuron"]).any()
    assert found.languages == LANGS and found.widths == WIDTHS
    assert found.counts().sum() == len(found.table)
    again = select(name, store, settings, block_width=4096)
    pd.testing.assert_frame_equal(again.table, found.table)
    with pytest.raises(ValueError, match="unknown key-neuron method"):
        select("nope", store, settings)


def test_the_zscore_entry_is_the_metrics_pass(tmp_path):
    store = store_with_activity(tmp_path / "a.zarr")
    found = zscore.key_neurons(store, z_threshold=1.2, block_width=8)
    expected = compute_metrics(store, z_threshold=1.2).key_neurons()
    pd.testing.assert_frame_equal(found.table, expected.rename(columns={"z": "score"}))
    assert found.summary["z_threshold"] == 1.2


def test_the_lape_entry_is_compute_lape(tmp_path):
    store = store_with_activity(tmp_path / "a.zarr")
    found = lape.key_neurons(store, top_rate=0.3, filter_rate=0.8)
    expected = lape.compute_lape(store, top_rate=0.3, filter_rate=0.8)
    pd.testing.assert_frame_equal(found.table, expected.key_neurons())
    assert found.summary["candidates"] == expected.n_candidates


def test_a_table_outside_the_store_is_refused():
    table = pd.DataFrame({"language": ["en"], "layer": [1], "neuron": [12], "score": [0.0]})
    with pytest.raises(ValueError, match="outside the layer widths"):
        KeyNeurons("x", table, ["en"], ["a", "b"], WIDTHS)
    with pytest.raises(ValueError, match="must start with"):
        KeyNeurons("x", table[["layer", "language", "neuron", "score"]], ["en"], ["a"], [20])


# ---------------------------------------------------------- the selection job


def test_select_key_neurons_writes_what_compute_lape_finds(tmp_path):
    store = store_with_activity(tmp_path / "a.zarr")
    files = SelectionFiles.in_folder(tmp_path / "lape")
    settings = {"top_rate": 0.3, "filter_rate": 0.8, "activation_bar_ratio": 0.9}
    pipeline.select_key_neurons(
        "lape",
        store.path,
        {name: str(path) for name, path in files.paths().items()},
        settings=settings,
        block_width=16,
    )
    expected = lape.compute_lape(store, **settings)
    table = pd.read_parquet(files.key_neurons)
    pd.testing.assert_frame_equal(table, expected.key_neurons())
    per_language = pd.read_csv(files.per_language)
    assert per_language["key_neurons"].tolist() == expected.key_counts.sum(axis=1).tolist()
    assert np.allclose(per_language["key_fraction"], per_language["key_neurons"] / sum(WIDTHS))
    per_layer = pd.read_csv(files.per_layer)
    assert per_layer["key_neurons"].tolist() == expected.key_counts.sum(axis=0).tolist()
    assert per_layer["width"].tolist() == WIDTHS
    for lang, row in zip(LANGS, expected.key_counts):
        assert per_layer[f"key_neurons_{lang}"].tolist() == row.tolist()
    summary = json.loads(files.summary.read_text())
    assert summary["method"] == "lape" and summary["settings"] == settings
    assert summary["candidates"] == expected.n_candidates
    assert summary["key_neurons"] == len(table)
    assert summary["score"] == METHODS["lape"].score


def test_lape_on_a_store_without_activity_counts_says_to_reextract(tmp_path):
    """A store written before extraction counted activity: LAPE stops naming the fix;
    the z-score method still runs on it."""
    layers, langs, items = synthetic_activations(LANGS, ITEMS, WIDTHS)
    store = write_activation_store(tmp_path / "old.zarr", layers, langs, items)
    files = SelectionFiles.in_folder(tmp_path / "lape")
    outputs = {name: str(path) for name, path in files.paths().items()}
    with pytest.raises(StoreError, match=r"no activity counts.*Delete it and rerun the extraction"):
        pipeline.select_key_neurons(
            "lape", store.path, outputs, settings={"top_rate": 0.3}, block_width=16
        )
    assert not any(path.exists() for path in files.paths().values())
    assert len(zscore.key_neurons(store, z_threshold=1.2).table) > 0


# --------------------------------------------------------------------- overlap


def regions(rows):
    """(language, layer, neuron) triples → a key-neuron table."""
    frame = pd.DataFrame(rows, columns=["language", "layer", "neuron"])
    return frame.assign(score=1.0).astype({"layer": "int32", "neuron": "int32"})


def test_the_overlap_table_against_a_hand_computation():
    widths = [6, 4]  # K = 10
    z = regions([("en", 0, 0), ("en", 0, 1), ("en", 0, 2), ("en", 1, 0), ("fr", 1, 3)])
    la = regions([("en", 0, 1), ("en", 0, 2), ("en", 0, 5), ("fr", 1, 3), ("zh", 0, 4)])
    table = overlap_table({"zscore": z, "lape": la}, ["en", "fr", "zh"], widths)
    assert list(table.columns) == OVERLAP_COLUMNS
    assert set(zip(table.method_a, table.method_b)) == {("zscore", "lape")}
    rows = table.set_index(["language", "layer"])
    # language, layer: neurons, |A|, |B|, |A∩B|, |A∪B|, Jaccard
    hand = {
        ("en", "0"): (6, 3, 3, 2, 4, 2 / 4),
        ("en", "1"): (4, 1, 0, 0, 1, 0.0),
        ("en", "all"): (10, 4, 3, 2, 5, 2 / 5),
        ("fr", "0"): (6, 0, 0, 0, 0, 1.0),  # both empty: they agree
        ("fr", "1"): (4, 1, 1, 1, 1, 1.0),
        ("fr", "all"): (10, 1, 1, 1, 1, 1.0),
        ("zh", "0"): (6, 0, 1, 0, 1, 0.0),
        ("zh", "all"): (10, 0, 1, 0, 1, 0.0),
        # any language: z {0,1,2,6,9}, lape {1,2,5,9,4} in global indices
        (ANY_LANGUAGE, "0"): (6, 3, 4, 2, 5, 2 / 5),
        (ANY_LANGUAGE, "1"): (4, 2, 1, 1, 2, 1 / 2),
        (ANY_LANGUAGE, "all"): (10, 5, 5, 3, 7, 3 / 7),
    }
    for key, (neurons, a, b, inter, union, jaccard) in hand.items():
        row = rows.loc[key]
        assert (row.neurons, row.size_a, row.size_b, row.intersection, row.union) == (
            neurons,
            a,
            b,
            inter,
            union,
        ), key
        assert math.isclose(row.jaccard, jaccard), key
        assert math.isclose(row.expected_intersection, a * b / neurons), key
    assert len(table) == 4 * 3  # (3 languages + any) × (2 layers + all)
    with pytest.raises(ValueError, match="not among"):
        overlap_table({"zscore": z, "lape": regions([("xx", 0, 0)])}, ["en", "fr", "zh"], widths)


def test_three_methods_give_every_pair():
    z = regions([("en", 0, 0)])
    table = overlap_table({"zscore": z, "lape": z, "third": regions([])}, ["en"], [4])
    assert list(dict.fromkeys(zip(table.method_a, table.method_b))) == [
        ("zscore", "lape"),
        ("zscore", "third"),
        ("lape", "third"),
    ]
    same = table[(table.method_b == "lape") & (table.layer == "all")]
    assert (same.jaccard == 1.0).all() and (same.intersection == 1).all()


# ---------------------------------------------------- the ablation job, one load

ABLATE_LANGS = ["en", "de", "fr"]
TEXTS = {
    "en": " ".join([CORPUS[0], CORPUS[4]] * 3),
    "de": " ".join([CORPUS[1]] * 6),
    "fr": " ".join([CORPUS[2], CORPUS[3]] * 3),
}


def ablation_inputs(tmp_path, widths):
    """The files pipeline.ablate reads: metrics.json, both methods' tables, texts, prompts."""
    (tmp_path / "metrics.json").write_text(
        json.dumps({"per_layer": [{"width": w} for w in widths], "provenance": {}})
    )
    z = regions([("en", 0, 1), ("en", 0, 7), ("en", 1, 3), ("de", 1, 5), ("fr", 0, 2)])
    z.rename(columns={"score": "z"}).to_parquet(tmp_path / "key_neurons.parquet")
    lape_table = regions([("en", 0, 9), ("de", 0, 1), ("de", 1, 11)])
    lape_table.to_parquet(tmp_path / "lape.parquet")
    texts = {}
    for lang, text in TEXTS.items():
        texts[lang] = tmp_path / f"{lang}.txt"
        texts[lang].write_text(text)
    prompts = {lang: [CORPUS[i]] for i, lang in enumerate(ABLATE_LANGS)}
    (tmp_path / "prompts.json").write_text(json.dumps({"prompts": prompts}))
    return texts, lape_table


def test_one_ablation_job_deactivates_every_methods_regions_on_one_model_load(
    tmp_path, monkeypatch
):
    model, tokenizer = tiny_model("bloom"), tiny_tokenizer()
    widths = [64, 64]  # BLOOM: 4 × hidden 16, two layers
    texts, lape_table = ablation_inputs(tmp_path, widths)
    loads = []

    def load_checkpoint(settings, device):
        loads.append(settings["checkpoint"])
        return model, tokenizer

    monkeypatch.setattr(pipeline, "load_checkpoint", load_checkpoint)
    own = {
        name: tmp_path / "out" / f"{name}{suffix}"
        for name, suffix in [
            ("perplexity", ".csv"),
            ("seeds", "_seeds.csv"),
            ("increase", "_increase.csv"),
            ("increase_ci", "_increase_ci.csv"),
            ("window_nll", "_window_nll.parquet"),
            ("conditions", "_conditions.csv"),
            ("heatmap", ".png"),
            ("generations", ".jsonl"),
            ("generations_table", ".html"),
            ("summary", ".json"),
        ]
    }
    kinds = ["perplexity", "seeds", "increase", "increase_ci", "window_nll"]
    kinds += ["conditions", "heatmap", "summary"]
    suffix = {"heatmap": ".png", "summary": ".json", "window_nll": ".parquet"}
    further = {
        f"methods_{kind}": [tmp_path / "methods" / "lape" / f"{kind}{suffix.get(kind, '.csv')}"]
        for kind in kinds
    }
    settings = {
        "model": "tiny",
        "checkpoint": "step-1",
        "family": "tiny",
        "hub_id": None,
        "revision": None,
        "step": 1,
        "location": "nowhere",
        "tokenizer": None,
        "neuron_module": None,
        "context_length": None,
    }
    common = {"seqlen": 8, "batch_size": 3, "seeds": [0, 1]}
    bootstrap = {"resamples": 50, "level": 0.9, "seed": 3}
    pipeline.ablate(
        settings,
        tmp_path / "metrics.json",
        tmp_path / "key_neurons.parquet",
        texts,
        tmp_path / "prompts.json",
        {**own, **further},
        languages=ABLATE_LANGS,
        device="cpu",
        max_new_tokens=3,
        prompts_per_language=1,
        methods={"lape": tmp_path / "lape.parquet"},
        bootstrap=bootstrap,
        **common,
    )
    assert loads == ["step-1"]  # one model load served both methods
    assert all(path.exists() for path in own.values())
    files = {kind: paths[0] for kind, paths in further.items()}
    assert all(path.exists() for path in files.values())

    ppl = pd.read_csv(own["perplexity"], index_col=0)
    lape_ppl = pd.read_csv(files["methods_perplexity"], index_col=0)
    assert lape_ppl["full"].equals(ppl["full"])  # the same model, restored between runs
    conditions = pd.read_csv(files["methods_conditions"], index_col=0)
    assert conditions.loc[ABLATE_LANGS, "neurons"].tolist() == [1, 2, 0]
    assert conditions.at["fr", "status"] == "no key neurons"
    assert lape_ppl["fr"].isna().all()
    summary = json.loads(files["methods_summary"].read_text())
    assert summary["method"] == "lape" and summary["full_matches_reference"] is True
    assert "generation" not in summary and summary["source"]["checkpoint"] == "step-1"
    # the random baseline is sized for the LAPE regions, not the z-score ones
    lape_fraction = random_fraction({"en": 1 / 128, "de": 2 / 128, "fr": 0.0})
    assert summary["random_fraction"] == lape_fraction
    assert json.loads(own["summary"].read_text())["random_fraction"] == random_fraction(
        {"en": 3 / 128, "de": 1 / 128, "fr": 1 / 128}
    )
    # the tables are those of the ablation of the LAPE regions on their own
    direct = compute_ablation(
        model,
        tokenizer,
        lape_table,
        widths,
        TEXTS,
        {},
        ABLATE_LANGS,
        prompts_per_language=0,
        progress=False,
        bootstrap=BootstrapSettings(**bootstrap),
        **common,
    )
    pd.testing.assert_frame_equal(lape_ppl, direct.perplexity, check_names=False)
    increase = pd.read_csv(files["methods_increase"], index_col=0)
    pd.testing.assert_frame_equal(increase, direct.increase, check_names=False)
    assert summary["diagonal_dominates"] == direct.summary["diagonal_dominates"]
    # its increases get their intervals as the z-score ones do (docs/method.md §10)
    intervals = pd.read_csv(files["methods_increase_ci"])
    pd.testing.assert_frame_equal(intervals, direct.increase_ci, check_dtype=False)
    assert summary["ci"] == direct.summary["ci"] and summary["ci"]["resamples"] == 50
    nll = pd.read_parquet(files["methods_window_nll"])
    pd.testing.assert_frame_equal(nll, direct.window_nll)


def test_a_further_method_reuses_the_full_model_pass(tmp_path):
    """The full model's windows are evaluated once per job: a further method's table
    takes the z-score run's full-model NLLs, and its numbers stay those of a run that
    measures everything itself."""
    model, tokenizer = tiny_model("bloom"), tiny_tokenizer()
    widths = [64, 64]
    _, lape_table = ablation_inputs(tmp_path, widths)
    common = {"seqlen": 8, "batch_size": 3, "seeds": [0], "progress": False}
    z = regions([("en", 0, 1), ("de", 1, 5)])
    reference = compute_ablation(model, tokenizer, z, widths, TEXTS, {}, ABLATE_LANGS, **common)
    windows = []
    hook = model.register_forward_pre_hook(
        lambda _, args, kwargs: windows.append(1), with_kwargs=True
    )
    try:
        reused = compute_method_ablation(
            model,
            tokenizer,
            lape_table,
            widths,
            TEXTS,
            ABLATE_LANGS,
            method="lape",
            reference=reference,
            **common,
        )
        reused_calls, windows[:] = len(windows), []
        alone = compute_method_ablation(
            model, tokenizer, lape_table, widths, TEXTS, ABLATE_LANGS, method="lape", **common
        )
        alone_calls = len(windows)
    finally:
        hook.remove()
    # one forward call per batch of 3 windows: exactly the full model's batches are spared
    texts = reference.summary["perplexity_text"]
    full_batches = sum(-(-texts[lang]["windows"] // 3) for lang in TEXTS)
    assert full_batches > 0 and alone_calls - reused_calls == full_batches
    assert reused.summary["full_matches_reference"] is True
    pd.testing.assert_frame_equal(reused.perplexity, alone.perplexity)
    pd.testing.assert_frame_equal(reused.window_nll, alone.window_nll)
    with pytest.raises(ValueError, match="full-model NLLs of language 'de': 0 values"):
        compute_ablation(
            model,
            tokenizer,
            lape_table,
            widths,
            TEXTS,
            {},
            ABLATE_LANGS,
            full={"en": reference.full_nlls()["en"]},
            **common,
        )


def test_the_method_files_must_match_the_methods():
    outputs = {"perplexity": "p.csv", "methods_perplexity": ["a.csv"], "methods_summary": []}
    with pytest.raises(ValueError, match="one file per key-neuron method"):
        pipeline._method_files(outputs, ["lape"])
    with pytest.raises(ValueError, match="none given"):
        pipeline._method_files({"perplexity": "p.csv"}, ["lape"])
    assert pipeline._method_files({"perplexity": "p.csv"}, []) == {}


# ------------------------------------------------------ across checkpoints


def write_json(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def fake_ablation(model, checkpoint, sizes, diagonal, off, dominates, fraction):
    return {
        "n_neurons": 100,
        "conditions": [{"name": "full", "neurons": 0, "kind": "full"}]
        + [{"name": lang, "neurons": n, "kind": "language"} for lang, n in sizes.items()],
        "random_fraction": fraction,
        "mean_diagonal_increase": diagonal,
        "mean_off_diagonal_increase": off,
        "diagonal_dominates": dominates,
        "source": {"model": model, "checkpoint": checkpoint},
    }


@pytest.fixture
def method_records(tmp_path):
    """Two checkpoints of one model and one of a larger size, with both methods' files."""
    records = []
    # the larger model has no configured parameter count: its metrics.json's is used
    grid = [("fam-s", 1e6, "step-10", 10), ("fam-s", 1e6, "step-20", 20), ("fam-l", None, "f", 20)]
    for i, (model, parameters, checkpoint, step) in enumerate(grid):
        folder = tmp_path / model / checkpoint
        z = regions([("en", 0, 0), ("en", 0, 1), ("fr", 1, i)])
        la = regions([("en", 0, 1), ("fr", 1, 2)])
        # de has no region under either method: J = 1, left out of the mean over languages
        overlap = overlap_table({"zscore": z, "lape": la}, ["en", "fr", "de"], [4, 4])
        folder.mkdir(parents=True)
        overlap.to_csv(folder / "overlap.csv", index=False)
        records.append(
            {
                "model": model,
                "family": "fam",
                "checkpoint": checkpoint,
                "step": step,
                "parameters": parameters,
                "ablation": write_json(
                    folder / "ablation.json",
                    fake_ablation(
                        model,
                        checkpoint,
                        {"en": 2, "fr": 1},
                        10.0 + i,
                        1.0,
                        {"en": True, "fr": False},
                        0.03,
                    ),
                ),
                "methods_ablation": {
                    "lape": write_json(
                        folder / "lape.json",
                        {
                            **fake_ablation(
                                model, checkpoint, {"en": 1, "fr": 1}, 5.0, 2.0, {"en": True}, 0.02
                            ),
                            # its intervals (docs/method.md §10), as the z-score one has them
                            "ci": {
                                "mean_diagonal_increase": [4.0, 6.5],
                                "mean_off_diagonal_increase": [1.5, 2.5],
                                "diagonal_dominates": {"en": False},
                            },
                        },
                    )
                },
                "overlap": folder / "overlap.csv",
                "metrics": write_json(
                    folder / "metrics.json",
                    {"provenance": {"n_parameters": 4_000_000}, "source": {"model": model}},
                ),
            }
        )
    return records


def test_the_method_summary_across_checkpoints(method_records, tmp_path):
    methods = ["zscore", "lape"]
    grid = [(r["model"], r["family"], r["checkpoint"]) for r in method_records]
    names = method_summary_names(grid, methods)
    assert names == [
        "methods.csv",
        "methods_overlap.csv",
        "methods_evolution_fam.png",
        "methods_scale_fam.png",
    ]
    assert method_summary_names(grid, ["zscore"]) == []
    tables = method_tables(method_records, methods)
    table = tables["methods.csv"]
    assert len(table) == 2 * len(method_records)
    first = table.iloc[0]
    assert (first.method, first.key_neurons, first.key_fraction) == ("zscore", 3, 0.03)
    assert first.diagonal_dominates == "1/2" and first.ppl_diagonal_increase == 10.0
    assert math.isnan(first.jaccard_zscore)
    second = table.iloc[1]
    assert (second.method, second.key_neurons, second.diagonal_dominates) == ("lape", 2, "1/1")
    # the intervals' columns, as in metrics.csv: the z-score rows here have none
    assert (second.ppl_diagonal_increase_lo, second.ppl_diagonal_increase_hi) == (4.0, 6.5)
    assert second.ppl_off_diagonal_increase_lo == 1.5 and second.diagonal_dominates_ci == "0/1"
    assert math.isnan(first.ppl_diagonal_increase_lo) and pd.isna(first.diagonal_dominates_ci)
    # checkpoint 0: z {0, 1} ∪ {4 + 0}, lape {1} ∪ {4 + 2}: any language 1 of 4 neurons
    assert math.isclose(second.jaccard_zscore, 1 / 4)
    # en: {0,1} vs {1}: 1/2; fr: {4} vs {6}: 0
    assert math.isclose(second.mean_jaccard_zscore, 1 / 4)
    third = table.iloc[5]  # the last checkpoint: fr's z region is neuron 2 of layer 1
    assert math.isclose(third.mean_jaccard_zscore, (1 / 2 + 1) / 2)
    assert table["parameters"].tolist() == [1e6] * 4 + [4e6] * 2
    overlap = tables["methods_overlap.csv"]
    assert len(overlap) == 3 * 4 * 3  # checkpoints × (en, fr, de, any) × (2 layers + all)
    assert overlap["checkpoint"].tolist()[:12] == ["step-10"] * 12
    assert (overlap[overlap["language"] == "de"]["jaccard"] == 1.0).all()
    paths = write_method_summary(method_records, methods, {n: tmp_path / n for n in names})
    for name in names:
        assert paths[name].stat().st_size > 0
    assert paths["methods_scale_fam.png"].read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="no path given"):
        write_method_summary(method_records, methods, {})
