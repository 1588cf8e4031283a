"""One spelling of every results path: a rule's output is the only place a path under
results/ is written; later rules, the input functions and the package take it from
there (rules.<name>.output, the job's explicit files)."""

import ast
import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RULE_FILES = sorted((ROOT / "rules").glob("*.smk")) + [ROOT / "Snakefile"]
LITERAL = re.compile(r"""["'](results/[^"']*)["']""")


def test_every_results_path_is_spelled_once_in_the_rules():
    found = Counter(
        path for rule_file in RULE_FILES for path in LITERAL.findall(rule_file.read_text())
    )
    assert found, "no results path in the rules at all"
    assert {path: n for path, n in found.items() if n > 1} == {}
    # one checkpoint's chain, each file written where its rule declares it
    for name in ("activations.zarr", "metrics.json", "key_neurons.parquet", "ablation.json"):
        assert f"results/{{model}}/{{checkpoint}}/{name}" in found


def test_no_results_path_in_the_package_or_the_rule_scripts():
    """Scripts and the package get every path from the rule that runs them."""
    spelled = []
    for source in sorted((ROOT / "scripts").rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and (text.startswith("results/") or "/results/" in text):
                spelled.append(f"{source.relative_to(ROOT)}:{node.lineno}: {text!r}")
    assert spelled == []


def test_a_writer_takes_exactly_its_rules_named_outputs(tmp_path):
    from lingua_franca.ablation import AblationFiles
    from lingua_franca.metrics import MetricsFiles

    files = MetricsFiles.in_folder(tmp_path)
    assert files.summary == tmp_path / "summary.json" and files.similarity.suffix == ".npy"
    outputs = {name: str(path) for name, path in files.paths().items()}
    assert MetricsFiles.of(outputs) == files
    renamed = {**{k: v for k, v in outputs.items() if k != "summary"}, "json": "m.json"}
    with pytest.raises(ValueError, match=r"missing \['summary'\], unknown \['json'\]"):
        MetricsFiles.of(renamed)
    assert len(set(AblationFiles.in_folder(tmp_path).paths().values())) == 10


def test_json_numbers_are_finite_or_null():
    import math

    import numpy as np
    from lingua_franca.outputs import json_number

    assert [json_number(x) for x in (None, math.nan, -math.inf, np.float32(0.5), 3)] == [
        None,
        None,
        None,
        0.5,
        3.0,
    ]
    assert type(json_number(np.float64(2.0))) is float
