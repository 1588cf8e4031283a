"""Corpora: validation, every loader on files in its real format, sampling, probe file."""

import gzip
import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from helpers import FIXTURES, opus_with_two_english_documents
from lingua_franca.corpora import (
    CorpusError,
    build_probe,
    load_perplexity_texts,
    load_probe_corpus,
    load_stories,
    make_probe,
    prepare_perplexity_text,
    prepare_probe,
    prepare_stories,
    read_parallel_tsv,
    read_probe,
    sample_items,
    validate_parallel,
    write_probe,
    xlsum_data_files,
)
from lingua_franca.languages import PAPER_LANGUAGES

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "resources" / "corpus"
HEADER = "id\tlang\ttext\n"


def write_tsv(path, rows, header=HEADER):
    path.write_text(header + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return path


def parallel_rows(items, languages):
    return [(i, lang, f"{lang} text of {i}") for i in items for lang in languages]


def table(rows):
    return pd.DataFrame(rows, columns=["id", "lang", "text"], dtype=str)


# ---------------------------------------------------------------- reading TSVs


def test_read_parallel_tsv(tmp_path):
    path = write_tsv(tmp_path / "p.tsv", [("a", "en", "Hello."), ("a", "fr", "Bonjour.")])
    df = read_parallel_tsv(path)
    assert df.values.tolist() == [["a", "en", "Hello."], ["a", "fr", "Bonjour."]]


def test_read_parallel_tsv_bad_header(tmp_path):
    path = write_tsv(tmp_path / "p.tsv", [("a", "en", "x")], header="item\tlang\ttext\n")
    with pytest.raises(CorpusError, match=r"p\.tsv: the header must be id<TAB>lang<TAB>text"):
        read_parallel_tsv(path)


def test_read_parallel_tsv_reports_every_bad_line(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text(HEADER + "a\ten\tok\nb\ten\nc\ten\tx\ty\n", encoding="utf-8")
    with pytest.raises(CorpusError) as err:
        read_parallel_tsv(path)
    message = str(err.value)
    assert "p.tsv: 2 problem(s)" in message
    assert "line 3: expected 3 tab-separated fields, found 2" in message
    assert "line 4: expected 3 tab-separated fields, found 4" in message


def test_read_parallel_tsv_missing_file(tmp_path):
    with pytest.raises(CorpusError, match="nope.tsv: file not found"):
        read_parallel_tsv(tmp_path / "nope.tsv")


# ---------------------------------------------------------------- validation


def test_validate_parallel_accepts_a_parallel_corpus():
    validate_parallel(table(parallel_rows(["a", "b"], ["en", "fr"])), ["en", "fr"], "x.tsv")


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            [("a", "en", "A"), ("a", "fr", "A"), ("b", "en", "B")],
            (
                r"x\.tsv: 2 problem\(s\).*item 'b', language 'fr': missing"
                r".*different numbers of items per language: en 2, fr 1"
            ),
        ),
        ([("a", "en", "A"), ("a", "fr", "")], r"item 'a', language 'fr': empty text"),
        ([("a", "en", "A"), ("a", "fr", " \u3000 ")], r"item 'a', language 'fr': empty text"),
        (
            [("a", "en", "A"), ("a", "fr", "A"), ("a", "fr", "A2")],
            r"item 'a', language 'fr': appears 2 times",
        ),
        (
            [("a", "en", "A"), ("a", "fr", "A"), ("a", "xx", "A")],
            r"language 'xx' \(items 'a'\): unknown language code",
        ),
        ([("a", "en", "A"), ("a", "fr", "A\tB")], r"item 'a', language 'fr': text holds a tab"),
    ],
)
def test_validate_parallel_errors(rows, message):
    with pytest.raises(CorpusError, match=f"(?s){message}"):
        validate_parallel(table(rows), ["en", "fr"], "x.tsv")


def test_validate_parallel_configured_language_unknown_or_absent():
    rows = parallel_rows(["a"], ["en", "fr"])
    with pytest.raises(CorpusError, match="configured language 'klingon' is unknown"):
        validate_parallel(table(rows), ["en", "klingon"], "x.tsv")
    with pytest.raises(CorpusError, match="language 'vi': no items at all"):
        validate_parallel(table(rows), ["en", "vi"], "x.tsv")


def test_validate_parallel_reports_all_problems_in_one_message():
    rows = [(f"i{n}", "en", "") for n in range(25)] + [(f"i{n}", "fr", "t") for n in range(25)]
    with pytest.raises(CorpusError) as err:
        validate_parallel(table(rows), ["en", "fr"], "x.tsv")
    message = str(err.value)
    assert message.startswith("x.tsv: 25 problem(s)")
    assert "item 'i0', language 'en': empty text" in message
    assert "item 'i19', language 'en': empty text" in message
    assert "item 'i20'" not in message
    assert "... and 5 more" in message


def test_validate_parallel_ignores_languages_not_configured():
    rows = parallel_rows(["a", "b"], ["en", "fr"]) + [("a", "vi", "")]
    validate_parallel(table(rows), ["en", "fr"], "x.tsv")


def test_load_probe_corpus_tsv_orders_blocks_and_drops_other_languages(tmp_path):
    rows = parallel_rows(["b", "a", "c"], ["fr", "en", "zh"])
    path = write_tsv(tmp_path / "mine.tsv", rows)
    df = load_probe_corpus("tsv", {"path": str(path)}, ["en", "fr"])
    assert df["lang"].tolist() == ["en"] * 3 + ["fr"] * 3
    assert df["id"].tolist() == ["b", "a", "c"] * 2
    assert df.loc[4, "text"] == "fr text of a"


def test_load_probe_corpus_names_the_source_in_errors(tmp_path):
    path = write_tsv(tmp_path / "mine.tsv", [("a", "en", "A"), ("b", "en", "B"), ("a", "fr", "A")])
    with pytest.raises(
        CorpusError, match=r"(?s)probe source 'tsv' \(.*mine\.tsv\).*item 'b', language 'fr'"
    ):
        load_probe_corpus("tsv", {"path": str(path)}, ["en", "fr"])
    with pytest.raises(CorpusError, match="unknown probe source 'bible'"):
        load_probe_corpus("bible", {}, ["en"])
    with pytest.raises(CorpusError, match="data source 'tsv' needs the option 'path'"):
        load_probe_corpus("tsv", {}, ["en"])


# ---------------------------------------------------------------- Bible, CES XML

EN_5 = (
    "And God called the light Day, and the darkness he called Night."
    " And the evening and the morning were the first day."
)


def test_bible_ces_keeps_verses_every_language_has():
    df = load_probe_corpus("bible_ces", {"dir": str(FIXTURES / "bible_ces")}, ["en", "fr", "zh"])
    # French lacks 1:4 (empty seg), Chinese has an extra 1:6
    assert df["id"].unique().tolist() == ["b.GEN.1.1", "b.GEN.1.2", "b.GEN.1.3", "b.GEN.1.5"]
    texts = df.set_index(["id", "lang"])["text"]
    assert texts["b.GEN.1.5", "en"] == EN_5  # whitespace of the XML collapsed
    assert texts["b.GEN.1.1", "fr"] == "Au commencement, Dieu créa les cieux et la terre."
    assert texts["b.GEN.1.1", "zh"] == "起初，神创造天地。"


def test_bible_ces_reads_gzip_and_named_files(tmp_path):
    shutil.copy(FIXTURES / "bible_ces" / "English.xml", tmp_path)
    with gzip.open(tmp_path / "French.xml.gz", "wb") as out:
        out.write((FIXTURES / "bible_ces" / "French.xml").read_bytes())
    shutil.copy(FIXTURES / "bible_ces" / "Chinese.xml", tmp_path / "Chinese-tok.xml")
    options = {"dir": str(tmp_path), "files": {"zh": "Chinese-tok.xml"}}
    df = load_probe_corpus("bible_ces", options, ["en", "fr", "zh"])
    assert len(df) == 3 * 4


def test_bible_ces_missing_file_names_language_and_paths():
    with pytest.raises(
        CorpusError, match=r"language 'vi': no file .*Vietnamese\.xml or .*Vietnamese\.xml\.gz"
    ):
        load_probe_corpus("bible_ces", {"dir": str(FIXTURES / "bible_ces")}, ["en", "vi"])


# ---------------------------------------------------------------- Bible, OPUS bible-uedin


def opus_zips(tmp_path):
    """The fixture pairs packed as OPUS serves them: <pair>.txt.zip."""
    for pair in ("en-fr", "en-zh", "ar-en"):
        with zipfile.ZipFile(tmp_path / f"{pair}.txt.zip", "w") as zipped:
            for member in sorted((FIXTURES / "opus").glob(f"bible-uedin.{pair}.*")):
                zipped.write(member, member.name)
            zipped.writestr("README", "bible-uedin\n")
    return tmp_path


@pytest.mark.parametrize("packed", [False, True])
def test_bible_opus_aligns_pairs_by_verse_id_not_row(tmp_path, packed):
    folder = opus_zips(tmp_path) if packed else FIXTURES / "opus"
    df = load_probe_corpus("bible_opus", {"dir": str(folder)}, ["en", "fr", "zh", "ar"])
    # en-fr holds 1:1-5, en-zh 1:2, 1:3, 1:5, 1:6, ar-en 1:1, 1:2, 1:5 one-to-one
    assert df["id"].unique().tolist() == ["b.GEN.1.2", "b.GEN.1.5"]
    texts = df.set_index(["id", "lang"])["text"]
    # row 0 of en-zh is verse 1:2 while row 0 of en-fr is 1:1: rows would misalign
    assert texts["b.GEN.1.2", "zh"] == "地是空虚混沌，渊面黑暗；神的灵运行在水面上。"
    assert texts["b.GEN.1.2", "fr"].startswith("La terre était informe et vide")
    assert texts["b.GEN.1.5", "zh"] == "神称光为昼，称暗为夜。有晚上，有早晨，这是头一日。"
    assert texts["b.GEN.1.5", "ar"].startswith("ودعا الله النور نهارا")
    assert texts["b.GEN.1.5", "en"] == EN_5


def test_bible_opus_records_what_each_pair_lost(tmp_path):
    df = load_probe_corpus(
        "bible_opus", {"dir": str(opus_zips(tmp_path))}, ["en", "fr", "zh", "ar"]
    )
    alignment = df.attrs["alignment"]
    assert alignment["aligned_by"] == "ids" and alignment["items_in_every_language"] == 2
    pairs = alignment["pairs"]
    assert pairs["en-fr"] == {
        "pair": "en-fr",
        "aligned_by": "ids",
        "lines": 5,
        "dropped_not_one_to_one": 0,
        "dropped_empty": 0,
        "verses": 5,
        "not_in_every_pair": 3,
        "kept": 2,
        "lost": 3,
    }
    assert pairs["ar-en"]["dropped_not_one_to_one"] == 1  # 1:3 linked to English 1:3+1:4
    assert (pairs["ar-en"]["verses"], pairs["ar-en"]["kept"], pairs["ar-en"]["lost"]) == (3, 2, 2)


def opus_zips_without_ids(tmp_path, with_ids=("en-fr",)):
    """The fixture pairs as zips, ``.ids`` only in ``with_ids``; en-zh in reverse
    order with one English line twice (two Chinese verses): ambiguous."""
    for pair in ("en-fr", "en-zh", "ar-en"):
        files = {
            m.name: m.read_text(encoding="utf-8").splitlines()
            for m in (FIXTURES / "opus").glob(f"bible-uedin.{pair}.*")
        }
        if pair == "en-zh":
            files = {name: lines[::-1] for name, lines in files.items()}
            files["bible-uedin.en-zh.en"].append(files["bible-uedin.en-zh.en"][2])  # 1:3 again
            files["bible-uedin.en-zh.zh"].append("神说：要有光。")
            files["bible-uedin.en-zh.ids"].append(files["bible-uedin.en-zh.ids"][2])
        with zipfile.ZipFile(tmp_path / f"{pair}.txt.zip", "w") as zipped:
            for name, lines in sorted(files.items()):
                if name.endswith(".ids") and pair not in with_ids:
                    continue
                zipped.writestr(name, "\n".join(lines) + "\n")
            zipped.writestr("README", "bible-uedin\n")
    return tmp_path


def test_bible_opus_without_ids_aligns_by_english_text(tmp_path):
    """docs/method.md §8: without an .ids member, pairs join on the English line; an
    English line twice in one pair is ambiguous and dropped from that pair."""
    folder = opus_zips_without_ids(tmp_path)
    df = load_probe_corpus("bible_opus", {"dir": str(folder)}, ["en", "fr", "zh", "ar"])
    # en-fr 1:1-5; en-zh (reversed) 1:2, 1:5, 1:6 and 1:3 twice (dropped); ar-en 1:1,
    # 1:2, 1:3+1:4 (one English line, in no other pair) and 1:5; named by en-fr's ids
    assert df["id"].unique().tolist() == ["b.GEN.1.2", "b.GEN.1.5"]
    texts = df.set_index(["id", "lang"])["text"]
    assert texts["b.GEN.1.2", "zh"] == "地是空虚混沌，渊面黑暗；神的灵运行在水面上。"
    assert texts["b.GEN.1.5", "ar"].startswith("ودعا الله النور نهارا")
    assert texts["b.GEN.1.5", "en"] == EN_5
    alignment = df.attrs["alignment"]
    assert alignment["aligned_by"] == "english_text"
    zh = alignment["pairs"]["en-zh"]
    assert (zh["lines"], zh["dropped_ambiguous"], zh["verses"]) == (5, 2, 3)
    assert (zh["not_in_every_pair"], zh["kept"], zh["lost"]) == (1, 2, 3)
    ar = alignment["pairs"]["ar-en"]
    assert (ar["lines"], ar["dropped_ambiguous"], ar["kept"], ar["lost"]) == (4, 0, 2, 2)
    # French without the ambiguous pair: 1:3 is in en-fr and ar-en has it merged
    fr_ar = load_probe_corpus("bible_opus", {"dir": str(folder)}, ["fr", "ar"])
    assert fr_ar["id"].unique().tolist() == ["b.GEN.1.1", "b.GEN.1.2", "b.GEN.1.5"]


def test_bible_opus_without_any_ids_names_items_by_their_english_text(tmp_path):
    folder = opus_zips_without_ids(tmp_path, with_ids=())
    df = load_probe_corpus("bible_opus", {"dir": str(folder)}, ["en", "zh"])
    english = df.loc[df["lang"] == "en"]
    assert len(english) == 3  # 1:2, 1:5, 1:6 (1:3 ambiguous)
    for item, text in zip(english["id"], english["text"], strict=True):
        assert item == "en#" + hashlib.sha1(text.encode()).hexdigest()[:12]


def test_prepare_probe_writes_the_alignment_beside_the_probe(tmp_path):
    (tmp_path / "opus").mkdir()
    folder = opus_zips_without_ids(tmp_path / "opus")
    section = {"source": "bible_opus", "options": {"dir": str(folder)}, "n_items": 2}
    section["sampling"] = "first"
    out = tmp_path / "results" / "data"
    prepare_probe(section, ["en", "fr", "zh", "ar"], 0, out / "probe.tsv", out / "alignment.json")
    record = json.loads((out / "alignment.json").read_text())
    assert record["source"] == "bible_opus" and record["aligned_by"] == "english_text"
    assert record["pairs"]["en-zh"]["dropped_ambiguous"] == 2
    assert record["languages"] == ["en", "fr", "zh", "ar"]
    assert read_probe(out / "probe.tsv")["item"].tolist() == ["b.GEN.1.2", "b.GEN.1.5"] * 4


def test_bible_opus_without_english_still_joins_on_english_ids():
    df = load_probe_corpus("bible_opus", {"dir": str(FIXTURES / "opus")}, ["fr", "zh"])
    assert df["id"].unique().tolist() == ["b.GEN.1.2", "b.GEN.1.3", "b.GEN.1.5"]
    assert df.loc[df["lang"] == "zh", "text"].tolist()[1] == "神说：要有光，就有了光。"


def test_bible_opus_keeps_english_documents_apart(tmp_path):
    opus_with_two_english_documents(tmp_path)
    df = load_probe_corpus("bible_opus", {"dir": str(tmp_path)}, ["en", "fr", "zh"])
    # en-fr's verse 1:2 comes from another English document than en-zh's
    assert df["id"].unique().tolist() == [
        "en/English.xml.gz#b.GEN.1.3",
        "en/English.xml.gz#b.GEN.1.5",
    ]


# docs/method.md §8: the corpus's English is the World English Bible; Genesis 1:1-3 as
# the paper prints them (straight quotes), and as typeset releases of the WEB have them
WEB_GENESIS = (
    "In the beginning God created the heavens and the earth.",
    (
        "Now the earth was formless and empty. Darkness was on the surface of the deep."
        " God's Spirit was hovering over the surface of the waters."
    ),
    'God said, "Let there be light," and there was light.',
)
WEB_GENESIS_TYPESET = (
    WEB_GENESIS[0],
    WEB_GENESIS[1].replace("God's", "God\u2019s"),
    "God said, \u201cLet there be light,\u201d and there was light.",
)
GENESIS_FR = (
    "Au commencement, Dieu créa les cieux et la terre.",
    (
        "La terre était informe et vide: il y avait des ténèbres à la surface de l'abîme,"
        " et l'esprit de Dieu se mouvait au-dessus des eaux."
    ),
    "Dieu dit: Que la lumière soit! Et la lumière fut.",
)
GENESIS_ZH = (
    "起初，神创造天地。",
    "地是空虚混沌，渊面黑暗；神的灵运行在水面上。",
    "神说：要有光，就有了光。",
)
GENESIS_AR = (
    "في البدء خلق الله السماوات والأرض.",
    "وكانت الأرض خربة وخالية، وعلى وجه الغمر ظلمة، وروح الله يرف على وجه المياه.",
    "وقال الله: ليكن نور، فكان نور.",
)


def genesis_zips(folder, english=None, drop=None):
    """OPUS zips without any .ids member whose pairs hold Genesis 1:1-3 (WEB English)
    among other verses, in their own orders: en-fr with the paper's straight quotes and
    doubled spaces, en-zh typeset (curly quotes), ar-en straight. ``drop``: (pair,
    verse index) of a Genesis verse that pair lacks."""
    english = english or {"en-fr": WEB_GENESIS, "en-zh": WEB_GENESIS_TYPESET, "ar-en": WEB_GENESIS}
    other = {"en-fr": GENESIS_FR, "en-zh": GENESIS_ZH, "ar-en": GENESIS_AR}
    extra = {  # Genesis 1:5 (KJV English, as the fixture files have it), in every pair
        "en-fr": (EN_5, "Dieu appela la lumière jour, et il appela les ténèbres nuit."),
        "en-zh": (EN_5, "神称光为昼，称暗为夜。有晚上，有早晨，这是头一日。"),
        "ar-en": (EN_5, "ودعا الله النور نهارا، والظلمة دعاها ليلا."),
    }
    for pair, code in (("en-fr", "fr"), ("en-zh", "zh"), ("ar-en", "ar")):
        lines = [
            (e, o) for n, (e, o) in enumerate(zip(english[pair], other[pair])) if drop != (pair, n)
        ]
        lines.append(extra[pair])
        if pair == "en-fr":
            lines = [(e.replace(". ", ".  "), o) for e, o in lines]
        if pair == "en-zh":
            lines.reverse()
        with zipfile.ZipFile(folder / f"{pair}.txt.zip", "w") as zipped:
            zipped.writestr(f"bible-uedin.{pair}.en", "".join(f"{e}\n" for e, _ in lines))
            zipped.writestr(f"bible-uedin.{pair}.{code}", "".join(f"{o}\n" for _, o in lines))
            zipped.writestr("README", "bible-uedin\n")
    return folder


def test_bible_opus_without_ids_finds_genesis_by_its_english_text(tmp_path):
    """docs/method.md §8: without any .ids the verse ids are unknown, yet Genesis 1:1-3
    are found by their World English Bible text (quote marks and whitespace
    normalised) and get the ids they have in the corpus, so the generation prompts are
    the paper's whether or not the zips hold .ids."""
    from lingua_franca.corpora import choose_prompts

    section = {"source": "bible_opus", "options": {"dir": str(genesis_zips(tmp_path))}}
    languages = ["en", "fr", "zh", "ar"]
    df = load_probe_corpus(section["source"], section["options"], languages)
    probe = make_probe(df, languages, [df["id"].iloc[-1]])
    chosen = choose_prompts(section, {"prompts_per_language": 3, "prompts": None}, languages, probe)
    ids = df["id"].unique().tolist()
    assert ids[:3] == ["b.GEN.1.1", "b.GEN.1.2", "b.GEN.1.3"] and len(ids) == 4
    assert ids[3].startswith("en#")  # 1:5: no id known
    assert chosen["source"] == "genesis"
    for lang, texts in (("fr", GENESIS_FR), ("zh", GENESIS_ZH), ("ar", GENESIS_AR)):
        assert [p["item"] for p in chosen["prompts"][lang]] == [
            "b.GEN.1.1",
            "b.GEN.1.2",
            "b.GEN.1.3",
        ]
        assert [p["text"] for p in chosen["prompts"][lang]] == list(texts)
    assert chosen["prompts"]["en"][2]["text"] in (WEB_GENESIS[2], WEB_GENESIS_TYPESET[2])


def test_genesis_lacking_in_one_language_still_stops_the_prompts(tmp_path):
    """A corpus without Genesis 1:2 in one pair gets the clear error it gets with .ids."""
    from lingua_franca.corpora import choose_prompts

    folder = genesis_zips(tmp_path, drop=("ar-en", 1))
    section = {"source": "bible_opus", "options": {"dir": str(folder)}}
    languages = ["en", "fr", "ar"]
    df = load_probe_corpus(section["source"], section["options"], languages)
    assert "b.GEN.1.2" not in set(df["id"]) and "b.GEN.1.3" in set(df["id"])
    probe = make_probe(df, languages, ["b.GEN.1.1"])
    with pytest.raises(
        CorpusError,
        match=r"b\.GEN\.1\.2 \(Genesis, the generation prompts\) is not in every language",
    ):
        choose_prompts(section, {"prompts_per_language": 3, "prompts": None}, languages, probe)


def test_an_english_verse_of_another_translation_is_not_taken_for_genesis(tmp_path):
    """Only the WEB's wording is recognised: a KJV Genesis 1:1 keeps a text id."""
    kjv = ("In the beginning God created the heaven and the earth.", *WEB_GENESIS[1:])
    folder = genesis_zips(tmp_path, english={"en-fr": kjv, "en-zh": kjv, "ar-en": kjv})
    df = load_probe_corpus("bible_opus", {"dir": str(folder)}, ["en", "fr"])
    ids = df["id"].unique().tolist()
    assert ids[0].startswith("en#") and ids[1:3] == ["b.GEN.1.2", "b.GEN.1.3"]


def test_bible_opus_errors(tmp_path):
    with pytest.raises(
        CorpusError,
        match=r"pair en-vi \(language 'vi'\): neither .*en-vi\.txt\.zip"
        r" nor .*en-vi\.en, .*en-vi\.vi \(the fetch step downloads it: snakemake --configfile CONFIG fetch\)$",
    ):
        load_probe_corpus("bible_opus", {"dir": str(FIXTURES / "opus")}, ["en", "vi"])
    with pytest.raises(CorpusError, match="configure a language besides 'en'"):
        load_probe_corpus("bible_opus", {"dir": str(FIXTURES / "opus")}, ["en"])
    for member in (FIXTURES / "opus").glob("bible-uedin.en-fr.*"):
        shutil.copy(member, tmp_path)
    with open(tmp_path / "bible-uedin.en-fr.fr", "a", encoding="utf-8") as extra:
        extra.write("Une ligne de trop.\n")
    with pytest.raises(CorpusError, match=r"pair en-fr .*the files differ in length"):
        load_probe_corpus("bible_opus", {"dir": str(tmp_path)}, ["en", "fr"])


# ---------------------------------------------------------------- FLORES


def test_flores200_layout():
    options = {"dir": str(FIXTURES / "flores200_dataset"), "split": "dev"}
    df = load_probe_corpus("flores", options, ["en", "fr", "zh"])
    assert df["id"].tolist() == ["1", "2", "3"] * 3
    assert df["text"].iloc[6].startswith("周一")


@pytest.mark.parametrize("suffix", ["parquet", "jsonl"])
def test_flores_plus_layout(tmp_path, suffix):
    (tmp_path / "dev").mkdir()
    source = FIXTURES / "flores200_dataset" / "dev"
    for stem, plus in [
        ("eng_Latn", "eng_Latn"),
        ("fra_Latn", "fra_Latn"),
        ("zho_Hans", "cmn_Hans"),
    ]:
        texts = (source / f"{stem}.dev").read_text(encoding="utf-8").splitlines()
        frame = pd.DataFrame({"id": range(len(texts)), "iso_639_3": stem[:3], "text": texts})
        target = tmp_path / "dev" / f"{plus}.{suffix}"
        if suffix == "parquet":
            frame.to_parquet(target)
        else:
            frame.to_json(target, orient="records", lines=True, force_ascii=False)
    df = load_probe_corpus("flores", {"dir": str(tmp_path)}, ["en", "fr", "zh"])
    assert df["id"].tolist() == ["0", "1", "2"] * 3
    assert df["text"].iloc[6].startswith("周一")


def test_flores_errors(tmp_path):
    folder = str(FIXTURES / "flores200_dataset")
    with pytest.raises(CorpusError, match=r"language 'vi': no file .*vie_Latn\.dev"):
        load_probe_corpus("flores", {"dir": folder}, ["en", "vi"])
    with pytest.raises(CorpusError, match=r"no dev file for 'en'; tried .*eng_Latn\.parquet"):
        load_probe_corpus("flores", {"dir": str(tmp_path)}, ["en"])
    with pytest.raises(CorpusError, match="FLORES layout 'nllb' is unknown"):
        load_probe_corpus("flores", {"dir": folder, "layout": "nllb"}, ["en"])


def test_flores_unequal_files_fail_validation(tmp_path):
    shutil.copytree(FIXTURES / "flores200_dataset", tmp_path / "f")
    with open(tmp_path / "f" / "dev" / "fra_Latn.dev", "a", encoding="utf-8") as extra:
        extra.write("Une phrase de trop.\n")
    with pytest.raises(CorpusError, match=r"item '4', language 'en': missing"):
        load_probe_corpus("flores", {"dir": str(tmp_path / "f")}, ["en", "fr"])


# ---------------------------------------------------------------- XL-Sum and plain text


def test_xlsum_data_files_default_is_the_fetched_copy_of_the_hub_parquet_branch():
    # the fetch step writes the branch's <config>/validation/*.parquet under data/xlsum
    assert xlsum_data_files("zh", {}) == "data/xlsum/chinese_simplified/validation/*.parquet"
    hub = {"dir": "hf://datasets/csebuetnlp/xlsum@refs%2Fconvert%2Fparquet"}
    assert xlsum_data_files("zh", hub) == (
        "hf://datasets/csebuetnlp/xlsum@refs%2Fconvert%2Fparquet/chinese_simplified/validation/*.parquet"
    )
    local = {"dir": "data/xlsum", "pattern": "{config}_val.jsonl"}
    assert xlsum_data_files("en", local) == "data/xlsum/english_val.jsonl"
    with pytest.raises(CorpusError, match="language 'eu' has no XL-Sum config"):
        xlsum_data_files("eu", {})


def test_xlsum_from_local_parquet_copy(tmp_path):
    for config in ("english", "french"):
        records = [json.loads(line) for line in (FIXTURES / "xlsum" / f"{config}_val.jsonl").open()]
        (tmp_path / config / "validation").mkdir(parents=True)
        pd.DataFrame(records).to_parquet(tmp_path / config / "validation" / "0000.parquet")
    options = {"dir": str(tmp_path), "cache_dir": str(tmp_path / "cache")}
    texts = load_perplexity_texts("xlsum", options, ["en", "fr"], max_articles=2)
    first, second = texts["en"].split("\n\n")
    assert first.startswith("The village of Tal Y Bont")
    assert first.endswith("co-operative.\nVolunteers will staff the counter six days a week.")
    assert second.startswith("A rare white stork")
    assert texts["fr"].count("\n\n") == 1


def test_xlsum_from_json_lines(tmp_path):
    options = {
        "dir": str(FIXTURES / "xlsum"),
        "pattern": "{config}_val.jsonl",
        "cache_dir": str(tmp_path),
    }
    texts = load_perplexity_texts("xlsum", options, ["fr"])
    assert (
        texts["fr"].split("\n\n")[2]
        == "De fortes pluies ont fermé plusieurs routes du département."
    )


def test_xlsum_errors(tmp_path):
    options = {"dir": str(tmp_path), "cache_dir": str(tmp_path)}
    with pytest.raises(
        CorpusError, match=r"XL-Sum en: no file matches .*english/validation/\*\.parquet"
    ):
        load_perplexity_texts("xlsum", options, ["en"])
    with pytest.raises(CorpusError, match="max_articles must be at least 1"):
        load_perplexity_texts("xlsum", options, ["en"], max_articles=0)


def test_text_files(tmp_path):
    (tmp_path / "en.txt").write_text("One.\n\nTwo.\n", encoding="utf-8")
    assert load_perplexity_texts("text_files", {"dir": str(tmp_path)}, ["en"]) == {
        "en": "One.\n\nTwo.\n"
    }
    with pytest.raises(CorpusError, match=r"perplexity text of 'fr': .*fr\.txt not found"):
        load_perplexity_texts("text_files", {"dir": str(tmp_path)}, ["fr"])
    with pytest.raises(CorpusError, match="unknown perplexity source 'wiki'"):
        load_perplexity_texts("wiki", {}, ["en"])


# ---------------------------------------------------------------- XStoryCloze


def test_xstorycloze_stories_and_missing_languages():
    options = {"dir": str(FIXTURES / "xstorycloze"), "split": "eval"}
    stories, missing = load_stories("xstorycloze", options, ["en", "zh", "fr", "es", "pt", "vi"])
    assert missing == ["fr", "pt", "vi"]
    assert sorted(stories) == ["en", "es", "zh"]
    first = stories["zh"][0]
    assert first["story_id"] == "138d5bfb-05cc-41e3-bf2c-fa85ebad14e2"
    assert first["input_sentence_1"] == "里克在一个问题家庭中长大。"
    assert first["sentence_quiz2"] == "他加入了一个帮派。"
    assert first["answer_right_ending"] == 1
    assert [s["story_id"] for s in stories["es"]] == [s["story_id"] for s in stories["en"]]


def test_xstorycloze_default_languages_are_those_the_source_holds(tmp_path):
    stories, missing = load_stories("xstorycloze", {"dir": str(FIXTURES / "xstorycloze")}, None)
    assert list(stories) == ["en", "zh", "es"] and missing == []  # the language table's order
    with pytest.raises(CorpusError, match="no XStoryCloze file for split 'eval'"):
        load_stories("xstorycloze", {"dir": str(tmp_path)}, None)


def test_xstorycloze_errors(tmp_path):
    with pytest.raises(
        CorpusError, match=r"spring2016\.val\.ar\.tsv\.split_20_80_eval\.tsv: file not found"
    ):
        load_stories("xstorycloze", {"dir": str(FIXTURES / "xstorycloze")}, ["en", "ar"])
    with pytest.raises(CorpusError, match="XStoryCloze split 'test' is unknown"):
        load_stories("xstorycloze", {"dir": str(FIXTURES / "xstorycloze"), "split": "test"}, ["en"])
    source = FIXTURES / "xstorycloze" / "spring2016.val.en.tsv.split_20_80_eval.tsv"
    lines = source.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].rsplit("\t", 1)[0] + "\t3"
    (tmp_path / source.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(
        CorpusError, match=r"story '138d5bfb.*', language 'en': answer_right_ending must be 1 or 2"
    ):
        load_stories("xstorycloze", {"dir": str(tmp_path)}, ["en"])


def test_xstorycloze_trailing_columns_must_be_empty(tmp_path):
    """The published Spanish file has 10 columns, the last two empty (the fixture has
    them, and test_xstorycloze_stories_and_missing_languages reads it); anything in
    them is an error naming the file and the line."""
    source = FIXTURES / "xstorycloze" / "spring2016.val.es.tsv.split_20_80_eval.tsv"
    lines = source.read_text(encoding="utf-8").splitlines()
    assert all(line.count("\t") == 9 and line.endswith("\t\t") for line in lines)
    lines[2] += "oops"  # in the 10th column
    (tmp_path / source.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError) as info:
        load_stories("xstorycloze", {"dir": str(tmp_path)}, ["es"])
    message = str(info.value)
    assert source.name in message and "line 3: 10 tab-separated fields" in message
    assert "after the 8th must be empty; found ['oops']" in message
    lines[2] = "\t".join(lines[2].split("\t")[:6])
    (tmp_path / source.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="line 3: expected 8 tab-separated fields, found 6"):
        load_stories("xstorycloze", {"dir": str(tmp_path)}, ["es"])


# ---------------------------------------------------------------- embedded demo format

STORY = {
    "input_sentence_1": "Tom bought a kite.",
    "input_sentence_2": "He took it to the beach.",
    "input_sentence_3": "The wind was strong.",
    "input_sentence_4": "The kite flew high.",
    "sentence_quiz1": "Tom was happy.",
    "sentence_quiz2": "Tom hated kites.",
    "answer_right_ending": 1,
}


@pytest.fixture
def demo_dir(tmp_path):
    """A small folder in the embedded demo's format."""
    languages = ["en", "zh", "fr"]
    write_tsv(tmp_path / "probe.tsv", parallel_rows([f"p{n}" for n in range(1, 7)], languages))
    write_tsv(tmp_path / "heldout.tsv", parallel_rows(["h1", "h2"], languages))
    write_tsv(tmp_path / "train_part2.tsv", parallel_rows(["t2"], languages))
    write_tsv(tmp_path / "train_part10.tsv", parallel_rows(["t10"], languages))
    write_tsv(tmp_path / "train_part1.tsv", parallel_rows(["t1"], languages))
    stories = [
        {"story_id": f"s{n}", "lang": lang, **STORY} for n in (1, 2) for lang in ("en", "zh")
    ]
    (tmp_path / "stories.jsonl").write_text(
        "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in stories), encoding="utf-8"
    )
    return tmp_path


def test_embedded_readers(demo_dir):
    options = {"dir": str(demo_dir)}
    probe = load_probe_corpus("embedded", options, ["en", "fr"])
    assert probe["id"].tolist() == [f"p{n}" for n in range(1, 7)] * 2
    texts = load_perplexity_texts("embedded", options, ["zh", "fr"])
    assert texts == {"zh": "zh text of h1\n\nzh text of h2", "fr": "fr text of h1\n\nfr text of h2"}
    stories, missing = load_stories("embedded", options, ["en", "zh", "fr"])
    assert missing == ["fr"]
    assert [s["story_id"] for s in stories["zh"]] == ["s1", "s2"]
    assert "lang" not in stories["zh"][0]


def test_embedded_stories_errors(demo_dir):
    bad = {"story_id": "s9", "lang": "en", **STORY, "sentence_quiz2": ""}
    with open(demo_dir / "stories.jsonl", "a", encoding="utf-8") as out:
        out.write(json.dumps(bad) + "\n{not json\n")
    with pytest.raises(CorpusError, match=r"(?s)stories\.jsonl: 1 problem\(s\).*line 6: not JSON"):
        load_stories("embedded", {"dir": str(demo_dir)}, ["en"])
    lines = (demo_dir / "stories.jsonl").read_text(encoding="utf-8").splitlines()[:-1]
    (demo_dir / "stories.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"story 's9', language 'en': empty sentence_quiz2"):
        load_stories("embedded", {"dir": str(demo_dir)}, ["en"])


@pytest.mark.skipif(
    not all((DEMO / name).exists() for name in ("probe.tsv", "heldout.tsv", "stories.jsonl")),
    reason="the embedded demo files in resources/corpus/ are not written yet",
)
def test_embedded_demo_data_validates_for_the_paper_languages():
    options = {"dir": str(DEMO)}
    probe = load_probe_corpus("embedded", options, PAPER_LANGUAGES)
    assert probe["lang"].unique().tolist() == PAPER_LANGUAGES
    texts = load_perplexity_texts("embedded", options, PAPER_LANGUAGES)
    assert all(texts[lang].strip() for lang in PAPER_LANGUAGES)
    stories, missing = load_stories("embedded", options, PAPER_LANGUAGES)
    assert missing == ["fr", "pt", "vi"]
    assert sorted(stories) == sorted(["en", "zh", "es", "ar", "hi", "id"])


# ---------------------------------------------------------------- sampling and the probe file


def corpus(n_items=10, languages=("en", "zh", "fr")):
    return table(parallel_rows([f"v{n:02d}" for n in range(n_items)], languages))


def test_random_sampling_is_reproducible_and_seeded():
    df = corpus(50)
    first = sample_items(df, 10, "random", seed=7)
    assert sample_items(df, 10, "random", seed=7) == first
    assert sample_items(df, 10, "random", seed=8) != first
    assert len(set(first)) == 10 and set(first) <= set(df["id"])
    assert first != sorted(first)  # draw order, not corpus order


def test_first_sampling_and_limits():
    df = corpus(10)
    assert sample_items(df, 3, "first", seed=0) == ["v00", "v01", "v02"]
    assert sample_items(df, None, "first", seed=0) == [f"v{n:02d}" for n in range(10)]
    with pytest.raises(CorpusError, match="cannot take 11 probe items: the corpus holds 10 items"):
        sample_items(df, 11, "random", seed=0)
    with pytest.raises(CorpusError, match="unknown probe sampling 'stratified'"):
        sample_items(df, 3, "stratified", seed=0)


def test_probe_order_language_blocks_with_same_item_order():
    languages = ["fr", "en", "zh"]
    items = sample_items(corpus(), 4, "random", seed=1)
    probe = make_probe(corpus(), languages, items)
    assert list(probe.columns) == ["row", "lang", "item", "text"]
    assert probe["row"].tolist() == list(range(12))
    assert probe["lang"].tolist() == ["fr"] * 4 + ["en"] * 4 + ["zh"] * 4
    for lang in languages:
        assert probe.loc[probe["lang"] == lang, "item"].tolist() == items
    assert probe.loc[5, "text"] == f"en text of {items[1]}"


def test_make_probe_rejects_unknown_items():
    with pytest.raises(CorpusError, match="item 'nope', language 'en': not in the corpus"):
        make_probe(corpus(), ["en"], ["v01", "nope"])


def test_probe_file_round_trip(tmp_path):
    probe = make_probe(corpus(), ["en", "zh"], ["v03", "v01", "v07"])
    path = tmp_path / "results" / "probe.tsv"
    write_probe(probe, path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "row\tlang\titem\ttext"
    assert lines[1] == "0\ten\tv03\ten text of v03"
    assert lines[4] == "3\tzh\tv03\tzh text of v03"
    back = read_probe(path, ["en", "zh"])
    pd.testing.assert_frame_equal(back, probe, check_dtype=False)
    assert back["row"].dtype.kind == "i"


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda p: p.iloc[[3, 4, 5, 0, 1, 2]].assign(row=range(6)),
            r"language blocks are \['zh', 'en'\]",
        ),
        (lambda p: p.assign(row=[0, 1, 2, 3, 5, 4]), "column row must count 0, 1, 2"),
        (
            lambda p: p.iloc[[0, 1, 2, 4, 3, 5]].assign(row=range(6)),
            (
                r"language 'zh': item order differs from 'en' at position 0"
                r" \(found 'v01', expected 'v03'\)"
            ),
        ),
        (lambda p: p.iloc[[0, 3, 1, 4, 2, 5]].assign(row=range(6)), "one contiguous block"),
    ],
)
def test_read_probe_rejects_a_broken_file(tmp_path, edit, message):
    probe = make_probe(corpus(), ["en", "zh"], ["v03", "v01", "v07"])
    path = tmp_path / "probe.tsv"
    broken = edit(probe)
    path.write_text(broken.to_csv(sep="\t", index=False), encoding="utf-8")
    with pytest.raises(CorpusError, match=message):
        read_probe(path, ["en", "zh"])


def test_build_probe_end_to_end(demo_dir):
    options = {"dir": str(demo_dir)}
    probe = build_probe("embedded", options, ["zh", "en"], n_items=3, sampling="random", seed=0)
    write_probe(probe, demo_dir / "results" / "probe.tsv")
    back = read_probe(demo_dir / "results" / "probe.tsv", ["zh", "en"])
    assert len(back) == 6
    assert back["item"].tolist()[:3] == back["item"].tolist()[3:]
    assert back["item"].tolist()[:3] == sample_items(
        load_probe_corpus("embedded", options, ["zh", "en"]), 3, "random", 0
    )


def test_prepare_functions_write_what_later_rules_read(demo_dir):
    options = {"dir": str(demo_dir)}
    out = demo_dir / "results" / "data"
    probe_section = {"source": "embedded", "options": options, "n_items": 4, "sampling": "first"}
    prepare_probe(probe_section, ["en", "fr"], 0, out / "probe.tsv")
    probe = read_probe(out / "probe.tsv", ["en", "fr"])
    assert probe["item"].tolist() == ["p1", "p2", "p3", "p4"] * 2
    ppl_section = {"source": "embedded", "options": options, "max_articles": 500}
    prepare_perplexity_text(ppl_section, "fr", out / "perplexity" / "fr.txt")
    assert (out / "perplexity" / "fr.txt").read_text(encoding="utf-8") == (
        "fr text of h1\n\nfr text of h2"
    )
    section = {"source": "embedded", "options": options, "languages": ["en", "fr"]}
    prepare_stories(section, out / "stories.json")
    data = json.loads((out / "stories.json").read_text(encoding="utf-8"))
    assert data["missing"] == ["fr"] and list(data["stories"]) == ["en"]
    assert data["stories"]["en"][0] == {"story_id": "s1", **STORY}
    # the story languages are their own list: null takes every language the file holds,
    # whatever the probe languages
    prepare_stories({**section, "languages": None}, out / "stories.json")
    data = json.loads((out / "stories.json").read_text(encoding="utf-8"))
    assert data["missing"] == [] and list(data["stories"]) == ["en", "zh"]


def test_package_never_imports_snakemake():
    code = "import sys, lingua_franca.corpora; assert 'snakemake' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO / "scripts")
