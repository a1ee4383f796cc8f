"""One constrained rollout buffer for every algorithm: reward GAE and cost GAE over preallocated arrays.

Storage is numpy arrays of shape [T, K, N, ...] (steps, members, envs per member) with torch views on the same
memory, so collection writes with numpy (cheap per step) and the learner reads tensors without a copy. The
batch handed to an algorithm is [K, T*N, ...]: member k's samples in row k, normalised within the member.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from saferl.maths.gae import gae


@dataclass
class RolloutBatch:
    """[K, B, ...] tensors handed to an algorithm's update (B = T*N samples per member)."""

    obs: torch.Tensor  # normalised observations, as the policy saw them
    actions: torch.Tensor
    log_probs: torch.Tensor
    reward_advantages: torch.Tensor
    cost_advantages: torch.Tensor  # [K, B, C]
    reward_returns: torch.Tensor
    cost_returns: torch.Tensor  # [K, B, C]
    reward_values: torch.Tensor
    cost_values: torch.Tensor

    @property
    def members(self) -> int:
        return self.obs.shape[0]

    @property
    def size(self) -> int:
        return self.obs.shape[1]

    def fields(self) -> list[torch.Tensor]:
        return [self.obs, self.actions, self.log_probs, self.reward_advantages, self.cost_advantages,
                self.reward_returns, self.cost_returns, self.reward_values, self.cost_values]


class RolloutBuffer:
    def __init__(self, num_steps: int, members: int, envs_per_member: int, obs_dim: int, act_dim: int,
                 num_costs: int = 1):
        self.num_steps, self.members, self.envs_per_member = num_steps, members, envs_per_member
        self.num_costs = num_costs
        t, k, n, c = num_steps, members, envs_per_member, num_costs
        f32 = np.float32
        self.obs = np.zeros((t, k, n, obs_dim), f32)  # normalised
        self.raw_obs = np.zeros((t, k, n, obs_dim), np.float64)  # for the normaliser's statistics
        self.actions = np.zeros((t, k, n, act_dim), f32)
        self.log_probs = np.zeros((t, k, n), f32)
        self.rewards = np.zeros((t, k, n), f32)
        self.costs = np.zeros((t, k, n, c), f32)
        self.reward_values = np.zeros((t, k, n), f32)
        self.cost_values = np.zeros((t, k, n, c), f32)
        self.terminated = np.zeros((t, k, n), bool)
        self.truncated = np.zeros((t, k, n), bool)
        self.final_reward_values = np.zeros((t, k, n), f32)  # V(final obs) where truncated
        self.final_cost_values = np.zeros((t, k, n, c), f32)

    def raw_obs_per_member(self) -> torch.Tensor:
        """[K, T*N, D] raw observations: the normaliser's next batch of statistics."""
        return torch.from_numpy(self.raw_obs.swapaxes(0, 1).reshape(self.members, -1, self.raw_obs.shape[-1]))

    def per_member(self, a: np.ndarray) -> torch.Tensor:
        """[T, K, N, ...] -> contiguous float32 tensor [K, T*N, ...]: member k's samples in row k."""
        return torch.from_numpy(np.ascontiguousarray(a.swapaxes(0, 1).reshape(self.members, -1, *a.shape[3:]),
                                                     dtype=np.float32))

    def gae(self, last_reward_values, last_cost_values, gamma, lam, cost_gamma, cost_lam):
        """Reward and cost GAE over the buffer as [T, K, N(, C)] arrays: (reward_adv, reward_ret), (cost_adv,
        cost_ret)."""
        return (gae(self.rewards, self.reward_values, last_reward_values, self.terminated, self.truncated,
                    self.final_reward_values, gamma, lam),
                gae(self.costs, self.cost_values, last_cost_values, self.terminated, self.truncated,
                    self.final_cost_values, cost_gamma, cost_lam))

    def compute(self, last_reward_values, last_cost_values, gamma, lam, cost_gamma, cost_lam,
                standardize_reward_adv=True, center_cost_adv=True) -> RolloutBatch:
        """Reward and cost GAE, advantage normalisation per member, then [K, T*N, ...] tensors for the update.

        last_reward_values [K, N] and last_cost_values [K, N, C]: the critics' values of the observations after
        the last step."""
        (reward_adv, reward_ret), (cost_adv, cost_ret) = self.gae(last_reward_values, last_cost_values, gamma, lam,
                                                                  cost_gamma, cost_lam)
        reward_adv, cost_adv = self.per_member(reward_adv), self.per_member(cost_adv)
        if standardize_reward_adv:
            std = reward_adv.std(1, correction=0, keepdim=True)
            reward_adv = (reward_adv - reward_adv.mean(1, keepdim=True)) / (std + 1e-8)
        if center_cost_adv:
            # Centred only: scaling would change the cost's weight against the reward in (A_r - lam A_c).
            cost_adv = cost_adv - cost_adv.mean(1, keepdim=True)
        return self.batch(reward_adv, cost_adv, self.per_member(reward_ret), self.per_member(cost_ret))

    def batch(self, reward_adv: torch.Tensor, cost_adv: torch.Tensor, reward_ret: torch.Tensor,
              cost_ret: torch.Tensor) -> RolloutBatch:
        """The update's batch: the buffer's samples with the given [K, T*N(, C)] advantages and returns."""
        return RolloutBatch(
            obs=self.per_member(self.obs),
            actions=self.per_member(self.actions),
            log_probs=self.per_member(self.log_probs),
            reward_advantages=reward_adv,
            cost_advantages=cost_adv,
            reward_returns=reward_ret,
            cost_returns=cost_ret,
            reward_values=self.per_member(self.reward_values),
            cost_values=self.per_member(self.cost_values),
        )
