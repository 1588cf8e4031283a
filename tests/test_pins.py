"""Dependencies are pinned in one place: the conda env carries requirements.txt's pins."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def pins(lines):
    return sorted(
        line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")
    )


def test_requirements_are_exact_pins():
    reqs = pins((ROOT / "requirements.txt").read_text().splitlines())
    assert reqs and all("==" in r for r in reqs)
    assert "torch==2.13.0" in reqs


def test_conda_envs_carry_the_same_pins():
    reqs = pins((ROOT / "requirements.txt").read_text().splitlines())
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        spec = yaml.safe_load(env.read_text())
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d)
        assert pins(pip) == reqs, env.name
        assert "python=3.11" in spec["dependencies"]
