"""Where each architecture keeps its MLP neurons, and the hooks that read or edit them.

A layer's neurons are the vector that enters the MLP's output projection (docs/method.md §1).
Every hook in the project is registered through this module (``_register``), so that
reading (extraction) and writing (deactivation, docs/method.md §5, and every other
intervention of :mod:`lingua_franca.interventions`) always act on the same values.

``find_neurons`` resolves, per decoder layer, the module whose *input* holds the
neurons (or, for BLOOM, whose *output* does: ``mlp.gelu_impl``, which stays on the
path when ``pretraining_tp > 1`` bypasses ``dense_4h_to_h``).  Known families are
listed in ``KNOWN``; any other causal LM is searched by common MLP and projection
names; failing that, the error names the ``neuron_module`` override.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple, Self

import torch
from torch import nn

#: model_type → (path inside a decoder layer, which side of that module holds the neurons)
KNOWN: dict[str, tuple[str, str]] = {
    "bloom": ("mlp.gelu_impl", "output"),
    "llama": ("mlp.down_proj", "input"),
    "mistral": ("mlp.down_proj", "input"),
    "qwen2": ("mlp.down_proj", "input"),
    "gemma": ("mlp.down_proj", "input"),
    "gemma2": ("mlp.down_proj", "input"),
    "gpt_neox": ("mlp.dense_4h_to_h", "input"),
    "gpt2": ("mlp.c_proj", "input"),
    "opt": ("fc2", "input"),
    "xglm": ("fc2", "input"),
}
#: model_type → path inside a decoder layer of the module whose OUTPUT is the MLP's
#: activation value for LAPE (docs/method.md §9.1): act_fn(gate_proj(x)), before the product
#: with up_proj.  transformers 5.23's LlamaMLP, MistralMLP, Qwen2MLP, GemmaMLP and
#: Gemma2MLP call ``self.act_fn`` (a module, one per layer) exactly once per forward.
#: In the other families the activation function's output is the neuron itself.
ACTIVATION_KNOWN: dict[str, str] = {
    "llama": "mlp.act_fn",
    "mistral": "mlp.act_fn",
    "qwen2": "mlp.act_fn",
    "gemma": "mlp.act_fn",
    "gemma2": "mlp.act_fn",
}
#: An unlisted family is taken as gated when its layers have these modules.
GATED_MLP = ("mlp.gate_proj", "mlp.act_fn")
#: Names of a decoder layer's MLP ("" = the layer itself, as in OPT and XGLM).
MLP_NAMES = ("mlp", "feed_forward", "ffn", "ff", "")
#: Names of an MLP's output projection, in order of preference.
PROJECTION_NAMES = ("down_proj", "dense_4h_to_h", "c_proj", "fc2", "fc_out", "w2", "wo")

#: model_type → the context the family was trained on, whatever its config says: BLOOM
#: (ALiBi) records no position limit, and some BLOOM configs carry ``seq_length: 4096``
#: (bloom-1b7) although every BLOOM size was trained on 2048 tokens (docs/method.md §5).
TRAINING_CONTEXT: dict[str, int] = {"bloom": 2048}
#: Config keys that hold a model's context length, in order of preference.
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "seq_length")

OVERRIDE_HELP = (
    "Set the model's config entry `neuron_module` to the module whose INPUT is the neuron "
    "vector, with `{layer}` for the layer index, e.g. "
    "neuron_module: 'model.layers.{layer}.mlp.down_proj'."
)


class NeuronModuleError(ValueError):
    """The neurons of this model cannot be located (see ``OVERRIDE_HELP``)."""


@dataclass(frozen=True)
class NeuronSite:
    """The hooked module of every layer, in layer order, and which side is read."""

    modules: tuple[nn.Module, ...]
    side: str  # "input" (pre-hook on the output projection) or "output" (BLOOM's GeLU)
    pattern: str  # e.g. "transformer.h.{layer}.mlp.gelu_impl", recorded in provenance

    def __len__(self) -> int:
        return len(self.modules)


@dataclass(frozen=True)
class ActivitySite:
    """Where the activation value that LAPE counts (> 0) is read, and what it is."""

    site: NeuronSite
    kind: str  # "gate_activation" (act_fn(gate_proj(x))) or "neuron" (§1's neuron itself)
    note: str

    def attrs(self) -> dict[str, str]:
        """Recorded in the store (attribute ``activity``)."""
        return {
            "pattern": self.site.pattern,
            "side": self.site.side,
            "kind": self.kind,
            "active": "value > 0",
            "note": self.note,
        }


def _get(root: nn.Module, path: str) -> nn.Module | None:
    try:
        return root.get_submodule(path) if path else root
    except AttributeError:
        return None


def _n_layers(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    if config is None:
        return None
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    return getattr(config, "num_hidden_layers", None)


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The first ``ModuleList`` of identical blocks, as many as the config's layers."""
    expected = _n_layers(model)
    for name, module in model.named_modules():
        if (
            isinstance(module, nn.ModuleList)
            and len(module) > 0
            and len({type(block) for block in module}) == 1
            and (expected is None or len(module) == expected)
        ):
            return name, module
    raise NeuronModuleError(
        f"{type(model).__name__}: no list of {expected or 'identical'} decoder layers found. "
        + OVERRIDE_HELP
    )


def _from_pattern(model: nn.Module, pattern: str) -> tuple[nn.Module, ...]:
    """Resolve ``pattern.format(layer=i)`` for i = 0, 1, … until it stops resolving.
    A path that includes the wrapper's prefix (``model.…``) also works on the body."""
    if "{layer}" not in pattern:
        raise NeuronModuleError(f"neuron_module {pattern!r} has no '{{layer}}' placeholder")
    prefix = getattr(model, "base_model_prefix", "") + "."
    modules = []
    while True:
        path = pattern.format(layer=len(modules))
        module = _get(model, path)
        if module is None and path.startswith(prefix):
            module = _get(model, path[len(prefix) :])
        if module is None:
            break
        modules.append(module)
    expected = _n_layers(model)
    if not modules or (expected is not None and len(modules) != expected):
        raise NeuronModuleError(
            f"neuron_module {pattern!r} resolves for {len(modules)} layers of "
            f"{type(model).__name__}, expected {expected or 'at least 1'}"
        )
    return tuple(modules)


def context_length(model: nn.Module, override: int | None = None) -> int:
    """The perplexity window when ``analysis.seqlen`` is null (docs/method.md §5): the
    model entry's ``context_length`` (``override``), else the family's training context
    (``TRAINING_CONTEXT``), else the config's ``max_position_embeddings``,
    ``n_positions`` or ``seq_length``."""
    if override:
        return int(override)
    config = getattr(model, "config", None)
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    model_type = getattr(config, "model_type", None)
    if model_type in TRAINING_CONTEXT:
        return TRAINING_CONTEXT[model_type]
    for key in CONTEXT_KEYS:
        if getattr(config, key, None):
            return int(getattr(config, key))
    raise ValueError(
        f"{type(model).__name__} (model type {model_type!r}): context length unknown; "
        "set the model's context_length or analysis.seqlen"
    )


def _search(layer: nn.Module) -> str | None:
    """Relative path of the first known MLP output projection with a 2-D weight."""
    for mlp in MLP_NAMES:
        for projection in PROJECTION_NAMES:
            path = f"{mlp}.{projection}" if mlp else projection
            module = _get(layer, path)
            weight = getattr(module, "weight", None) if module is not None else None
            if weight is not None and weight.dim() == 2:
                return path
    return None


def find_neurons(model: nn.Module, neuron_module: str | None = None) -> NeuronSite:
    """Locate every layer's neurons: the override if given, else ``KNOWN``, else a search."""
    if neuron_module:
        return NeuronSite(_from_pattern(model, neuron_module), "input", neuron_module)
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    try:
        root, layers = decoder_layers(model)
    except NeuronModuleError as err:
        raise NeuronModuleError(f"model type {model_type!r}: {err}") from None
    path, side = KNOWN.get(model_type, (None, "input"))
    if path is None or any(_get(layer, path) is None for layer in layers):
        path, side = _search(layers[0]), "input"
    if path is None or any(_get(layer, path) is None for layer in layers):
        raise NeuronModuleError(
            f"model type {model_type!r} ({type(model).__name__}): no MLP output projection "
            f"named {'/'.join(PROJECTION_NAMES)} in {root}[i]. " + OVERRIDE_HELP
        )
    pattern = f"{root}.{{layer}}.{path}" if root else f"{{layer}}.{path}"
    return NeuronSite(tuple(_get(layer, path) for layer in layers), side, pattern)


def find_activity(model: nn.Module, neuron_module: str | None = None) -> ActivitySite:
    """Locate every layer's activation value for LAPE (docs/method.md §9.1).

    Gated MLPs: the output of ``mlp.act_fn`` (``ACTIVATION_KNOWN``, or any layer with
    ``GATED_MLP``), provided each layer has its own module (a shared one could not tell
    layers apart).  Otherwise, and always under a ``neuron_module`` override (which names
    the neurons only), the §1 neuron itself, as for BLOOM, GPT-NeoX, GPT-2, OPT, XGLM.
    """
    neurons = find_neurons(model, neuron_module)
    if neuron_module:
        return ActivitySite(neurons, "neuron", "neuron_module override: the neuron itself")
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    root, layers = decoder_layers(model)
    path = ACTIVATION_KNOWN.get(model_type)
    if path is None and all(_get(layers[0], p) is not None for p in GATED_MLP):
        path = GATED_MLP[1]
    modules = [_get(layer, path) for layer in layers] if path else []
    if (
        modules
        and all(m is not None for m in modules)
        and len(set(map(id, modules))) == len(modules)
    ):
        pattern = f"{root}.{{layer}}.{path}" if root else f"{{layer}}.{path}"
        site = NeuronSite(tuple(modules), "output", pattern)
        return ActivitySite(site, "gate_activation", "act_fn(gate_proj(x)), before * up_proj(x)")
    if path:
        note = f"no module {path} of its own in every layer: the neuron itself"
    elif model_type in KNOWN:
        note = "the neuron is the activation function's output"
    else:
        note = "not a known gated MLP: the neuron itself (input of the output projection)"
    return ActivitySite(neurons, "neuron", note)


def _register(site: NeuronSite, layer: int, fn: Callable[[torch.Tensor], torch.Tensor | None]):
    """Hook ``fn(neurons)`` on one layer; a tensor it returns replaces the neurons."""
    module = site.modules[layer]
    if site.side == "output":
        return module.register_forward_hook(lambda mod, args, out: fn(out))

    def pre_hook(mod, args, kwargs):
        if args:
            new = fn(args[0])
            return None if new is None else ((new, *args[1:]), kwargs)
        key = next(iter(kwargs))  # called as proj(hidden_states=x)
        new = fn(kwargs[key])
        return None if new is None else (args, {**kwargs, key: new})

    return module.register_forward_pre_hook(pre_hook, with_kwargs=True)


class Pooled(NamedTuple):
    """One batch as ``NeuronReader.read`` returns it (tensors on the model's device)."""

    means: list[torch.Tensor]  # per layer, (batch, width) float32 mean over real tokens
    active: list[torch.Tensor] | None  # per layer, (batch, width) int32: real tokens > 0
    n_tokens: torch.Tensor  # (batch,) int32 real tokens


#: Half-precision dtypes → the largest n such that every integer 0 … n is exact in them
#: (8 and 11 significant bits): counts over chunks of n tokens stay exact whatever the
#: matrix product accumulates in.
_EXACT_COUNT = {torch.bfloat16: 256, torch.float16: 2048}


class NeuronReader:
    """Mean-pool every layer's neurons over each sample's real tokens, inside the hook,
    and (``count_active``) count the real tokens at which each activation value is > 0
    (docs/method.md §9.1), in the same forward.

    Only (batch, width) tensors leave the hooks, so the per-token activations are never
    kept.  Use as a context manager (hooks are removed on exit, also after an
    exception) and call ``read(forward, attention_mask)`` or ``pooled(...)``.
    """

    def __init__(
        self, model: nn.Module, neuron_module: str | None = None, count_active: bool = False
    ):
        self.site = find_neurons(model, neuron_module)
        self.activity = find_activity(model, neuron_module) if count_active else None
        self._mask: torch.Tensor | None = None
        self._pooled: dict[int, torch.Tensor] = {}
        self._active: dict[int, torch.Tensor] = {}
        self._handles: list = []

    def _pool(self, layer: int, x: torch.Tensor) -> None:
        mask = self._mask.to(x.device)
        if x.dim() == 2:  # OPT flattens to (batch·tokens, width)
            x = x.reshape(*mask.shape, -1)
        # a masked matrix product sums real tokens in float32 without a full-size
        # temporary (benchmarks/README.md: +6% extraction speed in bf16); where a
        # padding position holds inf or NaN (0 × inf), the explicit mask keeps it out
        total = torch.bmm(mask.to(torch.float32)[:, None, :], x.float())[:, 0]
        if not torch.isfinite(total).all():
            total = torch.where(mask[..., None], x, 0).sum(1, dtype=torch.float32)
        self._pooled[layer] = total / mask.sum(1, keepdim=True, dtype=torch.float32)
        if self.activity is not None and self.activity.kind == "neuron":
            self._count(layer, x)

    def _count(self, layer: int, x: torch.Tensor) -> None:
        """Real tokens at which each value is > 0: a 0/1 indicator summed by the mask
        product.  The indicator is written straight into a float tensor (a bool tensor
        and a cast cost ~3× more on the CPU), in half precision when the model runs in
        it (less memory traffic: ~1.8× faster in bf16), over token chunks short enough
        that every partial sum is an integer the dtype holds exactly (``_EXACT_COUNT``)."""
        if layer in self._active:
            raise NeuronModuleError(
                f"{self.activity.site.pattern} ran twice in layer {layer} during one forward"
            )
        mask = self._mask.to(x.device)
        if x.dim() == 2:
            x = x.reshape(*mask.shape, -1)
        dtype = x.dtype if x.dtype in _EXACT_COUNT else torch.float32
        chunk = _EXACT_COUNT.get(dtype, 1 << 24)
        positive = torch.gt(x, 0, out=torch.empty(x.shape, dtype=dtype, device=x.device))
        weights = mask.to(dtype)[:, None, :]
        total = torch.zeros(x.shape[0], x.shape[-1], dtype=torch.int32, device=x.device)
        for start in range(0, x.shape[1], chunk):
            part = torch.bmm(
                weights[..., start : start + chunk], positive[:, start : start + chunk]
            )
            total += part[:, 0].to(torch.int32)
        self._active[layer] = total

    def __enter__(self) -> Self:
        for layer in range(len(self.site)):
            self._handles.append(_register(self.site, layer, lambda x, i=layer: self._pool(i, x)))
        if self.activity is not None and self.activity.kind != "neuron":
            for layer in range(len(self.activity.site)):
                self._handles.append(
                    _register(self.activity.site, layer, lambda x, i=layer: self._count(i, x))
                )
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def read(self, forward: Callable[[], object], attention_mask: torch.Tensor) -> Pooled:
        """Run ``forward()``; return every layer's means (and activity counts)."""
        if not self._handles:
            raise RuntimeError("NeuronReader hooks are not active: use it in a `with` block")
        self._mask, self._pooled, self._active = attention_mask.bool(), {}, {}
        try:
            forward()
        finally:
            mask, self._mask = self._mask, None
        layers = range(len(self.site))
        _check_reached(self.site, self._pooled)
        means = [self._pooled.pop(i) for i in layers]
        active = None
        if self.activity is not None:
            _check_reached(self.activity.site, self._active)
            active = [self._active.pop(i) for i in layers]
            for i, (a, m) in enumerate(zip(active, means)):
                if a.shape != m.shape:
                    raise NeuronModuleError(
                        f"layer {i}: {self.activity.site.pattern} has {a.shape[-1]} values, "
                        f"{self.site.pattern} {m.shape[-1]} neurons"
                    )
        return Pooled(means, active, mask.sum(1, dtype=torch.int32))

    def pooled(
        self, forward: Callable[[], object], attention_mask: torch.Tensor
    ) -> list[torch.Tensor]:
        """Run ``forward()`` and return one (batch, width) float32 mean per layer."""
        return self.read(forward, attention_mask).means


def _check_reached(site: NeuronSite, got: Mapping[int, torch.Tensor]) -> None:
    missing = [i for i in range(len(site)) if i not in got]
    if missing:
        raise NeuronModuleError(
            f"layers {missing} never reached {site.pattern} during the forward. " + OVERRIDE_HELP
        )
