"""GAE against hand-worked numbers and an independent loop, including truncation and vector costs."""

import numpy as np
import pytest

from saferl.buffer import RolloutBuffer, gae


def hand_example():
    rewards = np.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]])
    values = np.array([[0.5, 1.0], [1.0, 1.0], [1.5, 1.0]])
    last_values = np.array([2.0, 9.0])  # env 1's last value is after a termination: must be ignored
    terminated = np.array([[False, False], [False, False], [False, True]])
    truncated = np.array([[False, True], [False, False], [False, False]])
    final_values = np.zeros_like(values)
    final_values[0, 1] = 4.0  # critic's value of the final obs of env 1's truncated episode
    return rewards, values, last_values, terminated, truncated, final_values


def test_gae_hand_computed_with_truncation_and_termination():
    adv, ret = gae(*hand_example(), gamma=0.9, lam=0.8)
    # env 0, no episode end: deltas 1.4, 2.35, 3.3; A_t = delta_t + 0.72 A_{t+1}
    # env 1: truncated at t=0 (bootstrap 4.0, then cut), terminated at t=2 (no bootstrap)
    expected = np.array([[4.80272, 3.6], [4.726, 0.9], [3.3, 0.0]])
    np.testing.assert_allclose(adv, expected, atol=1e-12)
    np.testing.assert_allclose(ret, expected + hand_example()[1], atol=1e-12)


def reference_gae(rewards, values, last_values, terminated, truncated, final_values, gamma, lam):
    """Per-env, per-step loop written the textbook way: one episode segment at a time."""
    steps, envs = rewards.shape[:2]
    adv = np.zeros_like(rewards)
    for i in range(envs):
        next_adv = 0.0
        for t in reversed(range(steps)):
            if terminated[t, i]:
                bootstrap, next_adv = 0.0, 0.0
            elif truncated[t, i]:
                bootstrap, next_adv = final_values[t, i], 0.0
            elif t == steps - 1:
                bootstrap = last_values[i]
            else:
                bootstrap = values[t + 1, i]
            delta = rewards[t, i] + gamma * bootstrap - values[t, i]
            adv[t, i] = delta + gamma * lam * next_adv
            next_adv = adv[t, i]
    return adv


@pytest.mark.parametrize("num_costs", [1, 3])
def test_vector_cost_gae_matches_per_constraint_reference(num_costs):
    rng = np.random.default_rng(0)
    steps, envs = 40, 5
    terminated = rng.random((steps, envs)) < 0.05
    truncated = (rng.random((steps, envs)) < 0.05) & ~terminated
    costs = rng.random((steps, envs, num_costs))
    values = rng.normal(size=(steps, envs, num_costs))
    final_values = rng.normal(size=(steps, envs, num_costs))
    last_values = rng.normal(size=(envs, num_costs))
    adv, _ = gae(costs, values, last_values, terminated, truncated, final_values, 0.99, 0.95)
    assert adv.shape == (steps, envs, num_costs)
    for k in range(num_costs):
        expected = reference_gae(costs[..., k], values[..., k], last_values[..., k], terminated, truncated,
                                 final_values[..., k], 0.99, 0.95)
        np.testing.assert_allclose(adv[..., k], expected, rtol=1e-10, atol=1e-10)


def test_buffer_standardises_reward_and_centres_cost_advantages():
    rng = np.random.default_rng(1)
    buf = RolloutBuffer(num_steps=16, num_envs=4, obs_dim=3, act_dim=2, num_costs=2)
    buf.rewards[:] = rng.normal(size=buf.rewards.shape)
    buf.costs[:] = rng.random(buf.costs.shape) * 3
    batch = buf.compute(np.zeros(4), np.zeros((4, 2)), 0.99, 0.95, 0.99, 0.95)
    assert len(batch) == 64
    assert abs(float(batch.reward_advantages.mean())) < 1e-5
    assert abs(float(batch.reward_advantages.std()) - 1.0) < 1e-2
    np.testing.assert_allclose(batch.cost_advantages.mean(0).numpy(), 0.0, atol=1e-5)
    raw_cost_adv, _ = gae(buf.costs, buf.cost_values, np.zeros((4, 2)), buf.terminated, buf.truncated,
                          buf.final_cost_values, 0.99, 0.95)
    # centred only: the spread is the raw one, not rescaled to 1
    np.testing.assert_allclose(batch.cost_advantages.std(0).numpy(), raw_cost_adv.reshape(64, 2).std(0, ddof=1),
                               rtol=1e-4)
