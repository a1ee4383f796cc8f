"""The policy-gradient family: vanilla PG, natural PG, TRPO and TRPO-Lagrangian.

All four fit the same critics (Adam, their section's `critic_*`) and differ only in how the actor moves along the
gradient g of the surrogate mean(pi / pi_old * A), which at pi_old is the policy gradient:

- pg:       theta += lr * preprocess(g), with norm scaling or per-component clipping (`pg.grad_preprocess`).
- npg:      theta += sqrt(2 delta / u'Fu) u with u = F^-1 g from conjugate gradient: the step whose quadratic
            KL model (1/2) x'Fx equals delta. No safeguard: the true KL is only delta to second order.
- trpo:     the npg step, then backtracking until the measured mean KL <= delta and the surrogate improves.
- trpo_lag: trpo on (A_r - lambda . A_c) / (1 + sum lambda), lambda updated once per epoch (as in PPO-Lag).

With several members the critics are fitted for all members at once; the actor step, whose cost is a few
dozen full-batch passes rather than thousands of minibatch steps, loops over members, each one a plain
single-policy computation on flat parameter vectors (`MemberActor`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from saferl.algorithms.common import (
    BehaviourReference,
    entropy,
    fit_critics,
    lagrangian_advantages,
    make_multiplier,
)
from saferl.buffer import RolloutBatch
from saferl.config import Config, TrustRegionConfig
from saferl.maths import gaussian
from saferl.maths.optim import MemberAdam
from saferl.maths.trust_region import (
    backtracking_line_search,
    conjugate_gradient,
    flat_grad,
    flat_params,
    set_flat_params,
)
from saferl.policies.actor_critic import ActorCritic
from saferl.policies.ensemble import DERIVATIVES

MIN_QUADRATIC_FORM = 1e-12  # floor on u'Fu: a zero gradient gives a zero step, not a division by zero


class MemberActor:
    """Member k's actor for the trust-region maths: its parameters as views into the ensemble (writing them
    moves the ensemble), a mean function on [B, D] states and its log-std [A]."""

    def __init__(self, policy: ActorCritic, member: int):
        self.activation, self.activation_name = policy.actor.activation, policy.actor.activation_name
        self.layers = [(w[member], b[member]) for w, b in policy.actor.layers()]
        self.log_std = policy.log_std[member]
        self.params = [t for layer in self.layers for t in layer] + [self.log_std]

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        return self.forward_layers(obs)[1][-1]

    def forward_layers(self, obs: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Each layer's input and its (activated) output, the last output being the mean: the forward pass, with
        what the closed-form Fisher product needs kept."""
        inputs, outputs, x = [], [], obs
        for index, (weight, bias) in enumerate(self.layers):
            inputs.append(x)
            x = torch.addmm(bias, x, weight)
            if index < len(self.layers) - 1:
                x = self.activation(x)
            outputs.append(x)
        return inputs, outputs

    def log_prob(self, mean: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return gaussian.log_prob(mean, self.log_std, actions)


def member_batch(batch: RolloutBatch, member: int) -> RolloutBatch:
    """Member k's samples as a batch of [B, ...] tensors (views)."""
    return RolloutBatch(*[t[member] for t in batch.fields()])


class MemberUpdate(NamedTuple):
    """What one member's actor step reads: its actor, its samples, the advantages the family's surrogate weighs,
    and the constraint measurements of its recent episodes (CPO's c and T)."""

    member: int
    actor: MemberActor
    batch: RolloutBatch  # [B, ...] views of the member's samples
    advantages: torch.Tensor  # [B]: A_r, or trpo_lag's (A_r - lambda . A_c) / (1 + sum lambda)
    episode_cost: np.ndarray  # [C]: mean cost of the recent episodes, NaN while none finished
    episode_length: float  # their mean length, NaN while none finished


# -- pure functions shared by the family (and by CPO) ----------------------------------------------------------
def surrogate(actor: MemberActor, batch: RolloutBatch, advantages: torch.Tensor) -> torch.Tensor:
    """mean(pi / pi_old * A) over one member's batch: a scalar for advantages [B], one per column for [B, C].

    Its gradient at pi_old is the policy gradient, and its change estimates the change of the return.
    """
    ratio = torch.exp(actor.log_prob(actor(batch.obs), batch.actions) - batch.log_probs)
    if advantages.ndim == 2:
        ratio = ratio.unsqueeze(-1)
    return (ratio * advantages).mean(0)


def kl_scale(mode: str, act_dim: int) -> float:
    """The factor from the joint KL to the one the trust region bounds: 1 for "joint", 1 / act_dim for
    "per_dim" (OmniSafe's mean over action dimensions of its factorised Normal)."""
    return 1.0 / act_dim if mode == "per_dim" else 1.0


def mean_kl(actor: MemberActor, obs: torch.Tensor, old_mean: torch.Tensor, old_log_std: torch.Tensor,
            scale: float = 1.0):
    """Mean KL(pi_old || pi) over the batch states, times `kl_scale`: the quantity the trust region bounds
    (exact for Gaussians)."""
    return scale * gaussian.kl(old_mean, old_log_std, actor(obs), actor.log_std).mean()


def kl_to_detached_self(actor: MemberActor, obs: torch.Tensor, scale: float = 1.0):
    """The Fisher's definition, as a kl_fn for maths.trust_region's double-backprop product: the KL from a
    frozen copy of the current policy (value 0, Hessian F, times `kl_scale`). The updates use the closed form
    `gaussian_fisher_product_fn`, tested equal to it."""

    def kl_fn() -> torch.Tensor:
        mean = actor(obs)
        return scale * gaussian.kl(mean.detach(), actor.log_std.detach(), mean, actor.log_std).mean()

    return kl_fn


def gaussian_fisher_product_fn(actor: MemberActor, obs: torch.Tensor, scale: float, damping: float):
    """v -> (F + damping I) v for the Gaussian policy in closed form: the Hessian of the mean KL at the current
    parameters is `scale` x (mean over states of J' diag(1/std^2) J for the mean's parameters, J the Jacobian
    of the mean; 2 I for the log-std; no cross term). J v by a forward pass carrying tangents, J'(.) by one
    backward pass through a graph kept for all CG iterations: the same matrix as double backprop through the KL
    (`kl_to_detached_self` with `fisher_vector_product_fn`, tested equal), at about half its cost."""
    derivative = DERIVATIVES[actor.activation_name]
    inputs, outputs = actor.forward_layers(obs)
    mean = outputs[-1]
    precision = torch.exp(-2.0 * actor.log_std.detach()) * (scale / obs.shape[0])
    layer_params = [t for layer in actor.layers for t in layer]
    sizes = [p.numel() for p in actor.params]

    def matvec(vector: torch.Tensor) -> torch.Tensor:
        parts = torch.split(vector, sizes)
        with torch.no_grad():
            tangent = None
            for index, (weight, _) in enumerate(actor.layers):
                d_weight = parts[2 * index].view_as(weight)
                d_bias = parts[2 * index + 1]
                dz = torch.addmm(d_bias, inputs[index].detach(), d_weight)
                if tangent is not None:
                    dz = dz + tangent @ weight
                tangent = dz * derivative(outputs[index].detach()) if index < len(actor.layers) - 1 else dz
        grads = torch.autograd.grad(mean, layer_params, grad_outputs=tangent * precision, retain_graph=True)
        log_std_part = 2.0 * scale * parts[-1]
        return torch.cat([g.reshape(-1) for g in grads] + [log_std_part]) + damping * vector

    return matvec


def scale_to_norm(grad: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Norm scaling: rescale to length max_norm when longer; the direction is kept exactly."""
    norm = float(grad.norm())
    return grad * (max_norm / norm) if norm > max_norm else grad


def clip_components(grad: torch.Tensor, bound: float) -> torch.Tensor:
    """Per-component clipping to [-bound, bound]: bounds every coordinate, but can turn the direction."""
    return grad.clamp(-bound, bound)


def natural_gradient_step(actor: MemberActor, batch: RolloutBatch, advantages: torch.Tensor,
                          cfg: TrustRegionConfig):
    """The step x = sqrt(2 delta / u'Fu) u with u = F^-1 g (CG), so the quadratic KL model (1/2) x'Fx = delta.

    Returns the surrogate at the old parameters (with its graph), its gradient g, and x.
    """
    surrogate_old = surrogate(actor, batch, advantages)
    grad = flat_grad(surrogate_old, actor.params)
    scale = kl_scale(cfg.kl, batch.actions.shape[-1])
    fisher = gaussian_fisher_product_fn(actor, batch.obs, scale, cfg.cg_damping)
    direction = conjugate_gradient(fisher, grad, cfg.cg_iters)  # u ~ F^-1 g
    quadratic_form = max(float(direction @ fisher(direction)), MIN_QUADRATIC_FORM)  # u'Fu
    return surrogate_old, grad, math.sqrt(2.0 * cfg.target_kl / quadratic_form) * direction


def stack_stats(per_member: list[dict]) -> dict:
    """[{name: value} per member] -> {name: array [K]}."""
    return {key: np.array([stats[key] for stats in per_member], dtype=np.float64) for key in per_member[0]}


# -- algorithms ---------------------------------------------------------------------------------------------
class PG:
    """Vanilla policy gradient: one preprocessed gradient-ascent step on the surrogate per epoch.

    Also the shared base of the family: critics, the optional multiplier, checkpoint state.
    """

    uses_cost_critic = False
    supports_behaviour_reference = False
    section = "pg"  # the config section this algorithm reads

    def __init__(self, policy: ActorCritic, config: Config, anneal_epochs: int, generators: list[torch.Generator],
                 cost_limits: np.ndarray, lagrangian: bool = False):
        """lagrangian=True (trpo_lag): advantages become (A_r - lambda . A_c) / (1 + sum lambda), lambda the
        `lagrange.*` multiplier, and the cost critic is fitted."""
        self.policy, self.config, self.generators = policy, config, generators
        self.uses_cost_critic = type(self).uses_cost_critic or lagrangian
        self.cfg = getattr(config, self.section)
        self.epoch = 0
        self.critic_optimizer = MemberAdam([policy.critic_parameters(cost=self.uses_cost_critic)],
                                           [self.cfg.critic_lr])
        self.multiplier = make_multiplier(config, cost_limits) if lagrangian else None
        self.critic_free = config.train.critic_free  # a group estimator's advantages: no critic to fit

    def set_behaviour_reference(self, reference: BehaviourReference, coef, decay: float) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no KL-to-clone term")

    def update_multiplier(self, episode_cost: np.ndarray) -> tuple[np.ndarray | None, dict]:
        """Once per epoch, before the policy step (as PPO-Lag); nothing for unconstrained algorithms."""
        if self.multiplier is None:
            return None, {}
        lambdas = self.multiplier.update(episode_cost)
        return lambdas, {f"lagrange_multiplier_{c}": lambdas[:, c] for c in range(lambdas.shape[1])}

    def fit_critics(self, batch: RolloutBatch) -> dict:
        if self.critic_free:
            return {}
        return fit_critics(self.policy, self.critic_optimizer, batch, self.cfg.critic_epochs,
                           self.cfg.critic_minibatch_size, self.generators, self.uses_cost_critic,
                           l2=self.cfg.critic_l2, max_grad_norm=self.cfg.critic_max_grad_norm)

    def update(self, batch: RolloutBatch, episode_cost: np.ndarray, episode_length: np.ndarray) -> dict:
        lambdas, stats = self.update_multiplier(episode_cost)
        advantages = batch.reward_advantages if lambdas is None else lagrangian_advantages(batch, lambdas)
        members = self.policy.members
        episode_cost = np.asarray(episode_cost, dtype=np.float64).reshape(members, -1)
        episode_length = np.asarray(episode_length, dtype=np.float64).reshape(members)
        actor_stats = stack_stats([
            self.actor_step(MemberUpdate(k, MemberActor(self.policy, k), member_batch(batch, k), advantages[k],
                                         episode_cost[k], float(episode_length[k])))
            for k in range(members)])
        stats.update(actor_stats)
        stats.update(self.fit_critics(batch))
        stats["entropy"] = entropy(self.policy)
        self.epoch += 1
        return stats

    def actor_step(self, step: MemberUpdate) -> dict:
        pg, actor, batch, advantages = self.cfg, step.actor, step.batch, step.advantages
        with torch.no_grad():
            old_mean, old_log_std = actor(batch.obs), actor.log_std.detach().clone()
        surrogate_old = surrogate(actor, batch, advantages)
        grad = flat_grad(surrogate_old, actor.params)
        if pg.grad_preprocess == "norm":
            direction = scale_to_norm(grad, pg.max_grad_norm)
        elif pg.grad_preprocess == "clip":
            direction = clip_components(grad, pg.clip_value)
        else:
            direction = grad
        set_flat_params(actor.params, flat_params(actor.params) + pg.lr * direction)
        with torch.no_grad():
            kl = float(mean_kl(actor, batch.obs, old_mean, old_log_std))
            surrogate_new = float(surrogate(actor, batch, advantages))
        return {"kl": kl,  # the exact mean KL(old || new) (PPO logs its estimate as approx_kl)
                "grad_norm": float(grad.norm()), "step_norm": float(pg.lr * direction.norm()),
                "surrogate_improvement": surrogate_new - float(surrogate_old.detach())}

    def state_dict(self) -> dict:
        state = {"critic_optimizer": self.critic_optimizer.state_dict(), "epoch": self.epoch}
        if self.multiplier is not None:
            state["multiplier"] = self.multiplier.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.epoch = state["epoch"]
        if self.multiplier is not None:
            self.multiplier.load_state_dict(state["multiplier"])


class NPG(PG):
    """Natural policy gradient: the full step sqrt(2 delta / u'Fu) u, u = F^-1 g, taken without checking."""

    section = "npg"

    def actor_step(self, step: MemberUpdate) -> dict:
        actor, batch, advantages = step.actor, step.batch, step.advantages
        with torch.no_grad():
            old_mean, old_log_std = actor(batch.obs), actor.log_std.detach().clone()
        surrogate_old, grad, natural_step = natural_gradient_step(actor, batch, advantages, self.cfg)
        set_flat_params(actor.params, flat_params(actor.params) + natural_step)
        with torch.no_grad():
            kl = float(mean_kl(actor, batch.obs, old_mean, old_log_std, kl_scale(self.cfg.kl, batch.actions.shape[-1])))
            surrogate_new = float(surrogate(actor, batch, advantages))
        return {"kl": kl, "grad_norm": float(grad.norm()), "step_norm": float(natural_step.norm()),
                "expected_improvement": float(grad @ natural_step),
                "surrogate_improvement": surrogate_new - float(surrogate_old.detach())}


class TRPO(PG):
    """NPG's step plus a backtracking line search: accept only a measured KL <= delta and a better surrogate.

    When no fraction passes, the policy keeps its old parameters for this epoch (step_fraction 0).
    """

    section = "trpo"

    def actor_step(self, step: MemberUpdate) -> dict:
        cfg, actor, batch, advantages = self.cfg, step.actor, step.batch, step.advantages
        with torch.no_grad():
            old_mean, old_log_std = actor(batch.obs), actor.log_std.detach().clone()
        surrogate_old, grad, full_step = natural_gradient_step(actor, batch, advantages, cfg)
        surrogate_old = float(surrogate_old.detach())
        scale = kl_scale(cfg.kl, batch.actions.shape[-1])

        def measure() -> dict:
            return {"kl": float(mean_kl(actor, batch.obs, old_mean, old_log_std, scale)),
                    "surrogate": float(surrogate(actor, batch, advantages))}

        def accept(info: dict, step_fraction: float) -> bool:
            return info["kl"] <= cfg.target_kl and info["surrogate"] > surrogate_old

        search = backtracking_line_search(actor.params, full_step, measure, accept, cfg.max_backtracks,
                                          cfg.backtrack_coef)
        with torch.no_grad():
            kl = float(mean_kl(actor, batch.obs, old_mean, old_log_std, scale))
            surrogate_new = float(surrogate(actor, batch, advantages))
        return {"kl": kl, "step_fraction": search.step_fraction,
                "line_search_accepted": float(search.accepted), "grad_norm": float(grad.norm()),
                "step_norm": float(search.step_fraction * full_step.norm()),
                "expected_improvement": float(search.step_fraction * (grad @ full_step)),
                "surrogate_improvement": surrogate_new - surrogate_old}
