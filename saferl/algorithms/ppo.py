"""PPO (clipped surrogate) and PPO-Lagrangian.

PPO-Lag differs from PPO in two lines: the multiplier is updated once per epoch from the recent
mean episode cost, and the policy's advantage becomes (A_r - lambda . A_c) / (1 + sum lambda).
"""

from __future__ import annotations

import numpy as np
import torch

from policies.actor_critic import ActorCritic
from saferl.buffer import RolloutBatch
from saferl.config import Config
from saferl.lagrange import LagrangeMultiplier


class PPO:
    uses_cost_critic = False

    def __init__(self, policy: ActorCritic, config: Config, total_epochs: int):
        self.policy = policy
        self.cfg = config.ppo
        self.total_epochs = max(total_epochs, 1)
        self.epoch = 0
        critic_params = list(policy.reward_critic.parameters())
        if self.uses_cost_critic:
            critic_params += list(policy.cost_critic.parameters())
        self.params = list(policy.actor.parameters()) + critic_params
        # One optimiser with two parameter groups: a single fused Adam step per minibatch.
        self.optimizer = torch.optim.Adam(
            [{"params": list(policy.actor.parameters()), "lr": self.cfg.actor_lr},
             {"params": critic_params, "lr": self.cfg.critic_lr}],
            fused=True,
        )
        self.lagrange: LagrangeMultiplier | None = None
        self.loss_fn = torch.compile(self.minibatch_loss) if self.cfg.compile else self.minibatch_loss

    def advantages(self, batch: RolloutBatch) -> torch.Tensor:
        return batch.reward_advantages

    def minibatch_loss(self, obs, actions, old_log_probs, advantages, reward_returns, cost_returns):
        """Clipped surrogate + critic regression for one minibatch (compiled when `ppo.compile` is set)."""
        cfg, policy = self.cfg, self.policy
        ratio = (policy.actor.log_prob(policy.actor(obs), actions) - old_log_probs).exp()
        clipped_ratio = ratio.clamp(1.0 - cfg.clip_ratio, 1.0 + cfg.clip_ratio)
        policy_loss = -torch.min(ratio * advantages, clipped_ratio * advantages).mean()
        value_loss = (policy.reward_critic(obs).squeeze(-1) - reward_returns).square().mean()
        if self.uses_cost_critic:
            value_loss = value_loss + (policy.cost_critic(obs) - cost_returns).square().mean()
        return policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * policy.actor.entropy()

    def update(self, batch: RolloutBatch, mean_episode_cost: np.ndarray) -> dict:
        cfg = self.cfg
        stats = {}
        if self.lagrange is not None:
            lambdas = self.lagrange.update(mean_episode_cost)
            stats.update({f"lagrange_multiplier_{k}": float(v) for k, v in enumerate(lambdas)})
        advantages = self.advantages(batch)
        if cfg.anneal_lr:
            self.optimizer.param_groups[0]["lr"] = cfg.actor_lr * (1.0 - self.epoch / self.total_epochs)

        size = len(batch)
        data = [batch.obs, batch.actions, batch.log_probs, advantages, batch.reward_returns, batch.cost_returns]
        shuffled = [torch.empty_like(t) for t in data]  # gathered once per epoch; minibatches are views
        epochs_run = 0
        for _ in range(cfg.update_epochs):
            permutation = torch.randperm(size)
            for source, target in zip(data, shuffled):
                torch.index_select(source, 0, permutation, out=target)
            for start in range(0, size, cfg.minibatch_size):
                minibatch = [t[start:start + cfg.minibatch_size] for t in shuffled]
                loss = self.loss_fn(*minibatch)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm, foreach=True)
                self.optimizer.step()
            epochs_run += 1
            approx_kl, clip_fraction = self.policy_shift(batch)
            if cfg.target_kl is not None and approx_kl > cfg.target_kl:
                break  # early stop: the policy moved too far from the one that collected the data

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
    def policy_shift(self, batch: RolloutBatch) -> tuple[float, float]:
        """Over the whole batch, after an epoch: approx KL(old || new) as mean((r - 1) - log r), which is
        unbiased and non-negative, and the fraction of samples whose ratio left the clip range.
        Measured once per epoch rather than per minibatch, to keep the minibatch loop lean."""
        actor = self.policy.actor
        log_ratio = actor.log_prob(actor(batch.obs), batch.actions) - batch.log_probs
        ratio = log_ratio.exp()
        approx_kl = float(((ratio - 1.0) - log_ratio).mean())
        return approx_kl, float(((ratio - 1.0).abs() > self.cfg.clip_ratio).float().mean())

    def state_dict(self) -> dict:
        state = {"optimizer": self.optimizer.state_dict(), "epoch": self.epoch}
        if self.lagrange is not None:
            state["lagrange"] = self.lagrange.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = state["epoch"]
        if self.lagrange is not None:
            self.lagrange.load_state_dict(state["lagrange"])


class PPOLag(PPO):
    uses_cost_critic = True

    def __init__(self, policy: ActorCritic, config: Config, total_epochs: int):
        super().__init__(policy, config, total_epochs)
        lag = config.lagrange
        self.lagrange = LagrangeMultiplier(policy.num_costs, lag.cost_limit, lag.multiplier_init, lag.multiplier_lr)

    def advantages(self, batch: RolloutBatch) -> torch.Tensor:
        lambdas = torch.as_tensor(self.lagrange.value)
        return (batch.reward_advantages - batch.cost_advantages @ lambdas) / (1.0 + lambdas.sum())


def explained_variance(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """1 - Var[y - y_hat] / Var[y]: 1 is a perfect critic, 0 no better than a constant."""
    var_y = targets.var()
    return float("nan") if var_y == 0 else float(1.0 - (targets - predictions).var() / var_y)
