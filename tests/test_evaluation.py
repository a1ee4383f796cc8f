"""The one evaluation rollout: per-env quotas, determinism, recorded steps that add up, and eval.json."""

import json

import gymnasium
import numpy as np
import pytest
import torch
from conftest import TOY_SETS_WITHOUT_STEPS
from gymnasium import spaces

from saferl import envs
from saferl.cli import main
from saferl.envs.seeds import EVALUATION_OFFSET
from saferl.errors import SafeRLError
from saferl.evaluation import (
    episode_quotas,
    evaluate,
    evaluation_seed,
    run_episodes,
    summarise_episodes,
)


class UnevenEnv:
    """Env i's episodes last 2 + 3 i steps (the first env's are shortest); reward = action, cost 1 when the
    action is positive, success when the episode's return is positive. Same-step autoreset, as `envs.make`."""

    cost_names = ["cost"]

    def __init__(self, num_envs: int, success: bool = False):
        self.num_envs, self.success = num_envs, success
        self.lengths = 2 + 3 * np.arange(num_envs)
        self.single_action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.resets = []

    def _obs(self):
        return np.stack([self.t, self.noise.uniform(-1, 1, self.num_envs)], axis=1)

    def reset(self, seed=None):
        self.resets.append(seed)
        self.noise = np.random.default_rng(seed)
        self.t = np.zeros(self.num_envs)
        self.ret, self.cost = np.zeros(self.num_envs), np.zeros((self.num_envs, 1))
        return self._obs(), {}

    def step(self, actions):
        reward = np.asarray(actions, float)[:, 0]
        cost = (reward > 0).astype(float)[:, None]
        self.t += 1
        self.ret, self.cost = self.ret + reward, self.cost + cost
        done = self.t >= self.lengths
        info = {"episode_done": done, "episode_return": self.ret.copy(), "episode_cost": self.cost.copy(),
                "episode_length": self.t.astype(int), "final_obs": self._obs()}
        if self.success:
            info["is_success"] = (self.ret > 0).astype(float)
        self.t, self.ret, self.cost = np.where(done, 0, self.t), np.where(done, 0, self.ret), self.cost * ~done[:, None]
        return self._obs(), reward, cost, np.zeros(self.num_envs, bool), done, info


class GaussianPolicy:
    """predict's contract: [N, obs_dim] in, [N, act_dim] out; stochastic actions from torch's global RNG."""

    def predict(self, obs, deterministic=True):
        mean = np.full((len(obs), 1), 0.1)
        return mean if deterministic else mean + torch.randn(len(obs), 1).numpy()


def test_quotas_give_every_env_its_share():
    assert episode_quotas(7, 3).tolist() == [2, 2, 3] and episode_quotas(2, 4).tolist() == [0, 0, 1, 1]
    env = UnevenEnv(3)
    result = run_episodes(GaussianPolicy(), env, 6, deterministic=False, seed=0)
    # Without quotas the 2-step env would finish ~5 episodes before the 8-step one finished one.
    assert sorted(result.lengths) == [2, 2, 5, 5, 8, 8] and len(result) == 6
    assert env.resets == [0]


def test_fixed_seed_gives_the_same_episodes_and_leaves_the_callers_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = run_episodes(GaussianPolicy(), UnevenEnv(2), 5, deterministic=False, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    again = run_episodes(GaussianPolicy(), UnevenEnv(2), 5, deterministic=False, seed=7)
    other = run_episodes(GaussianPolicy(), UnevenEnv(2), 5, deterministic=False, seed=8)
    assert first.returns == again.returns and first.costs == again.costs
    assert first.returns != other.returns


def test_recorded_steps_add_up_to_the_episode_totals():
    result = run_episodes(GaussianPolicy(), UnevenEnv(3), 5, deterministic=False, seed=1, record=True,
                          info_keys=("is_success", "missing"))
    assert len(result.steps) == 5
    for steps, ret, cost, length in zip(result.steps, result.returns, result.costs, result.lengths, strict=True):
        assert set(steps) == {"observations", "next_observations", "actions", "rewards", "costs", "terminals",
                              "timeouts"}  # info keys only when the env reports them at every step
        assert len(steps["rewards"]) == length and steps["costs"].shape == (length, 1)
        assert steps["rewards"].sum() == pytest.approx(ret) and steps["costs"].sum(0).tolist() == cost
        assert np.abs(steps["actions"]).max() <= 1  # clipped to the action space, as executed
        assert steps["timeouts"][-1] and not steps["timeouts"][:-1].any() and not steps["terminals"].any()
        np.testing.assert_array_equal(steps["observations"][1:], steps["next_observations"][:-1])
        assert steps["observations"][0, 0] == 0 and steps["next_observations"][-1, 0] == length  # final obs


def test_success_and_noise():
    result = run_episodes(GaussianPolicy(), UnevenEnv(2, success=True), 4, deterministic=True, seed=0)
    assert result.successes == [True] * 4  # the mean action 0.1 earns a positive return
    summary = summarise_episodes(result)
    assert summary["success_rate"] == 1.0 and all(e["success"] for e in summary["episodes"])
    assert "success_rate" not in summarise_episodes(run_episodes(GaussianPolicy(), UnevenEnv(2), 2, seed=0))
    noisy = run_episodes(GaussianPolicy(), UnevenEnv(2), 4, seed=3, noise_std=0.5, record=True)
    again = run_episodes(GaussianPolicy(), UnevenEnv(2), 4, seed=3, noise_std=0.5, record=True)
    actions = np.concatenate([s["actions"] for s in noisy.steps])
    assert actions.std() > 0.2 and noisy.returns == again.returns
    with pytest.raises(SafeRLError, match="episodes must be >= 1"):
        run_episodes(GaussianPolicy(), UnevenEnv(2), 0)


def test_before_step_sees_every_state_the_policy_acts_in():
    seen = []
    result = run_episodes(GaussianPolicy(), UnevenEnv(1), 2, seed=0, before_step=seen.append)
    assert seen == list(range(sum(result.lengths)))


@pytest.mark.slow
def test_evaluate_writes_eval_json(tmp_path, capsys):
    run = tmp_path / "run"
    sets = [*TOY_SETS_WITHOUT_STEPS, "train.total_steps=2000"]
    assert main(["train", "--algo", "ppo_lag", "--seed", "4", "--run-dir", str(run), "--set", *sets]) == 0
    summary = evaluate(run, episodes=5, deterministic=True)
    saved = json.loads((run / "eval.json").read_text())
    assert saved["seed"] == evaluation_seed(4) == 4 + EVALUATION_OFFSET and len(saved["episodes"]) == 5
    assert saved["mean_return"] == pytest.approx(summary["mean_return"]) and "success_rate" not in saved
    assert saved["mean_return"] == pytest.approx(np.mean([e["return"] for e in saved["episodes"]]))
    assert evaluate(run, episodes=5, deterministic=True)["episodes"] == saved["episodes"]
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "3", "--seed", "9"]) == 0
    assert "over 3 episodes" in capsys.readouterr().out
    assert json.loads((run / "eval.json").read_text())["seed"] == 9


class ReachEnv(gymnasium.Env):
    """A gymnasium task with cost in info and success at the end: 3 steps, success when the summed action > 0."""

    observation_space = spaces.Box(-1.0, 1.0, (1,), np.float64)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.total = 0, 0.0
        return np.zeros(1), {}

    def step(self, action):
        self.t += 1
        self.total += float(action[0])
        done = self.t == 3
        info = {"cost": float(action[0] > 0.5), "is_success": done and self.total > 0}
        return np.array([self.t / 3]), float(action[0]), False, done, info


def test_success_through_a_real_vector_env():
    env = envs.make(ReachEnv, num_envs=2, seed=0)
    result = run_episodes(GaussianPolicy(), env, 4, deterministic=True, seed=0)
    assert result.successes == [True] * 4 and result.lengths == [3] * 4
    assert summarise_episodes(result)["success_rate"] == 1.0
