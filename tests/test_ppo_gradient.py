"""The hand-written gradient of PPO's default loss equals autograd of `PPO.loss`, for every member."""

import numpy as np
import pytest
import torch

from saferl.algorithms.common import PPOMinibatch
from saferl.algorithms.ppo import PPO, PPOLag
from saferl.algorithms.ppo_gradient import clip_loss_gradients
from saferl.buffer import RolloutBatch
from saferl.config import Config
from saferl.policies.actor_critic import ActorCritic


def critic_free_config(manual: bool = True) -> Config:
    config = Config()
    config.train.advantage, config.train.group_size = "grpo", 2
    config.ppo.manual_gradients = manual
    return config


@pytest.mark.parametrize("algorithm", [PPO, PPOLag])
@pytest.mark.parametrize("activation", ["tanh", "relu", "elu"])
@pytest.mark.parametrize("members", [1, 3])
@pytest.mark.parametrize("critic_free", [False, True])
def test_hand_written_gradient_equals_autograd(algorithm, activation, members, critic_free):
    """critic_free (a group estimator): the optimiser holds the actor's parameters alone, and the hand-written
    gradient covers them alone, equal to autograd of `PPO.loss` (which then has no value term)."""
    generators = [torch.Generator().manual_seed(k) for k in range(members)]
    config = critic_free_config() if critic_free else Config()
    config.model.activation, config.ppo.entropy_coef = activation, 0.01
    policy = ActorCritic(members, 5, 2, 2, activation=activation, generators=generators)
    with torch.no_grad():
        policy.log_std.add_(torch.randn(members, 2, generator=torch.Generator().manual_seed(9)) * 0.3)
    algo = algorithm(policy, config, 10, generators, np.full((members, 2), 25.0))
    trained = policy.actor_parameters() if critic_free else [*policy.actor_parameters(),
                                                              *policy.critic_parameters(cost=algo.uses_cost_critic)]
    assert sorted(map(id, algo.params)) == sorted(map(id, trained))
    g = torch.Generator().manual_seed(1)

    def r(*shape):
        return torch.randn(members, 64, *shape, generator=g)

    # Old log-probs about 2.5 below the current ones put ratios on both sides of the clip range.
    minibatch = PPOMinibatch(obs=r(5), actions=r(2), old_log_probs=r() - 2.5, old_means=r(2), advantages=r(),
                             reward_returns=r(), cost_returns=r(2), old_values=r(), old_cost_values=r(2))
    loss = algo.loss(minibatch, policy.log_std_per_member().detach(), torch.ones(members), torch.zeros(members))
    expected = torch.autograd.grad(loss.sum(), algo.params)
    clip_loss_gradients(policy, minibatch, algo.clip_low, algo.clip_high, config.ppo.value_coef,
                        config.ppo.entropy_coef, algo.uses_cost_critic, algo.optimizer.grad_of,
                        with_critics=not critic_free)
    for param, grad in zip(algo.params, expected, strict=True):
        torch.testing.assert_close(algo.optimizer.grad_of[id(param)], grad, rtol=1e-4, atol=1e-6)
    ratio_spread = torch.exp(-minibatch.old_log_probs).std()
    assert ratio_spread > 0  # sanity: the minibatch is not degenerate


def updated_policy(config: Config) -> ActorCritic:
    """A 2-member PPO-Lag policy after one update (2 epochs) on a fixed random batch."""
    generators = [torch.Generator().manual_seed(k) for k in range(2)]
    config.ppo.update_epochs = 2
    policy = ActorCritic(2, 4, 2, 1, generators=generators)
    algo = PPOLag(policy, config, 10, generators, np.full((2, 1), 25.0))
    assert algo.uses_manual_gradients is config.ppo.manual_gradients
    g = torch.Generator().manual_seed(3)

    def r(*shape):
        return torch.randn(2, 256, *shape, generator=g)

    batch = RolloutBatch(r(4), r(2), r() - 3.0, r(), r(1), r(), r(1), r(), r(1))
    algo.update(batch, np.array([[30.0], [10.0]]), np.array([100.0, 100.0]))
    return policy


def test_updates_with_either_gradient_agree():
    def run(manual):
        config = Config()
        config.ppo.manual_gradients = manual
        return updated_policy(config).state_dict()

    manual, automatic = run(True), run(False)
    for key, value in manual.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(value, automatic[key], rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.parametrize("manual", [True, False])
def test_critic_free_update_moves_the_actor_as_a_value_loss_of_weight_zero_would(manual):
    """Leaving the critics out changes nothing but the time: the actor ends where a joint update whose value loss
    weighs 0 (and with no critic weight penalty) puts it, and the critics do not move."""
    joint_config = Config()
    joint_config.ppo.manual_gradients, joint_config.ppo.value_coef, joint_config.ppo.critic_l2 = manual, 0.0, 0.0
    alone, joint = updated_policy(critic_free_config(manual)), updated_policy(joint_config)
    untouched = ActorCritic(2, 4, 2, 1, generators=[torch.Generator().manual_seed(k) for k in range(2)])
    for before, after in zip(untouched.critic_parameters(), alone.critic_parameters(), strict=True):
        assert torch.equal(before, after)
    for a, b in zip(alone.actor_parameters(), joint.actor_parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_critic_free_keeps_the_hand_written_gradient_when_the_critics_are_shaped_unlike_the_actor():
    """Critics of other hidden sizes cannot be stacked with the actor; a critic-free update never stacks them."""
    generators = [torch.Generator().manual_seed(k) for k in range(2)]
    policy = ActorCritic(2, 4, 2, 1, critic_hidden=(32,), generators=generators)
    assert policy.stacked_layers(True) is None
    assert PPOLag(policy, critic_free_config(), 10, generators, np.full((2, 1), 25.0)).uses_manual_gradients
    assert not PPOLag(policy, Config(), 10, generators, np.full((2, 1), 25.0)).uses_manual_gradients
