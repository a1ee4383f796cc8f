"""Lagrange multipliers for constrained policy optimisation, one per member and cost ([K, C]).

The multiplier does gradient ascent on lambda * (J_c - limit) (Adam, as in OmniSafe) and is then
projected back onto lambda >= 0, so it rises while the episode cost is over the limit and decays
toward zero (never below) when the policy is safe. `PIDLagrangeMultiplier` is the PID alternative
(`lagrange.method: pid`); `saferl.algorithms.common.make_multiplier` picks one from the config.
"""

from __future__ import annotations

import numpy as np
import torch

from saferl.maths.optim import MemberAdam


def project_nonnegative(multiplier: torch.Tensor) -> torch.Tensor:
    """Projection onto the dual feasible set {lambda >= 0}, in place."""
    return multiplier.data.clamp_(min=0.0)


class LagrangeMultiplier:
    """lambda [K, C]: one multiplier per member and cost, each its own projected Adam ascent."""

    def __init__(self, cost_limits: np.ndarray, init: float, lr: float):
        self.cost_limits = np.asarray(cost_limits, dtype=np.float64)  # [K, C]
        self.multiplier = torch.full(self.cost_limits.shape, float(init), dtype=torch.float32)
        self.optimizer = MemberAdam([[self.multiplier]], [lr])

    @property
    def value(self) -> np.ndarray:
        return self.multiplier.numpy().copy()

    def reset_to(self, values) -> None:
        """Start again from lambda = values [K, C] (a fine-tune's warm start), as if initialised there: the ascent's
        moments and step counts are cleared."""
        self.multiplier.copy_(torch.as_tensor(np.asarray(values, np.float64).reshape(self.cost_limits.shape),
                                              dtype=self.multiplier.dtype))
        self.optimizer.reset_state()

    def update(self, mean_episode_cost) -> np.ndarray:
        """One ascent step from the mean episode cost [K, C] of recent episodes; returns the new lambdas [K, C].

        A member with no finished episode yet (NaN cost) has nothing to learn from and keeps its value and its
        optimiser state."""
        cost = np.asarray(mean_episode_cost, dtype=np.float64).reshape(self.cost_limits.shape)
        ready = np.isfinite(cost).all(axis=1)
        if ready.any():
            # d/d lambda of -lambda (J_c - limit): ascent on the Lagrangian, descent on its negative.
            grad = -torch.as_tensor(np.where(np.isfinite(cost), cost - self.cost_limits, 0.0), dtype=torch.float32)
            self.optimizer.flatten([grad])
            self.optimizer.step(torch.as_tensor(ready))
            project_nonnegative(self.multiplier)
        return self.value

    def state_dict(self) -> dict:
        return {"multiplier": self.multiplier.clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.multiplier.copy_(state["multiplier"])
        self.optimizer.load_state_dict(state["optimizer"])


class PIDLagrangeMultiplier:
    """PID control of the multiplier (Stooke, Achiam, Abbeel 2020), one controller per cost.

    Gradient ascent is a pure integral controller, so lambda lags the cost and overshoots. With the error
    e = J_c - limit: lambda = max(0, Kp e + Ki I + Kd max(0, dJ)), where I accumulates e and is projected
    onto I >= 0 (no wind-up while safe), and dJ is the change of an EMA of J_c, so only a rising cost
    pushes lambda up ahead of a violation and noise in J_c is not amplified.

    Default gains (config.lagrange.pid_*) are set against the scale that matters: e is in episode-cost units
    (limits are ~10-25, early violations up to ~100x that), while lambda only matters in about [0, 10]
    because the objective divides by 1 + lambda. Ki = 0.01: a sustained overshoot of 10 raises lambda by 0.1
    per epoch, the order of the gradient method's lr 0.035. Kp = 0.1: an overshoot of 10 adds 1 at once
    and vanishes at the limit (damping), while a gross violation saturates the objective to pure cost
    reduction. Kd = 0.05: a cost rising by 10 per epoch adds 0.5 before the integral has caught up.
    """

    def __init__(self, cost_limits: np.ndarray, kp: float, ki: float, kd: float, cost_smoothing: float = 0.5,
                 init: float = 0.0):
        self.cost_limits = np.asarray(cost_limits, dtype=np.float64)  # [K, C]
        self.kp, self.ki, self.kd, self.cost_smoothing = kp, ki, kd, cost_smoothing
        # The integral starts where Ki I equals the initial multiplier, so `init` means the same as for Adam.
        self.integral = np.full(self.cost_limits.shape, init / ki if ki > 0 else 0.0)
        self.smoothed_cost = np.full(self.cost_limits.shape, np.nan)  # nan until the first finite cost arrives
        self.multiplier = np.full(self.cost_limits.shape, float(init))

    @property
    def value(self) -> np.ndarray:
        return self.multiplier.astype(np.float32)  # float32 like LagrangeMultiplier: it multiplies A_c

    def reset_to(self, values) -> None:
        """Start again from lambda = values [K, C] (a fine-tune's warm start), as if initialised there: the
        integral where Ki I equals the values, no cost history."""
        values = np.asarray(values, np.float64).reshape(self.cost_limits.shape)
        self.integral = values / self.ki if self.ki > 0 else np.zeros_like(values)
        self.smoothed_cost = np.full(self.cost_limits.shape, np.nan)
        self.multiplier = values.copy()

    def update(self, mean_episode_cost) -> np.ndarray:
        """One controller step per member from the mean episode cost [K, C]; returns the new lambdas [K, C].
        Members with no finished episode yet (NaN cost) keep their state."""
        cost = np.asarray(mean_episode_cost, dtype=np.float64).reshape(self.cost_limits.shape)
        ready = np.isfinite(cost).all(axis=1, keepdims=True)
        cost = np.where(ready, cost, self.cost_limits)
        error = cost - self.cost_limits
        integral = np.maximum(0.0, self.integral + error)
        previous = np.where(np.isfinite(self.smoothed_cost), self.smoothed_cost, cost)
        smoothed = self.cost_smoothing * previous + (1.0 - self.cost_smoothing) * cost
        rising = np.maximum(0.0, smoothed - previous)
        multiplier = np.maximum(0.0, self.kp * error + self.ki * integral + self.kd * rising)
        self.integral = np.where(ready, integral, self.integral)
        self.smoothed_cost = np.where(ready, smoothed, self.smoothed_cost)
        self.multiplier = np.where(ready, multiplier, self.multiplier)
        return self.value

    def state_dict(self) -> dict:
        return {"integral": self.integral.copy(), "smoothed_cost": self.smoothed_cost.copy(),
                "multiplier": self.multiplier.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.integral = np.array(state["integral"], dtype=np.float64)
        self.smoothed_cost = np.array(state["smoothed_cost"], dtype=np.float64)
        self.multiplier = np.array(state["multiplier"], dtype=np.float64)
