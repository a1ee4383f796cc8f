"""Lagrange multipliers for constrained policy optimisation, one per cost.

The multiplier does gradient ascent on lambda * (J_c - limit) (Adam, as in OmniSafe) and is then
projected back onto lambda >= 0, so it rises while the episode cost is over the limit and decays
toward zero (never below) when the policy is safe.
"""

from __future__ import annotations

import numpy as np
import torch


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
