"""XStoryCloze through lm-eval equals a hand computation on a tiny random model.

The hand side shares nothing with the module but the data: prompts are built here,
log-likelihoods come from a plain forward, split context/continuation as lm-eval
does (context = prompt, continuation = " " + ending).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from lingua_franca.evaluation import (
    NonFiniteLogLikelihoodError,
    evaluate_xstorycloze,
    write_results,
    write_tasks,
)
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

ENGLISH = [
    (
        "s1",
        ["Tom woke up late.", "He ran to the bus.", "The bus had left.", "He walked."],
        "He got to work late.",
        "He flew to the moon.",
        1,
    ),
    (
        "s2",
        ["Ana baked a cake.", "She added sugar.", "She put it in the oven.", "It rose."],
        "The cake was tasty.",
        "The cake sang a song.",
        1,
    ),
    (
        "s3",
        ["It rained all day.", "Sam stayed home.", "He read a book.", "He made tea."],
        "Sam swam in the sea.",
        "Sam had a calm day.",
        2,
    ),
    (
        "s4",
        ["Mia lost her keys.", "She looked everywhere.", "She checked her bag.", "Found!"],
        "She was relieved.",
        "She bought a boat.",
        1,
    ),
    (
        "s5",
        ["The dog was hungry.", "It barked.", "Joe filled its bowl.", "It ate."],
        "Joe painted the bowl.",
        "The dog was happy.",
        2,
    ),
]
SPANISH = [
    (
        "s1",
        ["Tom se despertó tarde.", "Corrió al autobús.", "Se había ido.", "Caminó."],
        "Llegó tarde.",
        "Voló a la luna.",
        1,
    ),
    (
        "s2",
        ["Ana horneó un pastel.", "Añadió azúcar.", "Lo metió al horno.", "Subió."],
        "Estaba rico.",
        "El pastel cantó.",
        1,
    ),
    (
        "s3",
        ["Llovió todo el día.", "Sam se quedó.", "Leyó un libro.", "Hizo té."],
        "Sam nadó en el mar.",
        "Sam tuvo un día tranquilo.",
        2,
    ),
    (
        "s5",
        ["El perro tenía hambre.", "Ladró.", "Joe llenó el plato.", "Comió."],
        "Joe pintó el plato.",
        "El perro estaba feliz.",
        2,
    ),
    (
        "s9",
        ["Una historia sin par.", "No existe en inglés.", "Se descarta.", "Fin."],
        "Bien.",
        "Mal.",
        1,
    ),  # no English twin: dropped from the cross-lingual task
]
CHINESE = [
    (
        "s2",
        ["安娜烤了蛋糕。", "她加了糖。", "她放进烤箱。", "蛋糕发起来了。"],
        "很好吃。",
        "蛋糕唱歌。",
        1,
    ),
    (
        "s4",
        ["米娅丢了钥匙。", "她到处找。", "她查了包。", "找到了！"],
        "她松了口气。",
        "她买了船。",
        1,
    ),
    ("s5", ["狗饿了。", "它叫了。", "乔装满了碗。", "它吃了。"], "乔画了碗。", "狗很开心。", 2),
]


def records(rows):
    return [
        {
            "story_id": sid,
            **{f"input_sentence_{i + 1}": s for i, s in enumerate(story)},
            "sentence_quiz1": q1,
            "sentence_quiz2": q2,
            "answer_right_ending": ans,
        }
        for sid, story, q1, q2, ans in rows
    ]


STORIES = {"en": records(ENGLISH), "es": records(SPANISH), "zh": records(CHINESE)}


@pytest.fixture(scope="module")
def model_and_tokenizer():
    torch.manual_seed(0)
    text = [
        " ".join(d[k] for k in d if k != "story_id" and isinstance(d[k], str))
        for docs in STORIES.values()
        for d in docs
    ] + [" The ending in English:"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        text,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<pad>", "<eos>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="<eos>")
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=512,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=1,
        eos_token_id=1,
        pad_token_id=0,
    )
    return GPT2LMHeadModel(config).eval(), tok


@torch.no_grad()
def loglikelihood(model, tok, context: str, continuation: str) -> float:
    whole = tok(context + continuation)["input_ids"]
    ctx = tok(context)["input_ids"]
    assert whole[: len(ctx)] == ctx  # the split lm-eval makes is a clean token boundary
    logp = model(torch.tensor([whole])).logits[0].double().log_softmax(-1)
    return sum(logp[i - 1, whole[i]].item() for i in range(len(ctx), len(whole)))


def hand_docs(lang: str, cross: bool) -> list[tuple[str, list[str], int]]:
    """(prompt, [" " + ending 1, " " + ending 2], gold index) per story, built by hand."""
    english = {d["story_id"]: d for d in STORIES["en"]}
    docs = []
    for d in STORIES[lang]:
        if cross and d["story_id"] not in english:
            continue
        prompt = " ".join(d[f"input_sentence_{i}"] for i in range(1, 5))
        prompt, ends = (
            (prompt + " The ending in English:", english[d["story_id"]]) if cross else (prompt, d)
        )
        docs.append(
            (
                prompt,
                [" " + ends[f"sentence_quiz{c}"] for c in (1, 2)],
                ends["answer_right_ending"] - 1,
            )
        )
    return docs


def hand_accuracy(model, tok, lang: str, cross: bool) -> tuple[float, int]:
    hits = []
    for prompt, choices, gold in hand_docs(lang, cross):
        ll = [loglikelihood(model, tok, prompt, choice) for choice in choices]
        assert abs(ll[0] - ll[1]) > 1e-3  # a pick that float noise cannot flip
        hits.append(int(ll[1] > ll[0]) == gold)
    return sum(hits) / len(hits), len(hits)


@pytest.fixture(scope="module")
def result(model_and_tokenizer, tmp_path_factory):
    model, tok = model_and_tokenizer
    return evaluate_xstorycloze(
        model, tok, STORIES, missing=["fr"], workdir=tmp_path_factory.mktemp("xsc"), batch_size=4
    )


@pytest.mark.parametrize("lang", ["en", "es", "zh"])
@pytest.mark.parametrize("kind", ["cross", "mono"])
def test_accuracy_equals_hand_computation(model_and_tokenizer, result, lang, kind):
    model, tok = model_and_tokenizer
    acc, n = hand_accuracy(model, tok, lang, cross=kind == "cross")
    got = result["languages"][lang][kind]
    assert got["acc"] == pytest.approx(acc, abs=1e-12)
    assert got["n"] == n
    assert got["acc_stderr"] is None or got["acc_stderr"] >= 0


def test_hand_accuracies_are_not_trivial(model_and_tokenizer):
    """Accuracies that all sit at 0 or 1 would let a wrong formulation pass."""
    model, tok = model_and_tokenizer
    accs = {hand_accuracy(model, tok, lang, kind)[0] for lang in STORIES for kind in (True, False)}
    assert len(accs) > 1


def test_every_request_and_score_equals_hand_computation(model_and_tokenizer, tmp_path):
    """Per story, not only on average: the task files make exactly the hand requests,
    and lm-eval's log-likelihoods are the plain forward's."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    model, tok = model_and_tokenizer
    plan = write_tasks(STORIES, tmp_path)
    tasks = {plan[lang][kind]: (lang, kind) for lang in STORIES for kind in ("cross", "mono")}
    out = lm_eval.simple_evaluate(
        model=HFLM(pretrained=model, tokenizer=tok, batch_size=4),
        tasks=list(tasks),
        task_manager=TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False),
    )
    for name, (lang, kind) in tasks.items():
        samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
        expected = hand_docs(lang, cross=kind == "cross")
        assert len(samples) == len(expected)
        for sample, (prompt, choices, gold) in zip(samples, expected):
            assert [tuple(a) for a in sample["arguments"]] == [(prompt, c) for c in choices]
            assert sample["target"] == gold
            got = [ll for ll, _ in sample["filtered_resps"]]
            want = [loglikelihood(model, tok, prompt, c) for c in choices]
            assert got == pytest.approx(want, rel=1e-5)


def test_missing_and_dropped_are_reported(result):
    langs = result["languages"]
    assert langs["fr"] == {"missing": True, "reason": "no XStoryCloze data for fr"}
    assert langs["es"]["cross"]["dropped_no_english"] == 1
    assert langs["es"]["cross"]["n"] == 4 and langs["es"]["mono"]["n"] == 5
    assert langs["zh"]["cross"]["dropped_no_english"] == 0
    assert result["lm_eval_version"] == "0.4.13"
    assert result["prompt_format"]["cross"]["doc_to_text"].endswith(" The ending in English:")


def test_write_results_round_trips(result, tmp_path):
    path = tmp_path / "m" / "ckpt" / "xstorycloze.json"
    write_results(result, path)
    assert json.loads(path.read_text(encoding="utf-8")) == result
    assert not list(path.parent.glob("*.tmp"))


def test_mono_task_is_lm_evals_builtin_formulation(tmp_path):
    import lm_eval

    builtin = yaml.safe_load(
        (Path(lm_eval.__file__).parent / "tasks" / "xstorycloze" / "default_ar.yaml").read_text()
    )
    plan = write_tasks({"ar": records(ENGLISH[:1])}, tmp_path)
    ours = yaml.safe_load((tmp_path / "tasks" / f"{plan['ar']['mono']}.yaml").read_text())
    for key in ("output_type", "doc_to_text", "doc_to_choice", "doc_to_target"):
        assert ours[key] == builtin[key]
    assert plan["ar"]["cross"]["missing"]  # no English: no cross-lingual task
    assert ours["dataset_kwargs"]["data_files"]["eval"].startswith(str(tmp_path.resolve()))


def test_a_nan_log_likelihood_stops_the_evaluation(model_and_tokenizer, tmp_path):
    """lm-eval's argmax over [nan, nan] picks the first ending: about 50 % accuracy,
    silently.  The job stops instead, naming the language and the story."""
    import copy

    model, tok = model_and_tokenizer
    broken = copy.deepcopy(model)
    # break a token that only Chinese story s2 holds: only its scores are NaN
    tokens = {
        (lang, d["story_id"]): set(tok(" ".join(str(v) for v in d.values())).input_ids)
        for lang, docs in STORIES.items()
        for d in docs
    }
    others = set().union(*(t for key, t in tokens.items() if key != ("zh", "s2")))
    token = min(tokens["zh", "s2"] - others)
    with torch.no_grad():  # GPT-2's head shares the embedding: untie it, break the input only
        broken.config.tie_word_embeddings = False  # lm-eval calls tie_weights()
        broken.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.clone())
        broken.transformer.wte.weight[token] = float("nan")
    with pytest.raises(
        NonFiniteLogLikelihoodError,
        match=r"model m, checkpoint c: XStoryCloze (cross|mono) task, language 'zh', "
        r"story 's2': the log-likelihood of ending .* is nan",
    ):
        evaluate_xstorycloze(
            broken, tok, STORIES, missing=[], workdir=tmp_path, label="model m, checkpoint c"
        )
