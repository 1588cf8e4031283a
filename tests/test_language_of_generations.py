"""The language statistics of the ablation job (docs/method.md §11): the conditions
it samples under, the cell table against a direct count, the per-method verdicts,
the files, and the choice of the sampled prompts."""

import contextlib
import json

import numpy as np
import pandas as pd
import pytest
from helpers import CORPUS, all_hooks, tiny_model, tiny_tokenizer
from lingua_franca import language_of_generations as lg
from lingua_franca.corpora import CorpusError, choose_samples, prompt_pool
from lingua_franca.generations import Sampling
from lingua_franca.language_id import UNKNOWN, Label, cell_statistics

LANGS = ["en", "fr", "zh"]


class ByPrefix:
    """A stand-in identifier: a continuation's language is what its first token decodes
    to, looked up in ``table``, so the statistics can be checked by hand."""

    def __init__(self, labels):
        self.labels_of = labels

    def labels(self, texts):
        rows = [self.labels_of(t) for t in texts]
        return pd.DataFrame(
            {
                "label": [r for r in rows],
                "probability": [0.9] * len(rows),
                "raw_label": rows,
                "reason": ["identified"] * len(rows),
                "second_label": rows,
            }
        )

    def provenance(self):
        return {"identifier": "by prefix"}


def test_conditions_are_values_full_first_then_each_methods_regions():
    regions = {
        "zscore": {"random": {0: np.array([1, 2])}, "en": {0: np.array([3])}},
        "lape": {"random": {1: np.array([0])}, "fr": {1: np.array([4, 5])}},
    }
    conditions = lg.conditions_of(regions)
    assert conditions[0].interventions == ()  # the full model: nothing applied
    assert conditions[4].interventions[0].neurons[1].tolist() == [4, 5]
    assert [(c.name, c.method, c.kind, c.size) for c in conditions] == [
        ("full", "none", "full", 0),
        ("random", "zscore", "random", 2),
        ("en", "zscore", "language", 1),
        ("random", "lape", "random", 1),
        ("fr", "lape", "language", 2),
    ]


def test_run_samples_every_prompt_under_every_condition_and_counts_by_hand():
    model, tokenizer = tiny_model("llama"), tiny_tokenizer()
    prompts = {
        lang: [{"item": f"i{j}", "text": CORPUS[(i + j) % len(CORPUS)]} for j in range(3)]
        for i, lang in enumerate(LANGS)
    }
    seen = []

    @contextlib.contextmanager
    def apply(interventions):
        seen.append(interventions)
        yield

    # a continuation's "language" from a hash of its text: arbitrary but fixed
    def labels_of(text):
        return [*LANGS, "de", UNKNOWN][sum(map(ord, text)) % 5]

    conditions = lg.conditions_of(
        {"zscore": {"random": {0: np.array([1])}, "en": {0: np.array([2])}, "fr": {1: [3]}}}
    )
    result = lg.run(
        model,
        tokenizer,
        conditions,
        prompts,
        LANGS,
        max_new_tokens=5,
        batch_size=4,
        sampling=Sampling(seed=2),
        apply=apply,
        identifier=ByPrefix(labels_of),
        progress=False,
    )
    assert [c.interventions for c in conditions] == seen
    assert [i.op for c in conditions for i in c.interventions] == ["zero"] * 3
    assert all_hooks(model) == 0
    texts = result.texts
    assert len(texts) == len(conditions) * 9
    assert (texts["new_tokens"] == 5).all()
    assert list(texts["label"]) == [labels_of(t) for t in texts["continuation"]]
    cells = result.cells
    assert len(cells) == len(conditions) * len(LANGS)
    for row in cells.itertuples():
        part = texts[(texts["condition"] == row.condition) & (texts["language"] == row.language)]
        part = part[part["method"] == row.method]
        direct = cell_statistics(list(part["label"]), row.language, LANGS, list(part["label"]))
        assert row.n == 3 and row.retention == direct["retention"]
        assert row.share_other == direct["share_other"]
        assert row.own == (row.condition == row.language)
    summary = result.summary
    assert summary["sampling"]["temperature"] == 0.8 and summary["samples"] == {
        lang: 3 for lang in LANGS
    }
    assert set(summary["methods"]) == {"zscore"}


def cells_table(retention: dict) -> pd.DataFrame:
    """Cells with given retention: {(method, condition, language): (k, n)}."""
    rows = []
    for (method, condition, lang), (k, n) in retention.items():
        labels = [lang] * k + [UNKNOWN] * (n - k)
        kind = {"full": "full", "random": "random"}.get(condition, "language")
        rows.append(
            {
                "method": method,
                "condition": condition,
                "kind": kind,
                "language": lang,
                "own": condition == lang,
                **cell_statistics(labels, lang, LANGS),
            }
        )
    return pd.DataFrame(rows)


def test_own_deactivation_verdicts():
    n = 30
    cells = cells_table(
        {
            ("none", "full", "en"): (29, n),
            ("none", "full", "fr"): (28, n),
            ("none", "full", "zh"): (27, n),
            ("zscore", "random", "en"): (28, n),
            ("zscore", "random", "fr"): (28, n),
            ("zscore", "random", "zh"): (27, n),
            # en: own deactivation lowers it far more than fr's does
            ("zscore", "en", "en"): (5, n),
            ("zscore", "fr", "en"): (28, n),
            # fr: own lowers it a little more, within the noise
            ("zscore", "fr", "fr"): (25, n),
            ("zscore", "en", "fr"): (27, n),
            # zh has no region of its own: no verdict
            ("zscore", "en", "zh"): (20, n),
            ("zscore", "fr", "zh"): (26, n),
        }
    )
    summary = lg.method_summaries(cells, LANGS)["zscore"]
    per = summary["per_language"]
    assert per["en"]["own_lowers_most"] is True and per["en"]["own_lowers_most_ci"] is True
    assert per["fr"]["own_lowers_most"] is True and per["fr"]["own_lowers_most_ci"] is False
    assert per["zh"]["own_lowers_most"] is None and "own" not in per["zh"]
    assert summary["own_lowers_most"] == "2/2" and summary["own_lowers_most_ci"] == "1/2"
    assert summary["full"]["n"] == 90 and summary["full"]["retention"] == pytest.approx(84 / 90)
    assert summary["own"]["retention"] == pytest.approx(30 / 60)
    assert summary["others"]["n"] == 120
    assert summary["random"]["retention"] == pytest.approx(83 / 90)
    lo, hi = summary["own"]["lo"], summary["own"]["hi"]
    assert lo < 0.5 < hi


def test_the_files_are_written_and_the_summary_is_last(tmp_path):
    cells = cells_table({("none", "full", "en"): (3, 4), ("zscore", "en", "en"): (1, 4)})
    texts = pd.DataFrame(
        {
            "method": ["none"] * 4,
            "condition": ["full"] * 4,
            "continuation": ["a", "b", "", "d"],
            "continuation_ids": [[1], [2], [], [3]],
            "label": ["en", "en", UNKNOWN, "en"],
            "probability": [0.9, 0.8, np.nan, 0.7],
        }
    )
    result = lg.LanguageResult(texts, cells, {"languages": LANGS}, "tiny @ step-1")
    files = lg.LanguageFiles.in_folder(tmp_path)
    summary = lg.write_outputs(result, files, extra={"source": {"model": "tiny"}})
    assert all(p.exists() and p.stat().st_size for p in files.paths().values())
    lines = [json.loads(x) for x in files.language_texts.read_text().splitlines()]
    assert lines[2]["probability"] is None and "continuation_ids" not in lines[0]
    assert json.loads(files.language_summary.read_text()) == summary
    assert pd.read_csv(files.language_table).shape[0] == 2


def test_no_samples_still_writes_every_file(tmp_path):
    result = lg.LanguageResult(pd.DataFrame(), pd.DataFrame(), {}, "off")
    files = lg.LanguageFiles.in_folder(tmp_path)
    lg.write_outputs(result, files)
    assert all(p.exists() for p in files.paths().values())


# ------------------------------------------------------------------ the prompts


EMBEDDED = {"source": "embedded", "options": {"dir": "resources/corpus"}}
SETTINGS = {"samples": 30, "seed": 0}


def _probe(items):
    return pd.DataFrame({"item": items})


def test_sampled_prompts_avoid_the_probe_and_are_the_same_items_in_every_language():
    pool = prompt_pool("embedded", EMBEDDED["options"], LANGS)
    probed = list(dict.fromkeys(pool["id"]))[:100]
    chosen = choose_samples(EMBEDDED, SETTINGS, LANGS, _probe(probed))
    items = [p["item"] for p in chosen["en"]]
    assert len(items) == 30 == len(set(items))
    assert not set(items) & set(probed)
    assert all([p["item"] for p in chosen[lang]] == items for lang in LANGS)
    texts = pool.set_index(["id", "lang"])["text"]
    assert all(p["text"] == texts[p["item"], "zh"] for p in chosen["zh"])
    assert choose_samples(EMBEDDED, SETTINGS, LANGS, _probe(probed)) == chosen  # seeded
    other = choose_samples(EMBEDDED, {**SETTINGS, "seed": 1}, LANGS, _probe(probed))
    assert other != chosen
    # the embedded pool: the probe corpus and the held-out items (in no probe)
    assert any(i.startswith("h") for i in items) and len(pool["id"].unique()) == 200


def test_too_small_a_pool_is_an_error_before_any_model():
    pool = prompt_pool("embedded", EMBEDDED["options"], LANGS)
    probed = list(dict.fromkeys(pool["id"]))[:190]
    with pytest.raises(CorpusError, match="only 10 items the probe does not use"):
        choose_samples(EMBEDDED, SETTINGS, LANGS, _probe(probed))
    assert choose_samples(EMBEDDED, {**SETTINGS, "samples": 0}, LANGS, _probe(probed)) == {}


def test_labels_are_frozen_values():
    label = Label("en", 0.9, "en", "identified", "en")
    with pytest.raises(AttributeError):
        label.label = "fr"


# ------------------------------------------------------ across checkpoints and scales


def _checkpoint_doc(model, checkpoint, own):
    n = 30
    cells = cells_table(
        {
            ("none", "full", "en"): (29, n),
            ("none", "full", "fr"): (28, n),
            ("zscore", "random", "en"): (28, n),
            ("zscore", "random", "fr"): (27, n),
            ("zscore", "en", "en"): (own, n),
            ("zscore", "fr", "en"): (28, n),
            ("zscore", "fr", "fr"): (own, n),
            ("zscore", "en", "fr"): (27, n),
        }
    )
    return {
        "source": {"model": model, "checkpoint": checkpoint},
        "methods": lg.method_summaries(cells, ["en", "fr"]),
        "agreement": {"share": 0.97},
    }


def test_the_summary_has_a_row_per_checkpoint_and_method_and_its_figures(tmp_path):
    records = []
    for model, checkpoint, step, own in (("m", "step-1", 1, 27), ("m", "step-2", 2, 5)):
        path = tmp_path / f"{checkpoint}.json"
        path.write_text(json.dumps(_checkpoint_doc(model, checkpoint, own)))
        records.append(
            {
                "model": model,
                "family": "fam",
                "checkpoint": checkpoint,
                "step": step,
                "parameters": 1000,
                "language": path,
            }
        )
    names = lg.language_summary_names([("m", "fam", "step-1"), ("m", "fam", "step-2")], 30)
    assert names == [
        "language_of_generations.csv",
        "language_evolution_fam.png",
        "language_scale_fam.png",
    ]
    assert lg.language_summary_names([("m", "fam", "step-1")], 0) == []
    paths = lg.write_language_summary(records, {n: tmp_path / "out" / n for n in names}, 30)
    table = pd.read_csv(paths["language_of_generations.csv"])
    assert list(table["checkpoint"]) == ["step-1", "step-2"]
    assert list(table["own_lowers_most"]) == ["1/2", "2/2"]
    assert table["retention_own"].tolist() == pytest.approx([27 / 30, 5 / 30])
    assert (table["retention_full_lo"] < table["retention_full"]).all()
    assert all(paths[n].stat().st_size > 0 for n in names[1:])
    # a record wired to another checkpoint's file is caught
    records[1]["language"] = records[0]["language"]
    with pytest.raises(ValueError, match="is for checkpoint 'step-1'"):
        lg.write_language_summary(records, {n: tmp_path / "out" / n for n in names}, 30)


def test_the_page_shows_the_first_prompts_under_full_and_own_regions():
    """shown_texts: the full model and the method's language regions (not the random
    baseline, not another method's), the first prompts of each language."""
    rows = [
        {
            "method": m,
            "condition": c,
            "kind": k,
            "language": lang,
            "prompt_index": i,
            "prompt": "p",
            "continuation": "c",
            "new_tokens": 4,
            "first_eos": None,
            "label": lang,
        }
        for m, c, k in [
            ("none", "full", "full"),
            ("zscore", "en", "language"),
            ("zscore", "random", "random"),
            ("lape", "en", "language"),
        ]
        for lang in LANGS
        for i in range(5)
    ]
    result = lg.LanguageResult(pd.DataFrame(rows), pd.DataFrame(), {})
    shown = lg.shown_texts(result, "zscore", per_language=2)
    assert {(r["condition"], r["prompt_index"]) for r in shown} == {
        (c, i) for c in ("full", "en") for i in (0, 1)
    }
    assert len(shown) == 2 * 2 * len(LANGS)
    assert lg.shown_texts(lg.LanguageResult(pd.DataFrame(), pd.DataFrame(), {}), "zscore") == []
