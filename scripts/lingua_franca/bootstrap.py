"""Bootstrap over probe items: intervals for LRDS, SADS, SKLR and key regions (docs/method.md §10).

A resample draws n items with replacement from the n probe items; a drawn item
brings its sample in every language, so the parallel structure is kept.  Resample
b is summarised by its weight vector w_b (how often each item was drawn); all B
of them form the B × n matrix W, which depends only on (seed, n, B).

Nothing here copies a sample.  With the samples of a resample written in terms of W:

* LRDS and SADS of a resample are quadratic forms of the n×n blocks of the
  similarity map in w_b (``resampled_lrds_sads``), so the per-layer and global
  maps that the metrics pass builds anyway give every resample's scores;
* the contribution score of a resample is
  C_l^b(k) = ((Σ_v w_bv a_k(l,v))² − Σ_v w_bv² a_k(l,v)²) / 2, two matrix products
  of W and W² with each streamed block (``KeyRegionResampler``), followed by the
  z-test of docs/method.md §4 on every (resample, language, neuron).

``metrics.compute_metrics`` drives both inside its one streamed pass.

Perplexity windows are resampled the same way (``draw_windows``): a resample of a
language's W windows is a weight vector over them, and the same weights serve the
full model and every condition, so an increase over the full model is paired
(``resampled_increase``; ``ablation.increase_intervals`` drives it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BootstrapResult",
    "BootstrapSettings",
    "KeyRegionResampler",
    "draw_items",
    "draw_windows",
    "item_weights",
    "percentile_interval",
    "resampled_increase",
    "resampled_lrds_sads",
]

# Mixed into the seed, so that a bootstrap seed equal to analysis.seed (which draws
# the probe items) still gives a stream unrelated to the probe's.
_STREAM = 0x426F6F74  # "Boot"
_WINDOW_STREAM = 0x57696E64  # "Wind": perplexity windows, apart from the probe items' draws


@dataclass(frozen=True)
class BootstrapSettings:
    """analysis.bootstrap: B resamples (0: no intervals), interval level, seed."""

    resamples: int = 1000
    level: float = 0.95
    seed: int = 0

    def __post_init__(self):
        if int(self.resamples) != self.resamples or self.resamples < 0:
            raise ValueError(
                f"bootstrap resamples must be a whole number ≥ 0, not {self.resamples}"
            )
        if not 0 < self.level < 1:
            raise ValueError(f"bootstrap level must lie strictly between 0 and 1, not {self.level}")
        if int(self.seed) != self.seed or self.seed < 0:
            raise ValueError(f"bootstrap seed must be a whole number ≥ 0, not {self.seed}")

    @property
    def enabled(self) -> bool:
        return self.resamples > 0


# ------------------------------------------------------------------------ draws


def draw_items(n_items: int, resamples: int, seed: int) -> np.ndarray:
    """(B, n) item indices: row b lists the n items of resample b, drawn with replacement.

    Depends only on (seed, n_items, resamples): every checkpoint of a model, whose
    probe is the same, gets the same resamples.
    """
    return _draw(n_items, resamples, seed, _STREAM, "item")


def draw_windows(n_windows: int, resamples: int, seed: int) -> np.ndarray:
    """(B, W) window indices, drawn with replacement: as ``draw_items``, from a stream
    of their own.  Depends only on (seed, n_windows, resamples): every condition of a
    language (and every language and checkpoint with as many windows) gets the same
    resamples, so increases over the full model are paired."""
    return _draw(n_windows, resamples, seed, _WINDOW_STREAM, "window")


def _draw(n: int, resamples: int, seed: int, stream: int, what: str) -> np.ndarray:
    if n < 1:
        raise ValueError(f"a bootstrap needs at least one {what}")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))
    return rng.integers(0, n, size=(resamples, n))


def item_weights(draws: np.ndarray, n_items: int) -> np.ndarray:
    """(B, n) float64 counts: w_bv = how often resample b drew item v (rows sum to n)."""
    draws = np.asarray(draws)
    rows = np.arange(draws.shape[0])[:, None] * n_items
    counts = np.bincount((rows + draws).ravel(), minlength=draws.shape[0] * n_items)
    return counts.reshape(draws.shape[0], n_items).astype(np.float64)


# ------------------------------------------------------------------- LRDS/SADS


def resampled_lrds_sads(
    s: np.ndarray, n_languages: int, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """LRDS and SADS of every resample, (B,) each, from one similarity map.

    ``s`` has rows in language blocks with the same item order in every block
    (``metrics.probe_layout``).  With A = Σ_l S_ll (n×n, within-language blocks),
    X = Σ_{l≠l'} S_ll' (across languages), u = w∘w and m = Σ_v u_v (ordered pairs
    of draws of one item, a draw with itself included), the pair sets of
    docs/method.md §3 over the resampled samples have sums and sizes

    * same language, different item:  wᵀAw − u·diag(A),  L (n² − m)
    * different language, same item:  u·diag(X),         L (L−1) m
    * different language, different item:  wᵀXw − u·diag(X),  L (L−1) (n² − m)

    (two draws of one item count as the same item; a draw never pairs with itself
    because it sits at one position).  An empty set gives NaN, as in ``lrds_sads``.
    """
    s = np.asarray(s, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    n = w.shape[1]
    if s.shape != (n_languages * n, n_languages * n):
        raise ValueError(f"similarity map {s.shape} does not fit {n_languages} × {n} samples")
    blocks = s.reshape(n_languages, n, n_languages, n)
    within = np.einsum("lvlu->vu", blocks)
    across = blocks.sum(axis=(0, 2)) - within
    u = w * w
    m = u.sum(axis=1)
    different = w.sum(axis=1) ** 2 - m
    pairs = n_languages * (n_languages - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        same_lang = (np.einsum("bv,vu,bu->b", w, within, w) - u @ np.diag(within)) / (
            n_languages * different
        )
        cross_same = (u @ np.diag(across)) / (pairs * m)
        cross_other = (np.einsum("bv,vu,bu->b", w, across, w) - u @ np.diag(across)) / (
            pairs * different
        )
    return same_lang - cross_other, cross_same - cross_other


# ------------------------------------------------------------------ perplexity


def resampled_increase(
    full: np.ndarray, condition: np.ndarray, tokens: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """(B,) perplexity increase (%) of a condition over the full model in every resample
    of the windows (docs/method.md §10).

    ``full`` (W,) and ``condition`` (W,) or (S, W) (one row per random seed) are the
    windows' summed NLLs, ``tokens`` (W,) their predicted tokens, ``weights`` (B, W)
    how often each resample drew each window.  A resample's perplexity is
    exp(Σ w·nll / Σ w·tokens), so its increase is

        100 · (mean_s exp(d_s) − 1),   d_s = Σ_v w_v (nll_s,v − full_v) / Σ_v w_v tokens_v

    (over seeds the perplexities are averaged, as the ``random`` column is): the same
    weights for the full model and the condition pair them window by window, and a
    condition identical to the full model gives 0 in every resample.
    """
    w = np.asarray(weights, dtype=np.float64)
    full = np.asarray(full, dtype=np.float64)
    condition = np.atleast_2d(np.asarray(condition, dtype=np.float64))
    if condition.shape[1:] != full.shape or w.shape[1:] != full.shape:
        raise ValueError(
            f"windows do not match: full {full.shape}, condition {condition.shape}, "
            f"weights {w.shape}"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        d = (w @ (condition - full).T) / (w @ np.asarray(tokens, dtype=np.float64))[:, None]
        return 100 * np.expm1(d).mean(axis=1)


# -------------------------------------------------------------- key regions


def _torch():
    import torch  # only when key regions are resampled: the rest of metrics needs numpy only

    return torch


def _product(device, dtype):
    """``f(a, bt) = a @ btᵀ`` for (rows, n) and (cols, n) tensors: the fastest exact
    float product at hand.

    On a CPU in float32 that is oneDNN's (``torch.ops.mkldnn._linear_pointwise``,
    which inductor uses): on AVX-512 machines without Intel's MKL code path it runs
    ~2.3× faster than ``torch.mm`` (measured on AMD EPYC, BENCHMARKS.md).  It is a
    private operator, so it is used only after it reproduces ``torch.mm`` here;
    anything else falls back to ``torch.mm``.
    """
    torch = _torch()

    def plain(a, bt):
        return torch.mm(a, bt.t())

    if device.type != "cpu" or dtype != torch.float32:
        return plain
    try:
        onednn = torch.ops.mkldnn._linear_pointwise

        def fast(a, bt):
            return onednn(a, bt, None, "none", [], "")

        gen = torch.Generator().manual_seed(0)
        a, bt = torch.rand(37, 11, generator=gen), torch.rand(45, 11, generator=gen)
        if torch.allclose(fast(a, bt), plain(a, bt), rtol=1e-5, atol=0):
            return fast
    except (AttributeError, RuntimeError):
        pass
    return plain


class KeyRegionResampler:
    """Key-neuron counts of every resample, accumulated over streamed blocks of neurons.

    ``add(layer, block, full_key)`` takes one block of globally normalised
    activations (rows in language blocks, as ``metrics.compute_metrics`` streams
    them) and the full-data key mask of its neurons, and adds, for every resample b
    and language l, |R_l^b| within the block (to ``counts[b, l, layer]``) and
    |R_l ∩ R_l^b| (to ``overlap[b, l]``).

    Per sub-block of neurons and chunk of resamples: P = W X_l and Q = W² X_l² for
    every language (two matrix products); F = Q − P² = −2C in place; then the z-test
    without a division: z_l > τ ⇔ C_l − μ > τσ ⇔ G_l < mean(G) − τ·sd(G), with
    G_l = F_l − F_1 (a shift that leaves sd unchanged and makes G exactly 0 for every
    language when all C_l are equal, so "σ = 0 ⇒ z = 0" of docs/method.md §4 holds
    exactly).  On a CPU, sub-blocks of ``sub_width`` neurons (default 128) and
    chunks of ``chunk`` resamples (default 500) keep the work in cache, and
    ``workers`` threads (default: one per core; 0: none, the caller does the work)
    run single-threaded kernels while the caller reads and scores the next block:
    ``add`` returns once the work is queued, after waiting for the previous block's.
    A GPU takes whole blocks and all resamples at once.

    ``dtype`` float32 (default) costs ~2.7× less than float64 on a CPU; a neuron whose
    z lies within ~1e-5 of τ may then fall on the other side (docs/method.md §10).
    """

    def __init__(
        self,
        weights: np.ndarray,
        n_languages: int,
        n_layers: int,
        z_threshold: float,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        workers: int | None = None,
        chunk: int | None = None,
        sub_width: int | None = None,
    ):
        torch = _torch()
        self.n_languages, self.n_layers = n_languages, n_layers
        self.tau = float(z_threshold)
        self.resamples, self.n_items = weights.shape
        self.device = torch.device(device)
        self.dtype = getattr(torch, dtype)
        on_cpu = self.device.type == "cpu"
        # a GPU takes whole blocks and every resample at once
        self.sub_width = sub_width or (128 if on_cpu else None)
        self.chunk = chunk or (500 if on_cpu else self.resamples)
        self._product = _product(self.device, self.dtype)
        w = torch.as_tensor(np.asarray(weights, dtype=np.float64), dtype=self.dtype)
        self._w, self._w2 = w.to(self.device), (w * w).to(self.device)
        self.counts = np.zeros((self.resamples, n_languages, n_layers), dtype=np.int64)
        self.overlap = np.zeros((self.resamples, n_languages), dtype=np.int64)
        self._pending: list[Future] = []
        self._pool = None
        if on_cpu and workers != 0:
            # single-threaded kernels in parallel threads: on a few busy cores they
            # scale better than intra-op threads that wait for each other
            self._threads = torch.get_num_threads()
            torch.set_num_threads(1)
            self._pool = ThreadPoolExecutor(
                max(1, workers or os.cpu_count() or 1),
                initializer=torch.set_num_threads,
                initargs=(1,),
            )

    # -- public

    def add(self, layer: int, block: np.ndarray, full_key: np.ndarray) -> None:
        torch = _torch()
        self.wait()
        n_lang, n = self.n_languages, self.n_items
        width = block.shape[1]
        if block.shape[0] != n_lang * n or full_key.shape != (n_lang, width):
            raise ValueError(
                f"block {block.shape} / key mask {full_key.shape} do not fit "
                f"{n_lang} languages × {n} items"
            )
        x = torch.as_tensor(block).to(device=self.device, dtype=self.dtype)
        x = x.view(n_lang, n, width).transpose(1, 2)  # (L, width, n)
        mask = torch.as_tensor(full_key).to(device=self.device, dtype=self.dtype)
        step = self.sub_width or width
        # per sub-block, contiguous (L·k, n) right-hand sides: rows are (language, neuron)
        parts = []
        for j in range(0, width, step):
            xt = x[:, j : j + step].reshape(-1, n)
            parts.append((xt, xt * xt, mask[:, j : j + step]))
        for start in range(0, self.resamples, self.chunk):
            rows = slice(start, min(start + self.chunk, self.resamples))
            if self._pool is None:
                self._accumulate(layer, rows, parts)
            else:
                self._pending.append(self._pool.submit(self._accumulate, layer, rows, parts))

    def wait(self) -> None:
        """Finish the queued work (and raise the first error a worker met)."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)
                _torch().set_num_threads(self._threads)
                self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- kernel

    def _accumulate(self, layer, rows, parts) -> None:
        torch = _torch()
        n_lang = self.n_languages
        w, w2 = self._w[rows], self._w2[rows]
        b = w.shape[0]
        counts = torch.zeros((b, n_lang), dtype=torch.float64, device=self.device)
        overlap = torch.zeros((b, n_lang), dtype=torch.float64, device=self.device)
        for xt, xt2, mask in parts:
            k = mask.shape[1]
            p = self._product(w, xt).view(b, n_lang, k)  # Σ_v w_bv a_k(l,v)
            f = self._product(w2, xt2).view(b, n_lang, k)  # Σ_v w_bv² a_k(l,v)²
            f.addcmul_(p, p, value=-1)  # F = −2C
            f[:, 1:].sub_(f[:, :1])  # G = F − F_1: exactly 0 everywhere where σ = 0
            f[:, 0].zero_()
            # mean and variance of G over languages from Σ G and Σ G² (the shift keeps
            # the difference well conditioned; torch.var_mean is ~100× slower here)
            mean = f.sum(dim=1).div_(n_lang)
            var = torch.zeros_like(mean)
            for lang in range(1, n_lang):
                var.addcmul_(f[:, lang], f[:, lang])
            var.div_(n_lang).addcmul_(mean, mean, value=-1).clamp_(min=0)
            flat = var == 0
            # z > τ ⇔ G < mean − τ·sd; σ = 0 gives z = 0: key only when τ < 0
            threshold = var.sqrt_().mul_(-self.tau).add_(mean)
            threshold.masked_fill_(flat, math.inf if self.tau < 0 else -math.inf)
            torch.lt(f, threshold[:, None, :], out=p)  # 1.0 where key
            counts += p.sum(dim=2)
            overlap += p.mul_(mask).sum(dim=2)
        self.counts[rows, :, layer] += counts.cpu().numpy().round().astype(np.int64)
        self.overlap[rows] += overlap.cpu().numpy().round().astype(np.int64)


# ---------------------------------------------------------------------- results


def percentile_interval(values: np.ndarray, level: float) -> list[float] | None:
    """[lo, hi]: the (1 − level)/2 and (1 + level)/2 quantiles of the resampled values
    (numpy's default linear interpolation); None when any resample is undefined."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)):
        return None
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


@dataclass
class BootstrapResult:
    """Every resample's statistics (rows = resamples), and how they were drawn."""

    settings: BootstrapSettings
    draws: np.ndarray  # (B, n) item indices
    lrds: np.ndarray  # (B,)
    sads: np.ndarray
    layer_lrds: np.ndarray  # (B, M)
    layer_sads: np.ndarray
    key_counts: np.ndarray  # (B, L, M): |R_l^b ∩ layer m|
    key_overlap: np.ndarray  # (B, L): |R_l ∩ R_l^b|
    full_sizes: np.ndarray  # (L,): |R_l| on the full data

    @property
    def sklr(self) -> np.ndarray:
        return self.key_counts.sum(axis=(1, 2))

    @property
    def key_per_language(self) -> np.ndarray:
        return self.key_counts.sum(axis=2)

    @property
    def key_per_layer(self) -> np.ndarray:
        return self.key_counts.sum(axis=1)

    @property
    def jaccard(self) -> np.ndarray:
        """(B, L) |R_l ∩ R_l^b| / |R_l ∪ R_l^b|; two empty regions agree: 1."""
        union = self.full_sizes[None, :] + self.key_per_language - self.key_overlap
        return np.divide(self.key_overlap, union, out=np.ones(union.shape), where=union > 0)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every resample's values as plain numeric arrays (metrics_bootstrap.npz,
        rows = resamples), with the draws that made them: a change between two
        checkpoints resampled with the same draws is paired (docs/method.md §10)."""
        return {
            "resamples": np.int64(self.settings.resamples),
            "level": np.float64(self.settings.level),
            "seed": np.int64(self.settings.seed),
            "draws": self.draws,
            "lrds": self.lrds,
            "sads": self.sads,
            "sklr": self.sklr.astype(np.float64),
            "layer_lrds": self.layer_lrds,
            "layer_sads": self.layer_sads,
            "key_per_layer": self.key_per_layer.astype(np.float64),
            "key_per_language": self.key_per_language.astype(np.float64),
        }

    def summary(self, languages: Sequence[str]) -> dict:
        """The ``ci`` entry of metrics.json."""
        level = self.settings.level

        def interval(values):
            return percentile_interval(values, level)

        return {
            "level": level,
            "resamples": self.settings.resamples,
            "seed": self.settings.seed,
            "unit": "item",
            "method": "percentile",
            "lrds": interval(self.lrds),
            "sads": interval(self.sads),
            "sklr": interval(self.sklr),
            "key_neurons_per_language": {
                lang: interval(self.key_per_language[:, i]) for i, lang in enumerate(languages)
            },
            "region_stability": {
                lang: float(self.jaccard[:, i].mean()) for i, lang in enumerate(languages)
            },
            "per_layer": [
                {
                    "layer": m,
                    "lrds": interval(self.layer_lrds[:, m]),
                    "sads": interval(self.layer_sads[:, m]),
                    "key_neurons": interval(self.key_per_layer[:, m]),
                }
                for m in range(self.layer_lrds.shape[1])
            ],
        }
