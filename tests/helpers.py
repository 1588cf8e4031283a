"""What several test modules share: tiny random models of every architecture the
project knows, a tiny tokenizer, and the MLP neurons computed by hand from a layer's
weights (docs/method.md §1); synthetic activations and their store (metrics and
bootstrap tests); the corpus fixtures. Imported as ``from helpers import ...``
(pytest puts tests/ on the path)."""

import math
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    BloomConfig,
    GemmaConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    OPTConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    XGLMConfig,
)

VOCAB, HIDDEN = 100, 16
GATED = {
    "vocab_size": VOCAB,
    "hidden_size": HIDDEN,
    "intermediate_size": 40,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
}
CONFIGS = {
    "bloom": lambda: BloomConfig(vocab_size=VOCAB, hidden_size=HIDDEN, n_layer=2, n_head=2),
    "bloom_tp2": lambda: BloomConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        n_layer=2,
        n_head=2,
        pretraining_tp=2,
        slow_but_exact=True,
    ),
    "llama": lambda: LlamaConfig(**GATED),
    "mistral": lambda: MistralConfig(**GATED),
    "qwen2": lambda: Qwen2Config(**GATED),
    "gemma": lambda: GemmaConfig(**GATED, head_dim=8),
    "gpt_neox": lambda: GPTNeoXConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=64,
    ),
    "gpt2": lambda: GPT2Config(
        vocab_size=VOCAB,
        n_embd=HIDDEN,
        n_layer=2,
        n_head=2,
        n_positions=64,
        bos_token_id=1,
        eos_token_id=2,
    ),
    "opt": lambda: OPTConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        ffn_dim=40,
        num_attention_heads=2,
        max_position_embeddings=64,
        word_embed_proj_dim=HIDDEN,
    ),
    "xglm": lambda: XGLMConfig(
        vocab_size=VOCAB,
        d_model=HIDDEN,
        num_layers=2,
        attention_heads=2,
        ffn_dim=40,
        max_position_embeddings=64,
    ),
}
ARCHS = list(CONFIGS)


def _gelu_tanh(t):
    return 0.5 * t * (1 + torch.tanh(math.sqrt(2 / math.pi) * (t + 0.044715 * t**3)))


def linear(module, x):
    return x @ module.weight.T + (0 if module.bias is None else module.bias)


def act(name):
    return {
        "silu": lambda t: t * torch.sigmoid(t),
        "gelu": F.gelu,
        "relu": torch.relu,
        "gelu_new": _gelu_tanh,
        "gelu_pytorch_tanh": _gelu_tanh,
    }[name]


def _gated(layer, x, config):
    mlp = layer.mlp
    return act(config.hidden_act)(linear(mlp.gate_proj, x)) * linear(mlp.up_proj, x)


# arch → (module whose input is the MLP input, neurons by hand, output projection, Conv1D?)
HAND = {
    "bloom": (
        "mlp",
        lambda l, x, c: _gelu_tanh(linear(l.mlp.dense_h_to_4h, x)),
        "mlp.dense_4h_to_h",
        False,
    ),
    "llama": ("mlp", _gated, "mlp.down_proj", False),
    "gpt_neox": (
        "mlp",
        lambda l, x, c: act(c.hidden_act)(linear(l.mlp.dense_h_to_4h, x)),
        "mlp.dense_4h_to_h",
        False,
    ),
    "gpt2": (
        "mlp",
        lambda l, x, c: _gelu_tanh(x @ l.mlp.c_fc.weight + l.mlp.c_fc.bias),
        "mlp.c_proj",
        True,
    ),
    "opt": ("fc1", lambda l, x, c: act(c.activation_function)(linear(l.fc1, x)), "fc2", False),
    "xglm": ("fc1", lambda l, x, c: act(c.activation_function)(linear(l.fc1, x)), "fc2", False),
}
HAND["bloom_tp2"] = HAND["bloom"]
HAND["mistral"] = HAND["qwen2"] = HAND["gemma"] = HAND["llama"]


def tiny_model(arch: str) -> nn.Module:
    """A random 2-layer model with weights large enough to give non-trivial values."""
    config = CONFIGS[arch]()
    for key in ("initializer_range", "init_std"):
        if hasattr(config, key):
            setattr(config, key, 0.2)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


CORPUS = [
    "the cat sat on the mat and looked at the dog",
    "der Hund schläft unter dem Tisch im Haus",
    "le chat dort sur le lit de la maison",
    "el perro come en la cocina con el gato",
    "a long sentence about nothing in particular that goes on and on for a while",
]


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A 100-token BPE with bos/eos/unk but no pad token; bos is added only with
    add_special_tokens=True."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        CORPUS, trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<unk>", "<s>", "</s>"])
    )
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def batch(seed=1, lengths=(7, 4, 1)):
    """Random ids, right-padded, with the attention mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (len(lengths), max(lengths)), generator=g)
    mask = (torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]).long()
    return ids, mask


@contextmanager
def mlp_inputs(layers, mlp_input):
    """{layer index: the input of its ``mlp_input`` submodule} from the forward passes
    run inside the block: what the hand computations start from."""
    captured = {}
    handles = [
        layer.get_submodule(mlp_input).register_forward_pre_hook(
            lambda m, args, i=i: captured.__setitem__(i, args[0].detach().clone())
        )
        for i, layer in enumerate(layers)
    ]
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


def all_hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# ------------------------------------------------------------ synthetic activations

DEAD = (1, 2)  # (layer, neuron) that synthetic_activations zeroes in every sample: σ = 0


def synthetic_activations(langs, items, widths, seed=0):
    """(layers, sample languages, sample items): rows in language blocks, each layer's
    activations with a language part and an item part; neuron DEAD is zero."""
    rng = np.random.default_rng(seed)
    n_l, n_v = len(langs), len(items)
    layers = []
    for w in widths:
        lang_part = rng.normal(0, 1, (n_l, 1, w))
        item_part = rng.normal(0, 1, (1, n_v, w))
        x = 1.0 + lang_part + 0.7 * item_part + 0.5 * rng.normal(0, 1, (n_l, n_v, w))
        layers.append(x.reshape(n_l * n_v, w).astype(np.float32))
    if len(widths) > DEAD[0] and widths[DEAD[0]] > DEAD[1]:
        layers[DEAD[0]][:, DEAD[1]] = 0.0
    sample_langs = [lang for lang in langs for _ in items]
    sample_items = [item for _ in langs for item in items]
    return [x.astype(np.float64) for x in layers], sample_langs, sample_items


def write_activation_store(path, layers, langs, items):
    """``layers`` (one samples × width array each) as an activation store at ``path``."""
    from lingua_franca.store import ActivationStore, StoreWriter

    with StoreWriter(path, langs, items, [x.shape[1] for x in layers], row_chunk=7) as w:
        w.write(layers)
    return ActivationStore(path)


# ------------------------------------------------------------------ corpus fixtures

FIXTURES = Path(__file__).parent / "fixtures" / "corpora"


def opus_with_two_english_documents(folder, pattern="bible-uedin.en-*"):
    """The OPUS fixture files matching ``pattern`` copied into ``folder``, the en-fr
    pair's second verse taken from another English document (English-WEB)."""
    for member in (FIXTURES / "opus").glob(pattern):
        shutil.copy(member, folder)
    ids = Path(folder) / "bible-uedin.en-fr.ids"
    lines = ids.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace("en/English.xml.gz", "en/English-WEB.xml.gz")
    ids.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder
