"""PPO and PPO-Lagrangian, with the textbook variants as options.

- objective "clip" (default): the clipped surrogate, with decoupled bounds [1 - clip_low, 1 + clip_high]
  (both default to clip_ratio);
- objective "kl_penalty" (PPO-KL): the unclipped surrogate minus beta * KL(old || new), where beta halves
  when the measured KL is under kl_penalty_target / 1.5 and doubles when it is over 1.5 * target;
- clip_value_loss: the critic's change per update is clipped around its old prediction (PPO2 style).

PPO-Lag differs from PPO in two places: the multiplier is updated once per epoch from the recent mean
episode cost, and the policy's advantage becomes (A_r - lambda . A_c) / (1 + sum lambda).

Fine-tuning from a behaviour-cloned actor (saferl/finetune.py) may add coef * mean KL(reference || policy),
the reference being the clone as fine-tuning started; `set_behaviour_reference` turns it on, the coefficient
decays after each update, and while it is on the autograd path is used (the hand-written gradient does not
include it).
"""

from __future__ import annotations

import numpy as np
import torch

from saferl.buffer import RolloutBatch
from saferl.config import Config
from saferl.maths.lagrange import LagrangeMultiplier, make_multiplier
from saferl.policies.actor_critic import LOG_SQRT_2PI, ActorCritic, gaussian_kl, mlp_backward, mlp_forward

BC_KL_NEGLIGIBLE = 1e-3  # below this decayed coefficient the KL-to-BC term is dropped (and the fast path returns)


class PPO:
    uses_cost_critic = False

    def __init__(self, policy: ActorCritic, config: Config, total_epochs: int):
        self.policy = policy
        self.cfg = config.ppo
        self.total_epochs = max(total_epochs, 1)
        self.epoch = 0
        self.kl_beta = self.cfg.kl_penalty_init_beta
        critic_params = list(policy.reward_critic.parameters())
        if self.uses_cost_critic:
            critic_params += list(policy.cost_critic.parameters())
        # Actor and critics each live in one flat tensor (the modules' parameters become views of it), so
        # the fused Adam step, the gradient clipping and the zeroing each touch two tensors, not twenty.
        self.flat_params = [flatten_parameters(list(policy.actor.parameters())), flatten_parameters(critic_params)]
        self.optimizer = torch.optim.Adam(
            [{"params": [self.flat_params[0]], "lr": self.cfg.actor_lr},
             {"params": [self.flat_params[1]], "lr": self.cfg.critic_lr}],
            fused=True,
        )
        self.lagrange: LagrangeMultiplier | None = None
        self.loss_fn = torch.compile(self.minibatch_loss) if self.cfg.compile else self.minibatch_loss
        # The hand-written gradient covers the default clip objective; the variants use autograd.
        self.use_manual_gradients = (self.cfg.manual_gradients and self.cfg.objective == "clip"
                                     and not self.cfg.clip_value_loss and not self.cfg.compile)
        self.behaviour_reference = None  # frozen GaussianActor for the KL-to-BC term (fine-tuning only)
        self.bc_kl_coef, self.bc_kl_decay = 0.0, 1.0

    def set_behaviour_reference(self, reference, coef: float, decay: float) -> None:
        """Penalise coef * KL(reference || policy), coef multiplied by `decay` after each update."""
        self.behaviour_reference = reference.requires_grad_(False)
        self.bc_kl_coef, self.bc_kl_decay = float(coef), float(decay)

    @property
    def bc_penalty_active(self) -> bool:
        return self.behaviour_reference is not None and self.bc_kl_coef >= BC_KL_NEGLIGIBLE

    def zero_grad(self) -> None:
        """In place: the parameters' `.grad` are views of the flat gradients and must stay so."""
        for flat in self.flat_params:
            flat.grad.zero_()

    def advantages(self, batch: RolloutBatch) -> torch.Tensor:
        return batch.reward_advantages

    def minibatch_loss(self, obs, actions, old_log_probs, old_means, advantages, reward_returns, cost_returns,
                       old_reward_values, old_cost_values, kl_beta, bc_means=None, bc_kl_coef=None):
        """Policy surrogate + critic regression for one minibatch (compiled when `ppo.compile` is set),
        plus the KL-to-BC term when `bc_means` (the reference's means on these states) is given."""
        cfg, policy = self.cfg, self.policy
        mean = policy.actor(obs)
        ratio = (policy.actor.log_prob(mean, actions) - old_log_probs).exp()
        if cfg.objective == "clip":
            clipped_ratio = ratio.clamp(1.0 - self.clip_low, 1.0 + self.clip_high)
            policy_loss = -torch.min(ratio * advantages, clipped_ratio * advantages).mean()
        else:  # "kl_penalty": exact Gaussian KL to the policy that collected the data
            kl = gaussian_kl(old_means, self.old_log_std, mean, policy.actor.log_std).mean()
            policy_loss = -(ratio * advantages).mean() + kl_beta * kl
        value_loss = self.value_loss(policy.reward_critic(obs).squeeze(-1), old_reward_values, reward_returns)
        if self.uses_cost_critic:
            value_loss = value_loss + self.value_loss(policy.cost_critic(obs), old_cost_values, cost_returns)
        if bc_means is not None:
            reference_log_std = self.behaviour_reference.log_std
            policy_loss = policy_loss + bc_kl_coef * gaussian_kl(bc_means, reference_log_std, mean,
                                                                 policy.actor.log_std).mean()
        return policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * policy.actor.entropy()

    @torch.no_grad()
    def manual_gradients(self, obs, actions, old_log_probs, old_means, advantages, reward_returns, cost_returns,
                         old_reward_values, old_cost_values, kl_beta):
        """The gradient of `minibatch_loss` for the clip objective, written out by hand (no autograd):
        same maths, half the time on a CPU. Overwrites every `.grad`; returns nothing."""
        cfg, policy, size = self.cfg, self.policy, obs.shape[0]
        actor = policy.actor
        actor_outputs = mlp_forward(actor.mean_net, obs)
        mean, log_std = actor_outputs[-1], actor.log_std
        inv_std = torch.exp(-log_std)
        z = (actions - mean) * inv_std
        log_prob = (-0.5 * z * z - log_std).sum(-1) - LOG_SQRT_2PI * z.shape[-1]
        ratio = torch.exp(log_prob - old_log_probs)
        unclipped = ratio * advantages
        clipped = ratio.clamp(1.0 - self.clip_low, 1.0 + self.clip_high) * advantages
        # d(-mean(min(unclipped, clipped)))/d(log_prob): the gradient flows where the unclipped term is the min
        grad_log_prob = ((-advantages / size) * (unclipped <= clipped) * ratio).unsqueeze(-1)
        # log_prob = sum(-z^2/2 - log_std): d/d(mean) = z / std, d/d(log_std) = z^2 - 1; entropy adds +1
        torch.sub((grad_log_prob * (z * z - 1.0)).sum(0), cfg.entropy_coef, out=actor.log_std.grad)
        mlp_backward(actor.mean_net, actor_outputs, grad_log_prob * z * inv_std)
        critic_outputs = mlp_forward(policy.reward_critic.net, obs)
        residual = critic_outputs[-1].squeeze(-1) - reward_returns
        mlp_backward(policy.reward_critic.net, critic_outputs, (residual * (2.0 * cfg.value_coef / size)).unsqueeze(-1))
        if self.uses_cost_critic:
            cost_outputs = mlp_forward(policy.cost_critic.net, obs)
            cost_residual = cost_outputs[-1] - cost_returns
            scale = 2.0 * cfg.value_coef / cost_residual.numel()
            mlp_backward(policy.cost_critic.net, cost_outputs, cost_residual * scale)

    def value_loss(self, prediction, old_prediction, target):
        if not self.cfg.clip_value_loss:
            return (prediction - target).square().mean()
        clipped = old_prediction + (prediction - old_prediction).clamp(-self.cfg.value_clip, self.cfg.value_clip)
        return torch.max((prediction - target).square(), (clipped - target).square()).mean()

    @property
    def clip_low(self) -> float:
        return self.cfg.clip_ratio if self.cfg.clip_low is None else self.cfg.clip_low

    @property
    def clip_high(self) -> float:
        return self.cfg.clip_ratio if self.cfg.clip_high is None else self.cfg.clip_high

    def update(self, batch: RolloutBatch, mean_episode_cost: np.ndarray, mean_episode_length=None) -> dict:
        cfg = self.cfg
        stats = {}
        if self.lagrange is not None:
            lambdas = self.lagrange.update(mean_episode_cost)
            stats.update({f"lagrange_multiplier_{k}": float(v) for k, v in enumerate(lambdas)})
        advantages = self.advantages(batch)
        if cfg.anneal_lr:
            self.optimizer.param_groups[0]["lr"] = cfg.actor_lr * (1.0 - self.epoch / self.total_epochs)
        with torch.no_grad():  # the data-collecting policy, for the KL penalty
            old_means = self.policy.actor(batch.obs)
            self.old_log_std = self.policy.actor.log_std.detach().clone()

        size = len(batch)
        data = [batch.obs, batch.actions, batch.log_probs, old_means, advantages, batch.reward_returns,
                batch.cost_returns, batch.reward_values, batch.cost_values]
        bc_penalty = self.bc_penalty_active
        if bc_penalty:
            with torch.no_grad():
                data.append(self.behaviour_reference(batch.obs))
            bc_kl_coef = torch.tensor(self.bc_kl_coef)
        manual = self.use_manual_gradients and not bc_penalty  # the hand-written gradient lacks the KL term
        shuffled = [torch.empty_like(t) for t in data]  # gathered once per epoch; minibatches are views
        kl_beta = torch.tensor(self.kl_beta)
        epochs_run = 0
        for _ in range(cfg.update_epochs):
            permutation = torch.randperm(size)
            for source, target in zip(data, shuffled, strict=True):
                torch.index_select(source, 0, permutation, out=target)
            for start in range(0, size, cfg.minibatch_size):
                minibatch = [t[start:start + cfg.minibatch_size] for t in shuffled]
                if manual:
                    self.manual_gradients(*minibatch, kl_beta)
                else:
                    bc_args = (minibatch[9], bc_kl_coef) if bc_penalty else ()
                    loss = self.loss_fn(*minibatch[:9], kl_beta, *bc_args)
                    self.zero_grad()
                    loss.backward()
                if cfg.max_grad_norm is not None:
                    clip_grad_norm(self.flat_params, cfg.max_grad_norm)
                self.optimizer.step()
            epochs_run += 1
            approx_kl, clip_fraction = self.policy_shift(batch)
            if cfg.target_kl is not None and approx_kl > cfg.target_kl:
                break  # early stop: the policy moved too far from the one that collected the data

        if cfg.objective == "kl_penalty":  # adapt beta for the next update (Schulman et al. 2017, sec. 4)
            if approx_kl < cfg.kl_penalty_target / 1.5:
                self.kl_beta /= 2.0
            elif approx_kl > cfg.kl_penalty_target * 1.5:
                self.kl_beta *= 2.0
            stats["kl_beta"] = self.kl_beta
        if self.behaviour_reference is not None:
            stats.update(bc_kl=self.behaviour_kl(batch.obs), bc_kl_coef=self.bc_kl_coef if bc_penalty else 0.0)
            self.bc_kl_coef *= self.bc_kl_decay
        self.epoch += 1
        with torch.no_grad():
            value_loss = (self.policy.reward_critic(batch.obs).squeeze(-1) - batch.reward_returns).square().mean()
        stats.update(
            value_loss=float(value_loss),
            approx_kl=approx_kl,
            clip_fraction=clip_fraction,
            entropy=float(self.policy.actor.entropy().detach()),
            update_epochs=epochs_run,
            actor_lr=self.optimizer.param_groups[0]["lr"],
            explained_variance=explained_variance(batch.reward_values, batch.reward_returns),
        )
        return stats

    @torch.no_grad()
    def behaviour_kl(self, obs: torch.Tensor) -> float:
        """Mean KL(reference || policy) over `obs`: how far fine-tuning has moved from the clone."""
        actor, reference = self.policy.actor, self.behaviour_reference
        return float(gaussian_kl(reference(obs), reference.log_std, actor(obs), actor.log_std).mean())

    @torch.no_grad()
    def policy_shift(self, batch: RolloutBatch) -> tuple[float, float]:
        """Over the whole batch, after an epoch: approx KL(old || new) as mean((r - 1) - log r), which is
        unbiased and non-negative, and the fraction of samples whose ratio left the clip range.
        Measured once per epoch rather than per minibatch, to keep the minibatch loop lean."""
        actor = self.policy.actor
        log_ratio = actor.log_prob(actor(batch.obs), batch.actions) - batch.log_probs
        ratio = log_ratio.exp()
        approx_kl = float(((ratio - 1.0) - log_ratio).mean())
        outside = (ratio < 1.0 - self.clip_low) | (ratio > 1.0 + self.clip_high)
        return approx_kl, float(outside.float().mean())

    def state_dict(self) -> dict:
        state = {"optimizer": self.optimizer.state_dict(), "epoch": self.epoch, "kl_beta": self.kl_beta,
                 "bc_kl_coef": self.bc_kl_coef}
        if self.lagrange is not None:
            state["lagrange"] = self.lagrange.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = state["epoch"]
        self.kl_beta = state.get("kl_beta", self.cfg.kl_penalty_init_beta)
        self.bc_kl_coef = state.get("bc_kl_coef", self.bc_kl_coef)
        if self.lagrange is not None:
            self.lagrange.load_state_dict(state["lagrange"])


class PPOLag(PPO):
    uses_cost_critic = True

    def __init__(self, policy: ActorCritic, config: Config, total_epochs: int):
        super().__init__(policy, config, total_epochs)
        self.lagrange = make_multiplier(config, policy.num_costs)

    def advantages(self, batch: RolloutBatch) -> torch.Tensor:
        lambdas = torch.as_tensor(self.lagrange.value)
        return (batch.reward_advantages - batch.cost_advantages @ lambdas) / (1.0 + lambdas.sum())


def flatten_parameters(params: list[torch.nn.Parameter]) -> torch.nn.Parameter:
    """One flat Parameter (with a flat `.grad`) whose slices become the storage of `params` and their grads.

    Writes through either name reach the same memory: the optimiser steps the flat tensor, the modules
    compute with the views, and loading a state dict copies into the views."""
    flat = torch.nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
    flat.grad = torch.zeros_like(flat)
    offset = 0
    for p in params:
        size = p.numel()
        p.data = flat.data[offset:offset + size].view_as(p)
        p.grad = flat.grad[offset:offset + size].view_as(p)
        offset += size
    return flat


def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> None:
    """Global gradient-norm clipping in four foreach ops (torch's version spends longer grouping tensors)."""
    grads = [p.grad for p in params]
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))


def explained_variance(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """1 - Var[y - y_hat] / Var[y]: 1 is a perfect critic, 0 no better than a constant."""
    var_y = targets.var()
    return float("nan") if var_y == 0 else float(1.0 - (targets - predictions).var() / var_y)
