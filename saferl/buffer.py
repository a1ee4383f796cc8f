"""One constrained rollout buffer for every algorithm: reward GAE and cost GAE over preallocated arrays.

Storage is numpy arrays of shape [T, N, ...] with torch views on the same memory, so collection writes
with numpy (cheap per step) and the learner reads tensors without a copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    last_values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    final_values: np.ndarray,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation with correct episode ends; returns (advantages, value targets).

    Shapes: rewards/values/final_values [T, N] or [T, N, K]; last_values [N] or [N, K] (value of the obs
    after the last step); terminated/truncated [T, N] bool. The bootstrap after step t is 0 when the
    episode terminated, V(final obs) when it was truncated, V(s_{t+1}) otherwise; the advantage
    recursion is cut at every episode end.
    """
    num_steps = rewards.shape[0]
    extra_dims = (1,) * (rewards.ndim - 2)
    terminated = terminated.reshape(terminated.shape + extra_dims)
    truncated = truncated.reshape(truncated.shape + extra_dims)
    next_values = np.concatenate([values[1:], last_values[None]], axis=0)
    next_values = np.where(truncated, final_values, next_values) * (1.0 - terminated)
    deltas = rewards + gamma * next_values - values
    continues = gamma * lam * (1.0 - (terminated | truncated))
    advantages = np.empty_like(deltas)
    running = np.zeros_like(deltas[0])
    for t in range(num_steps - 1, -1, -1):
        running = deltas[t] + continues[t] * running
        advantages[t] = running
    return advantages, advantages + values


@dataclass
class RolloutBatch:
    """Flattened [T*N, ...] tensors handed to an algorithm's update."""

    obs: torch.Tensor  # normalised observations, as the policy saw them
    actions: torch.Tensor
    log_probs: torch.Tensor
    reward_advantages: torch.Tensor
    cost_advantages: torch.Tensor  # [B, K]
    reward_returns: torch.Tensor
    cost_returns: torch.Tensor  # [B, K]
    reward_values: torch.Tensor
    cost_values: torch.Tensor

    def __len__(self) -> int:
        return self.obs.shape[0]


class RolloutBuffer:
    def __init__(self, num_steps: int, num_envs: int, obs_dim: int, act_dim: int, num_costs: int = 1):
        self.num_steps, self.num_envs, self.num_costs = num_steps, num_envs, num_costs
        t, n, k = num_steps, num_envs, num_costs
        f32 = np.float32
        self.obs = np.zeros((t, n, obs_dim), f32)  # normalised
        self.raw_obs = np.zeros((t, n, obs_dim), np.float64)  # for the normaliser's statistics
        self.actions = np.zeros((t, n, act_dim), f32)
        self.log_probs = np.zeros((t, n), f32)
        self.rewards = np.zeros((t, n), f32)
        self.costs = np.zeros((t, n, k), f32)
        self.reward_values = np.zeros((t, n), f32)
        self.cost_values = np.zeros((t, n, k), f32)
        self.terminated = np.zeros((t, n), bool)
        self.truncated = np.zeros((t, n), bool)
        self.final_reward_values = np.zeros((t, n), f32)  # V(final obs) where truncated
        self.final_cost_values = np.zeros((t, n, k), f32)

    def compute(self, last_reward_values, last_cost_values, gamma, lam, cost_gamma, cost_lam,
                standardize_reward_adv=True, center_cost_adv=True) -> RolloutBatch:
        """Reward and cost GAE, advantage normalisation, then flat tensors for the update."""
        reward_adv, reward_ret = gae(self.rewards, self.reward_values, last_reward_values, self.terminated,
                                     self.truncated, self.final_reward_values, gamma, lam)
        cost_adv, cost_ret = gae(self.costs, self.cost_values, last_cost_values, self.terminated,
                                 self.truncated, self.final_cost_values, cost_gamma, cost_lam)
        batch = self.num_steps * self.num_envs
        reward_adv = reward_adv.reshape(batch)
        cost_adv = cost_adv.reshape(batch, self.num_costs)
        if standardize_reward_adv:
            reward_adv = (reward_adv - reward_adv.mean()) / (reward_adv.std() + 1e-8)
        if center_cost_adv:
            # Centred only: scaling would change the cost's weight against the reward in (A_r - lam A_c).
            cost_adv = cost_adv - cost_adv.mean(axis=0)

        def flat(a, *shape):
            return torch.from_numpy(np.ascontiguousarray(a.reshape(batch, *shape), dtype=np.float32))

        return RolloutBatch(
            obs=flat(self.obs, -1),
            actions=flat(self.actions, -1),
            log_probs=flat(self.log_probs),
            reward_advantages=flat(reward_adv),
            cost_advantages=flat(cost_adv, self.num_costs),
            reward_returns=flat(reward_ret),
            cost_returns=flat(cost_ret, self.num_costs),
            reward_values=flat(self.reward_values),
            cost_values=flat(self.cost_values, self.num_costs),
        )
