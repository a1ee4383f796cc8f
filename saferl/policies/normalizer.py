"""Running mean/std observation normaliser that lives inside the policy module.

Kept as registered buffers so it is saved, loaded and exported with the policy (rsl_rl style): a
policy restored from a checkpoint sees observations on exactly the scale it was trained on.
"""

from __future__ import annotations

import torch
from torch import nn


class RunningNormalizer(nn.Module):
    """Normalises inputs with statistics merged batch by batch (Chan et al. parallel variance)."""

    def __init__(self, shape: tuple[int, ...] | int, clip: float = 10.0, epsilon: float = 1e-8):
        super().__init__()
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.clip = clip
        self.epsilon = epsilon
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.frozen = False

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        """Merge a batch [B, *shape] into the running statistics (no-op when frozen)."""
        if self.frozen:
            return
        batch = batch.to(torch.float64).reshape(-1, *self.mean.shape)
        batch_count = batch.shape[0]
        batch_mean = batch.mean(dim=0)
        batch_var = batch.var(dim=0, unbiased=False)
        total = self.count + batch_count
        delta = batch_mean - self.mean
        new_mean = self.mean + delta * (batch_count / total)
        m2 = self.var * self.count + batch_var * batch_count + delta.square() * self.count * batch_count / total
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shift, scale = self._affine(x.dtype)
        return ((x - shift) * scale).clamp_(-self.clip, self.clip)

    def _affine(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """mean and 1/std in `dtype`, recomputed only when the statistics changed (update or load)."""
        key = (self.mean._version, self.var._version, self.mean.data_ptr(), dtype)
        if getattr(self, "_affine_key", None) != key:
            self._affine_cache = (self.mean.to(dtype), torch.rsqrt(self.var + self.epsilon).to(dtype))
            self._affine_key = key
        return self._affine_cache
