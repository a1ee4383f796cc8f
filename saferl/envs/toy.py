"""A tiny constrained task that trains in seconds: the learning tests' stand-in for a velocity task.

The agent picks a "speed" a in [-1, 1] each step; reward is a, and cost is 1 whenever a exceeds
0.25. Unconstrained, the best policy runs flat out and pays cost on every step; with a budget the
policy must learn to hover below the threshold. Natively vectorised (numpy), with the same API as
`envs.make` so the whole training stack runs on it.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from saferl.envs.vector import VectorEnv

TOY_ID = "SafetyToyVelocity-v0"
SPEED_THRESHOLD = 0.25


class ToyVelocityVecEnv(VectorEnv):
    """Observation: (episode phase, a little per-env noise); one RNG per env, so seeds work as everywhere."""

    def __init__(self, num_envs: int = 1, seed: int | list[int] | None = None, max_episode_steps: int | None = None):
        self.env_id = TOY_ID
        self.cost_names = ["cost_velocity"]
        self.max_episode_steps = max_episode_steps or 50
        self.single_observation_space = spaces.Box(-1.0, 1.0, (2,), np.float64)
        self.single_action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._setup(num_envs, seed)
        self._rngs: list[np.random.Generator | None] = [None] * num_envs
        self._elapsed = np.zeros(num_envs, np.int64)

    def _observe(self, indices) -> np.ndarray:
        phase = self._elapsed[indices] / self.max_episode_steps
        noise = [self._rngs[i].uniform(-0.05, 0.05) for i in indices]
        return np.stack([phase, noise], axis=1)

    def _reset_envs(self, indices, seeds):
        for i, seed in zip(indices, seeds, strict=True):
            if seed is not None or self._rngs[i] is None:
                self._rngs[i] = np.random.default_rng(seed)
        self._elapsed[indices] = 0
        return self._observe(indices)

    def _step_envs(self, actions):
        speed = actions[:, 0].astype(np.float64)
        cost = (speed > SPEED_THRESHOLD).astype(np.float64)[:, None]
        self._elapsed += 1
        obs = self._observe(range(self.num_envs))
        never = np.zeros(self.num_envs, bool)
        return obs, speed, cost, never, never, {}
