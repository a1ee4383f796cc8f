"""``NavigationVectorEnv``: the project's VectorEnv contract on top of the batched simulator.

Same-step autoreset: when env i's episode ends, ``obs[i]`` already starts its next episode and
``info["final_obs"][i]`` is the last observation of the one that ended. Episodes only truncate
(``max_episode_steps``); nothing terminates.
"""

from __future__ import annotations

import gymnasium
import numpy as np

from .sim import NavigationSim
from .tasks import task_spec


class NavigationVectorEnv:
    """N copies of one navigation task. ``cost`` is one aggregated 0/1 column, ``cost_names == ["cost"]``."""

    def __init__(self, env_id: str, num_envs: int = 1, seed: int | None = None,
                 max_episode_steps: int | None = None, num_threads: int = 1):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        spec = task_spec(env_id)
        self.env_id = env_id
        self.cost_names = ["cost"]
        self.num_envs = num_envs
        self.max_episode_steps = int(max_episode_steps or spec.max_episode_steps)
        self.sim = NavigationSim(env_id, num_envs, num_threads)
        self.single_observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (spec.obs_dim,), np.float64)
        self.single_action_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float64)
        self._default_seed = seed
        self._needs_reset = True
        self._episode_return = np.zeros(num_envs)
        self._episode_cost = np.zeros((num_envs, 1))
        self._episode_length = np.zeros(num_envs, dtype=np.int64)
        self._renderer = None

    @property
    def num_costs(self) -> int:
        return len(self.cost_names)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start every env afresh, env i reseeded with ``seed + i``.

        ``seed=None`` keeps each env's RNG going, except at the first reset, which uses make's seed.
        """
        if seed is None and self._needs_reset:
            seed = self._default_seed
        for i in range(self.num_envs):
            self.sim.reset_env(i, None if seed is None else seed + i)
        self._needs_reset = False
        self._episode_return = np.zeros(self.num_envs)
        self._episode_cost = np.zeros((self.num_envs, 1))
        self._episode_length = np.zeros(self.num_envs, dtype=np.int64)
        return self.sim.observe()

    def step(self, actions):
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != (self.num_envs, 2):
            raise ValueError(f"expected actions of shape {(self.num_envs, 2)}, got {actions.shape}")
        reward, cost = self.sim.step(np.maximum(np.minimum(actions, 1.0), -1.0))
        obs = self.sim.observe()
        # Fresh arrays each step (not in-place), so info can hand them out without copies.
        self._episode_return = self._episode_return + reward
        self._episode_cost = self._episode_cost + cost[:, None]
        self._episode_length = self._episode_length + 1
        truncated = self._episode_length >= self.max_episode_steps
        info = {
            "episode_done": truncated,
            "episode_return": self._episode_return,
            "episode_cost": self._episode_cost,
            "episode_length": self._episode_length,
            "final_obs": obs.copy(),
        }
        if truncated.any():
            done = np.flatnonzero(truncated)
            for i in done:
                self.sim.reset_env(i)
            obs[done] = self.sim.observe(idx=done)
            self._episode_return = np.where(truncated, 0.0, self._episode_return)
            self._episode_cost = np.where(truncated[:, None], 0.0, self._episode_cost)
            self._episode_length = np.where(truncated, 0, self._episode_length)
        return obs, reward, cost[:, None], np.zeros(self.num_envs, dtype=bool), truncated.copy(), info

    def render(self, env_index: int = 0, camera: str = "track", width: int = 320,
               height: int = 240) -> np.ndarray:
        """An RGB frame [height, width, 3] of env ``env_index`` from ``"track"`` or ``"overhead"``.

        Needs an OpenGL backend (e.g. ``MUJOCO_GL=egl`` or ``osmesa``).
        """
        import mujoco

        if self._renderer is None or (self._renderer.height, self._renderer.width) != (height, width):
            if self._renderer is not None:
                self._renderer.close()
            self._renderer = mujoco.Renderer(self.sim.model, height=height, width=width)
        self._renderer.update_scene(self.sim.datas[env_index], camera=camera)
        return self._renderer.render().copy()

    def close(self) -> None:
        self.sim.close()
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self) -> str:
        return f"NavigationVectorEnv({self.env_id!r}, num_envs={self.num_envs})"
