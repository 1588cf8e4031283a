"""FLORES-200 ``dev`` (or ``devtest``) as a parallel corpus, in its two layouts.

- ``flores200``: the NLLB release that ``facebook/flores`` downloads
  (``flores200_dataset/``): ``<split>/<code>.<split>``, one sentence per line, the
  same line in every language is the same sentence; the item id is the line number
  (from 1). Mandarin is ``zho_Hans``.
- ``flores_plus``: ``openlanguagedata/flores_plus`` (gated on the Hub):
  ``<split>/<code>.parquet`` (``.jsonl`` in some revisions), one row per
  sentence with an ``id`` and a ``text`` column; the item id is ``id``. Mandarin is
  ``cmn_Hans``.

File stems come from the language table (``flores200`` / ``flores_plus``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lingua_franca.corpora.parallel import (
    PARALLEL_COLUMNS,
    CorpusError,
    raise_problems,
    require_option,
)
from lingua_franca.languages import get_language

LAYOUTS = ("flores200", "flores_plus")


def _candidates(folder: Path, split: str, layout: str, lang: str) -> list[Path]:
    if layout == "flores200":
        return [folder / split / f"{get_language(lang).flores200}.{split}"]
    stem = folder / split / get_language(lang).flores_plus
    return [stem.with_suffix(".parquet"), stem.with_suffix(".jsonl")]


def read_flores(options: dict, languages: list[str]) -> pd.DataFrame:
    """The FLORES split of every configured language; not yet validated."""
    paths = flores_files(options, languages)
    frames = [_read_file(path).assign(lang=lang) for lang, path in paths.items()]
    return pd.concat(frames, ignore_index=True)[PARALLEL_COLUMNS]


def flores_files(options: dict, languages: list[str]) -> dict[str, Path]:
    """Each language's file of the split, in one layout; CorpusError naming every
    language without one."""
    folder = Path(require_option(options, "dir", "flores"))
    split = options.get("split", "dev")
    layout = options.get("layout") or _detect_layout(folder, split, languages[0])
    if layout not in LAYOUTS:
        raise CorpusError(f"FLORES layout {layout!r} is unknown; use one of {list(LAYOUTS)}")
    paths, problems = {}, []
    for lang in languages:
        candidates = _candidates(folder, split, layout, lang)
        found = [p for p in candidates if p.exists()]
        if found:
            paths[lang] = found[0]
        else:
            problems.append(f"language {lang!r}: no file {' or '.join(str(p) for p in candidates)}")
    raise_problems(f"FLORES ({layout}) in {folder}", problems)
    return paths


def _detect_layout(folder: Path, split: str, lang: str) -> str:
    """The layout whose file for ``lang`` exists (one layout for all languages, so
    that item ids mean the same thing in every language)."""
    for layout in LAYOUTS:
        if any(p.exists() for p in _candidates(folder, split, layout, lang)):
            return layout
    tried = [str(p) for layout in LAYOUTS for p in _candidates(folder, split, layout, lang)]
    raise CorpusError(f"FLORES in {folder}: no {split} file for {lang!r}; tried {tried}")


def _read_file(path: Path) -> pd.DataFrame:
    """Columns id, text of one language's file."""
    if path.suffix in (".parquet", ".jsonl"):
        table = (
            pd.read_parquet(path)
            if path.suffix == ".parquet"
            else pd.read_json(path, lines=True, dtype=False)
        )
        if not {"id", "text"} <= set(table.columns):
            raise CorpusError(f"{path}: needs columns id and text; found {list(table.columns)}")
        return pd.DataFrame({"id": table["id"].astype(str), "text": table["text"].astype(str)})
    lines = path.read_text(encoding="utf-8").removesuffix("\n").split("\n")
    texts = [line.removesuffix("\r") for line in lines]
    return pd.DataFrame(
        {"id": [str(n) for n in range(1, len(texts) + 1)], "text": texts}, dtype=str
    )
