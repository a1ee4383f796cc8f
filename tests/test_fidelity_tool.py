"""The pieces of ``make fidelity`` that run without the reference environment."""

import pathlib

import gymnasium
import numpy as np
import pytest
from conftest import load_script
from scipy import stats

from saferl.envs.navigation.fidelity import random_actions

ROOT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "fidelity"


fidelity = load_script(ROOT / "fidelity.py", "fidelity_fidelity")
patch = load_script(ROOT / "patch_reference.py", "fidelity_patch_reference")


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


def test_merge_replaces_rows_of_the_ids_run_and_keeps_the_others_in_id_order():
    settings = {"seeds": 20, "replacements": 2, "steps": 300, "episodes": 3, "speed_seconds": 1.5}
    old = {"settings": dict(settings, ids=["SafetyPointGoal0-v0", "SafetyCarGoal0-v0"]),
           "rows": [{"env_id": "SafetyPointGoal0-v0", "v": 1}, {"env_id": "SafetyCarGoal0-v0", "v": 1}]}
    new = [{"env_id": "SafetyAntGoal0-v0", "v": 2}, {"env_id": "SafetyPointGoal0-v0", "v": 2}]
    rows, ids = fidelity.merge_rows(old, dict(settings, ids=[]), new)
    assert ids == ["SafetyPointGoal0-v0", "SafetyCarGoal0-v0", "SafetyAntGoal0-v0"]
    assert [r["v"] for r in rows] == [2, 1, 2]
    with pytest.raises(ValueError, match="steps 300 vs 1000"):
        fidelity.merge_rows(old, dict(settings, steps=1000), new)


def test_merge_without_results_is_a_clear_error(tmp_path, capsys):
    python = tmp_path / "python"
    python.write_text("")
    code = fidelity.main(["--merge", "--out-dir", str(tmp_path), "--reference-python", str(python),
                          "--ids", "SafetyAntGoal0-v0"])
    assert code == 2 and capsys.readouterr().err.startswith("saferl: error: --merge: no ")


def test_random_actions_keep_the_point_and_car_draws():
    """Actions uniform within the control ranges are the old uniform(-1, 1) draws when the range is +-1."""
    space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float64)
    np.testing.assert_array_equal(random_actions(space, 50, 12345),
                                  np.random.default_rng(12345).uniform(-1, 1, (50, 2)))
    wide = gymnasium.spaces.Box(np.array([-20.0, -0.785]), np.array([20.0, 0.785]), (2,), np.float64)
    actions = random_actions(wide, 2000, 0)
    assert np.all(np.abs(actions) <= [20.0, 0.785]) and np.abs(actions[:, 0]).max() > 19.0


class EchoEnv:
    """Reward = the first action component, cost = 1 per step, episodes of 5 steps: what a policy sent is visible."""

    def __init__(self):
        self.t = 0

    def reset(self, seed):
        self.t = 0
        return np.zeros(3)

    def step(self, action):
        self.t += 1
        return np.full(3, float(self.t)), float(action[0]), 1.0, self.t == 5


class MeanPolicy:
    """predict: the observation's first two entries; log_std 0 (std 1)."""

    def __init__(self):
        import torch

        self.log_std = torch.zeros(1, 2)

    def predict(self, obs, deterministic=True):
        assert deterministic  # the transfer script adds its own, shared noise
        return np.asarray(obs[:2], float)


def test_policy_transfer_episodes_share_their_noise_and_clip_the_action():
    transfer = load_script(ROOT / "policy_transfer.py", "fidelity_policy_transfer")
    low, high = -np.ones(2), np.ones(2)
    sampled = [transfer.episode(MeanPolicy(), EchoEnv(), 7, True, low, high) for _ in range(2)]
    assert sampled[0] == sampled[1]  # the same seed: the same noise draws on both sides
    z = np.random.default_rng(7).standard_normal((5, 2))[:, 0]
    means = np.array([0.0, 1.0, 2.0, 3.0, 4.0])  # the observation before each step
    assert sampled[0]["return"] == pytest.approx(np.clip(means + z, -1, 1).sum())
    mean_only = transfer.episode(MeanPolicy(), EchoEnv(), 7, False, low, high)
    assert mean_only == {"return": 0.0 + 1 + 1 + 1 + 1, "cost": 5.0, "length": 5}


def test_policy_transfer_compare_matches_scipy():
    transfer = load_script(ROOT / "policy_transfer.py", "fidelity_policy_transfer")
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 9), rng.normal(0.3, 1, 9)
    result = transfer.compare(a.tolist(), b.tolist())
    assert result["welch_z"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).statistic, rel=1e-12)
    paired = stats.ttest_rel(a, b)
    assert result["paired_mean"] / result["paired_se"] == pytest.approx(paired.statistic, rel=1e-12)
    assert result["saferl"] == pytest.approx(a.mean()) and result["safety_gymnasium"] == pytest.approx(b.mean())
