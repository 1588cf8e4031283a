"""Deactivation, perplexity and the ablation outputs (docs/method.md §5), on tiny random models."""

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import CORPUS, HAND, all_hooks, tiny_model, tiny_tokenizer
from lingua_franca import ablation
from lingua_franca.ablation import (
    AblationFiles,
    NonFinitePerplexityError,
    compute_ablation,
    contains_zero,
    diagonal_summary,
    increase_intervals,
    interval_summary,
    perplexity,
    perplexity_from_nlls,
    ppl_increase,
    random_fraction,
    random_neurons,
    regions_by_language,
    window_nlls,
    windows,
    write_outputs,
)
from lingua_franca.activations import tokenize
from lingua_franca.architectures import decoder_layers
from lingua_franca.bootstrap import BootstrapSettings, draw_items, draw_windows
from lingua_franca.interventions import zero_neurons
from lingua_franca.plots import plot_ppl_increase

LANGS = ["en", "de", "fr"]
TEXTS = {
    "en": " ".join([CORPUS[0], CORPUS[4]] * 3),
    "de": " ".join([CORPUS[1]] * 6),
    "fr": " ".join([CORPUS[2], CORPUS[3]] * 3),
}
PROMPTS = {
    "en": ["the cat sat", "a long sentence", "the dog", "unused"],
    "de": ["der Hund", "im Haus"],
    "fr": ["le chat", "la maison", "le lit"],
}
SEQLEN, BATCH = 8, 3


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()  # no pad token: generation must fall back to eos


def widths_of(model, arch):
    layers = decoder_layers(model)[1]
    return [layer.get_submodule(HAND[arch][2]).weight.shape[1] for layer in layers]


def key_table(rows):
    """rows: (language, layer, neuron) triples → a key_neurons.parquet-like frame."""
    frame = pd.DataFrame(rows, columns=["language", "layer", "neuron"])
    frame["z"] = 2.5
    return frame.astype({"layer": "int32", "neuron": "int32"})


def lang_windows(tokenizer, lang, seqlen=SEQLEN):
    return windows(tokenize(tokenizer, [TEXTS[lang]])[0], seqlen)


def compute(model, tokenizer, key, widths, texts=TEXTS, prompts=PROMPTS, **kw):
    """compute_ablation with the test defaults (short generations, no progress bars)."""
    kw = {"seqlen": SEQLEN, "batch_size": BATCH, "seeds": [0], "max_new_tokens": 5, **kw}
    return compute_ablation(
        model, tokenizer, key, widths, texts, prompts, LANGS, progress=False, **kw
    )


def run(model, tokenizer, key, widths, outdir, **kw):
    """compute, then write every file into ``outdir``; the ablation.json content."""
    return write_outputs(compute(model, tokenizer, key, widths, **kw), files(outdir))


def files(folder):
    return AblationFiles.in_folder(folder)


def zeroed_copy(model, arch, neurons):
    """The reference: a copy whose output projections have the listed input columns zeroed."""
    edited = copy.deepcopy(model)
    with torch.no_grad():
        for layer, index in neurons.items():
            proj = decoder_layers(edited)[1][layer].get_submodule(HAND[arch][2])
            proj.weight[:, torch.as_tensor(index, dtype=torch.long)] = 0
    return edited


# ------------------------------------------------------------------ pure pieces


def test_windows_drop_the_remainder():
    w = windows(list(range(23)), 5)
    assert w.shape == (4, 5) and w.dtype == torch.long
    assert w.flatten().tolist() == list(range(20))
    assert windows(torch.arange(10), 5).shape == (2, 5)
    with pytest.raises(ValueError, match="language 'sw'.*4 tokens.*5"):
        windows([1, 2, 3, 4], 5, "language 'sw'")
    with pytest.raises(ValueError, match="at least 2"):
        windows([1, 2, 3], 1)


@pytest.mark.parametrize("arch", ["llama", "bloom"])
def test_perplexity_equals_hand_computation(arch, tokenizer):
    model = tiny_model(arch)
    ids = tokenize(tokenizer, [TEXTS["en"]])[0]
    assert len(ids) % SEQLEN != 0  # there is a remainder to drop
    nll, predicted = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids) - SEQLEN + 1, SEQLEN):
            window = torch.tensor([ids[start : start + SEQLEN]])
            logits = model(input_ids=window).logits[0].double()
            for t in range(SEQLEN - 1):
                row = logits[t]
                log_z = row.max() + torch.log(torch.exp(row - row.max()).sum())
                nll -= float(row[ids[start + t + 1]] - log_z)
                predicted += 1
    assert predicted == (len(ids) // SEQLEN) * (SEQLEN - 1)
    got = perplexity(model, windows(ids, SEQLEN), batch_size=BATCH)
    assert got == pytest.approx(math.exp(nll / predicted), rel=1e-5)
    assert 1 < got < 1000


def test_context_length(tokenizer):
    assert ablation.context_length(tiny_model("llama")) == 64
    assert (
        ablation.context_length(tiny_model("bloom")) == 2048
    )  # docs/method.md §5 default for BLOOM


def test_random_fraction_rule():
    assert random_fraction([0.094, 0.02]) == 0.10  # the paper's BLOOM-7b1 (9.4 % → 10 %)
    assert random_fraction([0.165]) == 0.17  # LLaMA-2-7b (16.5 % → 17 %)
    assert random_fraction([0.10]) == 0.11  # strictly above
    assert random_fraction([0.29]) == 0.30  # 0.29 * 100 = 28.999… in floats
    assert random_fraction([0.0, 0.0]) == 0.01
    assert random_fraction([]) == 0.01
    assert random_fraction({"en": 0.031, "ar": 0.094}) == 0.10
    assert random_fraction([1.0]) == 1.0  # capped


def test_random_neurons_seeded_uniform_over_all_layers():
    widths = [1000, 3000, 500]
    a = random_neurons(widths, 0.2, seed=7)
    assert sorted(a) == [0, 1, 2]
    assert sum(len(v) for v in a.values()) == round(0.2 * 4500) == 900
    for layer, index in a.items():
        assert index.dtype == np.int64 and np.all(np.diff(index) > 0)  # sorted, distinct
        assert index.min() >= 0 and index.max() < widths[layer]
    # uniform over all K neurons: each layer gets about its share (900 · w / K)
    for layer, w in enumerate(widths):
        assert abs(len(a[layer]) - 900 * w / 4500) < 4 * math.sqrt(900 * w / 4500)
    b = random_neurons(widths, 0.2, seed=7)
    assert all(np.array_equal(a[m], b[m]) for m in a)
    c = random_neurons(widths, 0.2, seed=8)
    assert not all(np.array_equal(a[m], c[m]) for m in a)
    assert sum(map(len, random_neurons([3, 4], 0.5, 0).values())) == round(3.5) == 4
    assert sum(map(len, random_neurons([10, 10], 0.0, 0).values())) == 0


def test_regions_by_language_and_their_checks():
    table = key_table([("en", 0, 3), ("en", 1, 0), ("en", 0, 1), ("de", 1, 5)])
    regions = regions_by_language(table, LANGS, [8, 8])
    assert {m: v.tolist() for m, v in regions["en"].items()} == {0: [1, 3], 1: [0]}
    assert {m: v.tolist() for m, v in regions["de"].items()} == {1: [5]}
    assert regions["fr"] == {}
    with pytest.raises(ValueError, match="'xx'"):
        regions_by_language(key_table([("xx", 0, 0)]), LANGS, [8, 8])
    with pytest.raises(ValueError, match="layer 1, neuron 8"):
        regions_by_language(key_table([("en", 1, 8)]), LANGS, [8, 8])
    with pytest.raises(ValueError, match="layer 2"):
        regions_by_language(key_table([("en", 2, 0)]), LANGS, [8, 8])


def test_diagonal_summary():
    inc = pd.DataFrame(
        {"random": [5.0, 5, 5], "en": [50.0, 2, 3], "de": [60.0, 40, 1], "fr": np.nan},
        index=pd.Index(LANGS, name="language"),
    )
    s = diagonal_summary(inc, ["en", "de"])
    assert s["diagonal_dominates"] == {"en": False, "de": True, "fr": None}
    assert s["diagonal_dominates_all"] is False
    assert s["mean_diagonal_increase"] == pytest.approx(45.0)
    assert s["mean_off_diagonal_increase"] == pytest.approx((60 + 2 + 3 + 1) / 4)


def test_diagonal_summary_never_counts_an_overflow():
    """An inf own cell would otherwise 'dominate' everything: a float16 overflow read
    as a strong language-specific effect.  An inf rival cannot be compared either."""
    inc = pd.DataFrame(
        {"random": [5.0, 5, 5], "en": [np.inf, 2, 3], "de": [60.0, np.inf, 1], "fr": [1.0, 2, 9]},
        index=pd.Index(LANGS, name="language"),
    )
    s = diagonal_summary(inc, LANGS)
    assert s["diagonal_dominates"] == {"en": None, "de": None, "fr": True}
    assert s["diagonal_dominates_all"] is True
    assert s["mean_diagonal_increase"] == pytest.approx(9.0)  # finite cells only
    assert s["mean_off_diagonal_increase"] == pytest.approx((60 + 1 + 2 + 3 + 1 + 2) / 6)


def test_increase_of_an_overflowed_full_model_is_missing_not_minus_100():
    ppl = pd.DataFrame(
        {"full": [10.0, np.inf], "random": [11.0, 50.0], "en": [np.inf, np.inf]},
        index=pd.Index(["en", "de"], name="language"),
    )
    inc = ppl_increase(ppl, ["random", "en"])
    assert inc.loc["en"].tolist() == [pytest.approx(10.0), np.inf]
    assert inc.loc["de"].isna().all()  # 50 / inf - 1 would read as -100 %


def test_perplexity_nan_and_overflow(tokenizer):
    model = tiny_model("llama")
    w = lang_windows(tokenizer, "en")
    with torch.no_grad():
        model.lm_head.weight.mul_(1e5)  # logits ~1e5: mean NLL far above exp's 709
        assert perplexity(model, w, BATCH) == math.inf
        model.lm_head.weight[0, 0] = float("nan")
        assert math.isnan(perplexity(model, w, BATCH))  # not inf, as `mean < 709` made it


def test_nan_perplexity_stops_the_job_naming_condition_and_language(tokenizer, tmp_path):
    model = tiny_model("llama")
    ids = {lang: set(tokenize(tokenizer, [TEXTS[lang]])[0]) for lang in LANGS}
    only_fr = sorted(ids["fr"] - ids["en"] - ids["de"])
    with torch.no_grad():
        model.model.embed_tokens.weight[only_fr[0]] = float("nan")
    with pytest.raises(
        NonFinitePerplexityError,
        match=r"model tiny, checkpoint step-1: perplexity of language 'fr' under condition "
        r"'full' is NaN",
    ):
        run(
            model,
            tokenizer,
            key_table([("en", 0, 1)]),
            [40, 40],
            tmp_path,
            label="model tiny, checkpoint step-1",
        )
    assert not any(tmp_path.iterdir()) and all_hooks(model) == 0


def test_overflow_is_kept_flagged_and_never_dominates(tokenizer, tmp_path):
    model = tiny_model("llama")
    with torch.no_grad():
        model.lm_head.weight.mul_(1e5)
    key = key_table([("en", 0, 1), ("de", 1, 2), ("fr", 0, 7)])
    with pytest.warns(UserWarning, match="overflowed to inf"):
        summary = run(model, tokenizer, key, [40, 40], tmp_path, max_new_tokens=2)
    ppl = pd.read_csv(files(tmp_path).perplexity, index_col="language")
    assert np.isinf(ppl[["full", "random", *LANGS]].to_numpy()).all()  # kept as inf
    inc = pd.read_csv(files(tmp_path).increase, index_col="language")
    assert inc.isna().all().all()  # no increase over an inf full model
    cells = {(c["condition"], c["language"]) for c in summary["overflow"]}
    assert cells == {(c, lang) for c in ("full", "random", *LANGS) for lang in LANGS}
    assert set(summary["diagonal_dominates"].values()) == {None}
    assert summary["full_perplexity"] == {lang: None for lang in LANGS}
    assert json.loads(files(tmp_path).summary.read_text()) == summary


# ------------------------------------------------------------------ deactivation


@pytest.mark.parametrize("arch", ["llama", "bloom"])
def test_hook_equals_zeroed_weight_columns(arch, tokenizer):
    model = tiny_model(arch)
    neurons = {0: [0, 3, 5, 9], 1: [1, 2, 7, 11, 20]}
    w = lang_windows(tokenizer, "en")
    full = perplexity(model, w, BATCH)
    reference = perplexity(zeroed_copy(model, arch, neurons), w, BATCH)
    with zero_neurons(model, neurons):
        hooked = perplexity(model, w, BATCH)
    assert hooked == reference != full
    assert perplexity(model, w, BATCH) == full
    assert all_hooks(model) == 0


@pytest.mark.parametrize("arch", ["llama", "bloom"])
def test_the_ablation_matches_weight_edits_and_restores_the_model(arch, tokenizer, tmp_path):
    model = tiny_model(arch)
    widths = widths_of(model, arch)
    key = key_table(
        [("en", 0, 1), ("en", 0, 4), ("en", 1, 6), ("de", 1, 2), ("de", 1, 3), ("fr", 0, 7)]
    )
    before = {lang: perplexity(model, lang_windows(tokenizer, lang), BATCH) for lang in LANGS}
    result = compute(model, tokenizer, key, widths, max_new_tokens=4, prompts_per_language=1)
    assert not any(tmp_path.iterdir())  # computing writes nothing
    write_outputs(result, files(tmp_path))
    ppl = pd.read_csv(files(tmp_path).perplexity, index_col="language")
    pd.testing.assert_frame_equal(ppl, result.perplexity)
    regions = regions_by_language(key, LANGS, widths)
    for lang in LANGS:
        edited = zeroed_copy(model, arch, regions[lang])
        for evaluated in LANGS:
            assert ppl.at[evaluated, lang] == perplexity(
                edited, lang_windows(tokenizer, evaluated), BATCH
            )
    fraction = random_fraction([3 / sum(widths)])
    edited = zeroed_copy(model, arch, random_neurons(widths, fraction, 0))
    assert ppl.at["fr", "random"] == perplexity(edited, lang_windows(tokenizer, "fr"), BATCH)
    # CSV round trip is exact (repr floats); the model is exactly its unhooked self again
    assert ppl["full"].to_dict() == before
    assert {
        lang: perplexity(model, lang_windows(tokenizer, lang), BATCH) for lang in LANGS
    } == before
    assert all_hooks(model) == 0
    assert json.loads(files(tmp_path).summary.read_text())["restored_exactly"] is True


# ------------------------------------------------------------------ outputs


def test_outputs_with_an_empty_region_and_several_seeds(tokenizer, tmp_path):
    model = tiny_model("llama")
    widths = widths_of(model, "llama")  # [40, 40], K = 80
    key = key_table([("en", 0, i) for i in range(6)] + [("en", 1, 0), ("de", 1, 2), ("de", 0, 3)])
    texts = {lang: TEXTS[lang] for lang in ("en", "fr", "de")}  # order differs from LANGS
    summary = run(model, tokenizer, key, widths, tmp_path, texts=texts, seeds=[0, 1, 2])
    assert sorted(tmp_path.iterdir()) == sorted(files(tmp_path).paths().values())

    ppl = pd.read_csv(files(tmp_path).perplexity, index_col="language")
    assert list(ppl.index) == LANGS
    assert list(ppl.columns) == ["full", "random", "random_sd", *LANGS]
    assert ppl["fr"].isna().all() and ppl.drop(columns="fr").notna().all().all()
    seeds = pd.read_csv(files(tmp_path).seeds, index_col="language")
    assert list(seeds.columns) == ["seed_0", "seed_1", "seed_2"]
    np.testing.assert_allclose(ppl["random"], seeds.mean(axis=1))
    np.testing.assert_allclose(ppl["random_sd"], seeds.std(axis=1, ddof=1))
    assert seeds.nunique(axis=1).eq(3).all()  # the seeds really draw different neurons

    inc = pd.read_csv(files(tmp_path).increase, index_col="language")
    assert list(inc.columns) == ["random", *LANGS]
    np.testing.assert_allclose(inc["en"], (ppl["en"] / ppl["full"] - 1) * 100)
    assert inc["fr"].isna().all()

    cond = pd.read_csv(files(tmp_path).conditions, index_col="condition")
    assert list(cond.index) == ["full", "random", *LANGS]
    assert cond["neurons"].tolist() == [0, round(0.09 * 80), 7, 2, 0]  # en: 7/80 = 8.75 % → 9 %
    np.testing.assert_allclose(cond["fraction"], cond["neurons"] / 80)
    assert cond["status"].tolist() == ["evaluated"] * 4 + ["no key neurons"]

    gens = [json.loads(line) for line in files(tmp_path).generations.read_text().splitlines()]
    keys = [(g["condition"], g["language"], g["prompt_index"]) for g in gens]
    # every condition but random (full, then each deactivated language) × every prompt
    # language × its first 3 prompts (Appendix A's tables), in that order
    expected = [
        (c, lang, i)
        for c in ("full", "en", "de")
        for lang in LANGS
        for i in range(len(PROMPTS[lang][:3]))
    ]
    assert keys == expected
    assert all(g["prompt"] == PROMPTS[g["language"]][g["prompt_index"]] for g in gens)
    assert all(len(g["continuation_ids"]) == g["new_tokens"] == 5 for g in gens)
    for g in gens:
        assert g["continuation"] == tokenizer.decode(g["continuation_ids"])
        eos = [i for i, t in enumerate(g["continuation_ids"]) if t == tokenizer.eos_token_id]
        assert g["first_eos"] == (eos[0] if eos else None)
    page = files(tmp_path).generations_table.read_text(encoding="utf-8")
    assert page.count("<tr>") == 1 + sum(len(PROMPTS[lang][:3]) for lang in LANGS)
    assert "deactivating en" in page and "deactivating fr" not in page  # fr: no key neurons

    saved = json.loads(files(tmp_path).summary.read_text())
    assert saved == summary
    assert saved["languages_without_key_neurons"] == ["fr"]
    assert {c["name"]: c["status"] for c in saved["conditions"]}["fr"] == "no key neurons"
    assert (
        saved["random_fraction"] == 0.09
        and saved["random_percent"] == 9
        and saved["seeds"] == [0, 1, 2]
    )
    assert saved["seqlen"] == SEQLEN and saved["n_neurons"] == 80
    n_en = len(tokenize(tokenizer, [TEXTS["en"]])[0])
    assert saved["perplexity_text"]["en"] == {
        "tokens": n_en,
        "windows": n_en // SEQLEN,
        "tokens_used": n_en // SEQLEN * SEQLEN,
        "predicted_tokens": n_en // SEQLEN * (SEQLEN - 1),
        "tokens_dropped": n_en % SEQLEN,
    }
    assert (
        set(saved["diagonal_dominates"]) == set(LANGS) and saved["diagonal_dominates"]["fr"] is None
    )
    for lang in ("en", "de"):
        other = "de" if lang == "en" else "en"
        assert saved["diagonal_dominates"][lang] == bool(inc.at[lang, lang] > inc.at[lang, other])
    assert saved["mean_diagonal_increase"] == pytest.approx(
        (inc.at["en", "en"] + inc.at["de", "de"]) / 2
    )
    assert saved["mean_off_diagonal_increase"] == pytest.approx(
        np.mean([inc.at["en", "de"], inc.at["de", "en"], inc.at["fr", "en"], inc.at["fr", "de"]])
    )
    assert saved["generation"]["conditions"] == ["full", "en", "de"]
    assert saved["generation"]["n"] == len(expected) and saved["overflow"] == []
    assert saved["hooks_removed"] and saved["restored_exactly"]
    assert all_hooks(model) == 0


def test_one_seed_no_spread_column_and_missing_text(tokenizer, tmp_path):
    model = tiny_model("bloom")
    widths = widths_of(model, "bloom")
    key = key_table([("de", 0, 5)])
    texts = {"de": TEXTS["de"], "fr": TEXTS["fr"]}
    summary = run(model, tokenizer, key, widths, tmp_path, texts=texts, prompts={}, seeds=[3])
    ppl = pd.read_csv(files(tmp_path).perplexity, index_col="language")
    assert list(ppl.columns) == ["full", "random", *LANGS] and list(ppl.index) == ["de", "fr"]
    assert ppl[["en", "fr"]].isna().all().all() and ppl["de"].notna().all()
    assert summary["languages_without_text"] == ["en"]
    assert summary["random_percent"] == 1  # 1/128 = 0.8 % → 1 %
    assert files(tmp_path).generations.read_text() == ""  # no prompts given
    assert summary["diagonal_dominates"] == {"de": None, "fr": None}  # de has no rival region


def test_short_text_is_an_error_naming_the_language(tokenizer, tmp_path):
    model = tiny_model("llama")
    texts = {**TEXTS, "fr": "le chat"}
    with pytest.raises(ValueError, match="language 'fr'.*shorter than one perplexity window"):
        run(model, tokenizer, key_table([]), [40, 40], tmp_path, texts=texts)
    assert all_hooks(model) == 0
    with pytest.raises(ValueError, match="prompt of language 'de' has no tokens"):
        run(model, tokenizer, key_table([]), [40, 40], tmp_path, prompts={"de": ["der", ""]})
    assert not any(tmp_path.iterdir())  # checked before any work or output


def test_heatmap_with_empty_column(tmp_path):
    inc = pd.DataFrame(
        {"random": [10.0, 12], "en": [50.0, 2], "zh": [np.nan, np.nan]},
        index=pd.Index(["en", "zh"], name="language"),
    )
    cond = pd.DataFrame(
        {"neurons": [49152, 15935, 0], "fraction": [0.1, 0.032, 0.0]}, index=["random", "en", "zh"]
    )
    plot_ppl_increase(inc, cond, tmp_path / "h.png", random_sd=pd.Series([1.0, 2.0]))
    data = (tmp_path / "h.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


# ------------------------------------------------------------ intervals (docs/method.md §10)

T = SEQLEN - 1  # tokens each window predicts
LANG_KEYS = [("en", None), ("de", None)]  # the language conditions of fabricated NLLs


def tables_from(nll, seeds, languages):
    """perplexity and increase tables from fabricated window NLLs, as compute_ablation
    builds them: {(condition, seed): {language: (W,) NLLs}}."""
    ppl = {
        key: {lang: perplexity_from_nlls(v, T) for lang, v in d.items()} for key, d in nll.items()
    }
    table = pd.DataFrame({"full": ppl["full", None]})
    table["random"] = np.mean([pd.Series(ppl["random", s]) for s in seeds], axis=0)
    for lang in languages:
        table[lang] = pd.Series(ppl[lang, None]) if (lang, None) in ppl else np.nan
    return ppl_increase(table, ["random", *languages])


def cell(table, lang, condition):
    return table[(table["language"] == lang) & (table["condition"] == condition)].iloc[0]


@pytest.mark.parametrize("arch", ["llama", "bloom"])
def test_window_nlls_sum_to_the_perplexity_exactly(arch, tokenizer):
    """The kept per-window NLLs, summed in window order, give exactly the perplexity
    as it was computed before they were kept: one running float64 total over rows."""
    model = tiny_model(arch)
    w = lang_windows(tokenizer, "en")
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(w), BATCH):
            ids = w[start : start + BATCH]
            for row, x in zip(model(input_ids=ids, use_cache=False).logits, ids):
                total += torch.nn.functional.cross_entropy(
                    row[:-1].float(), x[1:], reduction="sum"
                ).item()
    before = math.exp(total / (len(w) * T))
    nlls = window_nlls(model, w, BATCH)
    assert nlls.dtype == np.float64 and nlls.shape == (len(w),) and len(w) > 2
    running = 0.0
    for value in nlls:
        running += value
    assert running == total
    assert perplexity_from_nlls(nlls, T) == perplexity(model, w, BATCH) == before


def test_paired_window_interval_against_a_hand_computation():
    """Every cell's interval: the percentiles of (PPL_c / PPL_full − 1) · 100 over
    resamples built one by one, each drawing windows with replacement and using the
    SAME windows for the full model and the condition (the random column: the mean of
    its seeds' perplexities)."""
    rng = np.random.default_rng(1)
    n_windows, seeds, settings = {"en": 9, "de": 5}, [0, 1], BootstrapSettings(300, 0.9, 4)
    nll = {key: {} for key in [("full", None), ("random", 0), ("random", 1), *LANG_KEYS]}
    for lang, count in n_windows.items():
        full = rng.uniform(20, 30, count)
        nll["full", None][lang] = full
        for s in seeds:
            nll["random", s][lang] = full + rng.normal(0.4, 1, count)
        for key in LANG_KEYS:
            nll[key][lang] = full + rng.normal(3 if key[0] == lang else 0.3, 1, count)
    increase = tables_from(nll, seeds, ["en", "de", "fr"])
    table, cells = increase_intervals(nll, increase, T, seeds, settings)
    assert list(table.columns) == ["language", "condition", "lo", "hi", "status"]
    assert len(table) == 2 * 4  # evaluated language × (random, en, de, fr)

    for lang, count in n_windows.items():
        draws = draw_windows(count, 300, 4)
        for condition in ("random", "en", "de"):
            values = []
            for drawn in draws:

                def ppl(x, drawn=drawn, count=count):
                    return math.exp(sum(x[d] for d in drawn) / (count * T))

                full = ppl(nll["full", None][lang])
                if condition == "random":
                    other = np.mean([ppl(nll["random", s][lang]) for s in seeds])
                else:
                    other = ppl(nll[condition, None][lang])
                values.append((other / full - 1) * 100)
            row = cell(table, lang, condition)
            assert row["status"] == "interval"
            expected = np.quantile(values, [0.05, 0.95])
            assert [row["lo"], row["hi"]] == pytest.approx(expected, rel=1e-9, abs=1e-9)
            np.testing.assert_allclose(cells[lang, condition], values, rtol=1e-9, atol=1e-9)
        no_region = cell(table, lang, "fr")
        assert no_region["status"] == "no key neurons" and np.isnan(no_region["lo"])
    # the windows' draws depend on (seed, W, B) only, and are not the probe items'
    np.testing.assert_array_equal(draw_windows(9, 300, 4), draw_windows(9, 300, 4))
    assert not np.array_equal(draw_windows(9, 300, 4), draw_items(9, 300, 4))


def test_zero_width_intervals_where_nothing_can_vary():
    """A condition identical to the full model: 0 in every resample.  Every window
    shifted by the same NLL: the same increase in every resample.  A single window:
    every resample draws it."""
    rng = np.random.default_rng(2)
    full = rng.uniform(20, 30, 6)
    nll = {
        ("full", None): {"en": full, "de": full[:1]},
        ("random", 0): {"en": full.copy(), "de": full[:1] + 2.0},
        ("en", None): {"en": full + 1.4, "de": full[:1] + 5.0},
        ("de", None): {"en": full + rng.normal(0, 1, 6), "de": full[:1] + 0.1},
    }
    increase = tables_from(nll, [0], ["en", "de"])
    table, _ = increase_intervals(nll, increase, T, [0], BootstrapSettings(200, 0.95, 0))
    same = cell(table, "en", "random")
    assert same["lo"] == same["hi"] == 0 and increase.at["en", "random"] == 0
    shifted = cell(table, "en", "en")
    assert shifted["lo"] == pytest.approx(shifted["hi"], rel=1e-12)
    assert shifted["lo"] == pytest.approx(math.expm1(1.4 / T) * 100, rel=1e-12)
    assert shifted["lo"] == pytest.approx(increase.at["en", "en"], rel=1e-9)
    varies = cell(table, "en", "de")
    assert varies["hi"] - varies["lo"] > 1  # random shifts do vary
    for condition in ("random", "en", "de"):
        one = cell(table, "de", condition)
        assert one["lo"] == pytest.approx(one["hi"], rel=1e-12)
        assert one["lo"] == pytest.approx(increase.at["de", condition], rel=1e-9)
    marks = contains_zero(table, increase)
    assert marks.to_dict() == {
        "random": {"en": True, "de": False},
        "en": {"en": False, "de": False},
        "de": {"en": bool(varies["lo"] <= 0 <= varies["hi"]), "de": False},
    }


def test_cells_without_an_interval_say_why():
    full = np.full(4, 20.0)
    huge = np.full(4, 800.0 * T)  # mean NLL 800 per token: exp overflows
    nll = {
        ("full", None): {"en": full, "de": huge},
        ("random", 0): {"en": full + 1, "de": huge},
        ("en", None): {"en": huge, "de": huge},
    }
    increase = tables_from(nll, [0], ["en", "de"])
    assert np.isinf(increase.at["en", "en"]) and increase.loc["de"].isna().all()
    table, cells = increase_intervals(nll, increase, T, [0], BootstrapSettings(50))
    statuses = {(r.language, r.condition): r.status for r in table.itertuples()}
    assert statuses == {
        ("en", "random"): "interval",
        ("en", "en"): "overflow",
        ("en", "de"): "no key neurons",
        ("de", "random"): "full model overflowed",
        ("de", "en"): "full model overflowed",
        ("de", "de"): "no key neurons",
    }
    assert set(cells) == {("en", "random")}
    assert (
        table.set_index(["language", "condition"])
        .drop(("en", "random"))[["lo", "hi"]]
        .isna()
        .all()
        .all()
    )
    off, _ = increase_intervals(nll, increase, T, [0], BootstrapSettings(0))
    assert (
        off.loc[off["status"] != "interval", "status"].tolist()
        == table["status"].replace("interval", "no bootstrap").tolist()
    )
    assert off["lo"].isna().all()


def test_dominance_by_the_interval_rule():
    """Own cell's lower bound above every rival's upper bound; null without an own
    region, without a rival, or when a compared cell has no interval."""
    rng = np.random.default_rng(3)
    langs = ["en", "de", "fr", "sw"]
    centre = {  # (row, condition): (mean, spread) of the resampled increases
        ("en", "en"): (15, 1),
        ("en", "de"): (5, 1),
        ("en", "fr"): (3, 1),
        ("de", "de"): (20, 6),  # point above en's, interval overlapping it
        ("de", "en"): (8, 3),
        ("de", "fr"): (1, 1),
        ("fr", "en"): (2, 1),
        ("fr", "de"): (2, 1),
        ("sw", "en"): (1, 1),
        ("sw", "de"): (1, 1),
        ("sw", "fr"): (1, 1),
    }
    cells = {key: rng.normal(m, sd, 400) for key, (m, sd) in centre.items()}
    increase = pd.DataFrame(np.nan, index=langs, columns=["en", "de", "fr"])
    for (row, condition), (mean, _) in centre.items():
        increase.at[row, condition] = mean
    increase.at["fr", "fr"] = np.inf  # an overflow: no interval
    rows = []
    for (row, condition), values in cells.items():
        lo, hi = np.quantile(values, [0.025, 0.975])
        rows.append({"language": row, "condition": condition, "lo": lo, "hi": hi})
    table = pd.DataFrame(rows)
    settings = BootstrapSettings(400, 0.95, 0)
    ci = interval_summary(table, cells, increase, ["en", "de", "fr"], settings)
    bounds = table.set_index(["language", "condition"])
    assert bounds.at[("de", "de"), "lo"] < bounds.at[("de", "en"), "hi"]  # the overlap
    assert ci["diagonal_dominates"] == {"en": True, "de": False, "fr": None, "sw": None}
    assert diagonal_summary(increase, ["en", "de", "fr"])["diagonal_dominates"]["de"] is True
    assert ci["diagonal_dominates_all"] is False
    assert {k: ci[k] for k in ("level", "resamples", "seed", "unit", "paired")} == {
        "level": 0.95,
        "resamples": 400,
        "seed": 0,
        "unit": "window",
        "paired": True,
    }
    diag = np.mean([cells["en", "en"], cells["de", "de"]], axis=0)  # fr's own overflowed
    assert ci["mean_diagonal_increase"] == pytest.approx(np.quantile(diag, [0.025, 0.975]))
    off = np.mean([v for (r, c), v in cells.items() if r != c], axis=0)
    assert ci["mean_off_diagonal_increase"] == pytest.approx(np.quantile(off, [0.025, 0.975]))


def test_ablation_keeps_window_nlls_and_writes_intervals(tokenizer, tmp_path):
    """window_nll.parquet sums to perplexity.csv exactly, for every condition and seed;
    ppl_increase_ci.csv has a row per cell; ablation.json says what the intervals are.
    A region whose output columns are zero changes nothing: its increase is exactly 0
    and so is its interval."""
    model = tiny_model("llama")
    widths = widths_of(model, "llama")
    with torch.no_grad():
        decoder_layers(model)[1][1].mlp.down_proj.weight[:, [4, 9]] = 0
    key = key_table([("en", 0, i) for i in range(6)] + [("de", 1, 2), ("fr", 1, 4), ("fr", 1, 9)])
    settings = BootstrapSettings(resamples=60, level=0.9, seed=2)
    summary = run(model, tokenizer, key, widths, tmp_path, seeds=[0, 1], bootstrap=settings)
    out = files(tmp_path)
    assert sorted(tmp_path.iterdir()) == sorted(out.paths().values())
    ppl = pd.read_csv(out.perplexity, index_col="language")
    seeds = pd.read_csv(out.seeds, index_col="language")
    nll = pd.read_parquet(out.window_nll)
    assert list(nll.columns) == ["condition", "seed", "language", "window", "nll", "tokens"]
    assert (nll["tokens"] == T).all() and nll["nll"].dtype == np.float64
    assert nll.loc[nll["condition"] == "random", "seed"].notna().all()
    assert nll.loc[nll["condition"] != "random", "seed"].isna().all()
    groups = nll.groupby(["condition", "seed", "language"], dropna=False, sort=False)
    assert len(groups) == (1 + 2 + 3) * len(LANGS)
    for (condition, seed, lang), rows in groups:
        assert rows["window"].tolist() == list(range(len(lang_windows(tokenizer, lang))))
        value = perplexity_from_nlls(rows["nll"].tolist(), T)
        if condition == "random":
            assert value == seeds.at[lang, f"seed_{seed}"]
        else:
            assert value == ppl.at[lang, condition]
    assert (ppl["fr"] == ppl["full"]).all()  # zeroing neurons without output changes nothing

    ci = pd.read_csv(out.increase_ci)
    assert len(ci) == len(LANGS) * 4 and (ci["status"] == "interval").all()
    assert (ci["lo"] <= ci["hi"]).all()
    zero = ci[ci["condition"] == "fr"]
    assert (zero["lo"] == 0).all() and (zero["hi"] == 0).all()
    assert summary["ci"]["resamples"] == 60 and summary["ci"]["unit"] == "window"
    assert set(summary["ci"]["diagonal_dominates"]) == set(LANGS)
    assert summary["ci"]["diagonal_dominates"]["fr"] is False  # 0 never dominates
    assert json.loads(out.summary.read_text())["ci"] == summary["ci"]


def test_no_resamples_no_intervals(tokenizer, tmp_path):
    model = tiny_model("bloom")
    key = key_table([("de", 0, 5), ("en", 1, 3)])
    settings = BootstrapSettings(resamples=0)
    summary = run(model, tokenizer, key, widths_of(model, "bloom"), tmp_path, bootstrap=settings)
    assert "ci" not in summary
    ci = pd.read_csv(files(tmp_path).increase_ci)
    assert ci["lo"].isna().all()
    assert set(ci["status"]) == {"no bootstrap", "no key neurons"}
