"""Interventions on MLP neurons: which neurons, which operation, which values
(docs/method.md §5, "Interventions beyond zeroing").

An intervention is a value, not a code path.  An :class:`Intervention` names neurons
per layer (indices within the layer, the §1 neuron vector of docs/method.md) and one
operation on them, applied at every position of every forward pass:

* ``zero``: the neuron's value times 0, the deactivation of docs/method.md §5;
* ``set``: the neuron's value replaced by a given value (one per neuron; e.g. a
  language's median pooled activation, Kojima et al.'s forcing);
* ``add``: α × a given value added to the neuron's value (Gurgurov et al.'s
  additive steering).

:func:`intervene` applies a list of them, in order, through the neuron site of
:mod:`lingua_franca.architectures` (the hook point extraction reads), for every
architecture the project supports; the empty list is the full model.  Leaving the
block removes every hook, also after an exception, so the weights never change.
:func:`intervene_rows` gives each row of a batch its own list, so that several
conditions share one forward pass.  :func:`zero_neurons` is the zero case, as the
ablation calls it.
:func:`random_like` draws the count-matched random control of an intervention.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lingua_franca.architectures import (
    OVERRIDE_HELP,
    NeuronModuleError,
    NeuronSite,
    _register,
    find_neurons,
)

__all__ = ["OPS", "Intervention", "intervene", "intervene_rows", "random_like", "zero_neurons"]

OPS = ("zero", "set", "add")
_DONE = {"zero": "zeroed", "set": "set", "add": "shifted"}

Indices = np.ndarray | torch.Tensor | Sequence[int]


def _indices(layer: int, index: Indices) -> np.ndarray:
    if isinstance(index, torch.Tensor):
        index = index.detach().cpu().numpy()
    index = np.asarray(index).reshape(-1)
    if index.size and not np.issubdtype(index.dtype, np.integer):
        raise TypeError(f"layer {layer}: neuron indices must be integers, got {index.dtype}")
    index = index.astype(np.int64)
    if index.size and index.min() < 0:
        raise IndexError(f"layer {layer}: negative neuron index {int(index.min())}")
    return index


@dataclass(frozen=True, eq=False)  # arrays inside: compared by identity
class Intervention:
    """Neurons ``{layer: indices}``, an operation (``OPS``), per-neuron ``values``
    ``{layer: one value per index, in the order of the indices}`` for ``set`` and
    ``add``, and ``alpha``, the factor of ``add``.

    Checked on creation: a layer with no indices is dropped; ``set`` and ``add`` need
    finite values for exactly the listed layers and distinct indices; ``alpha`` is
    only for ``add``.  Indices are int64 numpy arrays and values float32 ones."""

    neurons: Mapping[int, np.ndarray]
    op: str = "zero"
    values: Mapping[int, np.ndarray] | None = None
    alpha: float = 1.0

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown intervention {self.op!r}; known: {list(OPS)}")
        neurons = {int(m): _indices(int(m), i) for m, i in self.neurons.items()}
        neurons = {m: i for m, i in neurons.items() if i.size}
        if any(m < 0 for m in neurons):
            raise IndexError(f"negative layer index in {sorted(neurons)}")
        alpha = float(self.alpha)
        if not np.isfinite(alpha) or (self.op != "add" and alpha != 1.0):
            raise ValueError(f"alpha is the factor of 'add' (finite), got {alpha} for {self.op!r}")
        values = None
        if self.op == "zero":
            if self.values is not None:
                raise ValueError("'zero' takes no values")
        else:
            if self.values is None:
                raise ValueError(f"{self.op!r} needs values: one per neuron")
            given = {int(m): v for m, v in self.values.items()}
            if set(neurons) - set(given):
                raise ValueError(
                    f"{self.op!r}: no values for layers {sorted(set(neurons) - set(given))}"
                )
            values = {}
            for m, index in neurons.items():
                v = given[m]
                if isinstance(v, torch.Tensor):
                    v = v.detach().cpu().numpy()
                v = np.asarray(v, dtype=np.float32).reshape(-1)
                if v.shape != index.shape:
                    raise ValueError(
                        f"{self.op!r}, layer {m}: {v.size} values for {index.size} neurons"
                    )
                if not np.isfinite(v).all():
                    raise ValueError(f"{self.op!r}, layer {m}: values must be finite")
                if len(np.unique(index)) != len(index):
                    raise ValueError(f"{self.op!r}, layer {m}: a neuron is listed twice")
                values[m] = v
        object.__setattr__(self, "neurons", neurons)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "alpha", alpha)

    @classmethod
    def from_statistics(
        cls,
        neurons: Mapping[int, Indices],
        statistics: Mapping[int, np.ndarray],
        op: str = "set",
        alpha: float = 1.0,
    ) -> Intervention:
        """``set`` or ``add`` with each neuron's value taken from ``statistics``
        ({layer: (width,) array}: one language's entry of
        :func:`lingua_franca.store.language_statistics`)."""
        values = {}
        for m, index in neurons.items():
            index = _indices(int(m), index)
            if index.size:
                row = np.asarray(statistics[int(m)])
                if index.max() >= len(row):
                    raise IndexError(
                        f"layer {m}: neuron {int(index.max())} of a layer of {len(row)}"
                    )
                values[int(m)] = row[index]
        return cls(neurons, op, values, alpha)

    @property
    def n_neurons(self) -> int:
        return int(sum(len(i) for i in self.neurons.values()))

    def counts(self) -> dict[int, int]:
        """{layer: neurons}."""
        return {m: len(i) for m, i in self.neurons.items()}


def random_like(
    intervention: Intervention,
    widths: Sequence[int],
    seed: int,
    statistics: Mapping[int, np.ndarray] | None = None,
) -> Intervention:
    """The count-matched random control: in every layer as many neurons as
    ``intervention`` has there, drawn uniformly (seeded) from the layer's other
    neurons, with the same operation and ``alpha``.  ``set`` and ``add`` need
    ``statistics`` ({layer: (width,)}) to give the drawn neurons their values, as
    :meth:`Intervention.from_statistics`."""
    rng = np.random.default_rng(seed)
    drawn = {}
    for m, index in sorted(intervention.neurons.items()):
        if m >= len(widths):
            raise IndexError(f"layer {m} out of range: {len(widths)} layer widths given")
        others = np.setdiff1d(np.arange(widths[m]), index)
        if len(others) < len(index):
            raise ValueError(
                f"layer {m}: {len(index)} neurons to match but only {len(others)} others "
                f"of {widths[m]}"
            )
        drawn[m] = np.sort(rng.choice(others, len(index), replace=False))
    if intervention.op == "zero":
        return Intervention(drawn)
    if statistics is None:
        raise ValueError(f"a random {intervention.op!r} control needs the statistics")
    return Intervention.from_statistics(drawn, statistics, intervention.op, intervention.alpha)


Edit = Callable[[torch.Tensor], torch.Tensor]


def _edit(intervention: Intervention, layer: int, pattern: str) -> Edit:
    """The function one intervention applies to one layer's neuron tensor (any shape
    whose last axis is the layer's neurons: OPT's flattened (batch·tokens, width) too).
    Its index and value tensors are made once per (width, device, dtype)."""
    index = torch.as_tensor(intervention.neurons[layer])
    values = None if intervention.values is None else torch.as_tensor(intervention.values[layer])
    op, alpha = intervention.op, intervention.alpha
    made: dict[tuple, tuple] = {}

    def tensors(x: torch.Tensor) -> tuple:
        key = (x.shape[-1], x.device, x.dtype)
        if key not in made:
            if int(index.max()) >= x.shape[-1]:
                raise IndexError(
                    f"{pattern.format(layer=layer)}: neuron {int(index.max())} of a layer "
                    f"of {x.shape[-1]}"
                )
            if op == "zero":  # as zeroing always did: a product with a 0/1 mask
                keep = torch.ones(x.shape[-1], dtype=x.dtype, device=x.device)
                keep[index.to(x.device)] = 0
                made[key] = (keep,)
            else:
                shift = values.to(torch.float32) * (alpha if op == "add" else 1.0)
                made[key] = (index.to(x.device), shift.to(device=x.device, dtype=x.dtype))
        return made[key]

    if op == "zero":
        return lambda x: x * tensors(x)[0]

    def replace(x: torch.Tensor) -> torch.Tensor:
        at, value = tensors(x)
        out = x.clone()
        if op == "set":
            out[..., at] = value
        else:
            out[..., at] += value
        return out

    return replace


@contextmanager
def intervene(
    model: nn.Module | None,
    interventions: Sequence[Intervention],
    neuron_module: str | None = None,
    site: NeuronSite | None = None,
) -> Iterator[NeuronSite]:
    """Apply ``interventions`` (in list order, on each layer) at every position of every
    forward pass inside the block; yields the neuron site.

    ``site`` (from ``find_neurons``) saves resolving it again; else it is found on
    ``model`` (with the ``neuron_module`` override).  One hook per layer with neurons
    to edit.  On leaving, every such layer must have passed through its hook at least
    once: a module the forward never calls (a wrong ``neuron_module``) would otherwise
    leave the model whole and the condition equal to the full model.  Hooks are
    removed whatever happens.
    """
    if site is None:
        site = find_neurons(model, neuron_module)
    steps: dict[int, list[Edit]] = {}
    for intervention in _checked(interventions, site):
        for layer in intervention.neurons:
            steps.setdefault(layer, []).append(_edit(intervention, layer, site.pattern))

    def apply(x: torch.Tensor, layer: int) -> torch.Tensor:
        for step in steps[layer]:
            x = step(x)
        return x

    with _hooked(site, list(steps), apply, interventions):
        yield site


@contextmanager
def intervene_rows(
    model: nn.Module | None,
    conditions: Sequence[Sequence[Intervention]],
    rows: Sequence[int] | torch.Tensor,
    neuron_module: str | None = None,
    site: NeuronSite | None = None,
) -> Iterator[NeuronSite]:
    """Apply a different condition to each row of the batch: row i of every forward
    pass inside the block gets ``conditions[rows[i]]`` (a list of interventions, as
    :func:`intervene` takes; the empty list is the full model).  Several conditions
    then share one batched forward pass (the steering cells of docs/method.md §12).

    Each condition is folded, per layer, into one affine map of the neurons, ``x ×
    scale + shift`` (``zero``: scale 0; ``set``: scale 0, shift the value; ``add``:
    shift α × the value): for one intervention per neuron the values :func:`intervene`
    gives, bit for bit; two ``add`` on one neuron are summed before they are added.
    The forward's batch must have ``len(rows)`` rows (OPT's flattened (batch·tokens,
    width) too).  The same checks as :func:`intervene`, and the hooks are removed
    whatever happens."""
    if site is None:
        site = find_neurons(model, neuron_module)
    rows = torch.as_tensor(rows, dtype=torch.long).reshape(-1)
    if rows.numel() and not 0 <= int(rows.min()) <= int(rows.max()) < len(conditions):
        raise IndexError(f"row conditions {rows.unique().tolist()} of {len(conditions)}")
    every = [i for condition in conditions for i in _checked(condition, site)]
    layers = sorted({layer for i in every for layer in i.neurons})
    made: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def maps(x: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        key = (layer, x.shape[-1], x.device, x.dtype)
        if key not in made:
            width = x.shape[-1]
            scale = torch.ones(len(conditions), width, dtype=torch.float32)
            shift = torch.zeros(len(conditions), width, dtype=torch.float32)
            for c, condition in enumerate(conditions):
                for i in condition:
                    if layer not in i.neurons:
                        continue
                    index = torch.as_tensor(i.neurons[layer])
                    if int(index.max()) >= width:
                        raise IndexError(
                            f"{site.pattern.format(layer=layer)}: neuron {int(index.max())} "
                            f"of a layer of {width}"
                        )
                    if i.op == "add":
                        shift[c, index] += torch.as_tensor(i.values[layer]) * i.alpha
                        continue
                    scale[c, index] = 0.0
                    shift[c, index] = 0.0 if i.op == "zero" else torch.as_tensor(i.values[layer])
            on = {"device": x.device, "dtype": x.dtype}
            made[key] = (rows.to(x.device), scale.to(**on), shift.to(**on))
        return made[key]

    def apply(x: torch.Tensor, layer: int) -> torch.Tensor:
        at, scale, shift = maps(x, layer)
        if not len(at) or x.shape[0] % len(at) or (x.dim() > 2 and x.shape[0] != len(at)):
            raise ValueError(
                f"{site.pattern.format(layer=layer)}: a batch of {x.shape[0]} rows, "
                f"but conditions were given for {len(at)}"
            )
        shaped = x.reshape(len(at), -1, x.shape[-1])
        out = shaped * scale[at][:, None] + shift[at][:, None]
        return out.reshape(x.shape)

    with _hooked(site, layers, apply, every):
        yield site


def _checked(interventions: Sequence[Intervention], site: NeuronSite) -> Sequence[Intervention]:
    for intervention in interventions:
        if not isinstance(intervention, Intervention):
            raise TypeError(f"expected an Intervention, got {type(intervention).__name__}")
        for layer in intervention.neurons:
            if not 0 <= layer < len(site):
                raise IndexError(f"layer {layer} out of range: the model has {len(site)}")
    return interventions


@contextmanager
def _hooked(
    site: NeuronSite,
    layers: Sequence[int],
    apply: Callable[[torch.Tensor, int], torch.Tensor],
    interventions: Sequence[Intervention],
) -> Iterator[None]:
    """``apply(neurons, layer)`` hooked on each of ``layers``; on leaving, every one of
    them must have fired (else the interventions did nothing there); the hooks are
    removed whatever happens."""
    done = sorted({_DONE[i.op] for i in interventions if i.neurons})
    handles, fired = [], set()

    def hook(x: torch.Tensor, layer: int) -> torch.Tensor:
        fired.add(layer)
        return apply(x, layer)

    try:
        for layer in layers:
            handles.append(_register(site, layer, lambda x, layer=layer: hook(x, layer)))
        yield
        missing = [layer for layer in layers if layer not in fired]
        if missing:
            raise NeuronModuleError(
                f"layers {missing} never reached {site.pattern} while their neurons were to "
                f"be {' or '.join(done)}: the intervention did nothing there. " + OVERRIDE_HELP
            )
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def zero_neurons(
    model: nn.Module,
    neurons: Mapping[int, Indices],
    neuron_module: str | None = None,
) -> Iterator[NeuronSite]:
    """Multiply the listed neurons (``{layer: indices}``) by 0 at every token
    (docs/method.md §5): :func:`intervene` with one ``zero`` intervention.

    Equivalent to zeroing the matching input columns of each output projection, but
    leaves the weights untouched; leaving the block restores the model exactly.
    """
    site = find_neurons(model, neuron_module)
    for layer in neurons:  # named before any index is read, as zeroing always did
        if not 0 <= int(layer) < len(site):
            raise IndexError(f"layer {layer} out of range: the model has {len(site)}")
    with intervene(model, [Intervention(neurons, "zero")], site=site) as found:
        yield found
