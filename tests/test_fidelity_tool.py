"""The pieces of ``make fidelity`` that run without the reference environment."""

import importlib.util
import pathlib
import sys

import numpy as np
import pytest
from scipy import stats

ROOT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "fidelity"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"fidelity_{name}", ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fidelity = load("fidelity")
patch = load("patch_reference")


def test_welch_z_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.0, 1.0, 7), rng.normal(0.5, 2.0, 5)
    z, p = fidelity.welch_z(a, b)
    expected = stats.ttest_ind(a, b, equal_var=False)
    assert z == pytest.approx(expected.statistic, rel=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-9)


def test_welch_z_without_spread():
    assert fidelity.welch_z([1.0, 1.0], [1.0, 1.0]) == (0.0, 1.0)
    assert fidelity.welch_z([9.81, 9.81], [9.81 + 2e-15, 9.81 + 2e-15]) == (0.0, 1.0)   # last-bit constants
    z, p = fidelity.welch_z([2.0, 2.0], [1.0, 1.0])
    assert z == np.inf and p == 0.0


def test_steps_until_divergence():
    a = np.zeros((5, 3))
    b = a.copy()
    b[3, 2] = 2e-4
    b[4, 0] = 1.0
    assert fidelity.steps_until_divergence(a.tolist(), b.tolist()) == (3, [2])
    assert fidelity.steps_until_divergence(a.tolist(), (a + 5e-5).tolist()) == (None, [])


def test_patch_turns_mutable_defaults_into_factories(tmp_path):
    source = tmp_path / "safety_gymnasium" / "assets" / "thing.py"
    source.parent.mkdir(parents=True)
    source.write_text("from dataclasses import dataclass\n\n\n@dataclass\nclass Thing:\n    size: float = 0.1\n"
                      "    color: np.array = COLOR['vase']\n    alpha: float = COLOR['vase'][-1]\n")
    patch.main(str(tmp_path))
    text = source.read_text()
    assert "from dataclasses import dataclass, field" in text
    assert "    color: np.array = field(default_factory=lambda: COLOR['vase'])\n" in text
    assert "    alpha: float = COLOR['vase'][-1]\n" in text          # a float default is left alone
    patch.main(str(tmp_path))
    assert source.read_text() == text                                 # idempotent
