"""Critic-free advantage estimators over a group of G episodes that started from the same state (pure numpy).

A group is G trajectories run in lock-step from one start state: step t of every member is t steps after
the common start, so "the same t" compares like with like. Arrays are [L, G] (steps of the group's window,
members) or [L, G, C] (one column per cost); `valid` [L, G] is False after a member's episode ended (it waits
for the rest of the group), and rewards there must not count.

- RLOO (Ahmadian et al. 2024; Kool et al. 2019): each member's return against the mean of the other G-1. The
  baseline does not depend on the member's own actions, so the estimate stays unbiased.
  - episode level: every step of episode i gets R_i - mean_{j != i} R_j;
  - per step: step t of episode i gets G_{i,t} - mean_{j != i} G_{j,t}, with G the return-to-go (0 after an
    episode's end: an ended episode earns nothing more). Per-step credit on long episodes, still unbiased.
- GRPO (Shao et al. 2024): (R_i - mean R) / std R over the group; `use_std=False` is Dr. GRPO (Liu et al.
  2025), which drops the division that favours groups of nearly equal returns.
- DAPO's dynamic sampling (Yu et al. 2025) drops flat groups: groups whose returns barely differ carry no
  signal, only dilute the batch (`is_flat`).
"""

from __future__ import annotations

import numpy as np

GRPO_EPSILON = 1e-8  # keeps a flat group's (R - mean) / std at 0 instead of 0 / 0


def returns_to_go(rewards: np.ndarray, valid: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = sum_{s >= t} gamma^(s - t) r_s over the valid steps of each member: [L, G(, C)] -> same shape, 0
    where not valid (after the member's episode ended)."""
    mask = valid.reshape(valid.shape + (1,) * (rewards.ndim - valid.ndim))
    masked = np.where(mask, rewards, 0.0).astype(np.float64)
    out = np.empty_like(masked)
    running = np.zeros_like(masked[0])
    for t in range(masked.shape[0] - 1, -1, -1):
        running = masked[t] + gamma * running
        out[t] = running
    return np.where(mask, out, 0.0)


def leave_one_out(values: np.ndarray, axis: int) -> np.ndarray:
    """x_i - mean_{j != i} x_j along `axis` (the group axis, size G >= 2)."""
    size = values.shape[axis]
    if size < 2:
        raise ValueError("a leave-one-out baseline needs a group of at least 2")
    total = values.sum(axis=axis, keepdims=True)
    return values - (total - values) / (size - 1)


def group_normalised(values: np.ndarray, axis: int, use_std: bool = True) -> np.ndarray:
    """(x_i - mean x) / (std x + eps) along the group axis (sample std, ddof 1), or x_i - mean x without std."""
    centred = values - values.mean(axis=axis, keepdims=True)
    if not use_std:
        return centred
    return centred / (values.std(axis=axis, ddof=1, keepdims=True) + GRPO_EPSILON)


def is_flat(scores: np.ndarray, threshold: float) -> bool:
    """True when no column of the group's scores [G(, C)] spreads (max - min) by more than `threshold`."""
    scores = scores.reshape(scores.shape[0], -1)
    return bool(np.all(scores.max(axis=0) - scores.min(axis=0) <= threshold))


def group_advantages(estimator: str, rewards: np.ndarray, valid: np.ndarray, gamma: float,
                     use_std: bool = True) -> np.ndarray:
    """One group's advantages [L, G(, C)] by `estimator` ("rloo", "rloo_step" or "grpo"); 0 where not valid.

    Episode-level estimators score each member by its (discounted from the start) return and give that score
    to every step of its episode."""
    rtg = returns_to_go(rewards, valid, gamma)
    if estimator == "rloo_step":
        advantages = leave_one_out(rtg, axis=1)
    elif estimator in ("rloo", "grpo"):
        episode = rtg[0]  # [G(, C)]: the return from the common start
        scores = leave_one_out(episode, axis=0) if estimator == "rloo" else group_normalised(episode, 0, use_std)
        advantages = np.broadcast_to(scores, rtg.shape)
    else:
        raise ValueError(f"unknown group estimator {estimator!r}")
    mask = valid.reshape(valid.shape + (1,) * (rewards.ndim - valid.ndim))
    return np.where(mask, advantages, 0.0)


def weighted_standardised(values: np.ndarray, weights: np.ndarray, scale: bool = True) -> np.ndarray:
    """Centre (and, with `scale`, divide by the std) each column of values [B(, C)] by the weighted mean and
    std over the samples with weight > 0; samples with weight 0 come out 0."""
    w = weights.reshape(weights.shape + (1,) * (values.ndim - weights.ndim)).astype(np.float64)
    total = w.sum(axis=0)
    if not np.all(total > 0):
        return np.zeros_like(values, dtype=np.float64)
    mean = (w * values).sum(axis=0) / total
    centred = values - mean
    if scale:
        std = np.sqrt((w * centred**2).sum(axis=0) / total)
        centred = centred / (std + GRPO_EPSILON)
    return np.where(w > 0, centred, 0.0)
