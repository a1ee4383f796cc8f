"""A tiny constrained task that trains in seconds: the learning tests' stand-in for a velocity task.

The agent picks a "speed" a in [-1, 1] each step; reward is a, and cost is 1 whenever a exceeds
0.25. Unconstrained, the best policy runs flat out and pays cost on every step; with a budget the
policy must learn to hover below the threshold. Natively vectorised (numpy), with the same API as
`envs.make` so the whole training stack runs on it.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

TOY_ID = "SafetyToyVelocity-v0"
SPEED_THRESHOLD = 0.25


class ToyVelocityVecEnv:
    env_id = TOY_ID
    num_costs = 1
    cost_names = ["cost_velocity"]

    def __init__(self, num_envs: int = 1, seed: int | None = None, max_episode_steps: int | None = None):
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps or 50
        self.single_observation_space = spaces.Box(-1.0, 1.0, (2,), np.float64)
        self.single_action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.rng = np.random.default_rng(seed)
        self.elapsed = np.zeros(num_envs, np.int64)
        self.episode_return = np.zeros(num_envs)
        self.episode_cost = np.zeros((num_envs, 1))

    def _obs(self) -> np.ndarray:
        phase = self.elapsed / self.max_episode_steps
        noise = self.rng.uniform(-0.05, 0.05, self.num_envs)
        return np.stack([phase, noise], axis=1)

    def reset(self, seed: int | None = None) -> np.ndarray:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.elapsed[:] = 0
        self.episode_return[:] = 0
        self.episode_cost[:] = 0
        return self._obs()

    def step(self, actions):
        speed = np.clip(np.asarray(actions, np.float64).reshape(self.num_envs, -1)[:, 0], -1.0, 1.0)
        reward = speed
        cost = (speed > SPEED_THRESHOLD).astype(np.float64)[:, None]
        self.elapsed += 1
        self.episode_return += reward
        self.episode_cost += cost
        truncated = self.elapsed >= self.max_episode_steps
        terminated = np.zeros(self.num_envs, bool)
        info = {
            "episode_done": truncated.copy(),
            "episode_return": self.episode_return.copy(),
            "episode_cost": self.episode_cost.copy(),
            "episode_length": self.elapsed.copy(),
        }
        final_obs = self._obs()
        info["final_obs"] = final_obs
        if truncated.any():
            self.elapsed[truncated] = 0
            self.episode_return[truncated] = 0
            self.episode_cost[truncated] = 0
        obs = self._obs() if truncated.any() else final_obs
        return obs, reward, cost, terminated, truncated, info

    def close(self) -> None:
        pass
