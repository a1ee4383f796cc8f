"""Diagonal Gaussian policy maths, written once: log-density, KL divergence and entropy.

Shapes broadcast: `mean` [..., A] with `log_std` [A] or [K, 1, A] (one state-independent log-std per
member). Every sum is over the last (action) axis.
"""

from __future__ import annotations

import math

import torch

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def log_prob(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log N(actions; mean, exp(log_std)^2), summed over action dims."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - LOG_SQRT_2PI).sum(-1)


def log_prob_of_noise(noise: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """`log_prob` of `mean + noise * std`, from the standard-normal noise that drew it (one op fewer per step)."""
    return (-0.5 * noise.square() - log_std - LOG_SQRT_2PI).sum(-1)


def kl(mean_p, log_std_p, mean_q, log_std_q) -> torch.Tensor:
    """KL(p || q) of diagonal Gaussians, summed over action dims (exact, not a sample estimate)."""
    var_ratio = torch.exp(2 * (log_std_p - log_std_q))
    mean_term = (mean_p - mean_q).square() * torch.exp(-2 * log_std_q)
    return 0.5 * (var_ratio + mean_term - 1.0 - 2 * (log_std_p - log_std_q)).sum(-1)


def entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy of a diagonal Gaussian; with a state-independent std it is the same for every state."""
    return (0.5 + LOG_SQRT_2PI + log_std).sum(-1)
