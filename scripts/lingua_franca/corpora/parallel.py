"""The one table every parallel corpus is read into, and its validation.

Every probe source becomes a long table with columns ``id`` (the item: one id means
one meaning in every language), ``lang`` (the project's language code) and ``text``.
It is validated before any model is loaded, and every problem found is reported in
one message, so that a user repairs a corpus in one pass instead of one error a run.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lingua_franca.languages import LANGUAGES

PARALLEL_COLUMNS = ["id", "lang", "text"]
MAX_REPORTED = 20  # problems listed in one message; the rest are counted
FETCH_HINT = "the fetch step downloads it: snakemake --configfile CONFIG fetch"


class CorpusError(ValueError):
    """A corpus that cannot be used as it is. The message names the file or source,
    and for each problem the item and the language."""


def raise_problems(where: str, problems: list[str]) -> None:
    """Raise one CorpusError listing the first MAX_REPORTED problems (none: return)."""
    if not problems:
        return
    lines = [f"{where}: {len(problems)} problem(s):"]
    lines += [f"  - {p}" for p in problems[:MAX_REPORTED]]
    if len(problems) > MAX_REPORTED:
        lines.append(f"  ... and {len(problems) - MAX_REPORTED} more")
    raise CorpusError("\n".join(lines))


def require_option(options: dict, key: str, source: str):
    """A mandatory option of a data source; its absence is a CorpusError, not a KeyError."""
    if key not in options:
        raise CorpusError(f"data source {source!r} needs the option {key!r}; got {sorted(options)}")
    return options[key]


def read_tsv(path: str | Path, columns: list[str]) -> pd.DataFrame:
    """A UTF-8 TSV whose header is exactly ``columns``; every value a string.

    No quoting: the project's TSVs hold one text per line and no tabs inside texts,
    which validation enforces before writing. Lines are split on "\\n" only, so that a
    text holding another Unicode line separator stays one text.
    """
    path = Path(path)
    try:
        content = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CorpusError(f"{path}: file not found") from None
    except UnicodeDecodeError as err:
        raise CorpusError(f"{path}: not UTF-8 text ({err})") from None
    lines = [line.removesuffix("\r") for line in content.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or lines[0].split("\t") != columns:
        found = lines[0] if lines else "an empty file"
        raise CorpusError(f"{path}: the header must be {'<TAB>'.join(columns)}; found {found!r}")
    rows, problems = [], []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) == len(columns):
            rows.append(fields)
        else:
            problems.append(
                f"line {number}: expected {len(columns)} tab-separated fields, found {len(fields)}"
            )
    raise_problems(str(path), problems)
    return pd.DataFrame(rows, columns=columns, dtype=str)


def read_parallel_tsv(path: str | Path) -> pd.DataFrame:
    """A parallel TSV (header ``id<TAB>lang<TAB>text``, one line per item and language)."""
    return read_tsv(path, PARALLEL_COLUMNS)


def validate_parallel(
    df: pd.DataFrame,
    languages: list[str] | None,
    where: str = "",
    require_parallel: bool = True,
) -> None:
    """Raise CorpusError listing every problem of a parallel table.

    Checked: known language codes (in the table and in ``languages``); no empty or
    whitespace-only text; no tab or line break inside a text (the probe file could not
    hold it); each (id, lang) once. With ``require_parallel``: every item present in
    every language of ``languages`` and the same number of items per language.
    ``languages=None`` means the languages of the table, in order of appearance.
    Rows of languages outside ``languages`` are checked only for a known code, so a
    corpus may hold more languages than a run uses.
    """
    where = where or "parallel corpus"
    missing_columns = [c for c in PARALLEL_COLUMNS if c not in df.columns]
    if missing_columns:
        raise CorpusError(f"{where}: missing column(s) {missing_columns}")
    problems = []
    for code in dict.fromkeys(df["lang"]):
        if code not in LANGUAGES:
            items = df.loc[df["lang"] == code, "id"].tolist()
            shown = ", ".join(repr(i) for i in items[:3]) + (", ..." if len(items) > 3 else "")
            problems.append(f"language {code!r} (items {shown}): unknown language code")
    if languages is None:
        languages = [code for code in dict.fromkeys(df["lang"]) if code in LANGUAGES]
    for code in languages:
        if code not in LANGUAGES:
            problems.append(f"configured language {code!r} is unknown; known: {sorted(LANGUAGES)}")
    used = df[df["lang"].isin(languages)]
    for item, lang, text in zip(used["id"], used["lang"], used["text"], strict=True):
        if not str(text).strip():
            problems.append(f"item {item!r}, language {lang!r}: empty text")
        elif "\t" in text or "\n" in text or "\r" in text:
            problems.append(f"item {item!r}, language {lang!r}: text holds a tab or line break")
    counts = used.groupby(["id", "lang"], sort=False).size()
    for (item, lang), n in counts[counts > 1].items():
        problems.append(f"item {item!r}, language {lang!r}: appears {n} times")
    if require_parallel:
        problems += _coverage_problems(used, languages)
    raise_problems(where, problems)


def _coverage_problems(used: pd.DataFrame, languages: list[str]) -> list[str]:
    """Items missing in a language, and unequal item counts per language."""
    problems = []
    present = set(zip(used["id"], used["lang"], strict=True))
    items = list(dict.fromkeys(used["id"]))
    per_language = used.groupby("lang").size()
    for lang in languages:
        if lang not in per_language:
            problems.append(f"language {lang!r}: no items at all")
            continue
        problems += [
            f"item {item!r}, language {lang!r}: missing"
            for item in items
            if (item, lang) not in present
        ]
    counts = {lang: int(per_language.get(lang, 0)) for lang in languages}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{lang} {n}" for lang, n in counts.items())
        problems.append(f"different numbers of items per language: {listed}")
    return problems


def order_parallel(df: pd.DataFrame, languages: list[str]) -> pd.DataFrame:
    """Only the rows of ``languages``: language blocks in that order, items in corpus
    order (first appearance) inside each block."""
    used = df[df["lang"].isin(languages)]
    item_rank = {item: n for n, item in enumerate(dict.fromkeys(used["id"]))}
    lang_rank = {lang: n for n, lang in enumerate(languages)}
    keys = pd.DataFrame({"lang": used["lang"].map(lang_rank), "item": used["id"].map(item_rank)})
    order = keys.sort_values(["lang", "item"], kind="stable").index
    return used.loc[order, PARALLEL_COLUMNS].reset_index(drop=True)
