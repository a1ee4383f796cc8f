"""Lagrange multipliers for constrained policy optimisation, one per cost.

The multiplier does gradient ascent on lambda * (J_c - limit) (Adam, as in OmniSafe) and is then
projected back onto lambda >= 0, so it rises while the episode cost is over the limit and decays
toward zero (never below) when the policy is safe. `PIDLagrangeMultiplier` is the PID alternative
(`lagrange.method: pid`); `make_multiplier` picks one from the config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from saferl.config import Config


def project_nonnegative(multiplier: torch.Tensor) -> torch.Tensor:
    """Projection onto the dual feasible set {lambda >= 0}, in place."""
    return multiplier.data.clamp_(min=0.0)


class LagrangeMultiplier:
    def __init__(self, num_costs: int, cost_limit: float, init: float, lr: float):
        self.cost_limit = cost_limit
        self.multiplier = torch.nn.Parameter(torch.full((num_costs,), float(init)))
        self.optimizer = torch.optim.Adam([self.multiplier], lr=lr)

    @property
    def value(self) -> np.ndarray:
        return self.multiplier.detach().numpy().copy()

    def update(self, mean_episode_cost) -> np.ndarray:
        """One ascent step from the mean episode cost [K] of recent episodes; returns the new lambdas."""
        cost = np.asarray(mean_episode_cost, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(cost)):
            return self.value  # no episode has finished yet: nothing to learn the multiplier from
        cost = torch.as_tensor(cost)
        loss = -(self.multiplier * (cost - self.cost_limit)).sum()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        project_nonnegative(self.multiplier)
        return self.value

    def state_dict(self) -> dict:
        return {"multiplier": self.multiplier.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.multiplier.data.copy_(state["multiplier"])
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

    def __init__(self, num_costs: int, cost_limit: float, kp: float, ki: float, kd: float,
                 cost_smoothing: float = 0.5, init: float = 0.0):
        self.cost_limit = cost_limit
        self.kp, self.ki, self.kd, self.cost_smoothing = kp, ki, kd, cost_smoothing
        # The integral starts where Ki I equals the initial multiplier, so `init` means the same as for Adam.
        self.integral = np.full(num_costs, init / ki if ki > 0 else 0.0)
        self.smoothed_cost = np.full(num_costs, np.nan)  # nan until the first finite cost arrives
        self.multiplier = np.full(num_costs, float(init))

    @property
    def value(self) -> np.ndarray:
        return self.multiplier.astype(np.float32)  # float32 like LagrangeMultiplier: it multiplies A_c

    def update(self, mean_episode_cost) -> np.ndarray:
        """One controller step from the mean episode cost [K] of recent episodes; returns the new lambdas."""
        cost = np.asarray(mean_episode_cost, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(cost)):
            return self.value
        error = cost - self.cost_limit
        self.integral = np.maximum(0.0, self.integral + error)
        previous = np.where(np.isfinite(self.smoothed_cost), self.smoothed_cost, cost)
        self.smoothed_cost = self.cost_smoothing * previous + (1.0 - self.cost_smoothing) * cost
        rising = np.maximum(0.0, self.smoothed_cost - previous)
        self.multiplier = np.maximum(0.0, self.kp * error + self.ki * self.integral + self.kd * rising)
        return self.value

    def state_dict(self) -> dict:
        return {"integral": self.integral.copy(), "smoothed_cost": self.smoothed_cost.copy(),
                "multiplier": self.multiplier.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.integral = np.array(state["integral"], dtype=np.float64)
        self.smoothed_cost = np.array(state["smoothed_cost"], dtype=np.float64)
        self.multiplier = np.array(state["multiplier"], dtype=np.float64)


def make_multiplier(config: Config, num_costs: int) -> LagrangeMultiplier | PIDLagrangeMultiplier:
    """The multiplier `config.lagrange.method` names: "gradient" (default) or "pid"."""
    lag = config.lagrange
    if lag.method == "pid":
        return PIDLagrangeMultiplier(num_costs, lag.cost_limit, lag.pid_kp, lag.pid_ki, lag.pid_kd,
                                     lag.pid_cost_smoothing, lag.multiplier_init)
    return LagrangeMultiplier(num_costs, lag.cost_limit, lag.multiplier_init, lag.multiplier_lr)
