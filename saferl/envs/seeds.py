"""The env reset seeds of a run, in one place: each purpose draws its episodes from its own block, so training,
evaluation and demonstrations never share an episode layout.

A run with seed s resets its env i with s + i plus the purpose's offset; blocks of one purpose (the epochs a
resumed run restarts at, a demonstrator's safe and unsafe variants) are `STRIDE` apart.
"""

from __future__ import annotations

EVALUATION_OFFSET = 100_000  # evaluation episodes start from env seeds that training never used
DEMONSTRATION_OFFSET = 200_000  # a run's demonstrations differ from its evaluation episodes
SCRIPTED_OFFSET = 300_000  # scripted demonstrations never share layouts with training's or evaluation's seeds
SCRIPTED_REFERENCE_OFFSET = 400_000  # the offline pipeline's noise-free demonstrator, its reference
STRIDE = 7919  # a prime: the blocks of one purpose do not line up with the env index


def block(index: int) -> int:
    """The offset of a purpose's `index`-th block of seeds (0 for the first)."""
    return STRIDE * int(index)


def env_seeds(seed: int, num_envs: int, offset: int = 0) -> list[int]:
    """The reset seeds of a run's `num_envs` envs: seed + offset + i."""
    return [seed + offset + i for i in range(num_envs)]
