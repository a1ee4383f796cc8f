"""What every algorithm shares: the `Algorithm` protocol the runner and fine-tuning call, the Lagrangian
advantage, minibatch shuffling per member (and PPO's named minibatch), the critics' regression, and explained
variance.

Every tensor has the member axis first ([K, B, ...]); every statistic an algorithm returns is an array [K].
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np
import torch

from saferl.buffer import RolloutBatch
from saferl.config import Config
from saferl.maths import gaussian
from saferl.maths.lagrange import LagrangeMultiplier, PIDLagrangeMultiplier
from saferl.maths.optim import MemberAdam
from saferl.policies.actor_critic import ActorCritic
from saferl.policies.ensemble import mlp_forward

Multiplier = LagrangeMultiplier | PIDLagrangeMultiplier


class Algorithm(Protocol):
    """The interface the runner and fine-tuning use; nothing else is looked up on an algorithm."""

    uses_cost_critic: bool  # whether the cost critic is trained (and cost advantages matter)
    multiplier: Multiplier | None  # the Lagrange multipliers [K, C] of the Lagrangian methods, else None
    supports_behaviour_reference: bool  # whether `set_behaviour_reference` adds a KL-to-clone term

    def update(self, batch: RolloutBatch, episode_cost: np.ndarray, episode_length: np.ndarray) -> dict:
        """One policy (and critic) update per epoch from the batch; episode_cost [K, C] and episode_length [K]
        are means over each member's recent episodes (NaN where none finished). Returns statistics [K]."""

    def fit_critics(self, batch: RolloutBatch) -> dict:
        """Regress the critics on the batch's returns, the actor untouched (fine-tuning's warm-up)."""

    def set_behaviour_reference(self, reference: BehaviourReference, coef: float, decay: float) -> None:
        """Penalise coef * KL(reference || policy), coef multiplied by `decay` after each update."""

    def state_dict(self) -> dict:
        """Optimiser and multiplier state; every tensor/array with the member axis first (plain numbers are
        shared by all members), so a member's slice is its own run's state."""

    def load_state_dict(self, state: dict) -> None: ...


def make_multiplier(config: Config, cost_limits: np.ndarray) -> Multiplier:
    """The multiplier `config.lagrange.method` names ("gradient", the default, or "pid") for limits [K, C]."""
    lag = config.lagrange
    if lag.method == "pid":
        return PIDLagrangeMultiplier(cost_limits, lag.pid_kp, lag.pid_ki, lag.pid_kd, lag.pid_cost_smoothing,
                                     lag.multiplier_init)
    return LagrangeMultiplier(cost_limits, lag.multiplier_init, lag.multiplier_lr)


class BehaviourReference:
    """A frozen copy of a (cloned) actor: its means on given states and its log-std [K, 1, A]."""

    def __init__(self, policy: ActorCritic, log_std: torch.Tensor):
        self.layers = [(w.detach().clone(), b.detach().clone()) for w, b in policy.actor.layers()]
        self.activation = policy.actor.activation
        self.log_std = log_std.detach().clone().reshape(policy.members, 1, -1)

    @torch.no_grad()
    def means(self, obs: torch.Tensor) -> torch.Tensor:
        return mlp_forward(self.layers, obs, self.activation)


def lagrangian_advantages(batch: RolloutBatch, lambdas: np.ndarray) -> torch.Tensor:
    """(A_r - lambda . A_c) / (1 + sum lambda) per member: lambdas [K, C] -> advantages [K, B]."""
    lambdas = torch.as_tensor(lambdas, dtype=batch.cost_advantages.dtype)
    penalty = torch.einsum("kbc,kc->kb", batch.cost_advantages, lambdas)
    return (batch.reward_advantages - penalty) / (1.0 + lambdas.sum(1, keepdim=True))


def member_permutations(size: int, generators: list[torch.Generator]) -> torch.Tensor:
    """[K, size]: row k a permutation drawn from member k's generator (as a one-member run would draw it)."""
    return torch.stack([torch.randperm(size, generator=generator) for generator in generators])


def shuffle(tensors: list[torch.Tensor], permutations: torch.Tensor) -> list[torch.Tensor]:
    """Row k of every [K, B, ...] tensor reordered by permutations[k]; minibatches are then plain slices."""
    rows = torch.arange(permutations.shape[0]).unsqueeze(1)
    return [t[rows, permutations] for t in tensors]


class PPOMinibatch(NamedTuple):
    """What PPO's loss and its hand-written gradient read, by name: [K, B, ...] tensors (B the minibatch, or the
    whole batch before shuffling)."""

    obs: torch.Tensor
    actions: torch.Tensor
    old_log_probs: torch.Tensor  # under the policy that collected the data
    old_means: torch.Tensor  # that policy's action means (the KL penalty's reference)
    advantages: torch.Tensor  # what the surrogate weighs: A_r, or PPO-Lag's (A_r - lambda . A_c) / (1 + sum lambda)
    reward_returns: torch.Tensor
    cost_returns: torch.Tensor  # [K, B, C]
    old_values: torch.Tensor
    old_cost_values: torch.Tensor  # [K, B, C]
    bc_means: torch.Tensor | None = None  # the clone's means, while a KL-to-clone term is on

    def shuffled(self, permutations: torch.Tensor) -> PPOMinibatch:
        """Each member's samples reordered by its row of `permutations` [K, B]."""
        present = [t for t in self if t is not None]
        reordered = iter(shuffle(present, permutations))
        return PPOMinibatch(*(None if t is None else next(reordered) for t in self))

    def slice(self, start: int, stop: int) -> PPOMinibatch:
        """Samples start..stop of every member."""
        return PPOMinibatch(*(None if t is None else t[:, start:stop] for t in self))


def value_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per member: [K, B] or [K, B, C] -> [K]."""
    return (prediction - target).square().flatten(1).mean(1)


def fit_critics(policy: ActorCritic, optimizer: MemberAdam, batch: RolloutBatch, epochs: int,
                minibatch_size: int, generators: list[torch.Generator], fit_cost: bool,
                active_groups: torch.Tensor | None = None, l2: float = 0.0,
                max_grad_norm: float | None = None) -> dict:
    """MSE regression of V_r (and V_c) on the GAE returns: `epochs` passes of shuffled minibatches, all members
    at once. `optimizer` holds the critics' parameters (and, for PPO, the actor's, which `active_groups` [K, G]
    then freezes). Optionally OmniSafe's two extras: + l2 x (sum of squared critic weights) in the loss, and
    each critic's gradient clipped to `max_grad_norm` per member."""
    critics = [policy.reward_critic] + ([policy.cost_critic] if fit_cost else [])
    params = [p for critic in critics for p in critic.parameters()]
    sizes = [len(list(critic.parameters())) for critic in critics]
    position = {id(p): i for i, p in enumerate(optimizer.params)}
    data = [batch.obs, batch.reward_returns, batch.cost_returns]
    for _ in range(epochs):
        obs, reward_returns, cost_returns = shuffle(data, member_permutations(batch.size, generators))
        for start in range(0, batch.size, minibatch_size):
            end = start + minibatch_size
            x = obs[:, start:end]
            loss = value_loss(policy.reward_critic(x).squeeze(-1), reward_returns[:, start:end])
            if fit_cost:
                loss = loss + value_loss(policy.cost_critic(x), cost_returns[:, start:end])
            critic_grads = list(torch.autograd.grad(loss.sum(), params))
            if l2 > 0:
                critic_grads = [g + 2.0 * l2 * p.detach() for p, g in zip(params, critic_grads, strict=True)]
            if max_grad_norm is not None:
                critic_grads = clip_per_member(critic_grads, sizes, max_grad_norm)
            grads: list[torch.Tensor | None] = [None] * len(optimizer.params)
            for p, g in zip(params, critic_grads, strict=True):
                grads[position[id(p)]] = g
            optimizer.flatten(grads)
            optimizer.step(active_groups)
    return critic_stats(policy, batch, fit_cost)


@torch.no_grad()
def clip_per_member(grads: list[torch.Tensor], sizes: list[int], max_norm: float) -> list[torch.Tensor]:
    """Gradients [K, ...] in consecutive runs of `sizes` tensors (one run per network), each member's run scaled
    to a norm of at most max_norm (as torch's clip_grad_norm_ for each member's network)."""
    clipped, start = [], 0
    for size in sizes:
        run = grads[start:start + size]
        norm = torch.sqrt(sum(g.reshape(g.shape[0], -1).square().sum(1) for g in run))
        scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
        clipped += [g * scale.reshape(-1, *[1] * (g.ndim - 1)) for g in run]
        start += size
    return clipped


@torch.no_grad()
def critic_stats(policy: ActorCritic, batch: RolloutBatch, with_cost: bool) -> dict:
    value, cost_value = policy.values(batch.obs)
    stats = {"value_loss": value_loss(value, batch.reward_returns).numpy(),
             "explained_variance": explained_variance(batch.reward_values, batch.reward_returns)}
    if with_cost:
        stats["cost_value_loss"] = value_loss(cost_value, batch.cost_returns).numpy()
    return stats


def explained_variance(predictions: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """1 - Var[y - y_hat] / Var[y] per member ([K, B] -> [K]): 1 is a perfect critic, 0 a constant's worth."""
    var_y = targets.var(1)
    ev = 1.0 - (targets - predictions).var(1) / var_y
    return torch.where(var_y == 0, torch.nan, ev).numpy()


def entropy(policy: ActorCritic) -> np.ndarray:
    return gaussian.entropy(policy.log_std.detach()).numpy()
