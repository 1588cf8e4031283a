"""Neuron location and hooks, checked against the same values computed by hand from
each tiny random model's weights (docs/method.md §1, §5).  Also home of the tiny models and
tokenizer that test_activations.py imports."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from lingua_franca import architectures
from lingua_franca.architectures import NeuronModuleError, NeuronReader, find_neurons, zero_neurons
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


def _linear(module, x):
    return x @ module.weight.T + (0 if module.bias is None else module.bias)


def _act(name):
    return {
        "silu": lambda t: t * torch.sigmoid(t),
        "gelu": F.gelu,
        "relu": torch.relu,
        "gelu_new": _gelu_tanh,
        "gelu_pytorch_tanh": _gelu_tanh,
    }[name]


def _gated(layer, x, config):
    mlp = layer.mlp
    return _act(config.hidden_act)(_linear(mlp.gate_proj, x)) * _linear(mlp.up_proj, x)


# arch → (module whose input is the MLP input, neurons by hand, output projection, Conv1D?)
HAND = {
    "bloom": (
        "mlp",
        lambda l, x, c: _gelu_tanh(_linear(l.mlp.dense_h_to_4h, x)),
        "mlp.dense_4h_to_h",
        False,
    ),
    "llama": ("mlp", _gated, "mlp.down_proj", False),
    "gpt_neox": (
        "mlp",
        lambda l, x, c: _act(c.hidden_act)(_linear(l.mlp.dense_h_to_4h, x)),
        "mlp.dense_4h_to_h",
        False,
    ),
    "gpt2": (
        "mlp",
        lambda l, x, c: _gelu_tanh(x @ l.mlp.c_fc.weight + l.mlp.c_fc.bias),
        "mlp.c_proj",
        True,
    ),
    "opt": ("fc1", lambda l, x, c: _act(c.activation_function)(_linear(l.fc1, x)), "fc2", False),
    "xglm": ("fc1", lambda l, x, c: _act(c.activation_function)(_linear(l.fc1, x)), "fc2", False),
}
HAND["bloom_tp2"] = HAND["bloom"]
HAND["mistral"] = HAND["qwen2"] = HAND["gemma"] = HAND["llama"]
EXPECTED_PATTERN = {
    "bloom": "transformer.h.{layer}.mlp.gelu_impl",
    "bloom_tp2": "transformer.h.{layer}.mlp.gelu_impl",
    "llama": "model.layers.{layer}.mlp.down_proj",
    "mistral": "model.layers.{layer}.mlp.down_proj",
    "qwen2": "model.layers.{layer}.mlp.down_proj",
    "gemma": "model.layers.{layer}.mlp.down_proj",
    "gpt_neox": "gpt_neox.layers.{layer}.mlp.dense_4h_to_h",
    "gpt2": "transformer.h.{layer}.mlp.c_proj",
    "opt": "model.decoder.layers.{layer}.fc2",
    "xglm": "model.layers.{layer}.fc2",
}


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


def all_hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("arch", ARCHS)
def test_known_neuron_module(arch):
    model = tiny_model(arch)
    site = find_neurons(model)
    assert site.pattern == EXPECTED_PATTERN[arch]
    assert len(site) == 2
    assert site.side == ("output" if arch.startswith("bloom") else "input")


@pytest.mark.parametrize("arch", [a for a in ARCHS if not a.startswith("bloom")])
def test_search_finds_the_same_module_without_the_table(arch, monkeypatch):
    monkeypatch.setattr(architectures, "KNOWN", {})
    assert find_neurons(tiny_model(arch)).pattern == EXPECTED_PATTERN[arch]


def test_search_on_bloom_finds_the_output_projection(monkeypatch):
    monkeypatch.setattr(architectures, "KNOWN", {})
    assert find_neurons(tiny_model("bloom")).pattern == "transformer.h.{layer}.mlp.dense_4h_to_h"


@pytest.mark.parametrize("arch", ARCHS)
def test_pooled_neurons_equal_hand_computation(arch):
    model = tiny_model(arch)
    mlp_input, hand, _, _ = HAND[arch]
    ids, mask = batch()
    layers = architectures.decoder_layers(model)[1]
    captured = {}
    handles = [
        layer.get_submodule(mlp_input).register_forward_pre_hook(
            lambda m, args, i=i: captured.__setitem__(i, args[0].detach().clone())
        )
        for i, layer in enumerate(layers)
    ]
    try:
        with NeuronReader(model) as reader, torch.no_grad():
            pooled = reader.pooled(lambda: model(input_ids=ids, attention_mask=mask), mask)
    finally:
        for h in handles:
            h.remove()
    for i, layer in enumerate(layers):
        x = captured[i].reshape(*ids.shape, -1)  # OPT/XGLM flatten inside the layer
        with torch.no_grad():
            neurons = hand(layer, x, model.config)
        m = mask[..., None].float()
        expected = (neurons * m).sum(1) / m.sum(1)
        assert pooled[i].dtype == torch.float32
        assert pooled[i].shape == (
            3,
            layer.get_submodule(HAND[arch][2]).weight.shape[0 if HAND[arch][3] else 1],
        )
        torch.testing.assert_close(pooled[i], expected, rtol=1e-5, atol=1e-6)
        assert expected.abs().max() > 1e-2  # the comparison is not between near-zeros


@pytest.mark.parametrize("arch", ARCHS)
def test_zeroing_equals_zeroed_projection_columns(arch):
    model = tiny_model(arch)
    ids, mask = batch(lengths=(6, 6))
    neurons = {0: torch.tensor([0, 3, 5]), 1: torch.tensor([1, 2, 7, 11])}
    run = lambda m: m(input_ids=ids, attention_mask=mask, labels=ids)
    with torch.no_grad():
        before = run(model)
        edited = copy.deepcopy(model)
        layers = architectures.decoder_layers(edited)[1]
        for layer, index in neurons.items():
            projection = layers[layer].get_submodule(HAND[arch][2])
            if HAND[arch][3]:  # GPT-2 Conv1D stores (in, out): rows are inputs
                projection.weight[index, :] = 0
            else:
                projection.weight[:, index] = 0
        reference = run(edited)
        with zero_neurons(model, neurons):
            zeroed = run(model)
        after = run(model)
    assert not torch.equal(zeroed.logits, before.logits)
    assert torch.equal(zeroed.logits, reference.logits)
    assert torch.equal(zeroed.loss, reference.loss)
    assert torch.equal(after.logits, before.logits) and torch.equal(after.loss, before.loss)
    assert all_hooks(model) == 0


def test_zero_neurons_accepts_lists_and_skips_empty_layers():
    model = tiny_model("llama")
    ids, _mask = batch()
    with torch.no_grad():
        with zero_neurons(model, {0: [], 1: [4]}):
            assert all_hooks(model) == 1
            a = model(input_ids=ids).logits
        with zero_neurons(model, {1: torch.tensor([4])}):
            b = model(input_ids=ids).logits
    assert torch.equal(a, b)
    with pytest.raises(IndexError, match="layer 5"), zero_neurons(model, {5: [0]}):
        pass
    assert all_hooks(model) == 0


def test_hooks_removed_when_forward_raises():
    model = tiny_model("gpt2")
    ids, mask = batch()

    def boom(module, args):
        raise RuntimeError("boom")

    crash = model.transformer.h[1].mlp.register_forward_pre_hook(boom)
    with (
        pytest.raises(RuntimeError, match="boom"),
        zero_neurons(model, {0: [1]}),
        NeuronReader(model) as reader,
    ):
        reader.pooled(lambda: model(input_ids=ids, attention_mask=mask), mask)
    crash.remove()
    assert all_hooks(model) == 0


class WeirdMLP(nn.Module):
    """An MLP whose output projection has a name nobody guesses."""

    def __init__(self, hidden=HIDDEN, width=24):
        super().__init__()
        self.inner, self.outer = nn.Linear(hidden, width), nn.Linear(width, hidden)

    def forward(self, x):
        return self.outer(torch.relu(self.inner(x)))


def test_unknown_mlp_fails_naming_the_override_which_then_works():
    model = tiny_model("llama")
    for layer in model.model.layers:
        layer.mlp = WeirdMLP()
    with pytest.raises(NeuronModuleError, match="neuron_module") as err:
        find_neurons(model)
    assert "{layer}" in str(err.value)
    pattern = "model.layers.{layer}.mlp.outer"
    ids, mask = batch()
    captured = {}
    handles = [
        layer.mlp.register_forward_pre_hook(lambda m, a, i=i: captured.__setitem__(i, a[0]))
        for i, layer in enumerate(model.model.layers)
    ]
    with NeuronReader(model, pattern) as reader, torch.no_grad():
        pooled = reader.pooled(lambda: model.model(input_ids=ids, attention_mask=mask), mask)
        for h in handles:
            h.remove()
        for i, layer in enumerate(model.model.layers):
            neurons = torch.relu(_linear(layer.mlp.inner, captured[i]))
            m = mask[..., None].float()
            torch.testing.assert_close(pooled[i], (neurons * m).sum(1) / m.sum(1))
    # the same pattern resolves on the decoder body alone (prefix "model." dropped)
    assert find_neurons(model.model, pattern).modules == find_neurons(model, pattern).modules


def test_bad_override_is_explained():
    model = tiny_model("llama")
    with pytest.raises(NeuronModuleError, match="placeholder"):
        find_neurons(model, "model.layers.0.mlp.down_proj")
    with pytest.raises(NeuronModuleError, match="resolves for 0 layers"):
        find_neurons(model, "model.layers.{layer}.mlp.nothing")


def test_hook_that_never_fires_is_an_error():
    model = tiny_model("llama")
    _ids, mask = batch()
    with NeuronReader(model) as reader, pytest.raises(NeuronModuleError, match="never reached"):
        reader.pooled(lambda: None, mask)
    assert all_hooks(model) == 0


def test_zeroing_through_a_module_the_forward_never_calls_is_an_error():
    """An override that resolves on every layer but is never on the forward path would
    leave the model whole: every condition would equal the full model (0 % increase)."""
    model = tiny_model("llama")
    for layer in model.model.layers:
        layer.mlp.spare = nn.Linear(40, HIDDEN)  # resolvable, never called
    ids, mask = batch()
    pattern = "model.layers.{layer}.mlp.spare"
    with torch.no_grad():
        with (
            pytest.raises(NeuronModuleError, match=r"layers \[0, 1\] never reached .*spare"),
            zero_neurons(model, {0: [1], 1: [2, 3]}, pattern),
        ):
            model(input_ids=ids, attention_mask=mask)
        with zero_neurons(model, {0: [], 1: [2]}, pattern) as site:  # layer 0: nothing to zero
            model.model.layers[1].mlp.spare(torch.zeros(1, 40))  # the hooked layer fires
        assert site.pattern == pattern
        # the known site fires on every layer: no error
        with zero_neurons(model, {0: [1], 1: [2]}):
            model(input_ids=ids, attention_mask=mask)
    assert all_hooks(model) == 0


def test_inf_at_a_padding_position_stays_out_of_the_mean():
    """0 × inf is NaN: pooling must exclude padding, not multiply it by zero."""
    reader = NeuronReader(tiny_model("llama"))
    x = torch.randn(2, 3, 5)
    x[1, 2] = float("inf")  # padding of the second sample
    reader._mask = torch.tensor([[1, 1, 1], [1, 1, 0]]).bool()
    reader._pooled = {}
    reader._pool(0, x)
    expected = torch.stack([x[0].mean(0), x[1, :2].mean(0)])
    assert torch.allclose(reader._pooled[0], expected)
