"""The demo data shipped in ``resources/corpus/`` (and any folder in the same format).

- ``probe.tsv``, ``heldout.tsv``, ``train_part*.tsv``: parallel TSVs, header
  ``id<TAB>lang<TAB>text``, one line per (item, language).
- ``stories.jsonl``: one XStoryCloze-shaped story per line, with ``story_id``,
  ``lang``, ``input_sentence_1`` … ``input_sentence_4``, ``sentence_quiz1``,
  ``sentence_quiz2`` and ``answer_right_ending`` (1 or 2).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lingua_franca.corpora.parallel import (
    CorpusError,
    raise_problems,
    read_parallel_tsv,
    validate_parallel,
)
from lingua_franca.corpora.stories import check_stories

EMBEDDED_DIR = "resources/corpus"
TEXT_SEPARATOR = "\n\n"  # between articles or sentences of one language's running text


def embedded_dir(options: dict) -> Path:
    return Path(options.get("dir", EMBEDDED_DIR))


def probe_path(options: dict) -> Path:
    return embedded_dir(options) / "probe.tsv"


def read_probe_corpus(options: dict) -> pd.DataFrame:
    """The demo probe corpus (probe.tsv), not yet validated."""
    return read_parallel_tsv(probe_path(options))


def heldout_path(options: dict) -> Path:
    return embedded_dir(options) / "heldout.tsv"


def read_heldout_corpus(options: dict, languages: list[str]) -> pd.DataFrame:
    """The held-out items (heldout.tsv), validated in ``languages``."""
    path = heldout_path(options)
    df = read_parallel_tsv(path)
    validate_parallel(df, languages, str(path))
    return df


def read_heldout_texts(options: dict, languages: list[str]) -> dict[str, str]:
    """Perplexity text per language: that language's held-out texts, in file order,
    joined with a blank line (as XL-Sum articles are)."""
    df = read_heldout_corpus(options, languages)
    return {lang: TEXT_SEPARATOR.join(df.loc[df["lang"] == lang, "text"]) for lang in languages}


def read_stories(
    options: dict, languages: list[str] | None
) -> tuple[dict[str, list[dict]], list[str]]:
    """The demo stories of ``languages`` (None: every language in the file, in file
    order); a requested language with no story in the file comes back in the second
    value (the demo, like XStoryCloze, has no fr, pt or vi)."""
    path = embedded_dir(options) / "stories.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CorpusError(f"{path}: file not found") from None
    by_lang: dict[str, list[dict]] = {}
    problems = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(f"line {number}: not JSON ({err})")
            continue
        if not isinstance(record, dict) or "lang" not in record:
            problems.append(f"line {number}: not a story object with a 'lang' field")
            continue
        by_lang.setdefault(record["lang"], []).append(record)
    raise_problems(str(path), problems)
    languages = list(by_lang) if languages is None else languages
    present = {lang: by_lang[lang] for lang in languages if lang in by_lang}
    missing = [lang for lang in languages if lang not in by_lang]
    return check_stories(present, str(path)), missing
