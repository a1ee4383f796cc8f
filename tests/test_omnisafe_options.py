"""The options that reproduce OmniSafe 0.5.0's implementation details, each against an independent computation:
kaiming-uniform initialisation, the normaliser updated every env step, the critics' L2 penalty and gradient clip,
and PPO's exact-KL early stop."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from conftest import member_generators
from torch.distributions import Normal, kl_divergence

from saferl.algorithms.common import clip_per_member, fit_critics
from saferl.algorithms.ppo import PPOLag
from saferl.buffer import RolloutBatch
from saferl.config import Config
from saferl.launch import new_members
from saferl.maths.optim import MemberAdam
from saferl.policies.actor_critic import ActorCritic
from saferl.policies.ensemble import EnsembleMLP
from saferl.runner import Runner


def test_kaiming_uniform_init_is_torch_linear_default_per_member():
    """nn.Linear's default: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)); members drawn from their own
    generator (member 1 of a 2-member net equals a 1-member net seeded like it)."""
    net = EnsembleMLP(2, 30, (64, 64), 3, "tanh", 0.01, member_generators(2), init="kaiming_uniform")
    for weight, bias in net.layers():
        bound = 1.0 / math.sqrt(weight.shape[1])
        assert weight.abs().max() <= bound and bias.abs().max() <= bound
        # a uniform on [-b, b] has std b / sqrt(3); 2 x 30 x 64 draws or more: within 10%
        assert weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
        assert bias.abs().max() > 0.3 * bound  # biases are drawn too, not zero
    # the reference: torch's own Linear init has the same bound
    linear = torch.nn.Linear(30, 64)
    assert linear.weight.abs().max() <= 1 / math.sqrt(30) and linear.weight.abs().max() > 0.9 / math.sqrt(30)
    alone = EnsembleMLP(1, 30, (64, 64), 3, "tanh", 0.01, member_generators(1, offset=1), init="kaiming_uniform")
    for (w2, b2), (w1, b1) in zip(net.layers(), alone.layers(), strict=True):
        torch.testing.assert_close(w2[1:], w1)
        torch.testing.assert_close(b2[1:], b1)


def test_orthogonal_init_is_unchanged_by_the_option():
    default = EnsembleMLP(1, 5, (8,), 2, "tanh", 0.01, member_generators(1))
    explicit = EnsembleMLP(1, 5, (8,), 2, "tanh", 0.01, member_generators(1), init="orthogonal")
    for (w1, b1), (w2, b2) in zip(default.layers(), explicit.layers(), strict=True):
        torch.testing.assert_close(w1, w2)
        assert not b1.any() and not b2.any()


def toy_runner(tmp_path, toy_config, extra):
    config = toy_config("ppo_lag", ["train.steps_per_epoch=400", "env.num_envs=4", *extra])
    return Runner(new_members(config, None, None, tmp_path / "run"))


def test_normalizer_updated_every_step_sees_each_observation_once(tmp_path, toy_config):
    """normalizer_update=step: after one rollout the statistics are exactly the mean and variance of every
    observation the policy saw (numpy over the buffer), and the stored normalised obs used the statistics of
    their own step, so the last step's obs are normalised with the full rollout's statistics."""
    runner = toy_runner(tmp_path, toy_config, ["model.normalizer_update=step"])
    runner.collect()
    raw = runner.buffer.raw_obs.reshape(-1, runner.buffer.raw_obs.shape[-1])
    norm = runner.policy.normalizer
    assert float(norm.count[0]) == raw.shape[0]
    np.testing.assert_allclose(norm.mean[0].numpy(), raw.mean(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(norm.var[0].numpy(), raw.var(0), rtol=1e-9, atol=1e-12)
    last = runner.buffer.raw_obs[-1, 0]
    expected = np.clip((last - raw.mean(0)) / np.sqrt(raw.var(0) + 1e-8), -10, 10)
    np.testing.assert_allclose(runner.buffer.obs[-1, 0], expected, rtol=1e-4, atol=1e-5)


def test_normalizer_updated_per_epoch_is_frozen_during_the_rollout(tmp_path, toy_config):
    runner = toy_runner(tmp_path, toy_config, ["model.normalizer_update=epoch"])
    runner.collect()
    assert float(runner.policy.normalizer.count[0]) == 0.0  # the update comes after the epoch's learning step


def test_add_l2_gradient_equals_autograd_of_the_penalty():
    params = [torch.randn(3, 4, 5, requires_grad=True), torch.randn(3, 1, 5, requires_grad=True)]
    other = [torch.randn(3, 2, requires_grad=True)]
    optimizer = MemberAdam([other, params], [1e-3, 1e-3])
    optimizer.flatten([None] * 3)
    optimizer.add_l2_gradient([1], 0.001)
    expected = torch.autograd.grad(0.001 * sum(p.square().sum() for p in params), params)
    for p, g in zip(params, expected, strict=True):
        torch.testing.assert_close(optimizer.grad_of[id(p)], g)
    assert not optimizer.grad_of[id(other[0])].any()


def test_clip_per_member_equals_torch_clip_grad_norm_per_member_and_network():
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(2, 4, 3, generator=g) * 10, torch.randn(2, 1, 3, generator=g), torch.randn(2, 3, 1,
                                                                                                     generator=g)]
    clipped = clip_per_member(grads, [2, 1], max_norm=1.5)
    for k in range(2):
        for run in ([0, 1], [2]):
            copies = [torch.nn.Parameter(torch.zeros_like(grads[i][k])) for i in run]
            for p, i in zip(copies, run, strict=True):
                p.grad = grads[i][k].clone()
            torch.nn.utils.clip_grad_norm_(copies, 1.5)
            for p, i in zip(copies, run, strict=True):
                torch.testing.assert_close(clipped[i][k], p.grad, rtol=1e-5, atol=1e-6)


def random_batch(members, size, obs_dim, act_dim, seed=3):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(members, size, *shape, generator=g)

    return RolloutBatch(r(obs_dim), r(act_dim), r() - 3.0, r(), r(1), r(), r(1), r(), r(1))


def test_fit_critics_l2_and_clip_equal_a_torch_reference():
    """One minibatch step of fit_critics with l2 and clipping equals torch.optim.Adam on loss + l2 sum(p^2) with
    clip_grad_norm_ per critic, for each member."""
    members = 2
    policy = ActorCritic(members, 4, 2, 1, generators=member_generators(members))
    batch = random_batch(members, 32, 4, 2)
    batch = dataclasses.replace(batch, reward_returns=batch.reward_returns * 50)  # large errors: the clip is active
    refs = []
    for k in range(members):
        critics = [[p[k].detach().clone().requires_grad_(True) for p in net.parameters()]
                   for net in (policy.reward_critic, policy.cost_critic)]
        refs.append(critics)
    optimizer = MemberAdam([policy.critic_parameters(cost=True)], [1e-2])
    member_gens = member_generators(members, offset=10)
    permutations = [torch.randperm(32, generator=torch.Generator().manual_seed(10 + k)) for k in range(members)]
    fit_critics(policy, optimizer, batch, epochs=1, minibatch_size=32, generators=member_gens, fit_cost=True,
                l2=0.01, max_grad_norm=0.5)
    for k in range(members):
        reward_params, cost_params = refs[k]
        obs = batch.obs[k][permutations[k]]  # fit_critics regresses on the stored (normalised) obs

        def mlp(params, x):  # EnsembleMLP.parameters(): every weight, then every bias
            depth = len(params) // 2
            for i in range(depth):
                x = x @ params[i] + params[depth + i][0]
                if i < depth - 1:
                    x = torch.tanh(x)
            return x

        loss = (mlp(reward_params, obs).squeeze(-1) - batch.reward_returns[k][permutations[k]]).square().mean()
        loss = loss + (mlp(cost_params, obs) - batch.cost_returns[k][permutations[k]]).square().mean()
        loss = loss + 0.01 * sum(p.square().sum() for p in reward_params + cost_params)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(reward_params, 0.5)
        torch.nn.utils.clip_grad_norm_(cost_params, 0.5)
        torch.optim.Adam(reward_params + cost_params, lr=1e-2).step()
        for mine, ref in zip(policy.critic_parameters(cost=True), reward_params + cost_params, strict=True):
            torch.testing.assert_close(mine[k], ref.detach(), rtol=1e-4, atol=1e-5)


def test_ppo_critic_l2_is_the_penalty_in_either_gradient_path():
    """ppo.critic_l2: with the hand-written gradient and with autograd the update is the same."""
    def run(manual):
        config = Config()
        config.ppo.update_epochs, config.ppo.manual_gradients, config.ppo.critic_l2 = 2, manual, 0.05
        policy = ActorCritic(2, 4, 2, 1, generators=member_generators(2))
        algo = PPOLag(policy, config, 10, member_generators(2), np.full((2, 1), 25.0))
        assert algo.uses_manual_gradients is manual
        algo.update(random_batch(2, 256, 4, 2), np.array([[30.0], [10.0]]), np.array([100.0, 100.0]))
        return policy

    manual, automatic = run(True), run(False)
    for (key, value), other in zip(manual.state_dict().items(), automatic.state_dict().values(), strict=True):
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(value, other, rtol=1e-4, atol=1e-5, msg=key)
    plain = Config()
    plain.ppo.update_epochs = 2
    policy = ActorCritic(2, 4, 2, 1, generators=member_generators(2))
    PPOLag(policy, plain, 10, member_generators(2), np.full((2, 1), 25.0)).update(
        random_batch(2, 256, 4, 2), np.array([[30.0], [10.0]]), np.array([100.0, 100.0]))
    shrink = manual.reward_critic.weights[0].norm() - policy.reward_critic.weights[0].norm()
    assert shrink < 0  # the penalty pulls the critic's weights toward zero


def test_exact_kl_early_stop_reads_the_gaussians_kl():
    config = Config()
    config.ppo.kl_estimate = "exact"
    policy = ActorCritic(2, 4, 2, 1, generators=member_generators(2))
    algo = PPOLag(policy, config, 10, member_generators(2), np.full((2, 1), 25.0))
    batch = random_batch(2, 128, 4, 2)
    with torch.no_grad():
        old_means = policy.actor(batch.obs)
        old_log_std = policy.log_std_per_member().clone()
        policy.log_std.add_(torch.tensor([[0.1, -0.2], [0.3, 0.0]]))
        policy.actor.weights[-1].add_(0.5)
    kl, _ = algo.policy_shift(batch, old_means, old_log_std)
    for k in range(2):
        with torch.no_grad():
            old = Normal(old_means[k], old_log_std[k].exp())
            new = Normal(policy.actor(batch.obs)[k], policy.log_std[k].exp())
            expected = kl_divergence(old, new).sum(-1).mean().item()
        assert kl[k] == pytest.approx(expected, rel=1e-5)
