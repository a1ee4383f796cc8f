"""Generalised advantage estimation with correct episode ends (a pure function over numpy arrays)."""

from __future__ import annotations

import numpy as np


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
    """Advantages and value targets (advantages + values).

    Shapes: terminated/truncated [T, ...env axes]; rewards/values/final_values the same, optionally with one
    more trailing axis (one column per cost); last_values like values without T (the value of the observation
    after the last step). The bootstrap after step t is 0 when the episode terminated, V(final obs) when it was
    truncated, V(s_{t+1}) otherwise; the advantage recursion is cut at every episode end.
    """
    num_steps = rewards.shape[0]
    extra_dims = (1,) * (rewards.ndim - terminated.ndim)
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
