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
# The same task with 64 observation dimensions of pure noise and a background cost (1 with probability 0.5 each
# step, whatever the action): the cost is mostly noise the policy cannot explain, so a policy-gradient estimate of
# the cost from one small rollout partly fits that noise, and a step computed from it promises more than it
# delivers (tests/test_cpo_overpromise.py). Its budget is the toy's plus the background's mean, 25.
NOISY_TOY_ID = "SafetyToyNoisyVelocity-v0"
NOISY_TOY_NOISE_DIMS, NOISY_TOY_BACKGROUND_COST = 64, 0.5
SPEED_THRESHOLD = 0.25


class ToyVelocityVecEnv(VectorEnv):
    """Observation: (episode phase, a little per-env noise, then `noise_dims` standard normals); cost: 1 above the
    speed threshold, plus 1 with probability `background_cost` whatever the action. One RNG per env, so seeds work
    as everywhere."""

    def __init__(self, num_envs: int = 1, seed: int | list[int] | None = None, max_episode_steps: int | None = None,
                 noise_dims: int = 0, background_cost: float = 0.0):
        self.env_id = TOY_ID if noise_dims == 0 and background_cost == 0 else NOISY_TOY_ID
        self.cost_names = ["cost_velocity"]
        self.max_episode_steps = max_episode_steps or 50
        self.noise_dims, self.background_cost = noise_dims, background_cost
        self.single_observation_space = spaces.Box(-np.inf, np.inf, (2 + noise_dims,), np.float64) if noise_dims \
            else spaces.Box(-1.0, 1.0, (2,), np.float64)
        self.single_action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._setup(num_envs, seed)
        self._rngs: list[np.random.Generator | None] = [None] * num_envs
        self._elapsed = np.zeros(num_envs, np.int64)

    def _observe(self, indices) -> np.ndarray:
        phase = self._elapsed[indices] / self.max_episode_steps
        noise = [self._rngs[i].uniform(-0.05, 0.05) for i in indices]
        obs = np.stack([phase, noise], axis=1)
        if self.noise_dims:
            obs = np.concatenate([obs, np.stack([self._rngs[i].normal(size=self.noise_dims) for i in indices])], 1)
        return obs

    def _reset_envs(self, indices, seeds):
        for i, seed in zip(indices, seeds, strict=True):
            if seed is not None or self._rngs[i] is None:
                self._rngs[i] = np.random.default_rng(seed)
        self._elapsed[indices] = 0
        return self._observe(indices)

    def _step_envs(self, actions):
        speed = actions[:, 0].astype(np.float64)
        cost = (speed > SPEED_THRESHOLD).astype(np.float64)[:, None]
        if self.background_cost:
            cost += np.array([[self._rngs[i].random() < self.background_cost] for i in range(self.num_envs)])
        self._elapsed += 1
        obs = self._observe(range(self.num_envs))
        never = np.zeros(self.num_envs, bool)
        return obs, speed, cost, never, never, {}
