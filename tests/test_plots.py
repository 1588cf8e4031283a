"""Each figure function writes a non-empty PNG from small fabricated tables."""

import numpy as np
import pandas as pd
import pytest
from lingua_franca.plots import checkpoint as plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 2000


@pytest.fixture
def counts():
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.integers(0, 50, (6, 3)), columns=["en", "zh", "ar"])
    table.index.name = "layer"
    return table


def test_similarity_map(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((12, 30))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    langs = np.repeat(["en", "zh", "ar"], 4)
    plots.plot_similarity_map(x @ x.T, langs, tmp_path / "s.png", title="toy")
    assert_png(tmp_path / "s.png")


def test_similarity_map_single_sample(tmp_path):
    plots.plot_similarity_map(np.ones((1, 1)), ["en"], tmp_path / "s.png")
    assert_png(tmp_path / "s.png")


def test_language_runs():
    assert plots._language_runs(["en", "en", "zh", "ar", "ar"]) == [
        ("en", 0, 2),
        ("zh", 2, 3),
        ("ar", 3, 5),
    ]


def test_layerwise_scores(tmp_path):
    layers = np.arange(5)
    plots.plot_layerwise_scores(
        layers, np.linspace(0.2, 0.1, 5), np.linspace(0, 0.1, 5), tmp_path / "l.png"
    )
    assert_png(tmp_path / "l.png")


def test_layerwise_scores_with_nan(tmp_path):
    plots.plot_layerwise_scores([0, 1], [np.nan, np.nan], [np.nan, 0.1], tmp_path / "l.png")
    assert_png(tmp_path / "l.png")


def test_key_neurons_per_layer(tmp_path, counts):
    plots.plot_key_neurons_per_layer(counts, tmp_path / "k.png")
    assert_png(tmp_path / "k.png")


def test_key_neurons_per_layer_empty(tmp_path, counts):
    plots.plot_key_neurons_per_layer(counts * 0, tmp_path / "k.png", title="none")
    assert_png(tmp_path / "k.png")


def test_key_neurons_per_language(tmp_path, counts):
    plots.plot_key_neurons_per_language(counts.sum(), tmp_path / "g.png", n_neurons=600)
    assert_png(tmp_path / "g.png")
    plots.plot_key_neurons_per_language(counts.sum() * 0, tmp_path / "g0.png")
    assert_png(tmp_path / "g0.png")
