"""The policy-gradient family: vanilla PG, natural PG, TRPO and TRPO-Lagrangian.

All four fit the same critics (Adam, `trpo.critic_*`) and differ only in how the actor moves along the
gradient g of the surrogate mean(pi / pi_old * A), which at pi_old is the policy gradient:

- pg:       theta += lr * preprocess(g), with norm scaling or per-component clipping (`pg.grad_preprocess`).
- npg:      theta += sqrt(2 delta / u'Fu) u with u = F^-1 g from conjugate gradient: the step whose quadratic
            KL model (1/2) x'Fx equals delta. No safeguard: the true KL is only delta to second order.
- trpo:     the npg step, then backtracking until the measured mean KL <= delta and the surrogate improves.
- trpo_lag: trpo on (A_r - lambda . A_c) / (1 + sum lambda), lambda updated once per epoch (as in PPO-Lag).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from saferl.algorithms.ppo import explained_variance
from saferl.buffer import RolloutBatch
from saferl.config import Config, TRPOConfig
from saferl.maths.lagrange import make_multiplier
from saferl.maths.trust_region import (
    backtracking_line_search,
    conjugate_gradient,
    fisher_vector_product_fn,
    flat_grad,
    flat_params,
    set_flat_params,
)
from saferl.policies.actor_critic import ActorCritic, GaussianActor, gaussian_kl

MIN_QUADRATIC_FORM = 1e-12  # floor on u'Fu: a zero gradient gives a zero step, not a division by zero


# -- pure functions shared by the family (and by CPO) ----------------------------------------------------------
def surrogate(actor: GaussianActor, batch: RolloutBatch, advantages: torch.Tensor) -> torch.Tensor:
    """mean(pi / pi_old * A) over the batch: a scalar for advantages [B], one per column for [B, K].

    Its gradient at pi_old is the policy gradient, and its change estimates the change of the return.
    """
    ratio = torch.exp(actor.log_prob(actor(batch.obs), batch.actions) - batch.log_probs)
    if advantages.ndim == 2:
        ratio = ratio.unsqueeze(-1)
    return (ratio * advantages).mean(0)


def mean_kl(actor: GaussianActor, obs: torch.Tensor, old_mean: torch.Tensor, old_log_std: torch.Tensor):
    """Mean KL(pi_old || pi) over the batch states: the quantity the trust region bounds (exact for Gaussians)."""
    return gaussian_kl(old_mean, old_log_std, actor(obs), actor.log_std).mean()


def kl_to_detached_self(actor: GaussianActor, obs: torch.Tensor):
    """kl_fn for the Fisher-vector product: KL from a frozen copy of the current policy (value 0, Hessian F)."""

    def kl_fn() -> torch.Tensor:
        mean = actor(obs)
        return gaussian_kl(mean.detach(), actor.log_std.detach(), mean, actor.log_std).mean()

    return kl_fn


def scale_to_norm(grad: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Norm scaling: rescale to length max_norm when longer; the direction is kept exactly."""
    norm = float(grad.norm())
    return grad * (max_norm / norm) if norm > max_norm else grad


def clip_components(grad: torch.Tensor, bound: float) -> torch.Tensor:
    """Per-component clipping to [-bound, bound]: bounds every coordinate, but can turn the direction."""
    return grad.clamp(-bound, bound)


def fit_critics(policy: ActorCritic, optimizer: torch.optim.Optimizer, batch: RolloutBatch, cfg: TRPOConfig,
                fit_cost: bool) -> dict:
    """MSE regression of V_r (and V_c) on the GAE returns: `critic_epochs` passes of shuffled minibatches."""
    size = len(batch)
    for _ in range(cfg.critic_epochs):
        permutation = torch.randperm(size)
        for start in range(0, size, cfg.critic_minibatch_size):
            index = permutation[start:start + cfg.critic_minibatch_size]
            obs = batch.obs[index]
            loss = (policy.reward_critic(obs).squeeze(-1) - batch.reward_returns[index]).square().mean()
            if fit_cost:
                loss = loss + (policy.cost_critic(obs) - batch.cost_returns[index]).square().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        stats = {"value_loss": float((policy.reward_critic(batch.obs).squeeze(-1) - batch.reward_returns)
                                     .square().mean())}
        if fit_cost:
            stats["cost_value_loss"] = float((policy.cost_critic(batch.obs) - batch.cost_returns).square().mean())
    stats["explained_variance"] = explained_variance(batch.reward_values, batch.reward_returns)
    return stats


# -- algorithms ---------------------------------------------------------------------------------------------
class PG:
    """Vanilla policy gradient: one preprocessed gradient-ascent step on the surrogate per epoch.

    Also the shared base of the family: critics, the optional multiplier, checkpoint state.
    """

    uses_cost_critic = False
    lagrangian = False  # True: advantages become (A_r - lambda . A_c) / (1 + sum lambda)

    def __init__(self, policy: ActorCritic, config: Config, total_epochs: int):
        self.policy = policy
        self.config = config
        self.cfg = config.trpo
        self.total_epochs = max(total_epochs, 1)
        self.epoch = 0
        critic_params = list(policy.reward_critic.parameters())
        if self.uses_cost_critic:
            critic_params += list(policy.cost_critic.parameters())
        self.critic_optimizer = torch.optim.Adam(critic_params, lr=self.cfg.critic_lr, fused=True)
        self.lagrange = make_multiplier(config, policy.num_costs) if self.lagrangian else None

    def update_multiplier(self, mean_episode_cost: np.ndarray) -> dict:
        """Once per epoch, before the policy step (as PPO-Lag); nothing for unconstrained algorithms."""
        if self.lagrange is None:
            return {}
        lambdas = self.lagrange.update(mean_episode_cost)
        return {f"lagrange_multiplier_{k}": float(v) for k, v in enumerate(lambdas)}

    def advantages(self, batch: RolloutBatch) -> torch.Tensor:
        if self.lagrange is None:
            return batch.reward_advantages
        lambdas = torch.as_tensor(self.lagrange.value, dtype=batch.cost_advantages.dtype)
        return (batch.reward_advantages - batch.cost_advantages @ lambdas) / (1.0 + lambdas.sum())

    def update(self, batch: RolloutBatch, mean_episode_cost: np.ndarray, mean_episode_length=None) -> dict:
        pg = self.config.pg
        actor = self.policy.actor
        params = list(actor.parameters())
        stats = self.update_multiplier(mean_episode_cost)
        advantages = self.advantages(batch)
        with torch.no_grad():
            old_mean, old_log_std = actor(batch.obs), actor.log_std.detach().clone()

        surrogate_old = surrogate(actor, batch, advantages)
        grad = flat_grad(surrogate_old, params)
        if pg.grad_preprocess == "norm":
            direction = scale_to_norm(grad, pg.max_grad_norm)
        elif pg.grad_preprocess == "clip":
            direction = clip_components(grad, pg.clip_value)
        else:
            direction = grad
        set_flat_params(params, flat_params(params) + pg.lr * direction)

        with torch.no_grad():
            kl = float(mean_kl(actor, batch.obs, old_mean, old_log_std))
            surrogate_new = float(surrogate(actor, batch, advantages))
        stats.update(fit_critics(self.policy, self.critic_optimizer, batch, self.cfg, self.uses_cost_critic))
        self.epoch += 1
        stats.update(
            approx_kl=kl,  # exact mean KL(old || new); named like PPO's column
            grad_norm=float(grad.norm()),
            step_norm=float(pg.lr * direction.norm()),
            surrogate_improvement=surrogate_new - float(surrogate_old.detach()),
            entropy=float(actor.entropy().detach()),
        )
        return stats

    def state_dict(self) -> dict:
        state = {"critic_optimizer": self.critic_optimizer.state_dict(), "epoch": self.epoch}
        if self.lagrange is not None:
            state["lagrange"] = self.lagrange.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.epoch = state["epoch"]
        if self.lagrange is not None:
            self.lagrange.load_state_dict(state["lagrange"])


def natural_gradient_step(actor, params, batch: RolloutBatch, advantages: torch.Tensor, cfg: TRPOConfig):
    """The step x = sqrt(2 delta / u'Fu) u with u = F^-1 g (CG), so the quadratic KL model (1/2) x'Fx = delta.

    Returns the surrogate at the old parameters (with its graph), its gradient g, and x.
    """
    surrogate_old = surrogate(actor, batch, advantages)
    grad = flat_grad(surrogate_old, params)
    fisher = fisher_vector_product_fn(kl_to_detached_self(actor, batch.obs), params, cfg.cg_damping)
    direction = conjugate_gradient(fisher, grad, cfg.cg_iters)  # u ~ F^-1 g
    quadratic_form = max(float(direction @ fisher(direction)), MIN_QUADRATIC_FORM)  # u'Fu
    return surrogate_old, grad, math.sqrt(2.0 * cfg.target_kl / quadratic_form) * direction


class NPG(PG):
    """Natural policy gradient: the full step sqrt(2 delta / u'Fu) u, u = F^-1 g, taken without checking."""

    def update(self, batch: RolloutBatch, mean_episode_cost: np.ndarray, mean_episode_length=None) -> dict:
        cfg, actor = self.cfg, self.policy.actor
        params = list(actor.parameters())
        stats = self.update_multiplier(mean_episode_cost)
        advantages = self.advantages(batch)
        with torch.no_grad():
            old_mean, old_log_std = actor(batch.obs), actor.log_std.detach().clone()

        surrogate_old, grad, step = natural_gradient_step(actor, params, batch, advantages, cfg)
        set_flat_params(params, flat_params(params) + step)

        with torch.no_grad():
            kl = float(mean_kl(actor, batch.obs, old_mean, old_log_std))
            surrogate_new = float(surrogate(actor, batch, advantages))
        stats.update(fit_critics(self.policy, self.critic_optimizer, batch, self.cfg, self.uses_cost_critic))
        self.epoch += 1
        stats.update(
            approx_kl=kl,
            grad_norm=float(grad.norm()),
            step_norm=float(step.norm()),
            expected_improvement=float(grad @ step),
            surrogate_improvement=surrogate_new - float(surrogate_old.detach()),
            entropy=float(actor.entropy().detach()),
        )
        return stats


class TRPO(PG):
    """NPG's step plus a backtracking line search: accept only a measured KL <= delta and a better surrogate.

    When no fraction passes, the policy keeps its old parameters for this epoch (step_fraction 0).
    """

    def update(self, batch: RolloutBatch, mean_episode_cost: np.ndarray, mean_episode_length=None) -> dict:
        cfg, actor = self.cfg, self.policy.actor
        params = list(actor.parameters())
        stats = self.update_multiplier(mean_episode_cost)
        advantages = self.advantages(batch)
        with torch.no_grad():
            old_mean, old_log_std = actor(batch.obs), actor.log_std.detach().clone()

        surrogate_old, grad, full_step = natural_gradient_step(actor, params, batch, advantages, cfg)
        surrogate_old = float(surrogate_old.detach())

        def evaluate() -> dict:
            return {"kl": float(mean_kl(actor, batch.obs, old_mean, old_log_std)),
                    "surrogate": float(surrogate(actor, batch, advantages))}

        def accept(info: dict, step_fraction: float) -> bool:
            return info["kl"] <= cfg.target_kl and info["surrogate"] > surrogate_old

        search = backtracking_line_search(params, full_step, evaluate, accept, cfg.max_backtracks,
                                          cfg.backtrack_coef)

        with torch.no_grad():
            kl = float(mean_kl(actor, batch.obs, old_mean, old_log_std))
            surrogate_new = float(surrogate(actor, batch, advantages))
        stats.update(fit_critics(self.policy, self.critic_optimizer, batch, self.cfg, self.uses_cost_critic))
        self.epoch += 1
        stats.update(
            approx_kl=kl,
            step_fraction=search.step_fraction,
            line_search_accepted=float(search.accepted),
            grad_norm=float(grad.norm()),
            step_norm=float(search.step_fraction * full_step.norm()),
            expected_improvement=float(search.step_fraction * (grad @ full_step)),
            surrogate_improvement=surrogate_new - surrogate_old,
            entropy=float(actor.entropy().detach()),
        )
        return stats


class TRPOLag(PG):
    """TRPO on the Lagrangian advantage; the multiplier (`lagrange.method`) steps once per epoch."""

    uses_cost_critic = True
    lagrangian = True
    update = TRPO.update  # the same trust-region step: only self.advantages and the multiplier differ
