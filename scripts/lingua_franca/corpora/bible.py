"""The Bible parallel corpus (Christodoulopoulos & Steedman 2015), in its two releases.

**CES XML** (github.com/christos-c/bible-corpus, ``bibles/<Language>.xml``): one file
per language, ``cesDoc > text > body > div[type=book] > div[type=chapter] >
seg[type=verse]``, each verse ``<seg id="b.GEN.1.1" type="verse">``. A verse a
translation lacks is absent or empty. Files may be gzipped (``.xml.gz``).

**OPUS bible-uedin** (what Hugging Face ``bible_para`` wraps): one Moses zip per
language pair, ``https://object.pouta.csc.fi/OPUS-bible-uedin/v1/moses/<pair>.txt.zip``,
the pair named by its two codes in alphabetical order (``en-fr``, ``ar-en``). It holds
``bible-uedin.<pair>.<code>`` for each side (one sentence per line, lines aligned),
and may hold ``bible-uedin.<pair>.ids``: per line, tab-separated, the two documents
and the two sides' sentence ids (space-separated when a link joins several); public
loaders of these zips read only the two language files, so its presence is not
assumed. ``bible_para`` numbers the rows 0, 1, ... and pairs differ in which verses
they hold, so row numbers say nothing across pairs. The English-paired pairs are
joined on the English side (docs/method.md §8):

- when every pair has its ``.ids``, on the English (document, sentence id), keeping
  one-to-one links; the item id is the English sentence id (``document#id`` should the
  pairs name more than one English document);
- otherwise on the English side's text (whitespace collapsed, typographic quote marks
  made straight: ``english_key``): an English line that occurs more than once within a
  pair could belong to any of its verses, and is dropped. The item id is then the
  English sentence id where some pair's ``.ids`` names it; else, for Genesis 1:1-3
  (the generation prompts), its verse id, found by the World English Bible's wording
  (``GENESIS_WEB``); else ``en#`` and the first 12 hex digits of the key's sha1.

What each pair loses (links that are not one-to-one, ambiguous or empty lines, verses
another pair lacks) is logged and returned in the table's ``attrs["alignment"]``,
which the probe step writes beside the probe (``probe_alignment.json``).

Both keep a verse only if every configured language has it.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter
from pathlib import Path

import pandas as pd

from lingua_franca.corpora.parallel import (
    FETCH_HINT,
    PARALLEL_COLUMNS,
    CorpusError,
    raise_problems,
    require_option,
)
from lingua_franca.languages import get_language

log = logging.getLogger(__name__)

OPUS_CORPUS = "bible-uedin"
PIVOT = "en"  # OPUS pairs used here are English-paired

#: Genesis 1:1-3 in the corpus's English, the World English Bible, as the paper prints
#: them (its Tables 2-3): without .ids they are found by this text (docs/method.md §8)
GENESIS_WEB = {
    "b.GEN.1.1": "In the beginning God created the heavens and the earth.",
    "b.GEN.1.2": "Now the earth was formless and empty. Darkness was on the surface of the"
    " deep. God's Spirit was hovering over the surface of the waters.",
    "b.GEN.1.3": 'God said, "Let there be light," and there was light.',
}
# typeset releases of the WEB print curly quotes and apostrophes where others have straight
_STRAIGHT_QUOTES = str.maketrans(dict.fromkeys("\u201c\u201d\u201e\u201f\u2033", '"')) | (
    str.maketrans(dict.fromkeys("\u2018\u2019\u201a\u201b\u2032", "'"))
)


def english_key(text: str) -> str:
    """What English lines are compared by: whitespace collapsed, quote marks straight."""
    return " ".join(text.translate(_STRAIGHT_QUOTES).split())


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
    """Verses present in every English-paired OPUS pair, joined on the English side."""
    folder = Path(require_option(options, "dir", "bible_opus"))
    pivot = get_language(PIVOT).bible
    pairs = {
        lang: _pair_files(folder, pivot, codes[1], lang) for lang, _, codes in _pairs(languages)
    }
    others = list(pairs)
    by_ids = all(pair.ids is not None for pair in pairs.values())
    join = _join_by_ids if by_ids else _join_by_text
    verses, stats = join(pairs)
    where = f"OPUS {OPUS_CORPUS} in {folder}"
    table = _common_verses(verses, languages, where)
    common = set(table["id"])
    for lang, pair_stats in stats.items():
        pair_stats["not_in_every_pair"] = pair_stats["verses"] - len(common & set(verses[lang]))
        pair_stats["kept"] = pair_stats["verses"] - pair_stats["not_in_every_pair"]
        pair_stats["lost"] = pair_stats["lines"] - pair_stats["kept"]
        log.info(
            "%s: pair %s (aligned by %s): %d lines, %d kept; lost %d (%s)",
            where,
            pair_stats["pair"],
            pair_stats["aligned_by"],
            pair_stats["lines"],
            pair_stats["kept"],
            pair_stats["lost"],
            ", ".join(
                f"{k.removeprefix('dropped_')} {v}"
                for k, v in pair_stats.items()
                if k.startswith("dropped_") or k == "not_in_every_pair"
            ),
        )
    table.attrs["alignment"] = {
        "source": "bible_opus",
        "aligned_by": "ids" if by_ids else "english_text",
        "items_in_every_language": len(common),
        "pairs": {stats[lang]["pair"]: stats[lang] for lang in others},
    }
    return table


class _Pair:
    """The lines of one pair's two sides and, if present, its ``.ids``."""

    def __init__(self, name: str, where: str, lines: dict[str, list[str]], pivot: str, code: str):
        self.name, self.where = name, where
        self.pivot, self.other = lines[pivot], lines[code]
        self.ids = lines.get("ids")
        counts = {suffix: len(content) for suffix, content in lines.items()}
        if len(set(counts.values())) != 1:
            raise CorpusError(f"{where}: the files differ in length: {counts}")
        # .ids columns: doc1, doc2, ids1, ids2, the pair's codes in alphabetical order
        self.pivot_column = 2 if name.startswith(f"{pivot}-") else 3

    def stats(self, aligned_by: str) -> dict:
        return {"pair": self.name, "aligned_by": aligned_by, "lines": len(self.pivot)}

    def one_to_one(self) -> tuple[dict[tuple[str, str], tuple[str, str]], dict, list[str]]:
        """{(English document, English id): (English text, other text)} of the
        one-to-one links with text on both sides; how many links were dropped
        (``not_one_to_one``, ``empty``); problems (malformed .ids lines)."""
        links, dropped, problems = {}, {"not_one_to_one": 0, "empty": 0}, []
        for number, (ids, pivot_text, other_text) in enumerate(
            zip(self.ids, self.pivot, self.other, strict=True), start=1
        ):
            fields = ids.split("\t")
            if len(fields) != 4:
                problems.append(
                    f"bible-uedin.{self.name}.ids line {number}: expected 4 tab-separated fields"
                )
                continue
            pivot_ids = fields[self.pivot_column].split()
            other_ids = fields[5 - self.pivot_column].split()
            if len(pivot_ids) != 1 or len(other_ids) != 1:
                dropped["not_one_to_one"] += 1
            elif not (pivot_text.strip() and other_text.strip()):
                dropped["empty"] += 1
            else:
                key = (fields[self.pivot_column - 2], pivot_ids[0])
                links.setdefault(key, (pivot_text.strip(), other_text.strip()))
        return links, dropped, problems


def _join_by_ids(pairs: dict[str, _Pair]):
    """Every pair keyed by its one-to-one links' English (document, sentence id)."""
    verses: dict[str, dict[tuple[str, str], str]] = {}
    stats, problems = {}, []
    for lang, pair in pairs.items():
        links, dropped, bad = pair.one_to_one()
        problems += bad
        if not links and not bad:
            raise CorpusError(f"{pair.where}: no one-to-one verse link for language {lang!r}")
        verses[lang] = {key: other for key, (_, other) in links.items()}
        for key, (pivot_text, _) in links.items():
            verses.setdefault(PIVOT, {}).setdefault(key, pivot_text)
        stats[lang] = pair.stats("ids") | {f"dropped_{k}": n for k, n in dropped.items()}
        stats[lang]["verses"] = len(links)
    raise_problems("OPUS bible-uedin", problems)
    # an item is an English sentence of an English document; its id is the sentence id
    # alone unless the pairs name more than one English document
    documents = {doc for side in verses.values() for doc, _ in side}

    def item(key: tuple[str, str]) -> str:
        return key[1] if len(documents) == 1 else f"{key[0]}#{key[1]}"

    return {
        lang: {item(k): text for k, text in side.items()} for lang, side in verses.items()
    }, stats


def _join_by_text(pairs: dict[str, _Pair]):
    """Every pair keyed by its English line (``english_key``); a line that occurs more
    than once within a pair is ambiguous and dropped from that pair."""
    names: dict[str, str] = {}  # English text -> an English sentence id from some .ids
    keyed: dict[str, dict[str, str]] = {}
    english: dict[str, str] = {}
    stats = {}
    for lang, pair in pairs.items():
        if pair.ids is not None:
            links, _, _ = pair.one_to_one()
            for (_, verse), (pivot_text, _) in links.items():
                names.setdefault(english_key(pivot_text), verse)
        texts = [english_key(line) for line in pair.pivot]
        seen = Counter(texts)
        side, empty = {}, 0
        for text, raw, other in zip(texts, pair.pivot, pair.other, strict=True):
            if not text or not other.strip():
                empty += 1
            elif seen[text] == 1:
                side[text] = other.strip()
                english.setdefault(text, raw.strip())
        ambiguous = sum(n for text, n in seen.items() if text and n > 1)
        if not side:
            raise CorpusError(f"{pair.where}: no unambiguous verse for language {lang!r}")
        keyed[lang] = side
        stats[lang] = pair.stats("english_text") | {
            "dropped_ambiguous": ambiguous,
            "dropped_empty": empty,
            "verses": len(side),
        }

    # a Genesis verse no .ids names is known by its wording (an id some .ids gives to
    # another line is never given twice)
    named = set(names.values())
    genesis = {english_key(t): v for v, t in GENESIS_WEB.items() if v not in named}

    def item(text: str) -> str:
        return (
            names.get(text)
            or genesis.get(text)
            or "en#" + hashlib.sha1(text.encode()).hexdigest()[:12]
        )

    verses = {lang: {item(t): other for t, other in side.items()} for lang, side in keyed.items()}
    verses[PIVOT] = {item(t): english[t] for side in keyed.values() for t in side}
    found = sorted(v for t, v in genesis.items() if any(t in side for side in keyed.values()))
    for lang, pair_stats in stats.items():
        pair_stats["named_by_english_text"] = [genesis[t] for t in genesis if t in keyed[lang]]
    if found:
        log.info("OPUS %s: %s found by their English text", OPUS_CORPUS, ", ".join(found))
    return verses, stats


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
    """``<pair>.txt.zip``, or else the unpacked text files of both sides and the
    ``.ids`` file where there is one (pairs without it are aligned by text)."""
    archive = folder / f"{pair}.txt.zip"
    if archive.exists():
        return [archive]
    texts = [folder / f"{OPUS_CORPUS}.{pair}.{suffix}" for suffix in codes]
    absent = [str(path) for path in texts if not path.exists()]
    if absent:
        raise CorpusError(
            f"OPUS {OPUS_CORPUS} pair {pair} (language {language!r}):"
            f" neither {archive} nor {', '.join(absent)} ({FETCH_HINT})"
        )
    ids = folder / f"{OPUS_CORPUS}.{pair}.ids"
    return [*texts, ids] if ids.exists() else texts


def _pair_files(folder: Path, pivot: str, code: str, language: str) -> _Pair:
    """One pair's two text files and, if there, its .ids file: from ``<pair>.txt.zip``
    as OPUS serves it, or from those files unpacked in ``folder``."""
    pair = "-".join(sorted([pivot, code]))
    where = f"OPUS {OPUS_CORPUS} pair {pair} in {folder}"
    names = {suffix: f"{OPUS_CORPUS}.{pair}.{suffix}" for suffix in [pivot, code, "ids"]}
    archive = folder / f"{pair}.txt.zip"
    contents = {}
    if _pair_paths(folder, pair, [pivot, code], language) == [archive]:
        with zipfile.ZipFile(archive) as zipped:
            members = set(zipped.namelist())
            for suffix, name in names.items():
                if name in members:
                    contents[suffix] = zipped.read(name).decode("utf-8")
                elif suffix != "ids":
                    raise CorpusError(f"{archive}: no member {name}; it holds {sorted(members)}")
    else:
        for suffix, name in names.items():
            if (folder / name).exists():
                contents[suffix] = (folder / name).read_text(encoding="utf-8")
    lines = {suffix: text.removesuffix("\n").split("\n") for suffix, text in contents.items()}
    return _Pair(pair, where, lines, pivot, code)


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
