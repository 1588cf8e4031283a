"""A stand-in for the Hugging Face Hub and the OPUS server, for the offline rehearsal
of the paper's experiment configs (tests/test_rehearsal.py, tests/test_fetch.py).

``FakeRemote`` holds what the real sources publish, file for file, with tiny contents.
Where each layout comes from:

- bigscience/bloom-560m, -1b7 ``main``: one ``model.safetensors`` beside
  ``pytorch_model.bin`` and ``flax_model.msgpack`` (560m also ONNX exports); 1b7's
  config carries ``seq_length: 4096``. bloom-560m publishes no safetensors index (a
  public loader's test of BLOOM tensor names says so, citing bloom-7b1's index).
- bigscience/bloom-7b1 ``main``: ``model-00001-of-00002.safetensors``,
  ``model-00002-of-00002.safetensors`` and ``model.safetensors.index.json`` (the Hub
  URL .../bloom-7b1/blob/main/model.safetensors.index.json is cited by that test), with
  ``pytorch_model-0000N-of-00002.bin`` + ``pytorch_model.bin.index.json`` and sharded
  Flax files beside them.
- bigscience/bloom-7b1-intermediate: branches ``global_stepN`` of config and
  ``pytorch_model.bin`` only, no tokenizer files (docs/method.md §8);
  global_step100000 and global_step200000 hold byte-identical weights.
- meta-llama/Llama-2-7b-hf (2 shards) and Llama-2-70b-hf (15 shards): sharded
  safetensors and sharded ``.bin`` side by side, each with its index,
  ``generation_config.json``, licence, use policy and guide, ``tokenizer.model`` beside
  ``tokenizer.json``. Both are **gated**: listing their files works for anyone, a
  download or the Hub's access check answers 401 without a token and 403 with one
  whose account has not been granted access, ``X-Error-Code: GatedRepo`` and the
  Hub's message (as quoted in public bug reports of huggingface_hub users).
- EleutherAI/pythia-12b ``step0``/``step1``: three ``pytorch_model-0000N-of-00003.bin``
  shards with ``pytorch_model.bin.index.json`` (EleutherAI/pythia issue 206 names the
  first shard of every pythia-12b branch), ``generation_config.json`` and tokenizer
  files. step0 and step1 hold the same tensors (EleutherAI/pythia issue 83); whether
  their files are byte-identical is not published, and here they are not (step1's
  pickles list the tensors in another order), so only the activations can tell.
- ``csebuetnlp/xlsum`` at ``refs/convert/parquet``: ``<config>/<split>/0000.parquet``
  (validation articles from the demo corpus's held-out text), English ``train`` split
  into ``0000.parquet`` and ``0001.parquet`` as on the Hub;
- ``juletxara/xstory_cloze``: ``spring2016.val.<config>.tsv.split_20_80_<split>.tsv``,
  header line and 8 columns, the Spanish files 10 (two empty trailing columns);
- the eight English-paired OPUS ``bible-uedin`` Moses zips with **no** ``.ids`` member
  (whether the real ones have one is not confirmed; a public loader of these zips
  found ``bible-uedin.<pair>.xml``, the XCES sentence alignment, beside the two text
  files instead, and so do these): each opens with Genesis 1:1-3, the English in
  the World English Bible's typeset wording (curly quotes), the other side in a public
  domain translation; then the demo probe corpus, one item a verse, the pairs holding
  different subsets in different orders, one pair repeating an English line
  (ambiguous), one merging two English verses into one line.

``StandInDownloader`` implements ``lingua_franca.fetch.Downloader`` on it: it records
every call and writes what the real huggingface_hub writes: for models, the cache
layout ``hub/models--org--name/{refs/<revision>, snapshots/<commit>/<file>,
blobs/<hash>}`` (snapshot files are relative symlinks into blobs/, LFS files named by
their sha256, others by their git blob sha1); for datasets with a ``local_dir``,
plain files there. ``FakeHub`` serves the Hub's access check over HTTP on
127.0.0.1, with the status codes and headers of the real one, for the real
``HubDownloader``.

``overlay(config, name)`` cuts an experiment config down for the rehearsal: two
model × checkpoint pairs, CPU, float32, tiny batches and limits.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import threading
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import torch
from lingua_franca.corpora.embedded import TEXT_SEPARATOR
from safetensors.torch import save as safetensors_bytes
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "resources" / "corpus"

# ------------------------------------------------------------------ the cut-down grid

#: per experiment config: model -> the checkpoints the rehearsal keeps
KEEP = {
    # one model.safetensors (and 1b7's seq_length 4096); two shards with their index
    "bloom-scales": {"bloom-1b7": ["main"], "bloom-7b1": ["main"]},
    # .bin only, no tokenizer; byte-identical weights
    "bloom-7b1-checkpoints": {"bloom-7b1-intermediate": ["global_step100000", "global_step200000"]},
    # gated; 2 and 15 safetensors shards beside as many .bin shards
    "llama2-scales": {"llama2-7b": ["main"], "llama2-70b": ["main"]},
    # three .bin shards; the same tensors in different files
    "pythia-checkpoints": {"pythia-12b": ["step0", "step1"]},
}


#: five of the paper's nine languages: Spanish (the 10-column XStoryCloze file), French
#: (no XStoryCloze), three scripts; Bible pairs with (ar-en, en-fr, en-zh) and without
#: (en-es, ambiguous line) an .ids member
LANGUAGES = ["en", "zh", "fr", "es", "ar"]


def overlay(config: dict, name: str) -> dict:
    """The experiment config ``name`` cut down for a CPU rehearsal: the models and
    checkpoints of ``KEEP[name]``, five languages, float32 on the CPU, tiny batches,
    few probe items, stories and generated tokens. Everything else (data sources and
    their folders, tokenizer sources, device maps, the perplexity window) stays as the
    config has it."""
    config = copy.deepcopy(config)
    config["languages"] = LANGUAGES
    models = {}
    for model, checkpoints in KEEP[name].items():
        entry = config["models"][model]
        entry["checkpoints"] = {c: entry["checkpoints"][c] for c in checkpoints}
        entry["dtype"] = "float32"  # CPU
        models[model] = entry
    config["models"] = models
    config["data"]["probe"]["n_items"] = 6
    config["data"]["xstorycloze"]["limit"] = 2
    config["analysis"].update(
        device="cpu",
        batch_size=4,
        eval_batch_size=4,
        random_baseline_seeds=[0],
        block_width=64,
        generation={"max_new_tokens": 2, "prompts_per_language": 1, "samples": 3, "batch_size": 8},
    )
    return config


# ------------------------------------------------------------------ tiny models

TINY = {"hidden_size": 16, "layers": 2, "heads": 2}


def _tiny_model(family: str, vocab: int, seed: int):
    from transformers import (
        BloomConfig,
        BloomForCausalLM,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
    )

    torch.manual_seed(seed)
    h, n, heads = TINY["hidden_size"], TINY["layers"], TINY["heads"]
    special = {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 3}
    if family == "bloom":
        return BloomForCausalLM(
            BloomConfig(vocab_size=vocab, hidden_size=h, n_layer=n, n_head=heads, **special)
        )
    if family == "llama":  # LLaMA-2: a 4096-token context
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=h,
            intermediate_size=40,
            num_hidden_layers=n,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            max_position_embeddings=4096,
            **special,
        )
        return LlamaForCausalLM(config)
    config = GPTNeoXConfig(  # Pythia: a 2048-token context
        vocab_size=vocab,
        hidden_size=h,
        num_hidden_layers=n,
        num_attention_heads=heads,
        intermediate_size=64,
        max_position_embeddings=2048,
        **special,
    )
    return GPTNeoXForCausalLM(config)


def _state(model) -> dict[str, torch.Tensor]:
    """The state dict as saved files hold it: tied weights once, contiguous copies."""
    state, seen = {}, set()
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        state[name] = tensor.detach().clone().contiguous()
    return state


def _shards(state: dict[str, torch.Tensor], n: int) -> list[dict[str, torch.Tensor]]:
    names = list(state)
    return [{k: state[k] for k in names[i::n]} for i in range(n)]


def _weights(model, kind: str, shards: int = 1, reorder: bool = False) -> dict[str, bytes]:
    """A model's weight files: ``safetensors``, ``bin`` (real torch.save files) or
    ``bin-placeholder`` (the .bin names, unloadable bytes); sharded when ``shards`` > 1,
    with the index file the real repositories carry. ``reorder``: each file lists its
    tensors in reverse order (the same tensors, other bytes)."""
    state = _state(model)
    stem, suffix = ("model", "safetensors") if kind == "safetensors" else ("pytorch_model", "bin")
    files, weight_map = {}, {}
    for i, part in enumerate(_shards(state, shards), start=1):
        if reorder:
            part = dict(reversed(part.items()))
        name = f"{stem}.{suffix}" if shards == 1 else f"{stem}-{i:05d}-of-{shards:05d}.{suffix}"
        if kind == "safetensors":
            files[name] = safetensors_bytes(part, metadata={"format": "pt"})
        elif kind == "bin":
            buffer = io.BytesIO()
            torch.save(part, buffer)
            files[name] = buffer.getvalue()
        else:
            files[name] = b"not a checkpoint: a correct fetch never downloads this file\n"
        weight_map.update(dict.fromkeys(part, name))
    if shards > 1:
        total = sum(t.numel() * t.element_size() for t in state.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        files[f"{stem}.{suffix}.index.json"] = json.dumps(index, indent=2).encode()
    return files


PLACEHOLDER = b"an export no job reads (Flax, ONNX, a PDF ...)\n"
GENERATION_CONFIG = json.dumps({"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 3}).encode()
README = b"---\nlicense: other\n---\n# model card\n"


def _config_json(model, **extra) -> bytes:
    config = model.config.to_dict()
    config.pop("transformers_version", None)
    return json.dumps({**config, **extra}, indent=2, sort_keys=True).encode()


# ------------------------------------------------------------------ the remote


#: the token of a Hub account that was granted access to every gated repository
GRANTED_TOKEN = "hf_StandInAccountGrantedAccess"
#: a valid token of an account whose access request is pending
PENDING_TOKEN = "hf_StandInAccountAwaitingApproval"


@dataclass
class FakeRemote:
    """(repo_type, repo_id, revision) -> {file name: bytes}; url -> bytes; the gated
    repositories (repo_type, repo_id) -> the tokens granted access."""

    repos: dict[tuple[str, str, str], dict[str, bytes]] = field(default_factory=dict)
    urls: dict[str, bytes] = field(default_factory=dict)
    gated: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=lambda: {GRANTED_TOKEN, PENDING_TOKEN})

    def access(self, repo_type: str, repo_id: str, token: str | None) -> tuple[int, str, str]:
        """What the Hub answers a request for the repository's files: (HTTP status,
        X-Error-Code, X-Error-Message); 200 when the files can be read."""
        kind = "model" if repo_type == "model" else repo_type
        if token is not None and token not in self.tokens:
            return 401, "", "Invalid credentials in Authorization header"
        if not any(t == repo_type and r == repo_id for t, r, _ in self.repos):
            if token is None:
                return 401, "RepoNotFound", "Repository not found"
            return 404, "RepoNotFound", "Repository not found"
        granted = self.gated.get((repo_type, repo_id))
        if granted is None or token in granted:
            return 200, "", ""
        if token is None:
            return (
                401,
                "GatedRepo",
                (
                    f"Access to {kind} {repo_id} is restricted. You must have access to it and be "
                    "authenticated to access it. Please log in."
                ),
            )
        return (
            403,
            "GatedRepo",
            (
                f"Access to {kind} {repo_id} is restricted and you are not in the authorized list. "
                f"Visit https://huggingface.co/{repo_id} to ask for access."
            ),
        )

    def commit(self, repo_id: str, revision: str) -> str:
        return hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()


def _texts(path: Path) -> dict[str, dict[str, str]]:
    """lang -> {item id: text} of a demo corpus TSV (id, lang, text)."""
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for item, lang, text in table.itertuples(index=False):
        out[lang][item] = text
    return out


def build_remote(tokenizer_dir: Path) -> FakeRemote:
    """Everything the four cut-down experiment configs read, as the sources publish
    it. ``tokenizer_dir``: a tokenizer saved with save_pretrained (every fake model
    repository that has tokenizer files gets these)."""
    remote = FakeRemote()
    tok = {p.name: p.read_bytes() for p in tokenizer_dir.iterdir() if p.is_file()}
    config = json.loads(tok["tokenizer_config.json"])
    special = {k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    tok["special_tokens_map.json"] = json.dumps(special).encode()
    vocab = len(json.loads(tok["tokenizer.json"])["model"]["vocab"])
    bloom_tok = {k: tok[k] for k in ("special_tokens_map.json", "tokenizer.json")}
    bloom_tok["tokenizer_config.json"] = tok["tokenizer_config.json"]

    def add(repo: str, revision: str, files: dict[str, bytes]) -> None:
        remote.repos["model", repo, revision] = {".gitattributes": b"*.bin filter=lfs\n", **files}

    # BLOOM, final models (bigscience/bloom-560m, -1b7, -7b1 main)
    m560 = _tiny_model("bloom", vocab, 560)
    add(
        "bigscience/bloom-560m",
        "main",
        {
            "LICENSE": PLACEHOLDER,
            "README.md": README,
            "config.json": _config_json(m560),
            "flax_model.msgpack": PLACEHOLDER,
            **_weights(m560, "safetensors"),
            **_weights(m560, "bin-placeholder"),
            "onnx/config.json": _config_json(m560),
            "onnx/decoder_model.onnx": PLACEHOLDER,
            "onnx/decoder_with_past_model.onnx": PLACEHOLDER,
            "onnx/tokenizer.json": tok["tokenizer.json"],
            **bloom_tok,
        },
    )
    m1b7 = _tiny_model("bloom", vocab, 1700)
    add(
        "bigscience/bloom-1b7",
        "main",
        {
            "README.md": README,
            # the published config: seq_length 4096 (BLOOM trained on 2048 at every size)
            "config.json": _config_json(m1b7, seq_length=4096, pretraining_tp=2),
            "flax_model.msgpack": PLACEHOLDER,
            **_weights(m1b7, "safetensors"),
            **_weights(m1b7, "bin-placeholder"),
            **bloom_tok,
        },
    )
    m7b1 = _tiny_model("bloom", vocab, 7100)
    add(
        "bigscience/bloom-7b1",
        "main",
        {
            "LICENSE": PLACEHOLDER,
            "README.md": README,
            "config.json": _config_json(m7b1),
            "flax_model-00001-of-00002.msgpack": PLACEHOLDER,
            "flax_model-00002-of-00002.msgpack": PLACEHOLDER,
            "flax_model.msgpack.index.json": PLACEHOLDER,
            **_weights(m7b1, "safetensors", shards=2),
            **_weights(m7b1, "bin-placeholder", shards=2),
            **bloom_tok,
        },
    )
    # bigscience/bloom-7b1-intermediate: branches of config and pytorch_model.bin, no
    # tokenizer files; global_step100000 and global_step200000 are the same weights
    step = _tiny_model("bloom", vocab, 100000)
    for revision in ("global_step100000", "global_step200000"):
        add(
            "bigscience/bloom-7b1-intermediate",
            revision,
            {"config.json": _config_json(step), **_weights(step, "bin")},
        )
    # LLaMA-2 (gated; sharded safetensors and .bin, a sentencepiece model beside
    # tokenizer.json)
    for repo, shards, seed in (
        ("meta-llama/Llama-2-7b-hf", 2, 7),
        ("meta-llama/Llama-2-70b-hf", 15, 70),
    ):
        llama = _tiny_model("llama", vocab, seed)
        add(
            repo,
            "main",
            {
                "LICENSE.txt": PLACEHOLDER,
                "README.md": README,
                "Responsible-Use-Guide.pdf": PLACEHOLDER,
                "USE_POLICY.md": PLACEHOLDER,
                "config.json": _config_json(llama),
                "generation_config.json": GENERATION_CONFIG,
                **_weights(llama, "safetensors", shards),
                **_weights(llama, "bin-placeholder", shards),
                **tok,
                "tokenizer.model": b"a sentencepiece model (tokenizer.json is read)\n",
            },
        )
        remote.gated["model", repo] = {GRANTED_TOKEN}
    # Pythia-12b: every step branch three .bin shards with their index; step0 and step1
    # the same tensors (EleutherAI/pythia issue 83), here in files with other bytes
    neox = _tiny_model("gpt_neox", vocab, 12)
    for revision, reorder in (("step0", False), ("step1", True)):
        files = {
            "config.json": _config_json(neox),
            "generation_config.json": GENERATION_CONFIG,
            **tok,
            **_weights(neox, "bin", shards=3, reorder=reorder),
        }
        add("EleutherAI/pythia-12b", revision, files)
    _add_data(remote, Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")))
    return remote


# ------------------------------------------------------------------ data


XLSUM_CONFIGS = {
    "en": "english",
    "zh": "chinese_simplified",
    "fr": "french",
    "es": "spanish",
    "pt": "portuguese",
    "ar": "arabic",
    "vi": "vietnamese",
    "hi": "hindi",
    "id": "indonesian",
    "ru": "russian",
}
XSTORYCLOZE_CONFIGS = ("en", "ru", "zh", "es", "ar", "hi", "id", "te", "sw", "eu", "my")
STORY_HEADER = [
    "InputStoryid",
    "InputSentence1",
    "InputSentence2",
    "InputSentence3",
    "InputSentence4",
    "RandomFifthSentenceQuiz1",
    "RandomFifthSentenceQuiz2",
    "AnswerRightEnding",
]
OPUS_PAIRS = ("ar-en", "en-es", "en-fr", "en-hi", "en-id", "en-pt", "en-vi", "en-zh")
AMBIGUOUS_PAIR = "en-es"  # repeats one English line: both its verses are dropped
MERGED_PAIR = "en-zh"  # two English verses in one line, with one verse: in no other pair
#: Genesis 1:1-3, as each zip opens: the World English Bible's typeset wording (curly
#: quotes; docs/method.md §8 finds them whatever the quotes) and public-domain
#: translations (Chinese Union Version, Louis Segond 1910, Reina-Valera 1909, Almeida,
#: Van Dyke, Vietnamese 1926, Hindi OV, Terjemahan Baru)
GENESIS = {
    "en": (
        "In the beginning God created the heavens and the earth.",
        (
            "Now the earth was formless and empty. Darkness was on the surface of the deep."
            " God\u2019s Spirit was hovering over the surface of the waters."
        ),
        "God said, \u201cLet there be light,\u201d and there was light.",
    ),
    "zh": (
        "起初，神创造天地。",
        "地是空虚混沌，渊面黑暗；神的灵运行在水面上。",
        "神说：要有光，就有了光。",
    ),
    "fr": (
        "Au commencement, Dieu créa les cieux et la terre.",
        (
            "La terre était informe et vide: il y avait des ténèbres à la surface de l'abîme,"
            " et l'esprit de Dieu se mouvait au-dessus des eaux."
        ),
        "Dieu dit: Que la lumière soit! Et la lumière fut.",
    ),
    "es": (
        "EN el principio crió Dios los cielos y la tierra.",
        (
            "Y la tierra estaba desordenada y vacía, y las tinieblas estaban sobre la haz del"
            " abismo, y el Espíritu de Dios se movía sobre la haz de las aguas."
        ),
        "Y dijo Dios: Sea la luz: y fué la luz.",
    ),
    "pt": (
        "No princípio criou Deus os céus e a terra.",
        (
            "E a terra era sem forma e vazia; e havia trevas sobre a face do abismo; e o"
            " Espírito de Deus se movia sobre a face das águas."
        ),
        "E disse Deus: Haja luz; e houve luz.",
    ),
    "ar": (
        "في البدء خلق الله السماوات والارض.",
        "وكانت الارض خربة وخالية وعلى وجه الغمر ظلمة وروح الله يرف على وجه المياه.",
        "وقال الله ليكن نور فكان نور.",
    ),
    "vi": (
        "Ban đầu Đức Chúa Trời dựng nên trời đất.",
        (
            "Vả, đất là vô hình và trống không, sự mờ tối ở trên mặt vực; Thần Đức Chúa Trời"
            " vận hành trên mặt nước."
        ),
        "Đức Chúa Trời phán rằng: Phải có sự sáng; thì có sự sáng.",
    ),
    "hi": (
        "आदि में परमेश्वर ने आकाश और पृथ्वी की सृष्टि की।",
        (
            "और पृथ्वी बेडौल और सुनसान पड़ी थी; और गहरे जल के ऊपर अन्धियारा था: तथा परमेश्वर का"
            " आत्मा जल के ऊपर मण्डलाता था।"
        ),
        "तब परमेश्वर ने कहा, उजियाला हो: तो उजियाला हो गया।",
    ),
    "id": (
        "Pada mulanya Allah menciptakan langit dan bumi.",
        (
            "Bumi belum berbentuk dan kosong; gelap gulita menutupi samudera raya, dan Roh Allah"
            " melayang-layang di atas permukaan air."
        ),
        'Berfirmanlah Allah: "Jadilah terang." Lalu terang itu jadi.',
    ),
}


def verse_id(n: int) -> str:
    """The verse that demo item ``n`` stands for (from Genesis 2:1: 1:1-3 are real)."""
    return f"b.GEN.{2 + n // 30}.{1 + n % 30}"


def _parquet(records: list[dict]) -> bytes:
    buffer = io.BytesIO()
    pd.DataFrame(records).to_parquet(buffer, index=False)
    return buffer.getvalue()


def _add_data(remote: FakeRemote, tokenizer) -> None:
    heldout = _texts(CORPUS / "heldout.tsv")
    xlsum: dict[str, bytes] = {".gitattributes": b"*.parquet filter=lfs\n"}
    for lang, config in XLSUM_CONFIGS.items():
        texts = list(heldout.get(lang, heldout["en"]).values())
        articles = []
        for i in range(0, len(texts), 5):  # until one LLaMA-2 window (4096 tokens) is full
            articles.append(
                {
                    "id": f"{config}-{i}",
                    "url": f"https://www.bbc.com/{config}/{i}",
                    "title": texts[i].split(".")[0],
                    "summary": texts[i],
                    "text": "\n".join(texts[i : i + 5]),
                }
            )
            joined = TEXT_SEPARATOR.join(a["text"] for a in articles)
            if len(tokenizer.encode(joined, add_special_tokens=False).ids) > 4096 + 64:
                break
        xlsum[f"{config}/validation/0000.parquet"] = _parquet(articles)
        xlsum[f"{config}/train/0000.parquet"] = _parquet(articles[:1])
        xlsum[f"{config}/test/0000.parquet"] = _parquet(articles[:1])
    # the Hub's conversion splits English train (306,522 articles) into two files
    xlsum["english/train/0001.parquet"] = _parquet(articles[1:2])
    remote.repos["dataset", "csebuetnlp/xlsum", "refs/convert/parquet"] = xlsum

    stories = defaultdict(list)
    for line in (CORPUS / "stories.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        stories[record.pop("lang")].append(record)
    tsvs: dict[str, bytes] = {".gitattributes": b"*.tsv filter=lfs\n", "README.md": README}
    for config in XSTORYCLOZE_CONFIGS:
        # the Spanish files have two more, empty, columns on every line
        tail = "\t\t" if config == "es" else ""
        rows = [STORY_HEADER] + [
            [
                s["story_id"],
                *(s[f"input_sentence_{i}"] for i in range(1, 5)),
                s["sentence_quiz1"],
                s["sentence_quiz2"],
                str(s["answer_right_ending"]),
            ]
            for s in stories.get(config, stories["en"])
        ]
        text = "".join("\t".join(row) + tail + "\n" for row in rows).encode()
        for split in ("train", "eval"):
            tsvs[f"spring2016.val.{config}.tsv.split_20_80_{split}.tsv"] = text
    remote.repos["dataset", "juletxara/xstory_cloze", "main"] = tsvs

    probe = _texts(CORPUS / "probe.tsv")
    items = list(probe["en"])
    for k, pair in enumerate(OPUS_PAIRS):
        code = pair.replace("en", "").strip("-")
        # Genesis 1:1-3 first, in every pair; then each pair lacks other verses and
        # lists its verses in its own order
        kept = [n for n in range(len(items)) if (n + k) % 11 != 0]
        kept = kept[k * 7 :] + kept[: k * 7]
        if k % 2:
            kept.reverse()
        lines = [(f"b.GEN.1.{v + 1}", GENESIS["en"][v], GENESIS[code][v]) for v in range(3)]
        lines += [(verse_id(n), probe["en"][items[n]], probe[code][items[n]]) for n in kept]
        links = [(v, v) for v, _, _ in lines]
        if pair == AMBIGUOUS_PAIR:  # a second verse with the same English line
            lines.append(("b.GEN.9.1", lines[3][1], "Otra traducción del mismo versículo."))
            links.append(("b.GEN.9.1", "b.GEN.9.1"))
        if pair == MERGED_PAIR:  # two English verses in one line, linked to one verse
            (v1, en1, zh1), (v2, en2, _) = lines[6], lines[7]
            lines[6:8] = [(v1, f"{en1} {en2}", zh1)]
            links[6:8] = [(f"{v1} {v2}", v1)]
        first, second = pair.split("-")
        docs = {"en": "en/English.xml.gz", code: f"{code}/{code}.xml.gz"}
        sides = {"en": 0, code: 1}
        alignment = "".join(
            f'<link xtargets="{link[sides[first]]};{link[sides[second]]}" id="SL{i}" />\n'
            for i, link in enumerate(links, start=1)
        )
        members = {
            "README": "bible-uedin v1 (OPUS)\n",
            "LICENSE": "CC0\n",
            f"bible-uedin.{pair}.{first}": "",
            f"bible-uedin.{pair}.{second}": "",
            # the XCES sentence alignment the Moses files were made from (not read)
            f"bible-uedin.{pair}.xml": (
                '<?xml version="1.0" encoding="utf-8"?>\n'
                '<!DOCTYPE cesAlign PUBLIC "-//CES//DTD XML cesAlign//EN" "">\n'
                '<cesAlign version="1.0">\n'
                f'<linkGrp targType="s" fromDoc="{docs[first]}" toDoc="{docs[second]}" >\n'
                f"{alignment}</linkGrp>\n</cesAlign>\n"
            ),
        }
        members[f"bible-uedin.{pair}.en"] = "".join(f"{en}\n" for _, en, _ in lines)
        members[f"bible-uedin.{pair}.{code}"] = "".join(f"{other}\n" for _, _, other in lines)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zipped:
            for name, content in members.items():
                zipped.writestr(name, content)
        url = f"https://object.pouta.csc.fi/OPUS-bible-uedin/v1/moses/{pair}.txt.zip"
        remote.urls[url] = buffer.getvalue()


# ------------------------------------------------------------------ the stand-in


LFS_SUFFIXES = (".safetensors", ".bin", ".msgpack", ".onnx", ".model", ".pdf", ".parquet")


def blob_name(name: str, content: bytes) -> str:
    """What the Hub's cache names a file's blob: the sha256 of an LFS file, the git
    blob sha1 of any other."""
    if name.endswith(LFS_SUFFIXES) or name == "tokenizer.json":
        return hashlib.sha256(content).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class StandInDownloader:
    """lingua_franca.fetch.Downloader over a FakeRemote; records every download.
    ``token``: the Hub token it sends (None: none), as the real Hub judges it."""

    remote: FakeRemote
    hf_home: Path
    token: str | None = GRANTED_TOKEN
    calls: list = field(default_factory=list)

    def check_access(self, repo_id: str, repo_type: str) -> None:
        from lingua_franca.fetch import AccessRefused

        status, code, message = self.remote.access(repo_type, repo_id, self.token)
        if status != 200:  # as HubDownloader turns huggingface_hub's errors
            reason = {401: "gated", 403: "not_granted"}[status] if code == "GatedRepo" else None
            raise AccessRefused(reason or ("token" if not code else "not_found"), message)

    def list_files(self, repo_id: str, revision: str, repo_type: str) -> list[str]:
        try:  # the Hub lists a gated repository's files to anyone
            return sorted(self.remote.repos[repo_type, repo_id, revision])
        except KeyError:
            raise FileNotFoundError(f"no {repo_type} {repo_id} at {revision}") from None

    def download(self, repo_id, revision, repo_type, files, local_dir) -> str:
        status, _, message = self.remote.access(repo_type, repo_id, self.token)
        if status != 200:
            raise PermissionError(f"{status} Client Error: {message}")
        self.calls.append((repo_id, revision, repo_type, tuple(files), local_dir))
        content = self.remote.repos[repo_type, repo_id, revision]
        if local_dir is not None:
            for name in files:
                path = Path(local_dir) / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content[name])
            return str(local_dir)
        repo = self.hf_home / "hub" / f"{repo_type}s--{repo_id.replace('/', '--')}"
        commit = self.remote.commit(repo_id, revision)
        (repo / "refs" / revision).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / revision).write_text(commit)
        snapshot = repo / "snapshots" / commit
        for name in files:
            blob = repo / "blobs" / blob_name(name, content[name])
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(content[name])
            link = snapshot / name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(os.path.relpath(blob, link.parent))
        return str(snapshot)

    def download_url(self, url: str, dest: Path) -> None:
        self.calls.append((url, str(dest)))
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(self.remote.urls[url])


class FakeHub:
    """The Hub's access check (``GET /api/<type>s/<repo id>/auth-check``, what
    ``HfApi.auth_check`` asks) served on 127.0.0.1 from a FakeRemote, with the real
    Hub's answers (``FakeRemote.access``): 200, or the status with ``X-Error-Code`` and
    ``X-Error-Message`` headers and a JSON error body. ``with FakeHub(remote) as url:``
    gives the endpoint; ``requests`` lists the (path, token) of every request."""

    def __init__(self, remote: FakeRemote):
        self.remote, self.requests = remote, []

    def __enter__(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                auth = self.headers.get("Authorization", "")
                token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
                hub.requests.append((self.path, token))
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) == 5 and parts[0] == "api" and parts[4] == "auth-check":
                    repo_type = parts[1].removesuffix("s")
                    status, code, message = hub.remote.access(
                        repo_type, f"{parts[2]}/{parts[3]}", token
                    )
                else:
                    status, code, message = 404, "", "Not Found"
                body = json.dumps({"error": message} if status != 200 else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if code:
                    self.send_header("X-Error-Code", code)
                if message:
                    self.send_header("X-Error-Message", message)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
