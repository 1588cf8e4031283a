"""The Bible parallel corpus (Christodoulopoulos & Steedman 2015), in its two releases.

**CES XML** (github.com/christos-c/bible-corpus, ``bibles/<Language>.xml``): one file
per language, ``cesDoc > text > body > div[type=book] > div[type=chapter] >
seg[type=verse]``, each verse ``<seg id="b.GEN.1.1" type="verse">``. A verse a
translation lacks is absent or empty. Files may be gzipped (``.xml.gz``).

**OPUS bible-uedin** (what Hugging Face ``bible_para`` wraps): one Moses zip per
language pair, ``https://object.pouta.csc.fi/OPUS-bible-uedin/v1/moses/<pair>.txt.zip``,
the pair named by its two codes in alphabetical order (``en-fr``, ``ar-en``). It holds
``bible-uedin.<pair>.<code>`` for each side (one sentence per line, lines aligned)
and ``bible-uedin.<pair>.ids``: per line, tab-separated, the two documents and the
two sides' sentence ids (space-separated when a link joins several). ``bible_para``
numbers the rows 0, 1, ... and drops the ids, and pairs differ in which verses they
hold, so row numbers say nothing across pairs: here the English-paired pairs are
joined on the English side's (document, sentence id), and only one-to-one links are
kept. The item id is the English sentence id (``document#id`` should the pairs name
more than one English document).

Both keep a verse only if every configured language has it.
"""

from __future__ import annotations

import gzip
import logging
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pandas as pd

from lingua_franca.corpora.parallel import (
    PARALLEL_COLUMNS,
    CorpusError,
    raise_problems,
    require_option,
)
from lingua_franca.languages import get_language

log = logging.getLogger(__name__)

OPUS_CORPUS = "bible-uedin"
PIVOT = "en"  # OPUS pairs used here are English-paired


def read_ces(options: dict, languages: list[str]) -> pd.DataFrame:
    """Verses present in every language's CES file, ids ``b.BOOK.CHAPTER.VERSE``."""
    folder = Path(require_option(options, "dir", "bible_ces"))
    paths = ces_files(options, languages)
    verses = {lang: _read_ces_file(path, lang) for lang, path in paths.items()}
    return _common_verses(verses, languages, f"Bible CES corpus in {folder}")


def ces_files(options: dict, languages: list[str]) -> dict[str, Path]:
    """Each language's CES file: ``files[lang]`` or ``<Language>.xml`` (or ``.xml.gz``)
    in ``dir``; CorpusError naming every language without one."""
    folder = Path(require_option(options, "dir", "bible_ces"))
    files = options.get("files", {})
    paths, problems = {}, []
    for lang in languages:
        name = get_language(lang).name
        candidates = (
            [folder / files[lang]]
            if lang in files
            else [folder / f"{name}.xml", folder / f"{name}.xml.gz"]
        )
        found = [p for p in candidates if p.exists()]
        if found:
            paths[lang] = found[0]
        else:
            problems.append(f"language {lang!r}: no file {' or '.join(str(p) for p in candidates)}")
    raise_problems(f"Bible CES corpus in {folder}", problems)
    return paths


def _read_ces_file(path: Path, lang: str) -> dict[str, str]:
    """Verse id -> text (whitespace collapsed) of one CES file; empty verses left out."""
    verses, problems = {}, []
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            for _, element in ET.iterparse(handle):
                verse = element.get("id")
                if element.tag == "seg" and verse:
                    text = " ".join("".join(element.itertext()).split())
                    if verse in verses:
                        problems.append(
                            f"verse {verse!r}, language {lang!r}: appears more than once"
                        )
                    elif text:
                        verses[verse] = text
                    element.clear()
    except ET.ParseError as err:
        raise CorpusError(f"{path}: not well-formed XML ({err})") from None
    raise_problems(str(path), problems)
    return verses


def read_opus(options: dict, languages: list[str]) -> pd.DataFrame:
    """Verses present in every English-paired OPUS pair, ids = English sentence ids."""
    folder = Path(require_option(options, "dir", "bible_opus"))
    pivot = get_language(PIVOT).bible
    verses: dict[str, dict[tuple[str, str], str]] = {}
    for lang, _, codes in _pairs(languages):
        pivot_side, verses[lang] = _read_pair(folder, pivot, codes[1], lang)
        verses.setdefault(PIVOT, pivot_side)  # the English text of the first pair read
    # an item is an English sentence of an English document; its id is the sentence id
    # alone unless the pairs name more than one English document
    documents = {doc for side in verses.values() for doc, _ in side}

    def item(key: tuple[str, str]) -> str:
        return key[1] if len(documents) == 1 else f"{key[0]}#{key[1]}"

    by_item = {lang: {item(k): text for k, text in side.items()} for lang, side in verses.items()}
    return _common_verses(by_item, languages, f"OPUS {OPUS_CORPUS} in {folder}")


def _read_pair(
    folder: Path, pivot: str, code: str, lang: str
) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], str]]:
    """The English and the other texts of one pair's one-to-one links, both keyed by
    (English document, English sentence id)."""
    pair = "-".join(sorted([pivot, code]))
    lines = _pair_files(folder, pair, [pivot, code], lang)
    where = f"OPUS {OPUS_CORPUS} pair {pair} in {folder}"
    counts = {suffix: len(content) for suffix, content in lines.items()}
    if len(set(counts.values())) != 1:
        raise CorpusError(f"{where}: the files differ in length: {counts}")
    pivot_column = 2 if pair.startswith(f"{pivot}-") else 3  # .ids: doc1, doc2, ids1, ids2
    pivot_side, other_side, problems = {}, {}, []
    for number, (ids, pivot_text, other_text) in enumerate(
        zip(lines["ids"], lines[pivot], lines[code], strict=True), start=1
    ):
        fields = ids.split("\t")
        if len(fields) != 4:
            problems.append(
                f"bible-uedin.{pair}.ids line {number}: expected 4 tab-separated fields"
            )
            continue
        pivot_ids, other_ids = fields[pivot_column].split(), fields[5 - pivot_column].split()
        pivot_text, other_text = pivot_text.strip(), other_text.strip()
        if len(pivot_ids) == 1 and len(other_ids) == 1 and pivot_text and other_text:
            key = (fields[pivot_column - 2], pivot_ids[0])
            pivot_side.setdefault(key, pivot_text)
            other_side.setdefault(key, other_text)
    raise_problems(where, problems)
    if not other_side:
        raise CorpusError(f"{where}: no one-to-one verse link for language {lang!r}")
    return pivot_side, other_side


def _pairs(languages: list[str]) -> list[tuple[str, str, list[str]]]:
    """(language, pair, the pair's two codes) of every English-paired pair to read."""
    pivot = get_language(PIVOT).bible
    pairs = []
    for lang in languages:
        if lang != PIVOT:
            codes = [pivot, get_language(lang).bible]
            pairs.append((lang, "-".join(sorted(codes)), codes))
    if not pairs:
        raise CorpusError(
            "bible_opus: the OPUS pairs are English-paired; configure a language besides 'en'"
        )
    return pairs


def opus_files(options: dict, languages: list[str]) -> list[Path]:
    """The files the pairs of ``languages`` are read from: each pair's
    ``<pair>.txt.zip``, or its unpacked files; CorpusError naming a pair with neither."""
    folder = Path(require_option(options, "dir", "bible_opus"))
    return [
        path
        for lang, pair, codes in _pairs(languages)
        for path in _pair_paths(folder, pair, codes, lang)
    ]


def _pair_paths(folder: Path, pair: str, codes: list[str], language: str) -> list[Path]:
    archive = folder / f"{pair}.txt.zip"
    if archive.exists():
        return [archive]
    unpacked = [folder / f"{OPUS_CORPUS}.{pair}.{suffix}" for suffix in [*codes, "ids"]]
    absent = [str(path) for path in unpacked if not path.exists()]
    if absent:
        raise CorpusError(
            f"OPUS {OPUS_CORPUS} pair {pair} (language {language!r}):"
            f" neither {archive} nor {', '.join(absent)}"
        )
    return unpacked


def _pair_files(folder: Path, pair: str, codes: list[str], language: str) -> dict[str, list[str]]:
    """The lines of a pair's two text files and .ids file, from ``<pair>.txt.zip`` as
    OPUS serves it, or from those files unpacked in ``folder``."""
    names = {suffix: f"{OPUS_CORPUS}.{pair}.{suffix}" for suffix in [*codes, "ids"]}
    archive = folder / f"{pair}.txt.zip"
    contents = {}
    if _pair_paths(folder, pair, codes, language) == [archive]:
        with zipfile.ZipFile(archive) as zipped:
            for suffix, name in names.items():
                try:
                    contents[suffix] = zipped.read(name).decode("utf-8")
                except KeyError:
                    raise CorpusError(
                        f"{archive}: no member {name}; it holds {zipped.namelist()}"
                    ) from None
    else:
        for suffix, name in names.items():
            contents[suffix] = (folder / name).read_text(encoding="utf-8")
    return {suffix: text.removesuffix("\n").split("\n") for suffix, text in contents.items()}


def _common_verses(
    verses: dict[str, dict[str, str]], languages: list[str], where: str
) -> pd.DataFrame:
    """The table of the verses every language has, in the first language's order."""
    order = verses[languages[0]]
    common = [v for v in order if all(v in verses[lang] for lang in languages)]
    for lang in languages:
        log.info(
            "%s: %s holds %d verses, %d in every language",
            where,
            lang,
            len(verses[lang]),
            len(common),
        )
    if not common:
        raise CorpusError(f"{where}: no verse is present in every language {languages}")
    rows = [(v, lang, verses[lang][v]) for lang in languages for v in common]
    return pd.DataFrame(rows, columns=PARALLEL_COLUMNS, dtype=str)
