"""Corpora: reading and validating every text the workflow feeds a model.

Three kinds of data, each with a ``source`` and an ``options`` dict from the config.
Everything is checked here, before any model is loaded; a problem raises
``CorpusError`` (a ValueError) naming the file or source, the item and the language,
with all problems of a corpus in one message. Relative paths are relative to the
working directory (the workflow's root).

Probe corpus (``load_probe_corpus``; the same item id means the same meaning in
every language; a verse, sentence or item missing in one language is dropped for
the Bible sources and an error for the others):

- ``embedded``: the demo data. ``dir`` (default ``resources/corpus``), reads
  ``probe.tsv``.
- ``tsv``: any parallel TSV, header ``id<TAB>lang<TAB>text``, one line per item and
  language. ``path`` (required).
- ``bible_ces``: the Bible corpus' CES XML files. ``dir`` (required) holding
  ``<Language name>.xml`` or ``.xml.gz`` (English.xml, Chinese.xml, ...); ``files``
  (optional) maps a language code to a file name in ``dir`` (e.g. ``Chinese-tok.xml``).
- ``bible_opus``: OPUS bible-uedin Moses pairs. ``dir`` (required) holding
  ``<pair>.txt.zip`` as downloaded from OPUS (``en-fr.txt.zip``, ``ar-en.txt.zip``;
  codes in alphabetical order) or its unpacked ``bible-uedin.<pair>.<code>`` files;
  aligned by the ``.ids`` member where every pair has one, else by the English text
  (``corpora.bible``); what each pair lost goes to ``prepare_probe``'s alignment file.
- ``flores``: FLORES-200. ``dir`` (required: the ``flores200_dataset`` folder, or a
  copy of ``openlanguagedata/flores_plus``); ``split`` (default ``dev``); ``layout``
  (``flores200`` or ``flores_plus``; default: whichever has a file for the first
  language).

Perplexity text (``load_perplexity_texts``; one string per language):

- ``embedded``: ``dir`` (default ``resources/corpus``); ``heldout.tsv``, each
  language's texts joined with a blank line.
- ``xlsum``: XL-Sum through ``datasets.load_dataset`` on parquet or JSON-lines data
  files, never a loading script. ``dir`` (default ``data/xlsum``, where the fetch step
  copies the Hub's parquet branch; ``hf://datasets/csebuetnlp/xlsum@refs%2Fconvert%2Fparquet``
  reads it from the Hub), ``pattern`` (default
  ``{config}/{split}/*.parquet``; placeholders {config}, {split}, {lang}),
  ``split`` (default ``validation``), ``cache_dir`` (optional, for ``datasets``).
  The first ``max_articles`` (default 500) articles' ``text``, joined with a blank line.
- ``text_files``: ``dir`` (required), ``pattern`` (default ``{lang}.txt``).

Stories (``load_stories``; stories per language and the languages without data):

- ``embedded``: ``dir`` (default ``resources/corpus``); ``stories.jsonl``.
- ``xstorycloze``: ``dir`` (default ``data/xstory_cloze``, where the fetch step copies
  the files of ``juletxara/xstory_cloze``; ``hf://datasets/juletxara/xstory_cloze``
  reads them from the Hub), ``split`` (``train`` or ``eval``, default ``eval``).

The story languages are the config's ``data.xstorycloze.languages``, not the probe
languages; null means every language the source holds.

Probe selection (``sample_items``): ``random`` with a seed (the paper: 100 random
verses) or the ``first`` N. The chosen rows are written once (``write_probe``) and
every later rule reads them back (``read_probe``).

Generation prompts (``choose_prompts``; docs/method.md §5): the config's
``analysis.generation.prompts`` when given; else, for a Bible source, Genesis 1:1,
1:2, ... (``b.GEN.1.1`` ...) from the whole corpus, whether or not the probe sampled
those verses; else the first probe items.

The ``prepare_*`` functions are the data rules' whole job: they take a config
section (``source``, ``options`` and that section's settings) and write the file
later rules read.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from lingua_franca.corpora import bible, embedded, flores, perplexity, stories
from lingua_franca.corpora.parallel import (
    FETCH_HINT,
    CorpusError,
    order_parallel,
    read_parallel_tsv,
    require_option,
    validate_parallel,
)
from lingua_franca.corpora.perplexity import xlsum_data_files
from lingua_franca.corpora.probe import make_probe, read_probe, sample_items, write_probe

__all__ = [
    "CorpusError",
    "build_probe",
    "choose_prompts",
    "load_perplexity_texts",
    "load_probe_corpus",
    "load_stories",
    "make_probe",
    "prepare_perplexity_text",
    "prepare_probe",
    "prepare_prompts",
    "prepare_stories",
    "read_parallel_tsv",
    "read_probe",
    "sample_items",
    "source_files",
    "validate_parallel",
    "write_probe",
    "xlsum_data_files",
]

PROBE_SOURCES = {
    "embedded": lambda options, languages: embedded.read_probe_corpus(options),
    "tsv": lambda options, languages: read_parallel_tsv(require_option(options, "path", "tsv")),
    "bible_ces": bible.read_ces,
    "bible_opus": bible.read_opus,
    "flores": flores.read_flores,
}
PERPLEXITY_SOURCES = ("embedded", "xlsum", "text_files")
log = logging.getLogger(__name__)
STORY_SOURCES = ("embedded", "xstorycloze")


def _check_source(kind: str, source: str, known) -> None:
    if source not in known:
        raise CorpusError(f"unknown {kind} source {source!r}; use one of {list(known)}")


def load_probe_corpus(source: str, options: dict, languages: list[str]) -> pd.DataFrame:
    """The validated parallel corpus (id, lang, text) of ``languages``: language blocks
    in configured order, items in corpus order."""
    _check_source("probe", source, PROBE_SOURCES)
    df = PROBE_SOURCES[source](options, languages)
    location = (
        embedded.probe_path(options)
        if source == "embedded"
        else options.get("path", options.get("dir"))
    )
    where = f"probe source {source!r} ({location})"
    validate_parallel(df, languages, where)
    ordered = order_parallel(df, languages)
    ordered.attrs["alignment"] = df.attrs.get("alignment", {"source": source})
    return ordered


def build_probe(
    source: str,
    options: dict,
    languages: list[str],
    n_items: int | None,
    sampling: str,
    seed: int,
) -> pd.DataFrame:
    """Load, validate and sample: the probe table (row, lang, item, text) to write."""
    corpus = load_probe_corpus(source, options, languages)
    probe = make_probe(corpus, languages, sample_items(corpus, n_items, sampling, seed))
    probe.attrs["alignment"] = corpus.attrs["alignment"]
    return probe


def load_perplexity_texts(
    source: str, options: dict, languages: list[str], max_articles: int = 500
) -> dict[str, str]:
    """Evaluation text per language (``max_articles`` applies to XL-Sum only)."""
    _check_source("perplexity", source, PERPLEXITY_SOURCES)
    if source == "embedded":
        return embedded.read_heldout_texts(options, languages)
    if source == "xlsum":
        return perplexity.read_xlsum(options, languages, max_articles)
    return perplexity.read_text_files(options, languages)


def load_stories(
    source: str, options: dict, languages: list[str] | None
) -> tuple[dict[str, list[dict]], list[str]]:
    """(stories by language, requested languages without story data). ``languages``
    None asks for every language the source holds. Each story is a dict with
    story_id, input_sentence_1..4, sentence_quiz1, sentence_quiz2 and
    answer_right_ending (int, 1 or 2)."""
    _check_source("story", source, STORY_SOURCES)
    if source == "embedded":
        return embedded.read_stories(options, languages)
    return stories.read_xstorycloze(options, languages)


# the embedded probe source reads heldout.tsv too: its items join the pool of the
# sampled prompts (prompt_pool)
EMBEDDED_FILES = {
    "probe": ("probe.tsv", "heldout.tsv"),
    "perplexity": ("heldout.tsv",),
    "xstorycloze": ("stories.jsonl",),
}


def source_files(kind: str, source: str, options: dict, languages: list[str]) -> list[Path]:
    """The local files a data source reads for ``languages`` (``kind``: probe,
    perplexity or xstorycloze): the inputs of the rule that reads them, so that
    editing one reruns its readers. The one place that says which files a source
    reads (the readers find theirs through the same functions). Hub locations
    (``hf://``) are not files and are left out. A file that is not there is a
    CorpusError naming it: a missing corpus is never skipped in silence."""
    if source == "embedded":
        files = [embedded.embedded_dir(options) / name for name in EMBEDDED_FILES[kind]]
    elif source == "tsv":
        files = [Path(require_option(options, "path", "tsv"))]
    elif source == "bible_ces":
        files = list(bible.ces_files(options, languages).values())
    elif source == "bible_opus":
        files = bible.opus_files(options, languages)
    elif source == "flores":
        files = list(flores.flores_files(options, languages).values())
    elif source == "xlsum":
        files = perplexity.xlsum_files(options, languages)
    elif source == "text_files":
        files = list(perplexity.text_files(options, languages).values())
    elif source == "xstorycloze":
        remote = "://" in str(options.get("dir", stories.XSTORYCLOZE_DIR))
        files = (
            [] if remote else [Path(f) for f in stories.story_files(options, languages).values()]
        )
    else:
        raise CorpusError(f"unknown {kind} source {source!r}")
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        hint = f"; {FETCH_HINT}" if source in ("xlsum", "xstorycloze", "bible_opus") else ""
        raise CorpusError(
            f"no such file{'s' if len(absent) > 1 else ''} ({', '.join(absent)}){hint}"
        )
    return files


def prepare_probe(
    section: dict,
    languages: list[str],
    seed: int,
    out: str | Path,
    alignment_out: str | Path | None = None,
) -> None:
    """Config ``data.probe`` (source, options, n_items, sampling) -> the probe file, and
    (``alignment_out``) a JSON record of how the corpus was aligned: for OPUS
    bible-uedin, what each language pair lost (see ``corpora.bible``)."""
    probe = build_probe(
        section["source"],
        section.get("options", {}),
        languages,
        section["n_items"],
        section["sampling"],
        seed,
    )
    write_probe(probe, out)
    if alignment_out is not None:
        record = {**probe.attrs["alignment"], "languages": languages}
        Path(alignment_out).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    n_items = len(probe) // len(languages)
    log.info(
        "probe: %d items x %d languages from %r -> %s",
        n_items,
        len(languages),
        section["source"],
        out,
    )


BIBLE_SOURCES = ("bible_ces", "bible_opus")


def genesis_ids(n: int) -> list[str]:
    """The verse ids of Genesis 1:1 … 1:n, the paper's prompts (Appendix A)."""
    return [f"b.GEN.1.{v}" for v in range(1, n + 1)]


def choose_prompts(
    probe_section: dict, generation: dict, languages: list[str], probe: pd.DataFrame
) -> dict:
    """The generation prompts: ``{"source": ..., "prompts": {lang: [{"item", "text"}]}}``.

    ``generation`` is the config's ``analysis.generation`` (``prompts``,
    ``prompts_per_language``); ``probe`` the probe table (for the first items).  A
    Bible corpus gives Genesis 1:1 … 1:n (n = prompts_per_language) in every language,
    taken from the whole corpus: the probe's 100 verses rarely include them.  With
    ``bible_opus`` an item id is the English sentence id, ``b.GEN.1.1`` or, when the
    pairs name several English documents, ``<document>#b.GEN.1.1``.
    """
    n = generation["prompts_per_language"]
    given = generation.get("prompts")
    if given:
        absent = [lang for lang in languages if not given.get(lang)]
        if absent:
            raise CorpusError(
                f"analysis.generation.prompts gives no prompt for {absent}; give every "
                f"language of {languages} its prompts, or remove the key"
            )
        chosen = {lang: [{"item": None, "text": t} for t in given[lang][:n]] for lang in languages}
        return {"source": "config", "prompts": chosen}
    source = probe_section["source"]
    if source in BIBLE_SOURCES and n:
        corpus = load_probe_corpus(source, probe_section.get("options", {}), languages)
        ids = list(dict.fromkeys(corpus["id"]))
        items = []
        for verse in genesis_ids(n):
            found = [i for i in ids if i == verse or i.endswith(f"#{verse}")]
            if not found:
                raise CorpusError(
                    f"probe source {source!r}: {verse} (Genesis, the generation prompts) is not "
                    f"in every language of {languages}; give prompts in "
                    "analysis.generation.prompts, or lower prompts_per_language"
                )
            items.append(found[0])
        texts = corpus.set_index(["id", "lang"])["text"]
        chosen = {lang: [{"item": i, "text": texts[i, lang]} for i in items] for lang in languages}
        return {"source": "genesis", "prompts": chosen}
    first = list(dict.fromkeys(probe["item"]))[:n]
    texts = probe.set_index(["item", "lang"])["text"]
    chosen = {lang: [{"item": i, "text": texts[i, lang]} for i in first] for lang in languages}
    return {"source": "probe", "prompts": chosen}


def prompt_pool(source: str, options: dict, languages: list[str]) -> pd.DataFrame:
    """The items (id, lang, text) a sampled prompt may come from, before the probe's
    items are taken out: the probe corpus, and for the embedded corpus its held-out
    items too (120 probe items leave only 20 the probe does not use; the held-out
    paragraphs are in no probe and no training text)."""
    corpus = load_probe_corpus(source, options, languages)
    if source == "embedded":
        heldout = order_parallel(embedded.read_heldout_corpus(options, languages), languages)
        corpus = pd.concat([corpus, heldout], ignore_index=True)
    return corpus


def choose_samples(
    probe_section: dict, generation: dict, languages: list[str], probe: pd.DataFrame
) -> dict[str, list[dict]]:
    """The prompts of the sampled generations (docs/method.md §11): ``generation
    ["samples"]`` items drawn (seeded by ``generation["seed"]``) from the pool's items
    that the probe did not use, the same items in every language, as {lang: [{"item",
    "text"}]}. Too small a pool is an error naming the counts, before any model."""
    n = generation["samples"]
    if not n:
        return {}
    pool = prompt_pool(probe_section["source"], probe_section.get("options", {}), languages)
    used = set(probe["item"])
    unused = pool[~pool["id"].isin(used)]
    items = list(dict.fromkeys(unused["id"]))
    if len(items) < n:
        raise CorpusError(
            f"analysis.generation.samples: {n} prompts per language asked, but the probe "
            f"source {probe_section['source']!r} holds only {len(items)} items the probe does "
            f"not use ({len(used)} probed); lower samples or data.probe.n_items"
        )
    picks = np.random.default_rng(generation["seed"]).choice(len(items), size=n, replace=False)
    chosen = [items[i] for i in picks]
    texts = unused.set_index(["id", "lang"])["text"]
    return {lang: [{"item": i, "text": texts[i, lang]} for i in chosen] for lang in languages}


def prepare_prompts(
    probe_section: dict, generation: dict, languages: list[str], probe_path, out
) -> None:
    """Config + probe file -> the generation prompts as JSON: the greedy table's
    (``choose_prompts``) and the sampled generations' (``choose_samples``, key
    ``samples``)."""
    probe = read_probe(probe_path, languages)
    chosen = choose_prompts(probe_section, generation, languages, probe)
    chosen["samples"] = choose_samples(probe_section, generation, languages, probe)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(chosen, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    counts = {lang: len(p) for lang, p in chosen["prompts"].items()}
    log.info("generation prompts (%s): %s -> %s", chosen["source"], counts, out)
    counts = {lang: len(p) for lang, p in chosen["samples"].items()}
    log.info("sampled-generation prompts: %s", counts or "none (analysis.generation.samples 0)")


def prepare_perplexity_text(section: dict, lang: str, out: str | Path) -> None:
    """Config ``data.perplexity`` (source, options, max_articles) -> one language's text file."""
    options = section.get("options", {})
    text = load_perplexity_texts(section["source"], options, [lang], section["max_articles"])[lang]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text, encoding="utf-8")
    log.info(
        "perplexity text %s: %d characters from %r -> %s", lang, len(text), section["source"], out
    )


def prepare_stories(section: dict, out: str | Path) -> None:
    """Config ``data.xstorycloze`` (source, options, languages) -> JSON ``{"stories":
    {lang: [story, ...]}, "missing": [lang, ...]}``. The story languages are their own
    list, independent of the probe languages (docs/method.md §6): ``languages`` null
    takes every language the source holds; a listed language it lacks is kept as
    missing, never dropped."""
    found, missing = load_stories(
        section["source"], section.get("options", {}), section.get("languages")
    )
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    payload = {"stories": found, "missing": missing}
    Path(out).write_text(json.dumps(payload, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    counts = ", ".join(f"{lang} {len(docs)}" for lang, docs in found.items())
    log.info("stories: %s; no data for %s -> %s", counts, missing or "none", out)
