"""Interventions (lingua_franca.interventions) checked against the same layer edited by
hand from each tiny random model's weights, for every architecture in helpers.CONFIGS;
and the per-language statistics of the activation store (lingua_franca.store)."""

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from helpers import ARCHS, HAND, HIDDEN, all_hooks, batch, linear, mlp_inputs, tiny_model
from lingua_franca import architectures
from lingua_franca.architectures import NeuronModuleError, find_neurons
from lingua_franca.interventions import (
    Intervention,
    intervene,
    intervene_rows,
    random_like,
    zero_neurons,
)
from lingua_franca.store import language_statistics
from torch import nn

NEURONS = {0: [0, 3, 5], 1: [1, 2, 7, 11]}


def values_for(neurons, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(len(i), generator=g) * 2 for m, i in neurons.items()}


def hand_projection(arch, layer, neurons):
    """The MLP's output projection applied by hand to ``neurons`` (the §1 vector)."""
    projection = layer.get_submodule(HAND[arch][2])
    if HAND[arch][3]:  # GPT-2's Conv1D stores (in, out)
        return neurons @ projection.weight + projection.bias
    if arch == "bloom_tp2":  # the slow_but_exact path sums weight slices, without the bias
        return neurons @ projection.weight.T
    return linear(projection, neurons)


@contextmanager
def projection_outputs(arch, layers):
    """{layer: what the output projection added to the residual stream}, captured."""
    captured, handles = {}, []
    for i, layer in enumerate(layers):
        if arch.startswith("bloom"):  # BloomMLP(hidden, residual) returns proj + residual
            hook = lambda m, args, out, i=i: captured.__setitem__(i, out - args[1])
            handles.append(layer.mlp.register_forward_hook(hook))
        else:
            hook = lambda m, args, out, i=i: captured.__setitem__(i, out.detach().clone())
            handles.append(layer.get_submodule(HAND[arch][2]).register_forward_hook(hook))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("op", ["set", "add"])
@pytest.mark.parametrize("arch", ARCHS)
def test_set_and_add_equal_the_layer_edited_by_hand(arch, op):
    """proj(x with x_S := v) for ``set``, proj(x with x_S += α v) for ``add``, computed
    from the layer's weights and its captured input, in every layer."""
    model = tiny_model(arch)
    ids, mask = batch(lengths=(6, 4))
    layers = architectures.decoder_layers(model)[1]
    values = values_for(NEURONS)
    alpha = 1.5 if op == "add" else 1.0
    intervention = Intervention(NEURONS, op, values, alpha)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        with (
            mlp_inputs(layers, HAND[arch][0]) as inputs,
            projection_outputs(arch, layers) as outputs,
            intervene(model, [intervention]),
        ):
            edited = model(input_ids=ids, attention_mask=mask).logits
        assert not torch.allclose(edited, full)
        for m, layer in enumerate(layers):
            x = inputs[m].reshape(*ids.shape, -1)  # OPT/XGLM flatten inside the layer
            neurons = HAND[arch][1](layer, x, model.config)
            untouched = hand_projection(arch, layer, neurons)
            index = torch.tensor(NEURONS[m])
            if op == "set":
                neurons[..., index] = values[m]
            else:
                neurons[..., index] += alpha * values[m]
            expected = hand_projection(arch, layer, neurons)
            got = outputs[m].reshape(expected.shape)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
            assert (expected - untouched).abs().max() > 1e-2  # the edit changed the layer
    assert all_hooks(model) == 0


@pytest.mark.parametrize("arch", ARCHS)
def test_setting_to_zero_is_zeroing(arch):
    model = tiny_model(arch)
    ids, mask = batch(lengths=(6, 6))
    zeros = {m: np.zeros(len(i)) for m, i in NEURONS.items()}
    with torch.no_grad():
        with zero_neurons(model, NEURONS):
            zeroed = model(input_ids=ids, attention_mask=mask).logits
        with intervene(model, [Intervention(NEURONS, "set", zeros)]):
            set_zero = model(input_ids=ids, attention_mask=mask).logits
        with intervene(model, [Intervention(NEURONS, "add", zeros, alpha=3.0)]):
            added_zero = model(input_ids=ids, attention_mask=mask).logits
        full = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(set_zero, zeroed, rtol=0, atol=1e-6)
    assert torch.equal(added_zero, full)
    assert all_hooks(model) == 0


def row_conditions():
    values = values_for(NEURONS)
    return [
        [Intervention(NEURONS, "set", values)],
        [Intervention(NEURONS, "add", values, alpha=1.5), Intervention({1: [2]})],
        [],
        [
            Intervention({0: [4, 5]}, "set", {0: [0.5, -1.0]}),
            Intervention({0: [5]}, "add", {0: [2.0]}),
        ],
    ]


@pytest.mark.parametrize("arch", ARCHS)
def test_each_row_gets_its_own_condition(arch):
    """intervene_rows on a batch equals, row for row and bit for bit, the same batch
    under intervene with that row's condition alone."""
    model = tiny_model(arch)
    ids, mask = batch(lengths=(6, 4, 5, 2, 6))
    conditions = row_conditions()
    rows = [1, 0, 3, 2, 1]
    with torch.no_grad():
        with intervene_rows(model, conditions, rows):
            mixed = model(input_ids=ids, attention_mask=mask).logits
        for i, c in enumerate(rows):
            with intervene(model, conditions[c]):
                alone = model(input_ids=ids, attention_mask=mask).logits
            assert torch.equal(mixed[i], alone[i]), (arch, i)
        full = model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(mixed[3], full[3]) and not torch.allclose(mixed[0], full[0])
    assert all_hooks(model) == 0


def test_row_conditions_must_match_the_batch():
    model = tiny_model("llama")
    ids, mask = batch(lengths=(6, 4, 5))
    too_few = pytest.raises(ValueError, match="a batch of 3 rows, but conditions were given for 2")
    with too_few, torch.no_grad(), intervene_rows(model, row_conditions(), [0, 1]):
        model(input_ids=ids, attention_mask=mask)
    unknown = pytest.raises(IndexError, match=r"row conditions \[0, 4\] of 4")
    with unknown, intervene_rows(model, row_conditions(), [0, 4, 0]):
        pass
    out_of_range = pytest.raises(IndexError, match="layer 2 out of range")
    with out_of_range, intervene_rows(model, [[Intervention({2: [0]})]], [0]):
        pass
    assert all_hooks(model) == 0


def test_interventions_apply_in_order_and_the_projection_sees_them():
    """A list is applied in order on each layer: set, then add, then zero a part."""
    model = tiny_model("llama")
    ids, mask = batch()
    seen = {}
    projection = model.model.layers[1].mlp.down_proj
    steps = [
        Intervention({1: [2, 4, 6]}, "set", {1: [1.0, 2.0, 3.0]}),
        Intervention({1: [4, 6]}, "add", {1: [10.0, 20.0]}, alpha=0.5),
        Intervention({1: [6]}),
    ]
    with torch.no_grad(), intervene(model, steps):
        # registered after the intervention's pre-hook: sees what the projection gets
        handle = projection.register_forward_pre_hook(lambda m, a: seen.setdefault(0, a[0]))
        model(input_ids=ids, attention_mask=mask)
        handle.remove()
    x = seen[0]
    assert torch.equal(x[..., 2], torch.ones_like(x[..., 2]))
    assert torch.equal(x[..., 4], torch.full_like(x[..., 4], 7.0))
    assert torch.equal(x[..., 6], torch.zeros_like(x[..., 6]))
    assert x[..., 3].abs().max() > 0
    assert all_hooks(model) == 0


def test_an_intervention_is_checked_when_made():
    with pytest.raises(ValueError, match="unknown intervention 'scale'"):
        Intervention({0: [1]}, "scale")
    with pytest.raises(ValueError, match="'set' needs values"):
        Intervention({0: [1]}, "set")
    with pytest.raises(ValueError, match="'zero' takes no values"):
        Intervention({0: [1]}, "zero", {0: [1.0]})
    with pytest.raises(ValueError, match="layer 0: 1 values for 2 neurons"):
        Intervention({0: [1, 2]}, "add", {0: [1.0]})
    with pytest.raises(ValueError, match="no values for layers \\[1\\]"):
        Intervention({0: [1], 1: [2]}, "set", {0: [1.0]})
    with pytest.raises(ValueError, match="listed twice"):
        Intervention({0: [1, 1]}, "set", {0: [1.0, 2.0]})
    with pytest.raises(ValueError, match="must be finite"):
        Intervention({0: [1]}, "set", {0: [float("nan")]})
    with pytest.raises(ValueError, match="alpha is the factor of 'add'"):
        Intervention({0: [1]}, "set", {0: [1.0]}, alpha=2.0)
    with pytest.raises(IndexError, match="negative neuron index"):
        Intervention({0: [-1]})
    with pytest.raises(TypeError, match="must be integers"):
        Intervention({0: [1.5]})
    empty = Intervention({0: [], 1: torch.tensor([3, 4])})
    assert list(empty.neurons) == [1] and empty.n_neurons == 2 and empty.counts() == {1: 2}
    assert empty.neurons[1].dtype == np.int64


def test_out_of_range_neurons_and_layers_are_named():
    model = tiny_model("llama")  # intermediate_size 40
    ids, _ = batch()
    with (
        pytest.raises(IndexError, match="layer 2 out of range"),
        intervene(model, [Intervention({2: [0]})]),
    ):
        pass
    with (
        torch.no_grad(),
        pytest.raises(
            IndexError, match=r"model.layers.1.mlp.down_proj: neuron 40 of a layer of 40"
        ),
        intervene(model, [Intervention({1: [40]}, "set", {1: [0.0]})]),
    ):
        model(input_ids=ids)
    assert all_hooks(model) == 0


def test_a_set_through_a_module_the_forward_never_calls_is_an_error():
    model = tiny_model("llama")
    for layer in model.model.layers:
        layer.mlp.spare = nn.Linear(40, HIDDEN)  # resolvable, never called
    ids, mask = batch()
    site = find_neurons(model, "model.layers.{layer}.mlp.spare")
    with (
        torch.no_grad(),
        pytest.raises(NeuronModuleError, match=r"layers \[0\] never reached .*spare.* be set"),
        intervene(None, [Intervention({0: [1]}, "set", {0: [2.0]})], site=site),
    ):
        model(input_ids=ids, attention_mask=mask)
    assert all_hooks(model) == 0


def test_hooks_are_removed_when_the_forward_raises():
    model = tiny_model("opt")
    ids, _ = batch()

    def boom(module, args):
        raise RuntimeError("boom")

    crash = model.model.decoder.layers[1].fc1.register_forward_pre_hook(boom)
    with (
        pytest.raises(RuntimeError, match="boom"),
        intervene(model, [Intervention({0: [1]}, "add", {0: [1.0]}), Intervention({1: [2]})]),
    ):
        model(input_ids=ids)
    crash.remove()
    assert all_hooks(model) == 0


def test_the_empty_list_is_the_full_model():
    model = tiny_model("bloom")
    ids, _ = batch()
    with torch.no_grad():
        full = model(input_ids=ids).logits
        with intervene(model, []):
            assert all_hooks(model) == 0
            again = model(input_ids=ids).logits
    assert torch.equal(full, again)


def test_from_statistics_and_the_random_control():
    statistics = {0: np.arange(10, dtype=np.float32) / 10, 1: -np.arange(6, dtype=np.float32)}
    forced = Intervention.from_statistics({0: [2, 7], 1: [5]}, statistics)
    assert forced.op == "set"
    np.testing.assert_array_equal(forced.values[0], statistics[0][[2, 7]])
    np.testing.assert_array_equal(forced.values[1], [-5.0])
    added = Intervention.from_statistics({1: [0, 1]}, statistics, "add", alpha=2.0)
    assert added.op == "add" and added.alpha == 2.0
    with pytest.raises(IndexError, match="neuron 6 of a layer of 6"):
        Intervention.from_statistics({1: [6]}, statistics)
    control = random_like(forced, [10, 6], seed=3, statistics=statistics)
    assert control.counts() == forced.counts() and control.op == "set"
    for m, index in control.neurons.items():
        assert not set(index) & set(forced.neurons[m])  # the layer's other neurons
        np.testing.assert_array_equal(control.values[m], statistics[m][index])
    again = random_like(forced, [10, 6], seed=3, statistics=statistics)
    assert all(np.array_equal(again.neurons[m], control.neurons[m]) for m in control.neurons)
    other = random_like(forced, [10, 6], seed=4, statistics=statistics)
    assert any(not np.array_equal(other.neurons[m], control.neurons[m]) for m in control.neurons)
    zero_control = random_like(Intervention({0: [1, 2, 3]}), [10, 6], seed=0)
    assert zero_control.op == "zero" and zero_control.counts() == {0: 3}
    with pytest.raises(ValueError, match="needs the statistics"):
        random_like(forced, [10, 6], seed=0)
    with pytest.raises(ValueError, match="only 2 others"):
        random_like(Intervention({1: [0, 1, 2, 3]}), [10, 6], seed=0)


# --------------------------------------------------------- per-language statistics


def test_language_statistics_equal_numpy_per_language(tmp_path):
    from helpers import write_activation_store

    rng = np.random.default_rng(0)
    langs = ["en"] * 4 + ["fr"] * 3 + ["zh"] * 5
    rng.shuffle(langs)  # languages need not come in blocks
    layers = [rng.normal(size=(len(langs), w)) for w in (13, 9)]
    store = write_activation_store(tmp_path / "a.zarr", layers, langs, [str(i) for i in langs])
    order = list(dict.fromkeys(langs))
    for statistic, reduce in (("median", np.median), ("mean", np.mean)):
        found = language_statistics(store, statistic, block_width=4)  # blocks cut chunks
        assert list(found) == order
        for lang in order:
            rows = [i for i, x in enumerate(langs) if x == lang]
            for m, x in enumerate(layers):
                expected = reduce(x[rows].astype(np.float32).astype(np.float64), axis=0)
                assert found[lang][m].dtype == np.float32 and found[lang][m].shape == (x.shape[1],)
                np.testing.assert_allclose(found[lang][m], expected, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown statistic 'p50'"):
        language_statistics(store, "p50")


def test_forcing_a_language_median_through_a_real_model(tmp_path):
    """The statistics index the same neurons the hooks edit: the pooled neurons of a
    model forced to a language's medians read back as those medians."""
    from lingua_franca.architectures import NeuronReader

    model = tiny_model("gpt2")
    ids, mask = batch(lengths=(5, 5))
    site = find_neurons(model)
    statistics = {0: np.linspace(-1, 1, 4 * HIDDEN, dtype=np.float32), 1: np.ones(4 * HIDDEN)}
    forced = Intervention.from_statistics({0: [3, 9], 1: [0]}, statistics)
    with torch.no_grad(), intervene(model, [forced], site=site), NeuronReader(model) as reader:
        pooled = reader.pooled(lambda: model(input_ids=ids, attention_mask=mask), mask)
    # the reader's hook is registered after the intervention's: it reads the forced values
    torch.testing.assert_close(
        pooled[0][:, [3, 9]], torch.from_numpy(statistics[0][[3, 9]]).expand(2, 2)
    )
    torch.testing.assert_close(pooled[1][:, 0], torch.ones(2))
    assert all_hooks(model) == 0
