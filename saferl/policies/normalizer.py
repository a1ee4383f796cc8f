"""Running mean/std observation normaliser that lives inside the policy module, one set of statistics per member.

Kept as registered buffers so it is saved, loaded and exported with the policy (rsl_rl style): a policy restored
from a checkpoint sees observations on exactly the scale it was trained on.
"""

from __future__ import annotations

import torch
from torch import nn


class RunningNormalizer(nn.Module):
    """Normalises [K, B, D] inputs with member k's statistics, merged batch by batch (Chan et al.)."""

    def __init__(self, members: int, dim: int, clip: float = 10.0, epsilon: float = 1e-8):
        super().__init__()
        self.clip = clip
        self.epsilon = epsilon
        self.register_buffer("mean", torch.zeros(members, dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(members, dim, dtype=torch.float64))
        self.register_buffer("count", torch.zeros(members, dtype=torch.float64))
        self.frozen = False

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        """Merge a batch [K, B, D] (member k's observations in row k) into the statistics (no-op when frozen)."""
        if self.frozen:
            return
        batch = batch.to(torch.float64)
        batch_count = batch.shape[1]
        batch_mean = batch.mean(dim=1)
        batch_var = batch.var(dim=1, unbiased=False)
        count = self.count.unsqueeze(1)
        total = count + batch_count
        delta = batch_mean - self.mean
        new_mean = self.mean + delta * (batch_count / total)
        m2 = self.var * count + batch_var * batch_count + delta.square() * count * batch_count / total
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count.copy_(total.squeeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [K, B, D] -> clip((x - mean_k) / std_k)."""
        shift, scale = self._affine(x.dtype)
        return ((x - shift) * scale).clamp_(-self.clip, self.clip)

    def _affine(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """mean and 1/std as [K, 1, D] in `dtype`, recomputed only when the statistics changed (update or load)."""
        key = (self.mean._version, self.var._version, self.mean.data_ptr(), dtype)
        if getattr(self, "_affine_key", None) != key:
            self._affine_cache = (self.mean.to(dtype).unsqueeze(1),
                                  torch.rsqrt(self.var + self.epsilon).to(dtype).unsqueeze(1))
            self._affine_key = key
        return self._affine_cache
