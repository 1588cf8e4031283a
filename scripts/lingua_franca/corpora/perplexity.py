"""Perplexity text per language: XL-Sum articles, or plain text files.

XL-Sum (``csebuetnlp/xlsum``) is a script dataset, which ``datasets`` 4 and later no
longer run; its Hub parquet conversion is read instead, through
``datasets.load_dataset("parquet", data_files=...)``:
``hf://datasets/csebuetnlp/xlsum@refs%2Fconvert%2Fparquet/<config>/<split>/*.parquet``
(``<config>`` from the language table: english, chinese_simplified, ...). The fetch
step copies each language's validation files of that branch into ``data/xlsum`` (the
default ``dir``) in the same layout; ``hf://`` locations also work, where jobs have
a network. The original release's JSON lines
(``<config>_val.jsonl``, fields id, url, title, summary, text) load the same way
with a ``pattern`` option. The evaluation text is the field ``text`` of the first
``max_articles`` articles, joined with a blank line (docs/method.md §5).
"""

from __future__ import annotations

import glob
from pathlib import Path

from lingua_franca.corpora.embedded import TEXT_SEPARATOR
from lingua_franca.corpora.parallel import FETCH_HINT, CorpusError, require_option
from lingua_franca.languages import get_language

XLSUM_REPO = "csebuetnlp/xlsum"
XLSUM_REVISION = "refs/convert/parquet"  # the Hub's parquet conversion of the script dataset
XLSUM_DIR = "data/xlsum"  # where the fetch step writes that branch's files
XLSUM_PATTERN = "{config}/{split}/*.parquet"
FORMATS = {".parquet": "parquet", ".json": "json", ".jsonl": "json"}


def xlsum_data_files(lang: str, options: dict) -> str:
    """The data-files pattern of ``lang``'s XL-Sum split: ``dir`` + ``/`` + ``pattern``
    with {config}, {split} and {lang} filled in (defaults: the fetch step's copy of the
    Hub parquet branch, ``data/xlsum``, ``{config}/{split}/*.parquet``, split
    ``validation``)."""
    config = get_language(lang).xlsum
    if config is None:
        raise CorpusError(
            f"language {lang!r} has no XL-Sum config; choose another perplexity source"
        )
    folder = str(options.get("dir", XLSUM_DIR)).rstrip("/")
    pattern = options.get("pattern", XLSUM_PATTERN)
    split = options.get("split", "validation")
    return f"{folder}/{pattern.format(config=config, split=split, lang=lang)}"


def read_xlsum(options: dict, languages: list[str], max_articles: int) -> dict[str, str]:
    """The first ``max_articles`` XL-Sum articles of each language, joined."""
    from datasets import load_dataset  # heavy; imported only where XL-Sum is read

    if max_articles < 1:
        raise CorpusError(f"max_articles must be at least 1, got {max_articles}")
    texts = {}
    xlsum_files(options, languages)  # datasets fails obscurely on a pattern that matches nothing
    for lang in languages:
        files = xlsum_data_files(lang, options)
        dataset = load_dataset(
            FORMATS[Path(files).suffix],
            data_files={"eval": files},
            split="eval",
            cache_dir=options.get("cache_dir"),
        )
        if "text" not in dataset.column_names:
            raise CorpusError(
                f"XL-Sum {lang}: {files} has no field 'text' ({dataset.column_names})"
            )
        articles = dataset.select(range(min(max_articles, len(dataset))))["text"]
        if not any(a.strip() for a in articles):
            raise CorpusError(f"XL-Sum {lang}: {files} holds no article text")
        texts[lang] = TEXT_SEPARATOR.join(articles)
    return texts


def xlsum_files(options: dict, languages: list[str]) -> list[Path]:
    """The local files XL-Sum is read from (none from the Hub); CorpusError for a
    language whose pattern is neither parquet nor JSON lines, or matches no file."""
    files = []
    for lang in languages:
        pattern = xlsum_data_files(lang, options)
        if Path(pattern).suffix not in FORMATS:
            raise CorpusError(f"XL-Sum {lang}: {pattern} is neither parquet nor JSON lines")
        if "://" not in pattern:
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise CorpusError(f"XL-Sum {lang}: no file matches {pattern} ({FETCH_HINT})")
            files += [Path(m) for m in matches]
    return files


def text_files(options: dict, languages: list[str]) -> dict[str, Path]:
    """Each language's file, ``dir/pattern`` with {lang} filled in (it may be absent)."""
    folder = Path(require_option(options, "dir", "text_files"))
    pattern = options.get("pattern", "{lang}.txt")
    return {lang: folder / pattern.format(lang=lang) for lang in languages}


def read_text_files(options: dict, languages: list[str]) -> dict[str, str]:
    """One UTF-8 file per language, ``dir/pattern`` with {lang} filled in."""
    texts = {}
    for lang, path in text_files(options, languages).items():
        try:
            texts[lang] = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CorpusError(f"perplexity text of {lang!r}: {path} not found") from None
        if not texts[lang].strip():
            raise CorpusError(f"perplexity text of {lang!r}: {path} is empty")
    return texts
