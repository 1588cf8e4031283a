"""The toy model family: tokenizer, models, training, checkpoints."""

import json

import pytest
import torch
from lingua_franca import toy
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

TEXTS = [
    "The river is wide and the boat is small.",
    "Le fleuve est large et le bateau est petit.",
    "El río es ancho y el barco es pequeño.",
    "河很宽，船很小。",
    "النهر واسع والقارب صغير.",
    "नदी चौड़ी है और नाव छोटी है।",
    "Sông rộng và thuyền nhỏ.",
    "Sungai itu lebar dan perahunya kecil.",
    "O rio é largo e o barco é pequeno.",
] * 6

TOY_SPEC = {
    "hidden_size": 16,
    "num_layers": 2,
    "num_heads": 2,
    "intermediate_size": None,
    "steps": 4,
    "save_steps": [0, 2, 4],
    "batch_size": 2,
    "seqlen": 16,
    "learning_rate": 1e-3,
    "warmup_steps": 1,
    "weight_decay": 0.0,
    "seed": 3,
}


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    toy.train_tokenizer(TEXTS, vocab_size=400, out_dir=out, min_frequency=1)
    return out


def test_tokenizer_round_trips_every_script(tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    for text in TEXTS[:9]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == text
    assert tok.pad_token == "<pad>" and tok.eos_token == "</s>"
    # no BOS is added: the analysis tokenizes without special tokens by default
    assert tok("abc")["input_ids"] == tok("abc", add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("architecture", ["bloom", "llama"])
def test_checkpoint_reloads_with_auto_classes_and_same_logits(
    tokenizer_dir, tmp_path, architecture
):
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    model = toy.build_model({**TOY_SPEC, "architecture": architecture}, len(tok), {}).eval()
    toy.save_checkpoint(model, tok, tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "model.safetensors").exists()
    again = AutoModelForCausalLM.from_pretrained(str(tmp_path / "ckpt")).eval()
    tok_again = AutoTokenizer.from_pretrained(str(tmp_path / "ckpt"))
    ids = tok_again(TEXTS[:3], return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        expected = model(**ids).logits
        got = again(**ids).logits
    assert type(again) is type(model)
    assert torch.equal(expected, got)


@pytest.mark.parametrize("architecture", ["bloom", "llama"])
def test_training_saves_every_step_deterministically(tokenizer_dir, tmp_path, architecture):
    spec = {**TOY_SPEC, "architecture": architecture}
    runs = []
    for name in ("a", "b"):
        history = toy.train_toy_model(
            spec, tokenizer_dir, TEXTS, TEXTS[:18], tmp_path / name, log=lambda s: None
        )
        runs.append(history)
        assert sorted(p.name for p in (tmp_path / name).glob("step-*")) == [
            "step-0",
            "step-2",
            "step-4",
        ]
    assert runs[0]["train_loss"] == runs[1]["train_loss"]
    for step in ("step-0", "step-4"):
        a = load_file(tmp_path / "a" / step / "model.safetensors")
        b = load_file(tmp_path / "b" / step / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the weights moved, and the recorded validation loss is the reloaded model's
    first = load_file(tmp_path / "a" / "step-0" / "model.safetensors")
    last = load_file(tmp_path / "a" / "step-4" / "model.safetensors")
    assert any(not torch.equal(first[k], last[k]) for k in first)
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "a" / "step-4"))
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "a" / "step-4"))
    valid = toy._windows(toy.token_stream(TEXTS[:18], tok), spec["seqlen"])
    recorded = json.loads((tmp_path / "a" / "training.json").read_text())["checkpoints"][-1]
    assert recorded["step"] == 4
    assert toy.evaluate_loss(reloaded, valid) == pytest.approx(recorded["valid_loss"], rel=1e-6)


def test_bloom_rejects_a_custom_mlp_width():
    with pytest.raises(ValueError, match="4 × hidden_size"):
        toy.build_model({**TOY_SPEC, "architecture": "bloom", "intermediate_size": 10}, 100, {})


def test_training_text_is_same_language_documents(tmp_path):
    """The toy models train on documents of one language each, several paragraphs
    long, with end-of-sequence only where a document ends (docs/method.md §11): so a
    paragraph is followed by more of its language, not by end-of-sequence and then
    whatever language is commonest."""
    rows = ["id\tlang\ttext"] + [
        f"t{i:03d}\t{lang}\t{lang} paragraph {i}."
        for i in range(1, 21)
        for lang in ("en", "fr", "zh")
    ]
    source = tmp_path / "train.tsv"
    source.write_text("\n".join(rows) + "\n", encoding="utf-8")
    train, valid = tmp_path / "train.jsonl", tmp_path / "valid.jsonl"
    toy.write_training_split([str(source)], 0.1, 0, train, valid, paragraphs_per_document=3)
    docs = [json.loads(line) for line in train.read_text(encoding="utf-8").splitlines()]
    held = [json.loads(line) for line in valid.read_text(encoding="utf-8").splitlines()]
    for doc in docs + held:
        paragraphs = doc["text"].split("\n")
        assert 1 <= len(paragraphs) <= 3 and len(paragraphs) == len(doc["items"])
        assert all(p.startswith(doc["lang"] + " paragraph") for p in paragraphs)
    train_items = {(i, d["lang"]) for d in docs for i in d["items"]}
    valid_items = {i for d in held for i in d["items"]}
    assert len(train_items) == 18 * 3 and len(valid_items) == 2
    assert not {i for i, _ in train_items} & valid_items  # whole items held out
    assert toy.read_documents(train) == [d["text"] for d in docs]
    # the documents' languages are mixed in the file, not in blocks
    assert len({d["lang"] for d in docs[:4]}) > 1
    # one end-of-sequence per document, at its end
    tok = toy.train_tokenizer([d["text"] for d in docs], vocab_size=300, out_dir=tmp_path / "tok")
    stream = toy.token_stream([d["text"] for d in docs], tok).tolist()
    ends = [i for i, t in enumerate(stream) if t == tok.eos_token_id]
    assert len(ends) == len(docs) and ends[-1] == len(stream) - 1
