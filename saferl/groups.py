"""Group rollouts (`train.group_size` G) and the batch the group estimators (`train.advantage`) make of them.

How a group episode runs. Group g of member k is that member's envs g*G .. g*G+G-1. Its G envs are reset with
one seed, so they start from the same state (every task draws its whole start from the reset seed: the
velocity tasks' initial noise, the navigation layout and goal, the Fetch box, goal and keep-out box, a user
env's `reset(seed)`; timers start at 0), then step in lock-step. An env whose episode ends first waits: it
is still stepped (one batched env call serves all), but its steps are masked out of the batch and its
episodes out of the statistics until the group's last env ends; then the group's G episodes are counted
together, and the whole group restarts from a new shared seed. Seeds come from (member seed, epoch, group,
episode), so a resumed run replays the same groups.

Every epoch starts every group afresh. The critic-free estimators need whole episodes inside one update (the
return is their estimate), so a group episode that the epoch's end cuts is left out of their batch (counted
in `batch_fraction`) and its episodes out of the statistics: make steps_per_epoch / num_envs a multiple of
the episode length (the defaults are: 1,000-step rollouts of 1,000-step episodes). With
`train.advantage=gae` the cut episode is bootstrapped by the critic as always.

Why the groups are not staggered. Staggered resets (arXiv 2511.21011) cure rollouts much shorter than the
episodes, where after a synchronous reset each batch holds only early (or only late) states. Here an epoch
holds whole episodes from start to end, so every batch covers every phase of the episode equally; staggering
would cut episodes at the epoch's edge, which a critic-free estimator cannot score. Groups that end early
(terminations) restart at once, so their resets spread over the epoch anyway.

The batch. Masked, cut and dropped steps get weight 0; each signal (reward, each cost) is normalised
separately over the weighted steps of a member, and the advantages are multiplied by the weights rescaled to
mean 1, so a loss averaged over the batch is the weighted average over the kept steps and a weight-0 step adds
nothing to the policy gradient (nor to the critics': its return targets are the critics' own predictions).
They still count in the KL statistics (PPO's early stop, the trust-region's KL), as states of the same policy.
Rewards are standardised (`train.standardize_reward_adv`), each cost too (Constrained GRPO, arXiv 2602.05863:
normalise each signal in the group, then scalarise the advantages, A = z_R - sum_k lambda_k z_Ck), except for
CPO, whose constraint is linearised in cost units: there the cost advantages are only centred.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from saferl.buffer import RolloutBatch, RolloutBuffer
from saferl.config import MAX_SEED, Config
from saferl.maths.group_advantages import group_advantages, is_flat, returns_to_go, weighted_standardised


@dataclass
class GroupEpisode:
    """One group episode inside an epoch: steps [start, end) of the group's envs; end None while it runs (and
    when the epoch's end cut it)."""

    member: int
    group: int
    start: int
    end: int | None = None


class GroupRollout:
    """The collection side: which envs wait, which steps count, where each group episode begins and ends."""

    def __init__(self, seeds: list[int], envs_per_member: int, group_size: int, rollout_length: int):
        if envs_per_member % group_size:
            raise ValueError(f"{envs_per_member} envs per member do not split into groups of {group_size}")
        self.seeds = list(seeds)
        self.members, self.envs_per_member, self.group_size = len(seeds), envs_per_member, group_size
        self.groups_per_member = envs_per_member // group_size
        self.rollout_length = rollout_length
        self.valid = np.zeros((rollout_length, self.members, envs_per_member), bool)  # steps that count
        self.waiting = np.zeros((self.members, envs_per_member), bool)
        self.held: dict[int, object] = {}  # env row -> its counted episode's record, until the group completes
        self.episodes: list[GroupEpisode] = []
        self.running: dict[tuple[int, int], GroupEpisode] = {}
        self.started = np.zeros((self.members, self.groups_per_member), np.int64)
        self.epoch = 0

    def env_rows(self, member: int, group: int) -> np.ndarray:
        """Indices of a group's envs in the batched env."""
        first = member * self.envs_per_member + group * self.group_size
        return np.arange(first, first + self.group_size)

    def group_seed(self, member: int, group: int) -> int:
        """The shared reset seed of a group's next episode in this epoch."""
        entropy = [self.seeds[member], self.epoch, group, int(self.started[member, group])]
        return int(np.random.SeedSequence(entropy).generate_state(1)[0]) % MAX_SEED

    def start_group(self, env, member: int, group: int, step: int) -> np.ndarray:
        seed = self.group_seed(member, group)
        self.started[member, group] += 1
        episode = GroupEpisode(member, group, step)
        self.episodes.append(episode)
        self.running[(member, group)] = episode
        return env.reset_envs(self.env_rows(member, group), [seed] * self.group_size)

    def start_epoch(self, env, epoch: int, obs: np.ndarray) -> np.ndarray:
        """Restart every group with fresh shared seeds; returns the observations [K*N, D] to act on."""
        self.epoch = epoch
        self.valid[:] = False
        self.waiting[:] = False
        self.held = {}  # the episodes of groups the last epoch's end cut: left out, as from the batch
        self.episodes, self.running = [], {}
        self.started[:] = 0
        obs = obs.copy()
        for member in range(self.members):
            for group in range(self.groups_per_member):
                obs[self.env_rows(member, group)] = self.start_group(env, member, group, 0)
        return obs

    def after_step(self, env, t: int, obs: np.ndarray, finished: dict[int, object]) -> tuple[np.ndarray, dict]:
        """Book step t (`finished`: the record of each episode an env ended at t, by env row); restart the groups
        that are now complete.

        Returns the observations to act on next and the records to count now: a group's episodes, released
        when its last env ends. A waiting env's ends are throwaway episodes, never counted. Holding the early
        enders keeps the statistics (and J_c) on the batch's episodes: where episodes terminate, counting them
        at once would count a cut group's short episodes and never its long ones."""
        done = np.zeros(self.members * self.envs_per_member, bool)
        done[list(finished)] = True
        done = done.reshape(self.members, self.envs_per_member)
        self.valid[t] = ~self.waiting
        ended = done & ~self.waiting
        self.held.update({row: finished[row] for row in np.flatnonzero(ended.reshape(-1)).tolist()})
        self.waiting |= ended
        complete = self.waiting.reshape(self.members, self.groups_per_member, self.group_size).all(-1)
        released = {}
        if complete.any():
            obs = obs.copy()
            for member, group in zip(*np.nonzero(complete), strict=True):
                self.running.pop((int(member), int(group))).end = t + 1
                rows = self.env_rows(int(member), int(group))
                released.update({int(row): self.held.pop(int(row)) for row in rows})
                self.waiting.reshape(-1)[rows] = False
                if t + 1 < self.rollout_length:  # otherwise the next epoch starts it
                    obs[rows] = self.start_group(env, int(member), int(group), t + 1)
        return obs, dict(sorted(released.items()))

    def complete_episodes(self) -> list[GroupEpisode]:
        return [episode for episode in self.episodes if episode.end is not None]


def critic_free_advantages(buffer: RolloutBuffer, groups: GroupRollout, config: Config, with_cost: bool):
    """The group estimator's raw reward [T, K, N] and cost [T, K, N, C] advantages, the steps' weights [T, K, N]
    (0: masked, cut or dropped) and per member the count of scored and of dropped groups."""
    cfg = config.train
    reward_adv = np.zeros(buffer.rewards.shape)
    cost_adv = np.zeros(buffer.costs.shape)
    weights = np.zeros(buffer.rewards.shape)
    scored = np.zeros(groups.members, np.int64)
    dropped = np.zeros(groups.members, np.int64)
    g = groups.group_size
    for episode in groups.complete_episodes():
        k, window = episode.member, slice(episode.start, episode.end)
        envs = slice(episode.group * g, (episode.group + 1) * g)
        valid = groups.valid[window, k, envs]
        rewards, costs = buffer.rewards[window, k, envs], buffer.costs[window, k, envs]
        scored[k] += 1
        if cfg.drop_flat_groups:
            signals = [returns_to_go(rewards, valid, cfg.group_gamma)[0][:, None]]
            if with_cost:
                signals.append(returns_to_go(costs, valid, cfg.group_gamma)[0])
            if is_flat(np.concatenate(signals, axis=1), cfg.flat_group_threshold):
                dropped[k] += 1
                continue
        reward_adv[window, k, envs] = group_advantages(cfg.advantage, rewards, valid, cfg.group_gamma, cfg.grpo_std)
        cost_adv[window, k, envs] = group_advantages(cfg.advantage, costs, valid, cfg.group_gamma, cfg.grpo_std)
        weights[window, k, envs] = episode_weights(valid, cfg.group_averaging)
    return reward_adv, cost_adv, weights, scored, dropped


def episode_weights(valid: np.ndarray, averaging: str) -> np.ndarray:
    """Per-step weights of one group episode [L, G]: 1 per valid step ("step", DAPO's token-level average), or
    1 / episode length ("episode": each episode weighs the same, GRPO's sample-level average)."""
    weights = valid.astype(np.float64)
    if averaging == "episode":
        weights = weights / np.maximum(valid.sum(axis=0, keepdims=True), 1)
    return weights


def group_gae(buffer: RolloutBuffer, groups: GroupRollout, config: Config, last_reward_values, last_cost_values):
    """GAE over group rollouts: the critics' advantages and returns, weights 0 on the waiting envs' steps."""
    cfg = config.train
    (reward_adv, reward_ret), (cost_adv, cost_ret) = buffer.gae(last_reward_values, last_cost_values, cfg.gamma,
                                                                cfg.gae_lambda, cfg.cost_gamma, cfg.cost_gae_lambda)
    weights = np.zeros(groups.valid.shape)
    g = groups.group_size
    for episode in groups.episodes:
        window = slice(episode.start, episode.end if episode.end is not None else groups.rollout_length)
        envs = slice(episode.group * g, (episode.group + 1) * g)
        weights[window, episode.member, envs] = episode_weights(groups.valid[window, episode.member, envs],
                                                                config.train.group_averaging)
    return reward_adv, cost_adv, reward_ret, cost_ret, weights


def weighted_batch(buffer: RolloutBuffer, reward_adv, cost_adv, reward_ret, cost_ret, weights,
                   standardize_reward: bool, scale_cost: bool, center_cost: bool = True) -> RolloutBatch:
    """Per member: each signal normalised over its weighted steps, then multiplied by the weights rescaled to
    mean 1 over the batch; weight-0 steps get advantage 0 and their critics' own values as return targets."""
    k = buffer.members
    flat = lambda a: np.ascontiguousarray(a.swapaxes(0, 1).reshape(k, -1, *a.shape[3:]))  # noqa: E731
    reward_adv, cost_adv, w = flat(reward_adv), flat(cost_adv), flat(weights)
    for member in range(k):
        reward_adv[member] = (weighted_standardised(reward_adv[member], w[member]) if standardize_reward
                              else np.where(w[member] > 0, reward_adv[member], 0.0))
        if scale_cost or center_cost:
            cost_adv[member] = weighted_standardised(cost_adv[member], w[member], scale=scale_cost)
        else:
            cost_adv[member] = np.where(w[member][:, None] > 0, cost_adv[member], 0.0)
    total = w.sum(axis=1, keepdims=True)
    scale = np.divide(w * w.shape[1], total, out=np.zeros_like(w), where=total > 0)
    kept = weights > 0
    reward_ret = np.where(kept, reward_ret, buffer.reward_values)
    cost_ret = np.where(kept[..., None], cost_ret, buffer.cost_values)
    as_tensor = lambda a: torch.from_numpy(a.astype(np.float32))  # noqa: E731
    return buffer.batch(as_tensor(reward_adv * scale), as_tensor(cost_adv * scale[..., None]),
                        buffer.per_member(reward_ret), buffer.per_member(cost_ret))


def group_batch(buffer: RolloutBuffer, groups: GroupRollout, config: Config, with_cost: bool,
                last_reward_values=None, last_cost_values=None) -> tuple[RolloutBatch, dict]:
    """The update's batch from group rollouts (module docstring) and per-member statistics [K] for the log."""
    cfg = config.train
    if cfg.critic_free:
        reward_adv, cost_adv, weights, scored, dropped = critic_free_advantages(buffer, groups, config, with_cost)
        reward_ret, cost_ret = buffer.reward_values, buffer.cost_values  # no critic learns from them
        scale_cost = cfg.algo != "cpo"
        stats = {"group_episodes": scored, "dropped_groups": dropped}
    else:
        reward_adv, cost_adv, reward_ret, cost_ret, weights = group_gae(buffer, groups, config, last_reward_values,
                                                                        last_cost_values)
        scale_cost = False
        stats = {"group_episodes": np.bincount([e.member for e in groups.complete_episodes()],
                                               minlength=groups.members)}
    batch = weighted_batch(buffer, reward_adv, cost_adv, reward_ret, cost_ret, weights,
                           cfg.standardize_reward_adv, scale_cost, cfg.center_cost_adv or scale_cost)
    stats["batch_fraction"] = (weights > 0).mean(axis=(0, 2))
    return batch, stats
