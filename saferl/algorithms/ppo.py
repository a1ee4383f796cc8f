"""PPO and PPO-Lagrangian for K members at once, with the textbook variants as options.

- objective "clip" (default): the clipped surrogate, with decoupled bounds [1 - clip_low, 1 + clip_high]
  (both default to clip_ratio);
- objective "kl_penalty" (PPO-KL): the unclipped surrogate minus beta * KL(old || new), where beta halves
  when the measured KL is under kl_penalty_target / 1.5 and doubles when it is over 1.5 * target;
- clip_value_loss: the critic's change per update is clipped around its old prediction (PPO2 style).

PPO-Lag differs from PPO in two places: the multiplier is updated once per epoch from the recent mean episode
cost, and the policy's advantage becomes (A_r - lambda . A_c) / (1 + sum lambda).

Fine-tuning from a behaviour-cloned actor (saferl/offline/finetune.py) may add coef * mean KL(reference ||
policy), the reference being the clone as fine-tuning started; the coefficient decays after each update.

All members are updated by one minibatch step: the loss below is each member's loss, summed (members share no
parameter, so each gradient is that member's own), autograd differentiates it, each member's gradient is
clipped per network, and `MemberAdam` steps the members whose KL early stop has not fired.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from saferl.algorithms.common import (
    BehaviourReference,
    PPOMinibatch,
    critic_stats,
    entropy,
    fit_critics,
    lagrangian_advantages,
    make_multiplier,
    member_permutations,
)
from saferl.algorithms.ppo_gradient import clip_loss_gradients
from saferl.buffer import RolloutBatch
from saferl.config import Config
from saferl.maths import gaussian
from saferl.maths.optim import MemberAdam
from saferl.policies.actor_critic import ActorCritic

BC_KL_NEGLIGIBLE = 1e-3  # below this decayed coefficient the KL-to-BC term is dropped
ACTOR, CRITICS = 0, 1  # MemberAdam groups


class PPO:
    uses_cost_critic = False
    supports_behaviour_reference = True

    def __init__(self, policy: ActorCritic, config: Config, anneal_epochs: int, generators: list[torch.Generator],
                 cost_limits: np.ndarray):
        self.policy, self.cfg, self.generators = policy, config.ppo, generators
        self.anneal_epochs = max(anneal_epochs, 1)  # the epochs the actor's lr anneals over (ppo.anneal_lr)
        self.epoch = 0
        members = policy.members
        self.kl_beta = np.full(members, self.cfg.kl_penalty_init_beta)
        # A critic-free estimator (train.advantage, saferl/groups.py) needs no critic: the update runs and steps
        # the actor alone, and the critics stay as built (their forward and backward would be two thirds of
        # PPO-Lag's minibatch step, all of it multiplied by a value loss of weight 0).
        self.critic_free = config.train.critic_free
        self.networks = [policy.actor_parameters()]
        if not self.critic_free:
            self.networks.append(list(policy.reward_critic.parameters()))
            if self.uses_cost_critic:
                self.networks.append(list(policy.cost_critic.parameters()))
        self.params = [p for network in self.networks for p in network]
        # One group per network: each is clipped on its own, the actor has its own (annealed) learning rate.
        lrs = [self.cfg.actor_lr] + [self.cfg.critic_lr] * (len(self.networks) - 1)
        self.optimizer = MemberAdam(self.networks, lrs)
        self.multiplier = make_multiplier(config, cost_limits) if self.uses_cost_critic else None
        self.reference: BehaviourReference | None = None  # the clone, while fine-tuning
        self.loss_fn = torch.compile(self.loss, dynamic=False) if self.cfg.compile else self.loss
        # The hand-written gradient (saferl/algorithms/ppo_gradient.py) covers the default loss; variants, a
        # KL-to-clone term while fine-tuning, and critics shaped unlike the actor (unless critic-free: the actor
        # alone) use autograd of `loss`.
        stackable = self.critic_free or policy.stacked_layers(self.uses_cost_critic) is not None
        self.uses_manual_gradients = (self.cfg.manual_gradients and self.cfg.objective == "clip"
                                      and not self.cfg.clip_value_loss and not self.cfg.compile and stackable)
        self.bc_kl_coef, self.bc_kl_decay = np.zeros(members), 1.0

    def set_behaviour_reference(self, reference: BehaviourReference, coef, decay: float) -> None:
        self.reference = reference
        self.bc_kl_coef = np.broadcast_to(np.asarray(coef, dtype=np.float64), (self.policy.members,)).copy()
        self.bc_kl_decay = float(decay)

    @property
    def clip_low(self) -> float:
        return self.cfg.clip_ratio if self.cfg.clip_low is None else self.cfg.clip_low

    @property
    def clip_high(self) -> float:
        return self.cfg.clip_ratio if self.cfg.clip_high is None else self.cfg.clip_high

    def advantages(self, batch: RolloutBatch, lambdas: np.ndarray | None) -> torch.Tensor:
        return batch.reward_advantages if lambdas is None else lagrangian_advantages(batch, lambdas)

    # -- the loss, written once ------------------------------------------------------------------------------
    def loss(self, minibatch: PPOMinibatch, old_log_std, kl_beta, bc_kl_coef) -> torch.Tensor:
        """Each member's policy surrogate + value regression on its minibatch: [K] (no value term when the
        estimator is critic-free)."""
        cfg, policy, mb = self.cfg, self.policy, minibatch
        if self.critic_free:  # no value loss: the actor alone
            mean, value, cost_value = policy.actor(mb.obs), None, None
        else:
            mean, value, cost_value = policy.forward_heads(mb.obs, with_cost=self.uses_cost_critic)
        log_std = policy.log_std_per_member()
        ratio = torch.exp(gaussian.log_prob(mean, log_std, mb.actions) - mb.old_log_probs)
        if cfg.objective == "clip":
            clipped_ratio = ratio.clamp(1.0 - self.clip_low, 1.0 + self.clip_high)
            policy_loss = -torch.min(ratio * mb.advantages, clipped_ratio * mb.advantages).mean(1)
        else:  # "kl_penalty": exact Gaussian KL to the policy that collected the data
            kl = gaussian.kl(mb.old_means, old_log_std, mean, log_std).mean(1)
            policy_loss = -(ratio * mb.advantages).mean(1) + kl_beta * kl
        if mb.bc_means is not None:
            bc_kl = gaussian.kl(mb.bc_means, self.reference.log_std, mean, log_std).mean(1)
            policy_loss = policy_loss + bc_kl_coef * bc_kl
        entropy = gaussian.entropy(policy.log_std)
        if self.critic_free:
            return policy_loss - cfg.entropy_coef * entropy
        value_loss = self.value_loss(value, mb.old_values, mb.reward_returns)
        if self.uses_cost_critic:
            value_loss = value_loss + self.value_loss(cost_value, mb.old_cost_values, mb.cost_returns)
        return policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy

    def minibatch_loss(self, *args) -> torch.Tensor:
        """`loss`, compiled when ppo.compile says so; a compile that fails (no C++ compiler, say) falls back to
        eager mode with one warning."""
        if self.loss_fn is self.loss:
            return self.loss(*args)
        try:
            return self.loss_fn(*args)
        except Exception as exc:  # torch._dynamo and inductor raise many types; eager is always correct
            warnings.warn(f"torch.compile failed ({type(exc).__name__}); PPO continues in eager mode", stacklevel=2)
            self.loss_fn = self.loss
            return self.loss(*args)

    def value_loss(self, prediction, old_prediction, target) -> torch.Tensor:
        """Squared error per member ([K, B] or [K, B, C] -> [K]); PPO2's clipped form when clip_value_loss."""
        error = (prediction - target).square()
        if self.cfg.clip_value_loss:
            clipped = old_prediction + (prediction - old_prediction).clamp(-self.cfg.value_clip, self.cfg.value_clip)
            error = torch.max(error, (clipped - target).square())
        return error.flatten(1).mean(1)

    # -- the update --------------------------------------------------------------------------------------------
    def update(self, batch: RolloutBatch, episode_cost: np.ndarray, episode_length: np.ndarray) -> dict:
        cfg, policy, members = self.cfg, self.policy, self.policy.members
        stats = {}
        lambdas = None
        if self.multiplier is not None:
            lambdas = self.multiplier.update(episode_cost)
            stats.update({f"lagrange_multiplier_{c}": lambdas[:, c] for c in range(lambdas.shape[1])})
        advantages = self.advantages(batch, lambdas)
        if cfg.anneal_lr:
            self.optimizer.set_lr(ACTOR, cfg.actor_lr * (1.0 - self.epoch / self.anneal_epochs))
        with torch.no_grad():  # the data-collecting policy, for the KL penalty
            old_means = policy.actor(batch.obs)
            old_log_std = policy.log_std_per_member().detach().clone()
        bc_active = self.reference is not None and bool(np.any(self.bc_kl_coef >= BC_KL_NEGLIGIBLE))
        data = PPOMinibatch(batch.obs, batch.actions, batch.log_probs, old_means, advantages, batch.reward_returns,
                            batch.cost_returns, batch.reward_values, batch.cost_values,
                            self.reference.means(batch.obs) if bc_active else None)
        bc_kl_coef = torch.as_tensor(np.where(self.bc_kl_coef >= BC_KL_NEGLIGIBLE, self.bc_kl_coef, 0.0),
                                     dtype=torch.float32)
        kl_beta = torch.as_tensor(self.kl_beta, dtype=torch.float32)

        manual = self.uses_manual_gradients and not bc_active
        active = torch.ones(members, dtype=torch.bool)  # members whose KL early stop has not fired
        epochs_run = np.zeros(members, dtype=np.int64)
        approx_kl, clip_fraction = np.zeros(members), np.zeros(members)
        for _ in range(cfg.update_epochs):
            shuffled = data.shuffled(member_permutations(batch.size, self.generators))
            for start in range(0, batch.size, cfg.minibatch_size):
                minibatch = shuffled.slice(start, start + cfg.minibatch_size)
                if manual:
                    clip_loss_gradients(policy, minibatch, self.clip_low, self.clip_high, cfg.value_coef,
                                        cfg.entropy_coef, self.uses_cost_critic, self.optimizer.grad_of,
                                        with_critics=not self.critic_free)
                else:
                    loss = self.minibatch_loss(minibatch, old_log_std, kl_beta, bc_kl_coef)
                    self.optimizer.flatten(torch.autograd.grad(loss.sum(), self.params))
                if cfg.critic_l2 > 0:  # the critics' weight penalty, either path's gradient (none when critic-free)
                    self.optimizer.add_l2_gradient(list(range(CRITICS, len(self.networks))), cfg.critic_l2)
                if cfg.max_grad_norm is not None:  # per member, and per network unless clip_per_network is off
                    self.optimizer.clip_grad_norm_(cfg.max_grad_norm, per_group=cfg.clip_per_network)
                self.optimizer.step(active)
            ran = active.numpy().copy()
            epochs_run += ran
            kl, fraction = self.policy_shift(batch, old_means, old_log_std)
            approx_kl = np.where(ran, kl, approx_kl)
            clip_fraction = np.where(ran, fraction, clip_fraction)
            if cfg.target_kl is not None:  # early stop: the policy moved too far from the one that collected
                active &= torch.as_tensor(kl <= cfg.target_kl)
            if not active.any():
                break

        if cfg.objective == "kl_penalty":  # adapt beta for the next update (Schulman et al. 2017, sec. 4)
            self.kl_beta = np.where(approx_kl < cfg.kl_penalty_target / 1.5, self.kl_beta / 2.0,
                                    np.where(approx_kl > cfg.kl_penalty_target * 1.5, self.kl_beta * 2.0,
                                             self.kl_beta))
            stats["kl_beta"] = self.kl_beta.copy()
        if self.reference is not None:
            stats.update(bc_kl=self.behaviour_kl(batch.obs), bc_kl_coef=bc_kl_coef.numpy().astype(np.float64))
            self.bc_kl_coef = self.bc_kl_coef * self.bc_kl_decay
        self.epoch += 1
        if not self.critic_free:
            stats.update(critic_stats(policy, batch, self.uses_cost_critic))
        stats.update(approx_kl=approx_kl, clip_fraction=clip_fraction, entropy=entropy(policy),
                     update_epochs=epochs_run, actor_lr=np.full(members, self.optimizer.lrs[ACTOR]))
        return stats

    def fit_critics(self, batch: RolloutBatch) -> dict:
        if self.critic_free:
            return {}
        critics_step = torch.tensor([[network > 0 for network in range(len(self.networks))]]).expand(
            self.policy.members, -1)
        return fit_critics(self.policy, self.optimizer, batch, self.cfg.update_epochs, self.cfg.minibatch_size,
                           self.generators, self.uses_cost_critic, active_groups=critics_step,
                           l2=self.cfg.critic_l2)

    @torch.no_grad()
    def behaviour_kl(self, obs: torch.Tensor) -> np.ndarray:
        """Mean KL(reference || policy) per member: how far fine-tuning has moved from the clone."""
        mean = self.policy.actor(obs)
        return gaussian.kl(self.reference.means(obs), self.reference.log_std, mean,
                           self.policy.log_std_per_member()).mean(1).numpy()

    @torch.no_grad()
    def policy_shift(self, batch: RolloutBatch, old_means: torch.Tensor,
                     old_log_std: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Per member, over its whole batch after an epoch: KL(old || new), by default the estimate
        mean((r - 1) - log r) (unbiased, non-negative; `ppo.kl_estimate=exact`: the Gaussians' exact KL averaged
        over states), and the fraction of samples whose ratio left the clip range."""
        mean, log_std = self.policy.actor(batch.obs), self.policy.log_std_per_member()
        log_ratio = gaussian.log_prob(mean, log_std, batch.actions) - batch.log_probs
        ratio = log_ratio.exp()
        if self.cfg.kl_estimate == "exact":
            kl = gaussian.kl(old_means, old_log_std, mean, log_std).mean(1)
        else:
            kl = ((ratio - 1.0) - log_ratio).mean(1)
        outside = (ratio < 1.0 - self.clip_low) | (ratio > 1.0 + self.clip_high)
        return kl.double().numpy(), outside.float().mean(1).double().numpy()

    def state_dict(self) -> dict:
        state = {"optimizer": self.optimizer.state_dict(), "epoch": self.epoch, "kl_beta": self.kl_beta.copy(),
                 "bc_kl_coef": self.bc_kl_coef.copy()}
        if self.multiplier is not None:
            state["multiplier"] = self.multiplier.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = state["epoch"]
        self.kl_beta = np.asarray(state["kl_beta"], dtype=np.float64).copy()
        self.bc_kl_coef = np.asarray(state["bc_kl_coef"], dtype=np.float64).copy()
        if self.multiplier is not None:
            self.multiplier.load_state_dict(state["multiplier"])


class PPOLag(PPO):
    uses_cost_critic = True
