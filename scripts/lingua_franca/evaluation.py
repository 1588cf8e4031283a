"""Cross-lingual XStoryCloze through lm-evaluation-harness (docs/method.md §6, paper Appendix B).

Two multiple-choice tasks per language X, both defined here rather than taken from
lm-eval's task registry, so that nothing is downloaded and the prompt is ours:

* ``cross``: the four story sentences in X joined by spaces, then
  `` The ending in English:``; the choices are the two *English* endings of the
  story with the same ``story_id``.  Stories without an English twin are dropped
  (and counted).
* ``mono``: lm-eval's built-in ``xstorycloze_<lang>`` formulation (v1.0, copied from
  ``lm_eval/tasks/xstorycloze/default_ar.yaml``), on the same local data.

lm-eval scores each choice as the summed log-likelihood of ``" " + ending``
(``target_delimiter``) after the prompt and reports ``acc``.  The model already
loaded by the job is wrapped in ``HFLM``: no second load, and hooks on it (e.g.
deactivated neurons) act on the scores.  Every log-likelihood is checked as it comes
back: lm-eval's ``argmax`` over NaN scores would pick the first ending every time (an
accuracy near 50 %, silently), so a value that is not finite stops the job, naming
the task, language and story (``NonFiniteLogLikelihoodError``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from lingua_franca.atomic import remove_stale_temporaries, temporary_path

STORY = "{{[input_sentence_1, input_sentence_2, input_sentence_3, input_sentence_4]|join(' ')}}"
PROMPTS = {  # the Jinja templates written into the task YAML, recorded in the result
    "cross": {
        "doc_to_text": STORY + " The ending in English:",
        "doc_to_choice": "{{[sentence_quiz1, sentence_quiz2]}}",
        "doc_to_target": "{{answer_right_ending-1}}",
        "target_delimiter": " ",
        "note": "sentence_quiz1/2 and answer_right_ending are the English record's",
    },
    "mono": {
        "doc_to_text": STORY,
        "doc_to_choice": "{{[sentence_quiz1, sentence_quiz2]}}",
        "doc_to_target": "{{answer_right_ending-1}}",
        "target_delimiter": " ",
        "note": "lm-eval's built-in xstorycloze_<lang> formulation",
    },
}
FIELDS = (
    "story_id",
    *(f"input_sentence_{i}" for i in range(1, 5)),
    "sentence_quiz1",
    "sentence_quiz2",
    "answer_right_ending",
)


class NonFiniteLogLikelihoodError(FloatingPointError):
    """lm-eval returned a NaN or infinite log-likelihood for an ending."""


def task_name(kind: str, lang: str) -> str:
    return f"lf_xstorycloze_{kind}_{lang}"


def _checked_lm(label: str, **kwargs):
    """An ``HFLM`` whose log-likelihoods are checked to be finite before lm-eval
    scores them; ``label`` (model and checkpoint) starts the error message."""
    import math

    from lm_eval.models.huggingface import HFLM

    class CheckedHFLM(HFLM):
        def loglikelihood(self, requests, disable_tqdm: bool = False):
            results = super().loglikelihood(requests, disable_tqdm=disable_tqdm)
            for request, (value, _greedy) in zip(requests, results, strict=True):
                if not math.isfinite(value):
                    name = request.task_name or "?"
                    kind, lang = name.removeprefix("lf_xstorycloze_").partition("_")[::2]
                    story = (request.doc or {}).get("story_id", f"#{request.doc_id}")
                    raise NonFiniteLogLikelihoodError(
                        f"{label + ': ' if label else ''}XStoryCloze {kind} task, language "
                        f"{lang!r}, story {story!r}: the log-likelihood of ending "
                        f"{request.args[1]!r} is {value} (a half-precision overflow? try "
                        "dtype float32); lm-eval would pick the first ending instead"
                    )
            return results

    return CheckedHFLM(**kwargs)


def _cross_docs(docs: Sequence[Mapping], english: Mapping[str, Mapping]) -> tuple[list, int]:
    """The story in X with the English endings and label (the label belongs to the
    choices it indexes); stories with no English twin are dropped and counted."""
    kept = [
        {**{f: d[f] for f in FIELDS}, **{f: english[d["story_id"]][f] for f in FIELDS[5:]}}
        for d in docs
        if d["story_id"] in english
    ]
    return kept, len(docs) - len(kept)


def _write_task(workdir: Path, kind: str, lang: str, docs: list[dict]) -> str:
    """One JSONL of docs and one task YAML pointing at it; returns the task name."""
    name = task_name(kind, lang)
    data = workdir / "data" / f"{name}.jsonl"
    data.write_text(
        "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8"
    )
    task = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"eval": str(data)}},
        "output_type": "multiple_choice",
        "validation_split": "eval",
        **{k: v for k, v in PROMPTS[kind].items() if k != "note"},
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }
    (workdir / "tasks" / f"{name}.yaml").write_text(
        yaml.safe_dump(task, sort_keys=False, allow_unicode=True, width=1000), encoding="utf-8"
    )
    return name


def write_tasks(stories: Mapping[str, Sequence[Mapping]], workdir: str | Path) -> dict:
    """Write one JSONL + one task YAML per (kind, language) under ``workdir``.

    Returns ``{lang: {kind: task name, or {"missing": True, "reason": ...}}}``, with
    ``"dropped_no_english"`` beside ``cross``.  Kept apart from evaluation so that the
    files can be inspected, or run with the CLI (``lm_eval --include_path DIR/tasks``).
    """
    workdir = Path(workdir).resolve()
    for sub in ("data", "tasks"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    for old in (workdir / "tasks").glob("*.yaml"):  # no stale task from an earlier call
        old.unlink()
    english = {d["story_id"]: d for d in stories.get("en", [])}
    plan: dict[str, dict] = {}
    for lang, docs in stories.items():
        if not docs:
            continue
        plan[lang] = {
            "mono": _write_task(workdir, "mono", lang, [{f: d[f] for f in FIELDS} for d in docs])
        }
        if not english:
            plan[lang]["cross"] = {"missing": True, "reason": "no English XStoryCloze data"}
            continue
        cross, plan[lang]["dropped_no_english"] = _cross_docs(docs, english)
        plan[lang]["cross"] = (
            _write_task(workdir, "cross", lang, cross)
            if cross
            else {"missing": True, "reason": f"no {lang} story has an English counterpart"}
        )
    return plan


def evaluate_xstorycloze(
    model,
    tokenizer,
    stories: Mapping[str, Sequence[Mapping]],
    missing: Sequence[str],
    workdir: str | Path,
    batch_size: int = 8,
    limit: int | None = None,
    label: str = "",
) -> dict:
    """Accuracy of ``model`` on the cross-lingual and monolingual tasks, per language.

    ``missing`` languages (and languages given no stories) appear with a reason,
    never silently dropped.  ``limit`` caps the stories per task (tests only).
    ``label`` (model and checkpoint) starts the message of a non-finite score.
    """
    import lm_eval
    from lm_eval.tasks import TaskManager

    missing = sorted(set(missing) | {lang for lang, docs in stories.items() if not docs})
    plan = write_tasks(stories, workdir)
    tasks = [
        entry[kind]
        for entry in plan.values()
        for kind in ("cross", "mono")
        if isinstance(entry[kind], str)
    ]
    scores: dict[str, dict] = {}
    if tasks:
        # HFLM may set a pad token on the tokenizer it gets: give it a copy, so that
        # the job's tokenizer is left as it was.
        lm = _checked_lm(
            label, pretrained=model, tokenizer=copy.deepcopy(tokenizer), batch_size=batch_size
        )
        out = lm_eval.simple_evaluate(
            model=lm,
            tasks=tasks,
            limit=limit,
            log_samples=False,
            task_manager=TaskManager(
                include_path=str(Path(workdir).resolve() / "tasks"), include_defaults=False
            ),
        )
        for name in tasks:
            res = out["results"][name]
            stderr = res.get("acc_stderr,none")  # "N/A" when lm-eval computes none
            scores[name] = {
                "acc": float(res["acc,none"]),
                "acc_stderr": float(stderr) if isinstance(stderr, float) else None,
                "n": int(out["n-samples"][name]["effective"]),
            }
    languages: dict[str, dict] = {}
    for lang, entry in plan.items():
        languages[lang] = {
            kind: scores[entry[kind]] if isinstance(entry[kind], str) else entry[kind]
            for kind in ("cross", "mono")
        }
        if "dropped_no_english" in entry:
            languages[lang]["cross"]["dropped_no_english"] = entry["dropped_no_english"]
    for lang in missing:
        languages.setdefault(lang, {"missing": True, "reason": f"no XStoryCloze data for {lang}"})
    return {
        "lm_eval_version": lm_eval.__version__,
        "prompt_format": PROMPTS,
        "limit": limit,
        "languages": languages,
    }


def write_results(result: Mapping, path: str | Path) -> None:
    """Write ``result`` as indented JSON, through a temporary name so that a killed
    job never leaves a half-written file that looks finished."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = temporary_path(path)
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
