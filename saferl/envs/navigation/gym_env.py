"""A single navigation task as a plain ``gymnasium.Env`` (cost in ``info["cost"]``), and its registration.

It drives the same batched simulator with one env and no autoreset, so the gymnasium and the
vector paths share every line of task logic.
"""

from __future__ import annotations

import gymnasium
import numpy as np

from .sim import NavigationSim
from .tasks import NAVIGATION_IDS, task_spec
from .vector import action_space


class NavigationEnv(gymnasium.Env):
    """``Safety{Point,Car,Racecar,Doggo,Ant}{Goal,Button,Push,Circle}{0,1,2}-v0``; ``step`` returns gymnasium's
    5-tuple (``terminated`` only when an Ant falls over)."""

    metadata = {"render_modes": ["rgb_array"]}
    def __init__(self, env_id: str = "SafetyPointGoal1-v0", max_episode_steps: int | None = None,
                 render_mode: str | None = None, camera: str = "track", width: int = 320, height: int = 240):
        spec = task_spec(env_id)
        self.env_id = env_id
        self.cost_names = ["cost"]
        self.sim = NavigationSim(env_id, 1)
        self.max_episode_steps = int(max_episode_steps or spec.max_episode_steps)
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (spec.obs_dim,), np.float64)
        self.action_space = action_space(self.sim.model)
        self.metadata = {**self.metadata, "render_fps": round(1.0 / spec.robot.dt)}
        self.render_mode = render_mode
        self._camera, self._size = camera, (height, width)
        self._renderer = None
        self._elapsed = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.sim.reset_env(0, seed)
        self._elapsed = 0
        return self.sim.observe()[0], {}

    def step(self, action):
        space = self.action_space
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(1, space.shape[0]), space.low, space.high)
        reward, cost = self.sim.step(action)
        self._elapsed += 1
        truncated = self._elapsed >= self.max_episode_steps
        terminated = bool(self.sim.fallen()[0])
        return self.sim.observe()[0], float(reward[0]), terminated, truncated, {"cost": float(cost[0])}

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        import mujoco

        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.sim.model, *self._size)
        self._renderer.update_scene(self.sim.datas[0], camera=self._camera)
        return self._renderer.render().copy()

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self.sim.close()


def register_navigation_envs() -> None:
    """Register every navigation id with gymnasium (safe to call repeatedly)."""
    for env_id in NAVIGATION_IDS:
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point="saferl.envs.navigation.gym_env:NavigationEnv",
                               kwargs={"env_id": env_id},
                               max_episode_steps=task_spec(env_id).max_episode_steps)
