"""Neuron location and hooks, checked against the same values computed by hand from
each tiny random model's weights (docs/method.md §1, §5)."""

import copy
from types import SimpleNamespace

import pytest
import torch
from helpers import (
    ARCHS,
    HAND,
    HIDDEN,
    act,
    all_hooks,
    batch,
    linear,
    mlp_inputs,
    tiny_model,
)
from lingua_franca import architectures
from lingua_franca.architectures import NeuronModuleError, NeuronReader, find_neurons
from lingua_franca.interventions import zero_neurons
from torch import nn

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
    with mlp_inputs(layers, mlp_input) as captured, NeuronReader(model) as reader, torch.no_grad():
        pooled = reader.pooled(lambda: model(input_ids=ids, attention_mask=mask), mask)
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
            neurons = torch.relu(linear(layer.mlp.inner, captured[i]))
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


# ------------------------------------------------------------ LAPE's activation value (§9.1)

GATED_ARCHS = ("llama", "mistral", "qwen2", "gemma")


def _gate_activation(layer, x, config):
    return act(config.hidden_act)(linear(layer.mlp.gate_proj, x))


def hand_activation(arch):
    """The value LAPE counts, by hand: act_fn(gate_proj(x)) for gated MLPs, else the neuron."""
    return _gate_activation if arch in GATED_ARCHS else HAND[arch][1]


@pytest.mark.parametrize("arch", ARCHS)
def test_activity_site(arch):
    model = tiny_model(arch)
    activity = architectures.find_activity(model)
    if arch in GATED_ARCHS:
        assert activity.kind == "gate_activation" and activity.site.side == "output"
        assert activity.site.pattern == "model.layers.{layer}.mlp.act_fn"
    else:  # BLOOM's GeLU output, and the input of the output projection elsewhere
        assert activity.kind == "neuron"
        assert activity.site == find_neurons(model)
        assert activity.site.pattern == EXPECTED_PATTERN[arch]
    assert activity.attrs()["pattern"] == activity.site.pattern


@pytest.mark.parametrize("arch", ARCHS)
def test_activity_counts_equal_hand_computation(arch):
    """Real tokens at which the activation value is > 0, from the layer's weights."""
    model = tiny_model(arch)
    mlp_input = HAND[arch][0]
    ids, mask = batch(lengths=(7, 4, 1))
    layers = architectures.decoder_layers(model)[1]
    reader = NeuronReader(model, count_active=True)
    with mlp_inputs(layers, mlp_input) as captured, reader, torch.no_grad():
        got = reader.read(lambda: model(input_ids=ids, attention_mask=mask), mask)
    assert got.n_tokens.tolist() == [7, 4, 1] and got.n_tokens.dtype == torch.int32
    for i, layer in enumerate(layers):
        x = captured[i].reshape(*ids.shape, -1)
        with torch.no_grad():
            value = hand_activation(arch)(layer, x, model.config)
            neurons = HAND[arch][1](layer, x, model.config)
        expected = ((value > 0) & mask[..., None].bool()).sum(1).to(torch.int32)
        assert got.active[i].dtype == torch.int32
        assert torch.equal(got.active[i], expected)
        assert 0 < int(expected.sum()) < int(mask.sum()) * value.shape[-1]  # not all or none
        by_neuron = ((neurons > 0) & mask[..., None].bool()).sum(1).to(torch.int32)
        if arch in GATED_ARCHS:  # the product with up_proj has other signs
            assert not torch.equal(got.active[i], by_neuron)
        else:
            assert torch.equal(got.active[i], by_neuron)
    assert all_hooks(model) == 0


def test_activity_ignores_padding_values():
    """Positive values at padding positions never count (the mask, not the values)."""
    reader = NeuronReader(tiny_model("llama"), count_active=True)
    x = torch.tensor([[[1.0, -1.0], [2.0, 0.0], [3.0, 5.0]], [[-1.0, 1.0], [9.0, 9.0], [9.0, 9.0]]])
    reader._mask = torch.tensor([[1, 1, 1], [1, 0, 0]]).bool()
    reader._count(0, x)
    assert reader._active[0].tolist() == [[3, 1], [0, 1]]  # 0 is not > 0


def test_gated_activity_found_without_the_table(monkeypatch):
    monkeypatch.setattr(architectures, "ACTIVATION_KNOWN", {})
    activity = architectures.find_activity(tiny_model("qwen2"))
    assert activity.kind == "gate_activation"
    assert activity.site.pattern == "model.layers.{layer}.mlp.act_fn"


def test_override_counts_the_neuron_itself():
    """A neuron_module override names the neurons only: activity falls back to them."""
    model = tiny_model("llama")
    pattern = "model.layers.{layer}.mlp.down_proj"
    activity = architectures.find_activity(model, pattern)
    assert activity.kind == "neuron" and "override" in activity.attrs()["note"]
    ids, mask = batch()
    with NeuronReader(model, pattern, count_active=True) as reader, torch.no_grad():
        got = reader.read(lambda: model(input_ids=ids, attention_mask=mask), mask)
    with NeuronReader(model, count_active=True) as reader, torch.no_grad():
        gated = reader.read(lambda: model(input_ids=ids, attention_mask=mask), mask)
    assert not torch.equal(got.active[0], gated.active[0])
    assert all(torch.equal(a, b) for a, b in zip(got.means, gated.means))


def test_shared_activation_module_falls_back_to_the_neuron():
    model = tiny_model("llama")
    shared = model.model.layers[0].mlp.act_fn
    for layer in model.model.layers:
        layer.mlp.act_fn = shared
    activity = architectures.find_activity(model)
    assert activity.kind == "neuron" and "of its own" in activity.note


def test_activation_called_twice_is_an_error():
    model = tiny_model("llama")
    mlp = model.model.layers[1].mlp
    mlp.forward = lambda x: mlp.down_proj(mlp.act_fn(mlp.gate_proj(x)) * mlp.act_fn(x[..., :1]))
    ids, mask = batch()
    with (
        NeuronReader(model, count_active=True) as reader,
        pytest.raises(NeuronModuleError, match="ran twice in layer 1"),
    ):
        reader.read(lambda: model(input_ids=ids, attention_mask=mask), mask)
    assert all_hooks(model) == 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_activity_counts_exact_over_long_samples(dtype):
    """Counts past what half precision holds exactly (bf16: 256) come out exact."""
    reader = NeuronReader(tiny_model("llama"), count_active=True)
    tokens = 2601
    x = torch.ones(2, tokens, 3, dtype=dtype)
    x[:, ::7, 1] = -1  # 372 of 2601 negative (odd sums: inexact in bf16 and fp16)
    x[:, :, 2] = 0
    reader._mask = (torch.arange(tokens)[None] < torch.tensor([[tokens], [1001]])).bool()
    reader._count(0, x)
    expected = [[tokens, tokens - 372, 0], [1001, 1001 - 143, 0]]
    assert reader._active[0].tolist() == expected and reader._active[0].dtype == torch.int32


# ---------------------------------------------------------------- context length


def test_context_length_is_the_familys_training_context():
    """docs/method.md §5: BLOOM 2048 at every size, even where the config says
    seq_length 4096 (bigscience/bloom-1b7's config.json does); a model entry's
    context_length wins; other families read their config."""
    bloom_1b7 = tiny_model("bloom")
    bloom_1b7.config.seq_length = 4096  # as in bloom-1b7's published config
    assert architectures.context_length(bloom_1b7) == 2048
    assert architectures.context_length(tiny_model("bloom")) == 2048
    assert architectures.context_length(bloom_1b7, override=1024) == 1024
    assert architectures.context_length(tiny_model("llama")) == 64  # max_position_embeddings
    assert architectures.context_length(tiny_model("gpt2")) == 64  # n_positions
    neox = tiny_model("gpt_neox")
    neox.config.max_position_embeddings = 2048  # Pythia
    assert architectures.context_length(neox) == 2048
    unknown = nn.Linear(2, 2)
    unknown.config = SimpleNamespace(model_type="mystery")
    with pytest.raises(ValueError, match="context length unknown; set the model's context_length"):
        architectures.context_length(unknown)
