"""PPO / PPO-Lag with a member axis: the loss and the update of each member against an independent per-member
computation (plain torch ops, torch.optim.Adam, torch's clip_grad_norm_), the networks' stacked evaluation,
sampling and normalisation per member, collection consistency, determinism, checkpoints, and learning on the toy.
"""


import numpy as np
import pytest
import torch
from conftest import make_runner, member_generators, progress_rows, slow_except
from torch.distributions import Normal, kl_divergence

from saferl.algorithms import ALGORITHMS
from saferl.algorithms.common import BehaviourReference, PPOMinibatch
from saferl.algorithms.ppo import PPOLag
from saferl.buffer import RolloutBatch
from saferl.config import build_config
from saferl.logger import read_progress
from saferl.policies.actor_critic import ActorCritic
from saferl.rundir import load_policy

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "elu": torch.nn.functional.elu}


# -- the independent oracle: one member as plain tensors -----------------------------------------------------------
def member_copy(net, k):
    """Member k of an EnsembleMLP as leaf tensors [(W [in, out], b [out])]: the oracle's own parameters."""
    return [(w[k].detach().clone().requires_grad_(True), b[k, 0].detach().clone().requires_grad_(True))
            for w, b in zip(net.weights, net.biases, strict=True)]


def layer_params(net):
    """An EnsembleMLP's parameters layer by layer (W0, b0, W1, b1, ...): the order of `OracleMember.networks`."""
    return [t for w, b in zip(net.weights, net.biases, strict=True) for t in (w, b)]


def library_networks(policy, with_cost):
    """The policy's parameters grouped as `OracleMember.networks` groups member k's copies."""
    networks = [layer_params(policy.actor) + [policy.log_std], layer_params(policy.reward_critic)]
    return networks + ([layer_params(policy.cost_critic)] if with_cost else [])


def mlp(layers, x, activation):
    for index, (w, b) in enumerate(layers):
        x = x @ w + b
        if index < len(layers) - 1:
            x = ACTIVATIONS[activation](x)
    return x


class OracleMember:
    """Member k's actor, log-std and critics copied out of an ActorCritic, evaluated with plain torch ops."""

    def __init__(self, policy: ActorCritic, k: int, activation: str):
        self.activation = activation
        self.actor = member_copy(policy.actor, k)
        self.log_std = policy.log_std[k].detach().clone().requires_grad_(True)
        self.reward_critic = member_copy(policy.reward_critic, k)
        self.cost_critic = member_copy(policy.cost_critic, k)

    def networks(self, with_cost):
        flat = [[t for layer in net for t in layer] for net in (self.actor, self.reward_critic, self.cost_critic)]
        return [flat[0] + [self.log_std], flat[1]] + ([flat[2]] if with_cost else [])

    def dist(self, obs):
        return Normal(mlp(self.actor, obs, self.activation), self.log_std.exp())

    def loss(self, cfg, obs, actions, old_log_probs, old_means, old_log_std, advantages, reward_returns,
             cost_returns, old_values, old_cost_values, with_cost, kl_beta=0.0, bc=None):
        """The PPO loss of one member, written from the paper's formulas."""
        dist = self.dist(obs)
        ratio = torch.exp(dist.log_prob(actions).sum(-1) - old_log_probs)
        low = cfg.clip_ratio if cfg.clip_low is None else cfg.clip_low
        high = cfg.clip_ratio if cfg.clip_high is None else cfg.clip_high
        if cfg.objective == "clip":
            policy_loss = -torch.min(ratio * advantages, ratio.clamp(1 - low, 1 + high) * advantages).mean()
        else:
            kl = kl_divergence(Normal(old_means, old_log_std.exp()), dist).sum(-1).mean()
            policy_loss = -(ratio * advantages).mean() + kl_beta * kl
        if bc is not None:
            bc_means, bc_log_std, coef = bc
            policy_loss = policy_loss + coef * kl_divergence(Normal(bc_means, bc_log_std.exp()), dist).sum(-1).mean()

        def squared_error(prediction, old, target):
            error = (prediction - target) ** 2
            if cfg.clip_value_loss:
                clipped = old + torch.clamp(prediction - old, -cfg.value_clip, cfg.value_clip)
                error = torch.maximum(error, (clipped - target) ** 2)
            return error.mean()

        value_loss = squared_error(mlp(self.reward_critic, obs, self.activation)[:, 0], old_values, reward_returns)
        if with_cost:
            value_loss = value_loss + squared_error(mlp(self.cost_critic, obs, self.activation), old_cost_values,
                                                    cost_returns)
        entropy = Normal(torch.zeros_like(self.log_std), self.log_std.exp()).entropy().sum()
        return policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy


def random_policy(members, obs_dim, act_dim, num_costs, activation, hidden=(64, 64)):
    policy = ActorCritic(members, obs_dim, act_dim, num_costs=num_costs, actor_hidden=hidden, critic_hidden=hidden,
                         activation=activation, init_log_std=-0.3, generators=member_generators(members))
    with torch.no_grad():  # members differ in their std too, and biases are not all zero
        policy.log_std.add_(0.2 * torch.randn(policy.log_std.shape, generator=torch.Generator().manual_seed(7)))
        for net in policy.networks():
            for b in net.biases:
                b.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(8))
    return policy


# -- the loss ----------------------------------------------------------------------------------------------------
LOSS_CASES = [(algo, activation, "clip") for algo in ("ppo", "ppo_lag") for activation in ACTIVATIONS]
LOSS_CASES += [("ppo_lag", "tanh", "kl_penalty"), ("ppo", "elu", "kl_penalty"), ("ppo_lag", "relu", "bc_kl")]


@pytest.mark.parametrize("algo, activation, variant", LOSS_CASES)
def test_loss_of_each_member_equals_a_hand_computation(algo, activation, variant):
    """The batched loss [K] equals K independent per-member losses, and so does its gradient: member k's slice of
    d(sum of losses)/d(parameters) is the gradient of member k's own loss (members share nothing)."""
    sets = [f"model.activation={activation}", "ppo.entropy_coef=0.01", "ppo.clip_low=0.1", "ppo.clip_high=0.3",
            "ppo.value_coef=0.7"]
    if variant == "kl_penalty":
        sets += ["ppo.objective=kl_penalty", "ppo.clip_value_loss=true", "ppo.value_clip=0.05"]
    config = build_config(algo, sets=sets)
    members, size, obs_dim, act_dim, num_costs = 3, 64, 5, 3, 2
    policy = random_policy(members, obs_dim, act_dim, num_costs, activation)
    algorithm = ALGORITHMS[algo](policy, config, 10, member_generators(members), np.full((members, num_costs), 25.0))
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(members, size, *shape, generator=g)

    obs, actions = r(obs_dim), r(act_dim) * 0.5
    with torch.no_grad():
        mean = policy.actor(obs)
        std = policy.log_std.exp().unsqueeze(1)
        old_log_probs = Normal(mean, std).log_prob(actions).sum(-1) + 0.3 * r()
    old_means = mean + 0.1 * r(act_dim)
    old_log_std = policy.log_std.detach().unsqueeze(1) + 0.05
    minibatch = PPOMinibatch(obs, actions, old_log_probs, old_means, advantages=r(), reward_returns=r(),
                             cost_returns=r(num_costs), old_values=r(), old_cost_values=r(num_costs))
    kl_beta = torch.tensor([0.5, 1.0, 2.0])
    bc_kl_coef = torch.tensor([0.3, 0.0, 1.5])
    if variant == "bc_kl":
        reference = BehaviourReference(random_policy(members, obs_dim, act_dim, num_costs, activation),
                                       policy.log_std.detach() - 0.4)
        algorithm.set_behaviour_reference(reference, bc_kl_coef.numpy(), 0.9)
        minibatch = minibatch._replace(bc_means=reference.means(obs))

    loss = algorithm.loss(minibatch, old_log_std, kl_beta, bc_kl_coef)
    assert loss.shape == (members,)
    params = list(policy.parameters())
    grads = dict(zip(map(id, params), torch.autograd.grad(loss.sum(), params, allow_unused=True), strict=True))
    with_cost = algorithm.uses_cost_critic
    for k in range(members):
        oracle = OracleMember(policy, k, activation)
        mb = PPOMinibatch(*(None if t is None else t[k] for t in minibatch))
        bc = (mb.bc_means, reference.log_std[k], float(bc_kl_coef[k])) if variant == "bc_kl" else None
        expected = oracle.loss(config.ppo, mb.obs, mb.actions, mb.old_log_probs, mb.old_means, old_log_std[k],
                               mb.advantages, mb.reward_returns, mb.cost_returns, mb.old_values, mb.old_cost_values,
                               with_cost=with_cost, kl_beta=float(kl_beta[k]), bc=bc)
        torch.testing.assert_close(loss[k], expected, rtol=1e-5, atol=1e-6)
        oracle_params = [t for network in oracle.networks(with_cost) for t in network]
        expected_grads = torch.autograd.grad(expected, oracle_params)
        library_params = [p for network in library_networks(policy, with_cost) for p in network]
        for p, e in zip(library_params, expected_grads, strict=True):
            got = grads[id(p)][k]
            torch.testing.assert_close(got.reshape(e.shape), e, rtol=1e-4, atol=1e-6)
    if not with_cost:  # PPO never touches the cost critic
        assert all(grads[id(p)] is None for p in policy.cost_critic.parameters())
    if variant == "clip":  # both branches of the clipped objective were exercised
        with torch.no_grad():
            ratio = (Normal(policy.actor(obs), std).log_prob(actions).sum(-1) - old_log_probs).exp()
        assert ((ratio < 0.9) | (ratio > 1.3)).any() and ((ratio > 0.9) & (ratio < 1.3)).any()


# -- the update --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("clip_per_network", [True, False])
def test_update_equals_per_member_torch_adam_with_clipped_gradients(clip_per_network):
    """Two full-batch epochs of PPO-Lag on two members equal, member by member, torch.optim.Adam on the hand-written
    loss with torch.nn.utils.clip_grad_norm_ applied per network (or over all networks), and the Lagrangian
    advantage (A_r - lambda A_c) / (1 + lambda) with each member's own multiplier, and the critics' default weight
    penalty (ppo.critic_l2) in their loss."""
    members, size, obs_dim, act_dim = 2, 64, 4, 2
    max_norm, actor_lr, critic_lr = 0.05, 1e-2, 5e-3
    config = build_config("ppo_lag", sets=[
        "ppo.update_epochs=2", f"ppo.minibatch_size={size}", "ppo.target_kl=null", "ppo.anneal_lr=false",
        f"ppo.max_grad_norm={max_norm}", f"ppo.clip_per_network={clip_per_network}", f"ppo.actor_lr={actor_lr}",
        f"ppo.critic_lr={critic_lr}", "train.steps_per_epoch=64", "env.num_envs=1"])
    assert config.ppo.critic_l2 > 0
    policy = random_policy(members, obs_dim, act_dim, 1, "tanh", hidden=(16, 16))
    oracles = [OracleMember(policy, k, "tanh") for k in range(members)]
    g = torch.Generator().manual_seed(3)

    def r(*shape):
        return torch.randn(members, size, *shape, generator=g)

    obs, actions = r(obs_dim), r(act_dim) * 0.5
    with torch.no_grad():
        log_probs = Normal(policy.actor(obs), policy.log_std.exp().unsqueeze(1)).log_prob(actions).sum(-1)
    batch = RolloutBatch(obs=obs, actions=actions, log_probs=log_probs, reward_advantages=r(),
                         cost_advantages=r(1), reward_returns=r() * 5.0, cost_returns=r(1) * 5.0, reward_values=r(),
                         cost_values=r(1))
    algorithm = PPOLag(policy, config, 10, member_generators(members), np.array([[10.0], [10.0]]))
    stats = algorithm.update(batch, np.array([[50.0], [0.0]]), np.array([50.0, 50.0]))
    lambdas = stats["lagrange_multiplier_0"]
    assert lambdas[0] > 0.01 and lambdas[1] == 0.0  # member 0 over its limit, member 1 under it

    clipped_any = False
    for k, oracle in enumerate(oracles):
        networks = oracle.networks(with_cost=True)
        adam = torch.optim.Adam([{"params": networks[0], "lr": actor_lr}, {"params": networks[1], "lr": critic_lr},
                                 {"params": networks[2], "lr": critic_lr}])
        advantages = (batch.reward_advantages[k] - lambdas[k] * batch.cost_advantages[k, :, 0]) / (1 + lambdas[k])
        for _ in range(2):
            adam.zero_grad()
            loss = oracle.loss(config.ppo, obs[k], actions[k], log_probs[k], None, None, advantages,
                               batch.reward_returns[k], batch.cost_returns[k], batch.reward_values[k],
                               batch.cost_values[k], with_cost=True)
            critic_l2 = sum(p.square().sum() for network in networks[1:] for p in network)  # OmniSafe's penalty
            (loss + config.ppo.critic_l2 * critic_l2).backward()
            groups = networks if clip_per_network else [[p for network in networks for p in network]]
            for group in groups:
                clipped_any |= float(torch.nn.utils.clip_grad_norm_(group, max_norm)) > max_norm
            adam.step()
        got = [p[k] for network in library_networks(policy, with_cost=True) for p in network]
        expected = [t for network in networks for t in network]
        for p, e in zip(got, expected, strict=True):
            torch.testing.assert_close(p.detach().reshape(e.shape), e.detach(), rtol=1e-4, atol=2e-6)
    assert clipped_any
    assert stats["update_epochs"].tolist() == [2, 2]


def ppo_after_one_minibatch(return_scale: float, per_network: bool) -> ActorCritic:
    config = build_config("ppo_lag", sets=["ppo.update_epochs=1", "ppo.minibatch_size=32", "ppo.target_kl=null",
                                           "ppo.max_grad_norm=0.5", f"ppo.clip_per_network={per_network}"])
    generators = [torch.Generator().manual_seed(0)]
    policy = ActorCritic(1, 3, 2, 1, generators=[torch.Generator().manual_seed(0)])
    algo = PPOLag(policy, config, 10, generators, np.array([[25.0]]))
    g = torch.Generator().manual_seed(1)

    def r(*shape):
        return torch.randn(1, 32, *shape, generator=g)

    batch = RolloutBatch(obs=r(3), actions=r(2), log_probs=r() - 3.0, reward_advantages=r(), cost_advantages=r(1),
                         reward_returns=r() * return_scale, cost_returns=r(1), reward_values=r(), cost_values=r(1))
    algo.update(batch, np.array([[10.0]]), np.array([100.0]))
    return policy


def test_a_large_critic_gradient_does_not_shrink_the_actor_step():
    """With one global norm, a critic whose returns are 1000x larger scaled every actor step down by its norm."""
    small, large = ppo_after_one_minibatch(1.0, True), ppo_after_one_minibatch(1000.0, True)
    for (name, a), (_, b) in zip(small.actor.named_parameters(), large.actor.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    torch.testing.assert_close(small.log_std, large.log_std, rtol=0, atol=0)
    small_global, large_global = ppo_after_one_minibatch(1.0, False), ppo_after_one_minibatch(1000.0, False)
    assert not torch.equal(small_global.actor.weights[0], large_global.actor.weights[0])


# -- the networks, sampling and normalisation ----------------------------------------------------------------------
@pytest.mark.parametrize("num_costs", [1, 3])
def test_stacked_evaluate_equals_the_three_networks_run_separately(num_costs):
    members = 3
    policy = random_policy(members, 7, 4, num_costs, "relu")
    obs = torch.randn(members, 16, 7)
    assert policy.stacked_layers() is not None
    mean, value, cost_value = policy.forward_heads(obs)  # the three networks as one of 3K members
    separate = (policy.actor(obs), policy.reward_critic(obs).squeeze(-1), policy.cost_critic(obs))
    for got, expected in zip((mean, value, cost_value), separate, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    for k in range(members):  # and each member is its own plain MLP
        oracle = OracleMember(policy, k, "relu")
        torch.testing.assert_close(mean[k], mlp(oracle.actor, obs[k], "relu"), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(value[k], mlp(oracle.reward_critic, obs[k], "relu")[:, 0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(cost_value[k], mlp(oracle.cost_critic, obs[k], "relu"), rtol=1e-5, atol=1e-6)
    # The stacking is differentiable: gradients through it equal those through the separate networks.
    weights = [torch.randn(t.shape, generator=torch.Generator().manual_seed(1)) for t in separate]
    params = list(policy.parameters())

    def weighted_sum(outputs):
        return sum((w * t).sum() for w, t in zip(weights, outputs, strict=True))

    stacked_grads = torch.autograd.grad(weighted_sum(policy.forward_heads(obs)), params, allow_unused=True)
    separate_grads = torch.autograd.grad(weighted_sum(separate), params, allow_unused=True)
    for a, b in zip(stacked_grads, separate_grads, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert policy.forward_heads(obs, with_cost=False)[2] is None
    torch.testing.assert_close(policy.forward_heads(obs, with_cost=False)[1], separate[1], rtol=1e-5, atol=1e-6)
    # Hidden shapes that differ cannot be stacked: the same call runs the networks one by one.
    other = ActorCritic(members, 7, 4, actor_hidden=(32, 32), generators=member_generators(members))
    assert other.stacked_layers() is None
    with torch.no_grad():
        torch.testing.assert_close(other.forward_heads(obs)[0], other.actor(obs))
        torch.testing.assert_close(other.forward_heads(obs)[2], other.cost_critic(obs))


def test_sample_draws_each_members_noise_from_its_own_generator():
    policy = random_policy(2, 3, 2, 1, "tanh")
    mean = torch.randn(2, 8, 2)
    actions, log_probs = policy.sample(mean, member_generators(2, offset=5))
    for k in range(2):
        std = policy.log_std[k].detach().exp()
        noise = torch.randn(8, 2, generator=torch.Generator().manual_seed(5 + k))
        torch.testing.assert_close(actions[k], mean[k] + noise * std)
        torch.testing.assert_close(log_probs[k], Normal(mean[k], std).log_prob(actions[k]).sum(-1), rtol=1e-5,
                                   atol=1e-5)


def test_normaliser_and_predict_use_each_members_own_statistics():
    members, dim = 2, 3
    policy = random_policy(members, dim, 2, 1, "tanh")
    rng = np.random.default_rng(0)
    scales, shifts = np.array([1.0, 4.0])[:, None, None], np.array([0.0, -3.0])[:, None, None]
    batches = [rng.normal(size=(members, n, dim)) * scales + shifts for n in (50, 30)]
    for batch in batches:  # merged batch by batch: the same as the statistics of everything at once
        policy.normalizer.update(torch.from_numpy(batch))
    seen = np.concatenate(batches, axis=1)
    np.testing.assert_allclose(policy.normalizer.mean.numpy(), seen.mean(1), rtol=1e-10)
    np.testing.assert_allclose(policy.normalizer.var.numpy(), seen.var(1), rtol=1e-10)
    np.testing.assert_array_equal(policy.normalizer.count.numpy(), [80, 80])
    obs = rng.normal(size=(5, dim)) * 6.0
    for k in range(members):
        x = np.clip((obs - seen[k].mean(0)) / np.sqrt(seen[k].var(0) + 1e-8), -10.0, 10.0)
        expected = mlp(OracleMember(policy, k, "tanh").actor, torch.as_tensor(x, dtype=torch.float32), "tanh")
        np.testing.assert_allclose(policy.predict(obs, member=k), expected.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert policy.predict(obs[0], member=1).shape == (2,)


# -- through the runner on the toy task ----------------------------------------------------------------------
@pytest.mark.parametrize("algo", slow_except(["ppo", "ppo_lag"], {"ppo_lag"}))
def test_collected_log_probs_are_the_policys_so_the_first_ratio_is_one(tmp_path, toy_config, algo):
    runner = make_runner(toy_config(algo), tmp_path, seeds=[0, 1])
    runner.collect()
    batch = runner.rollout_batch()
    policy = runner.policy
    with torch.no_grad():
        log_prob = Normal(policy.actor(batch.obs), policy.log_std.exp().unsqueeze(1)).log_prob(batch.actions).sum(-1)
    ratio = (log_prob - batch.log_probs).exp()
    torch.testing.assert_close(ratio, torch.ones_like(ratio), atol=1e-5, rtol=0)
    # and the whole-batch KL of each member before any update is zero
    with torch.no_grad():
        means, log_std = policy.actor(batch.obs), policy.log_std_per_member().clone()
    np.testing.assert_allclose(runner.algorithm.policy_shift(batch, means, log_std)[0], 0.0, atol=1e-7)


@pytest.mark.slow
def test_same_seed_same_result(tmp_path, toy_config):
    config = toy_config("ppo_lag", ["train.total_steps=6000"])
    rows = []
    for name in ("a", "b"):
        make_runner(config, tmp_path / name).train()
        rows.append(read_progress(tmp_path / name / "progress.csv"))
    keys = ["ep_return", "ep_cost", "lagrange_multiplier", "approx_kl", "clip_fraction", "value_loss"]
    assert [[r[k] for k in keys] for r in rows[0]] == [[r[k] for k in keys] for r in rows[1]]
    other = toy_config("ppo_lag", ["train.total_steps=6000", "train.seed=1"])
    make_runner(other, tmp_path / "c").train()
    assert progress_rows(tmp_path / "c")[-1]["ep_return"] != rows[0][-1]["ep_return"]


@pytest.mark.slow
def test_ppo_lag_meets_the_budget_where_ppo_does_not(tmp_path, toy_config):
    """On the toy task the cost limit is 10 per 50-step episode; running flat out costs 50."""
    make_runner(toy_config("ppo"), tmp_path / "ppo").train()
    make_runner(toy_config("ppo_lag"), tmp_path / "lag").train()
    ppo, lag = progress_rows(tmp_path / "ppo")[-1], progress_rows(tmp_path / "lag")[-1]
    assert float(ppo["ep_cost"]) > 30.0 and float(ppo["ep_return"]) > 30.0  # PPO learned to run, unsafely
    assert float(lag["ep_cost"]) < 10.0  # PPO-Lag ends under the limit
    assert float(lag["lagrange_multiplier"]) > 0.0


@pytest.mark.parametrize("algo", slow_except(sorted(ALGORITHMS), {"ppo_lag"}))
def test_save_load_predict_equality_for_every_algorithm(tmp_path, toy_config, algo):
    """A checkpoint restores the exact policy, normaliser included (SB3's save-load-predict test)."""
    config = toy_config(algo, ["train.total_steps=1600", "train.steps_per_epoch=800", "ppo.update_epochs=2"])
    runner = make_runner(config, tmp_path / "run")
    runner.train()
    obs = np.random.default_rng(0).normal(size=(32, 2))
    expected = runner.policy.predict(obs, deterministic=True)
    assert runner.policy.normalizer.count[0] > 0  # the normaliser has statistics worth restoring
    _, restored, checkpoint = load_policy(tmp_path / "run")
    assert restored.members == 1
    np.testing.assert_array_equal(restored.predict(obs, deterministic=True), expected)
    assert checkpoint["epoch"] == 2 and checkpoint["env_steps"] == 1600


@pytest.mark.slow
def test_each_member_directory_restores_that_members_policy(tmp_path, toy_config):
    config = toy_config("ppo_lag", ["train.total_steps=1600", "train.steps_per_epoch=800", "ppo.update_epochs=2"])
    runner = make_runner(config, tmp_path, seeds=[3, 4])
    runner.train()
    obs = np.random.default_rng(0).normal(size=(32, 2))
    predictions = [runner.policy.predict(obs, member=k) for k in range(2)]
    assert not np.array_equal(predictions[0], predictions[1])
    for k, seed in enumerate((3, 4)):
        _, restored, _ = load_policy(tmp_path / f"seed-{seed}")
        np.testing.assert_array_equal(restored.predict(obs), predictions[k])
        torch.testing.assert_close(restored.normalizer.mean[0], runner.policy.normalizer.mean[k], rtol=0, atol=0)


def test_truncation_bootstrap_is_the_critic_value_of_the_member_normalised_final_obs(tmp_path, toy_config):
    """With the normaliser frozen during the rollout (normalizer_update=epoch), so that its statistics are known."""
    runner = make_runner(toy_config("ppo_lag", ["model.normalizer_update=epoch", "model.obs_clip=10"]), tmp_path,
                         seeds=[0, 1])
    policy, k_members, envs = runner.policy, 2, runner.envs_per_member
    generator = torch.Generator().manual_seed(0)
    scale, shift = torch.tensor([3.0, 0.5], dtype=torch.float64), torch.tensor([5.0, -2.0], dtype=torch.float64)
    stats = torch.randn(k_members, 1000, 2, generator=generator, dtype=torch.float64) * scale[:, None, None]
    stats = stats + shift[:, None, None]
    policy.normalizer.update(stats)  # far from identity, and different for each member
    mean, std = stats.mean(1).numpy(), np.sqrt(stats.var(1, correction=0).numpy() + 1e-8)
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
        truncated, final_obs = finals[t][0].reshape(k_members, envs), finals[t][1].reshape(k_members, envs, -1)
        for k in range(k_members):
            rows = truncated[k]
            x = torch.as_tensor(np.clip((final_obs[k][rows] - mean[k]) / std[k], -10, 10), dtype=torch.float32)
            oracle = OracleMember(policy, k, "tanh")
            with torch.no_grad():
                expected_reward = mlp(oracle.reward_critic, x, "tanh")[:, 0].numpy()
                expected_cost = mlp(oracle.cost_critic, x, "tanh").numpy()
            np.testing.assert_allclose(runner.buffer.final_reward_values[t, k, rows], expected_reward, rtol=1e-5,
                                       atol=1e-6)
            np.testing.assert_allclose(runner.buffer.final_cost_values[t, k, rows], expected_cost, rtol=1e-5,
                                       atol=1e-6)
