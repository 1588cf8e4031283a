"""A stand-in for the Hugging Face Hub and the OPUS server, for the offline rehearsal
of the paper's experiment configs (tests/test_rehearsal.py, tests/test_fetch.py).

``FakeRemote`` holds what the real sources publish, file for file, with tiny contents:

- model repositories whose revisions carry the real file lists (looked up on the
  Hub's file trees): weights as safetensors and/or pytorch_model.bin (sharded where
  the real ones are), Flax/ONNX exports, READMEs and licences, and tokenizer files
  where the real repository has them and none where it has none
  (bigscience/bloom-*-intermediate); bloom-1b7's config carries ``seq_length: 4096``;
  bloom-7b1-intermediate's global_step100000 and global_step200000 hold identical
  weights. The models are tiny random BLOOM, LLaMA and GPT-NeoX models; weights that
  a correct fetch never downloads (.bin beside safetensors, Flax, ONNX) are
  placeholder bytes that no loader could read.
- ``csebuetnlp/xlsum`` at ``refs/convert/parquet``: ``<config>/<split>/0000.parquet``
  (validation articles from the demo corpus's held-out text; train and test too);
- ``juletxara/xstory_cloze``: ``spring2016.val.<config>.tsv.split_20_80_<split>.tsv``,
  header line and 8 columns, the Spanish files 10 (two empty trailing columns);
- the eight English-paired OPUS ``bible-uedin`` Moses zips, built from the demo
  probe corpus (one item = one verse ``b.GEN.c.v``): the pairs hold different
  subsets of verses in different orders, three zips have no ``.ids`` member, one of
  those repeats an English line (ambiguous), one ``.ids`` pair links two verses to
  one line (not one-to-one).

``StandInDownloader`` implements ``lingua_franca.fetch.Downloader`` on it: it records
every call and writes what the real huggingface_hub writes: for models, the cache
layout ``hub/models--org--name/{refs/<revision>, snapshots/<commit>/<file>,
blobs/<hash>}`` (snapshot files are relative symlinks into blobs/, LFS files named by
their sha256, others by their git blob sha1); for datasets with a ``local_dir``,
plain files there.

``overlay(config, name)`` cuts an experiment config down for the rehearsal: two
model × checkpoint pairs, CPU, float32, tiny batches and limits.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
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
    "bloom-scales": {"bloom-560m": ["main"], "bloom-1b7": ["main"]},
    "bloom-7b1-checkpoints": {"bloom-7b1-intermediate": ["global_step100000", "global_step200000"]},
    "llama2-scales": {"llama2-7b": ["main"], "llama2-70b": ["main"]},
    "pythia-checkpoints": {"pythia-70m": ["step1000", "step143000"]},
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
        generation={"max_new_tokens": 2, "prompts_per_language": 1},
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


def _weights(model, kind: str, shards: int = 1) -> dict[str, bytes]:
    """A model's weight files: ``safetensors``, ``bin`` (real torch.save files) or
    ``bin-placeholder`` (the .bin names, unloadable bytes); sharded when ``shards`` > 1,
    with the index file the real repositories carry."""
    state = _state(model)
    stem, suffix = ("model", "safetensors") if kind == "safetensors" else ("pytorch_model", "bin")
    files, weight_map = {}, {}
    for i, part in enumerate(_shards(state, shards), start=1):
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
README = b"---\nlicense: other\n---\n# model card\n"


def _config_json(model, **extra) -> bytes:
    config = model.config.to_dict()
    config.pop("transformers_version", None)
    return json.dumps({**config, **extra}, indent=2, sort_keys=True).encode()


# ------------------------------------------------------------------ the remote


@dataclass
class FakeRemote:
    """(repo_type, repo_id, revision) -> {file name: bytes}; url -> bytes."""

    repos: dict[tuple[str, str, str], dict[str, bytes]] = field(default_factory=dict)
    urls: dict[str, bytes] = field(default_factory=dict)

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
            **_weights(m7b1, "safetensors"),
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
        ("meta-llama/Llama-2-70b-hf", 3, 70),
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
                "generation_config.json": json.dumps(
                    {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 3}
                ).encode(),
                **_weights(llama, "safetensors", shards),
                **_weights(llama, "bin-placeholder", shards),
                **tok,
                "tokenizer.model": b"a sentencepiece model (tokenizer.json is read)\n",
            },
        )
    # Pythia: main has safetensors, the step branches pytorch_model.bin only
    for revision, seed in (("step1000", 1000), ("step143000", 143000), ("main", 143000)):
        neox = _tiny_model("gpt_neox", vocab, seed)
        files = {"config.json": _config_json(neox), **tok, **_weights(neox, "bin")}
        if revision == "main":
            files |= {"README.md": README, **_weights(neox, "safetensors")}
        add("EleutherAI/pythia-70m", revision, files)
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
WITHOUT_IDS = ("en-es", "en-hi", "en-vi")  # zips without a .ids member
AMBIGUOUS_PAIR = "en-es"  # repeats one English line: both its verses are dropped
MERGED_PAIR = "en-zh"  # links two English verses to one line: not one-to-one


def verse_id(n: int) -> str:
    return f"b.GEN.{1 + n // 30}.{1 + n % 30}"


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
        # each pair lacks other verses (never Genesis 1:1-1:3, which every translation
        # has: the generation prompts), and lists its verses in its own order
        kept = [n for n in range(len(items)) if (n + k) % 11 != 0 or n < 3]
        kept = kept[k * 7 :] + kept[: k * 7]
        if k % 2:
            kept.reverse()
        lines = [(verse_id(n), probe["en"][items[n]], probe[code][items[n]]) for n in kept]
        if pair == AMBIGUOUS_PAIR:  # a second verse with the same English line
            lines.append(("b.GEN.9.1", lines[0][1], "Otra traducción del mismo versículo."))
        links = [(v, v) for v, _, _ in lines]
        if pair == MERGED_PAIR:  # two English verses in one line, linked to one verse
            (v1, en1, zh1), (v2, en2, _) = lines[3], lines[4]
            lines[3:5] = [(v1, f"{en1} {en2}", zh1)]
            links[3:5] = [(f"{v1} {v2}", v1)]
        first, second = pair.split("-")
        docs = {"en": "en/English.xml.gz", code: f"{code}/{code}.xml.gz"}
        members = {
            f"bible-uedin.{pair}.en": "".join(f"{en}\n" for _, en, _ in lines),
            f"bible-uedin.{pair}.{code}": "".join(f"{other}\n" for _, _, other in lines),
            "README": "bible-uedin v1 (OPUS)\n",
            "LICENSE": "CC0\n",
        }
        if pair not in WITHOUT_IDS:
            sides = {"en": 0, code: 1}
            members[f"bible-uedin.{pair}.ids"] = "".join(
                f"{docs[first]}\t{docs[second]}\t{link[sides[first]]}\t{link[sides[second]]}\n"
                for link in links
            )
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
    """lingua_franca.fetch.Downloader over a FakeRemote; records every call."""

    remote: FakeRemote
    hf_home: Path
    calls: list = field(default_factory=list)

    def list_files(self, repo_id: str, revision: str, repo_type: str) -> list[str]:
        try:
            return sorted(self.remote.repos[repo_type, repo_id, revision])
        except KeyError:
            raise FileNotFoundError(f"no {repo_type} {repo_id} at {revision}") from None

    def download(self, repo_id, revision, repo_type, files, local_dir) -> str:
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
