"""XStoryCloze stories (juletxara/xstory_cloze), and the checks every story source shares.

The Hub repository's main branch holds one TSV per language and split,
``spring2016.val.<config>.tsv.split_20_80_<split>.tsv`` (splits ``train`` and
``eval``), with a header line and eight columns in this order: story id, the four
story sentences, the two candidate endings, and the number (1 or 2) of the right
ending. The Spanish files have two more columns, empty, on every line (the header
included): trailing columns are read when they are empty, and are an error naming
the file and line when they hold anything. The dataset's own loading script read the
files with Python's csv module (tab delimiter, ``"`` quote character, initial spaces
skipped); this reader does the same, through fsspec, so that a local folder (where
the fetch step puts them, ``data/xstory_cloze``) and ``hf://`` read alike.
"""

from __future__ import annotations

import csv

import fsspec

from lingua_franca.corpora.parallel import FETCH_HINT, CorpusError, raise_problems
from lingua_franca.languages import LANGUAGES, get_language

SENTENCE_FIELDS = (
    "input_sentence_1",
    "input_sentence_2",
    "input_sentence_3",
    "input_sentence_4",
    "sentence_quiz1",
    "sentence_quiz2",
)
STORY_FIELDS = ("story_id", *SENTENCE_FIELDS, "answer_right_ending")
XSTORYCLOZE_REPO = "juletxara/xstory_cloze"
XSTORYCLOZE_DIR = "data/xstory_cloze"  # where the fetch step writes the repository's files
XSTORYCLOZE_FILE = "spring2016.val.{config}.tsv.split_20_80_{split}.tsv"
XSTORYCLOZE_SPLITS = ("train", "eval")


def check_stories(stories: dict[str, list[dict]], where: str) -> dict[str, list[dict]]:
    """The stories with ``answer_right_ending`` as an int, after checking every story:
    all fields present, no empty text, a right ending of 1 or 2, a story id once per
    language, a known language code. All problems are reported together."""
    problems, checked = [], {}
    for lang, records in stories.items():
        if lang not in LANGUAGES:
            problems.append(f"language {lang!r}: unknown language code")
        seen, checked[lang] = set(), []
        for n, record in enumerate(records, start=1):
            story = record.get("story_id") or f"#{n}"
            label = f"story {story!r}, language {lang!r}"
            missing = [f for f in STORY_FIELDS if f not in record]
            if missing:
                problems.append(f"{label}: missing field(s) {missing}")
                continue
            problems += [
                f"{label}: empty {f}" for f in SENTENCE_FIELDS if not str(record[f]).strip()
            ]
            if story in seen:
                problems.append(f"{label}: appears more than once")
            seen.add(story)
            answer = str(record["answer_right_ending"]).strip()
            if answer not in ("1", "2"):
                problems.append(f"{label}: answer_right_ending must be 1 or 2, found {answer!r}")
                continue
            checked[lang].append(
                {f: str(record[f]) for f in STORY_FIELDS[:-1]}
                | {"answer_right_ending": int(answer)}
            )
        if not records:
            problems.append(f"language {lang!r}: no stories")
    raise_problems(where, problems)
    return checked


def read_xstorycloze(
    options: dict, languages: list[str] | None
) -> tuple[dict[str, list[dict]], list[str]]:
    """XStoryCloze stories per language; the requested languages that XStoryCloze
    does not cover (``xstorycloze`` is None in the language table) come back in the
    second value instead. A covered language whose file is absent is an error.
    ``languages`` None: every XStoryCloze language whose file the folder holds."""
    folder, split = _folder_split(options)
    if languages is None:
        languages = _languages_held(folder, split)
    missing = [lang for lang in languages if get_language(lang).xstorycloze is None]
    stories = {
        lang: _read_story_tsv(path) for lang, path in story_files(options, languages).items()
    }
    return check_stories(stories, f"XStoryCloze ({folder}, split {split})"), missing


def _folder_split(options: dict) -> tuple[str, str]:
    folder = str(options.get("dir", XSTORYCLOZE_DIR)).rstrip("/")
    split = options.get("split", "eval")
    if split not in XSTORYCLOZE_SPLITS:
        raise CorpusError(
            f"XStoryCloze split {split!r} is unknown; use one of {list(XSTORYCLOZE_SPLITS)}"
        )
    return folder, split


def story_files(options: dict, languages: list[str] | None) -> dict[str, str]:
    """The file (a local path or an ``hf://`` address) of each language XStoryCloze
    covers; the others are left out. ``languages`` None: every XStoryCloze language
    whose file the folder holds."""
    folder, split = _folder_split(options)
    if languages is None:
        languages = _languages_held(folder, split)
    files = {}
    for lang in languages:
        config = get_language(lang).xstorycloze
        if config is not None:
            files[lang] = f"{folder}/{XSTORYCLOZE_FILE.format(config=config, split=split)}"
    return files


def _languages_held(folder: str, split: str) -> list[str]:
    """The XStoryCloze languages (in the language table's order) with a file in
    ``folder`` for ``split``."""
    fs, root = fsspec.core.url_to_fs(folder)
    held = [
        lang.code
        for lang in LANGUAGES.values()
        if lang.xstorycloze is not None
        and fs.exists(f"{root}/{XSTORYCLOZE_FILE.format(config=lang.xstorycloze, split=split)}")
    ]
    if not held:
        raise CorpusError(f"{folder}: no XStoryCloze file for split {split!r} ({FETCH_HINT})")
    return held


def _read_story_tsv(path: str) -> list[dict]:
    try:
        with fsspec.open(path, "r", encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle, delimiter="\t", quotechar='"', skipinitialspace=True)
            rows = [(reader.line_num, row) for row in reader]
    except FileNotFoundError:
        raise CorpusError(f"{path}: file not found ({FETCH_HINT})") from None
    problems, stories = [], []
    width = len(STORY_FIELDS)
    for index, (n, row) in enumerate(rows):
        extra = [field for field in row[width:] if field.strip()]
        if len(row) < width:
            problems.append(f"line {n}: expected {width} tab-separated fields, found {len(row)}")
        elif extra:
            problems.append(
                f"line {n}: {len(row)} tab-separated fields, and fields after the "
                f"{width}th must be empty; found {extra[:3]}"
            )
        elif index > 0:  # the first row is the header
            stories.append(dict(zip(STORY_FIELDS, row[:width], strict=True)))
    raise_problems(path, problems)
    return stories
