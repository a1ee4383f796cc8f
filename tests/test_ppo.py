"""PPO / PPO-Lag: consistency of collection and update, determinism, and learning on the toy task."""

import numpy as np
import pytest
import torch

from saferl.logger import read_progress
from saferl.runner import Runner


def final_row(run_dir):
    return read_progress(run_dir / "progress.csv")[-1]


@pytest.mark.parametrize("algo", ["ppo", "ppo_lag"])
def test_ratio_is_one_on_first_minibatch(tmp_path, toy_config, algo):
    runner = Runner(toy_config(algo), tmp_path / "run")
    runner.collect()
    batch = runner.buffer.compute(np.zeros(8), np.zeros((8, 1)), 0.99, 0.95, 0.99, 0.95)
    algorithm = runner.algorithm
    first = slice(0, algorithm.cfg.minibatch_size)
    with torch.no_grad():
        actor = runner.policy.actor
        log_prob = actor.log_prob(actor(batch.obs[first]), batch.actions[first])
    ratio = (log_prob - batch.log_probs[first]).exp()
    torch.testing.assert_close(ratio, torch.ones_like(ratio), atol=1e-5, rtol=0)
    # and the whole-batch KL before any update is zero
    assert algorithm.policy_shift(batch)[0] == pytest.approx(0.0, abs=1e-7)


def test_same_seed_same_result(tmp_path, toy_config):
    config = toy_config("ppo_lag", ["train.total_steps=6000"])
    rows = []
    for name in ("a", "b"):
        Runner(config, tmp_path / name).train()
        rows.append(read_progress(tmp_path / name / "progress.csv"))
    keys = ["ep_return", "ep_cost", "lagrange_multiplier", "approx_kl", "clip_fraction", "value_loss"]
    assert [[r[k] for k in keys] for r in rows[0]] == [[r[k] for k in keys] for r in rows[1]]
    other = toy_config("ppo_lag", ["train.total_steps=6000", "train.seed=1"])
    Runner(other, tmp_path / "c").train()
    assert read_progress(tmp_path / "c" / "progress.csv")[-1]["ep_return"] != rows[0][-1]["ep_return"]


def test_ppo_lag_meets_the_budget_where_ppo_does_not(tmp_path, toy_config):
    """On the toy task the cost limit is 10 per 50-step episode; running flat out costs 50."""
    Runner(toy_config("ppo"), tmp_path / "ppo").train()
    Runner(toy_config("ppo_lag"), tmp_path / "lag").train()
    ppo, lag = final_row(tmp_path / "ppo"), final_row(tmp_path / "lag")
    assert float(ppo["ep_cost"]) > 30.0 and float(ppo["ep_return"]) > 30.0  # PPO learned to run, unsafely
    assert float(lag["ep_cost"]) < 10.0  # PPO-Lag ends under the limit
    assert float(lag["lagrange_multiplier"]) > 0.0


@pytest.mark.parametrize("algo", ["ppo", "ppo_lag"])
@pytest.mark.parametrize("activation", ["tanh", "relu", "elu"])
def test_manual_gradients_equal_autograd(algo, activation):
    from saferl.algorithms import ALGORITHMS
    from saferl.config import build_config
    from saferl.policies.actor_critic import ActorCritic

    config = build_config(algo, sets=[f"model.activation={activation}", "ppo.entropy_coef=0.01",
                                      "ppo.clip_low=0.1", "ppo.clip_high=0.3", "ppo.value_coef=0.7"])
    torch.manual_seed(0)
    policy = ActorCritic(5, 3, num_costs=2, activation=activation, init_log_std=-0.3)
    algorithm = ALGORITHMS[algo](policy, config, total_epochs=10)
    size = 64
    obs, actions = torch.randn(size, 5), torch.randn(size, 3) * 0.5
    with torch.no_grad():
        old_log_probs = policy.actor.log_prob(policy.actor(obs), actions) + 0.3 * torch.randn(size)
    minibatch = [obs, actions, old_log_probs, torch.zeros(size, 3), torch.randn(size), torch.randn(size),
                 torch.randn(size, 2), torch.randn(size), torch.randn(size, 2), torch.tensor(1.0)]
    algorithm.zero_grad()
    algorithm.minibatch_loss(*minibatch).backward()
    expected = {name: p.grad.clone() for name, p in policy.named_parameters() if p.grad is not None}
    algorithm.zero_grad()
    algorithm.manual_gradients(*minibatch)
    got = {name: p.grad for name, p in policy.named_parameters() if p.grad is not None}
    assert got.keys() == expected.keys()
    ratio = (policy.actor.log_prob(policy.actor(obs), actions) - old_log_probs).exp()
    assert ((ratio < 0.9) | (ratio > 1.3)).any() and ((ratio > 0.9) & (ratio < 1.3)).any()  # both branches
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_clip_grad_norm_matches_torch():
    from saferl.algorithms.ppo import clip_grad_norm

    params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(7))]
    for p in params:
        p.grad = torch.randn_like(p) * 5
    reference = [p.grad.clone() for p in params]
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    expected = [p.grad.clone() for p in params]
    for p, g in zip(params, reference, strict=True):
        p.grad = g.clone()
    clip_grad_norm(params, 1.0)
    for p, e in zip(params, expected, strict=True):
        torch.testing.assert_close(p.grad, e)


@pytest.mark.parametrize("algo", sorted(__import__("saferl.algorithms", fromlist=["ALGORITHMS"]).ALGORITHMS))
def test_save_load_predict_equality_for_every_algorithm(tmp_path, toy_config, algo):
    """A checkpoint restores the exact policy, normaliser included (SB3's save-load-predict test)."""
    from saferl.runner import load_policy

    config = toy_config(algo, ["train.total_steps=4000"])
    runner = Runner(config, tmp_path / "run")
    runner.train()
    obs = np.random.default_rng(0).normal(size=(32, 2))
    expected = runner.policy.predict(obs, deterministic=True)
    assert runner.policy.normalizer.count > 0  # the normaliser has statistics worth restoring
    _, restored, checkpoint = load_policy(tmp_path / "run")
    np.testing.assert_array_equal(restored.predict(obs, deterministic=True), expected)
    assert checkpoint["epoch"] == 2 and checkpoint["env_steps"] == 4000


def test_truncation_bootstrap_is_the_critic_value_of_the_normalised_final_obs(tmp_path, toy_config):
    runner = Runner(toy_config("ppo_lag"), tmp_path / "run")
    policy = runner.policy
    policy.normalizer.update(torch.randn(1000, 2, dtype=torch.float64) * 3.0 + 5.0)  # far from identity
    finals = {}
    step = runner.env.step

    def recording_step(actions):
        result = step(actions)
        finals[len(finals)] = (result[4].copy(), result[5]["final_obs"].copy())
        return result

    runner.env.step = recording_step
    runner.collect()
    truncated_steps = [t for t, (truncated, _) in finals.items() if truncated.any()]
    assert truncated_steps
    for t in truncated_steps:
        truncated, final_obs = finals[t]
        with torch.no_grad():
            x = policy.normalise(torch.from_numpy(final_obs[truncated]).float())
            expected_reward = policy.reward_critic(x).squeeze(-1).numpy()
            expected_cost = policy.cost_critic(x).numpy()
        np.testing.assert_allclose(runner.buffer.final_reward_values[t, truncated], expected_reward, rtol=1e-6)
        np.testing.assert_allclose(runner.buffer.final_cost_values[t, truncated], expected_cost, rtol=1e-6)


@pytest.mark.parametrize("num_costs", [1, 3])
def test_stacked_networks_match_the_three_mlps(num_costs):
    from saferl.policies.actor_critic import ActorCritic

    torch.manual_seed(0)
    policy = ActorCritic(7, 4, num_costs=num_costs, activation="relu")
    obs = torch.randn(16, 7)
    with torch.no_grad():
        expected = (policy.actor(obs), policy.reward_critic(obs).squeeze(-1), policy.cost_critic(obs))
    got = policy.stacked_networks()(obs)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)
    other = ActorCritic(7, 4, actor_hidden=(32, 32))  # hidden sizes differ: run one by one, same call
    with torch.no_grad():
        torch.testing.assert_close(other.stacked_networks()(obs)[0], other.actor(obs))
