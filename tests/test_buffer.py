"""GAE against hand-worked numbers and an independent loop (truncation, vector costs, a member axis), and the
buffer's per-member batch: layout, advantage normalisation within each member, a member equal to a one-member
buffer."""

import numpy as np
import pytest

from saferl.buffer import RolloutBuffer
from saferl.maths.gae import gae


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
    """Per-env, per-step loop written the textbook way: one episode segment at a time. Inputs [T, N]."""
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


def episode_ends(rng, shape, rate=0.05):
    terminated = rng.random(shape) < rate
    truncated = (rng.random(shape) < rate) & ~terminated
    return terminated, truncated


@pytest.mark.parametrize("num_costs", [1, 3])
def test_vector_cost_gae_matches_per_constraint_reference(num_costs):
    rng = np.random.default_rng(0)
    steps, envs = 40, 5
    terminated, truncated = episode_ends(rng, (steps, envs))
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


def test_gae_over_a_member_axis_is_gae_of_each_member():
    """The buffer hands gae [T, K, N] arrays: every (member, env) column is its own independent recursion."""
    rng = np.random.default_rng(3)
    steps, members, envs = 30, 3, 4
    terminated, truncated = episode_ends(rng, (steps, members, envs), rate=0.1)
    rewards, values, final_values = (rng.normal(size=(steps, members, envs)) for _ in range(3))
    last_values = rng.normal(size=(members, envs))
    adv, ret = gae(rewards, values, last_values, terminated, truncated, final_values, 0.97, 0.9)
    for k in range(members):
        expected = reference_gae(rewards[:, k], values[:, k], last_values[k], terminated[:, k], truncated[:, k],
                                 final_values[:, k], 0.97, 0.9)
        np.testing.assert_allclose(adv[:, k], expected, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(ret[:, k], expected + values[:, k], rtol=1e-10, atol=1e-10)


# -- the buffer ------------------------------------------------------------------------------------------------
STEPS, ENVS, OBS_DIM, ACT_DIM, COSTS = 16, 4, 3, 2, 2
GAMMA, LAM, COST_GAMMA, COST_LAM = 0.99, 0.95, 0.97, 0.9


def filled_buffer(members: int, seed: int = 1) -> tuple[RolloutBuffer, np.ndarray, np.ndarray]:
    """A buffer with random content; member k's rewards are on scale 10^k, so a normalisation that mixed
    members would be visibly wrong. Returns it with the bootstrap values [K, N] and [K, N, C]."""
    rng = np.random.default_rng(seed)
    buf = RolloutBuffer(STEPS, members, ENVS, OBS_DIM, ACT_DIM, COSTS)
    scale = 10.0 ** np.arange(members)[None, :, None]
    buf.rewards[:] = rng.normal(size=buf.rewards.shape) * scale + scale
    buf.costs[:] = rng.random(buf.costs.shape) * 3 * scale[..., None]
    for name in ("obs", "actions", "log_probs", "reward_values", "cost_values", "final_reward_values",
                 "final_cost_values"):
        getattr(buf, name)[:] = rng.normal(size=getattr(buf, name).shape)
    buf.raw_obs[:] = rng.normal(size=buf.raw_obs.shape)
    buf.terminated[:], buf.truncated[:] = episode_ends(rng, buf.terminated.shape, rate=0.1)
    return buf, rng.normal(size=(members, ENVS)), rng.normal(size=(members, ENVS, COSTS))


def compute(buf, last_values, last_cost_values):
    return buf.compute(last_values, last_cost_values, GAMMA, LAM, COST_GAMMA, COST_LAM)


def test_member_advantages_follow_the_reference_normalised_within_the_member():
    """Row k of the batch is member k's samples in (step, env) order: reward advantages are the textbook GAE of
    that member standardised by its own mean and std, cost advantages centred on its own mean only."""
    members = 3
    buf, last_values, last_cost_values = filled_buffer(members)
    batch = compute(buf, last_values, last_cost_values)
    assert batch.members == members and batch.size == STEPS * ENVS
    assert tuple(batch.cost_advantages.shape) == (members, STEPS * ENVS, COSTS)
    for k in range(members):
        ends = buf.terminated[:, k], buf.truncated[:, k]
        raw = reference_gae(buf.rewards[:, k].astype(np.float64), buf.reward_values[:, k], last_values[k], *ends,
                            buf.final_reward_values[:, k], GAMMA, LAM).reshape(-1)
        expected = (raw - raw.mean()) / (raw.std() + 1e-8)
        np.testing.assert_allclose(batch.reward_advantages[k].numpy(), expected, rtol=1e-4, atol=1e-5)
        expected_returns = raw + buf.reward_values[:, k].reshape(-1)
        np.testing.assert_allclose(batch.reward_returns[k].numpy(), expected_returns, rtol=1e-5, atol=1e-4)
        for c in range(COSTS):
            raw_cost = reference_gae(buf.costs[:, k, :, c].astype(np.float64), buf.cost_values[:, k, :, c],
                                     last_cost_values[k, :, c], *ends, buf.final_cost_values[:, k, :, c],
                                     COST_GAMMA, COST_LAM).reshape(-1)
            # centred only: the spread stays the raw one, not rescaled to 1
            np.testing.assert_allclose(batch.cost_advantages[k, :, c].numpy(), raw_cost - raw_cost.mean(),
                                       rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(batch.obs[k].numpy(), buf.obs[:, k].reshape(-1, OBS_DIM))
        np.testing.assert_array_equal(batch.actions[k].numpy(), buf.actions[:, k].reshape(-1, ACT_DIM))
        np.testing.assert_array_equal(batch.log_probs[k].numpy(), buf.log_probs[:, k].reshape(-1))
        np.testing.assert_array_equal(batch.cost_values[k].numpy(), buf.cost_values[:, k].reshape(-1, COSTS))
        np.testing.assert_array_equal(buf.raw_obs_per_member()[k].numpy(), buf.raw_obs[:, k].reshape(-1, OBS_DIM))
    # Per member, not over the whole batch: each row has mean 0 and std 1 although the scales differ 100-fold.
    np.testing.assert_allclose(batch.reward_advantages.mean(1).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(batch.reward_advantages.std(1, correction=0).numpy(), 1.0, rtol=1e-4)
    np.testing.assert_allclose(batch.cost_advantages.mean(1).numpy(), 0.0, atol=1e-4)


def test_member_k_of_a_buffer_equals_a_one_member_buffer():
    buf, last_values, last_cost_values = filled_buffer(3, seed=2)
    batch = compute(buf, last_values, last_cost_values)
    for k in range(3):
        single = RolloutBuffer(STEPS, 1, ENVS, OBS_DIM, ACT_DIM, COSTS)
        for name, value in vars(buf).items():
            if isinstance(value, np.ndarray):
                getattr(single, name)[:] = value[:, k : k + 1]
        single_batch = compute(single, last_values[k : k + 1], last_cost_values[k : k + 1])
        for got, expected in zip(batch.fields(), single_batch.fields(), strict=True):
            np.testing.assert_array_equal(got[k].numpy(), expected[0].numpy())


def test_normalisation_switches():
    buf, last_values, last_cost_values = filled_buffer(2)
    plain = buf.compute(last_values, last_cost_values, GAMMA, LAM, COST_GAMMA, COST_LAM,
                        standardize_reward_adv=False, center_cost_adv=False)
    np.testing.assert_allclose(plain.reward_advantages.numpy(),
                               (plain.reward_returns - plain.reward_values).numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(plain.cost_advantages.numpy(), (plain.cost_returns - plain.cost_values).numpy(),
                               rtol=1e-5, atol=1e-4)
    assert abs(float(plain.cost_advantages.mean())) > 0.1  # not centred
