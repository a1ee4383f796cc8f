"""``NavigationVectorEnv``: the project's VectorEnv contract on top of the batched simulator.

Episodes truncate at ``max_episode_steps``; only a fallen Ant terminates. Seeds, same-step autoreset
and episode statistics come from ``saferl.envs.vector.VectorEnv``.
"""

from __future__ import annotations

import gymnasium
import numpy as np

from saferl.envs.vector import VectorEnv

from .sim import NavigationSim
from .tasks import task_spec


def action_space(model) -> gymnasium.spaces.Box:
    """One control per actuator, bounded by its ``ctrlrange`` (as Safety-Gymnasium's robots)."""
    low, high = model.actuator_ctrlrange.T.copy()
    return gymnasium.spaces.Box(low, high, (model.nu,), np.float64)


class NavigationVectorEnv(VectorEnv):
    """N copies of one navigation task. ``cost`` is one aggregated 0/1 column, ``cost_names == ["cost"]``.

    ``num_threads``: threads stepping the physics (default ``min(cores, num_envs)``, see
    ``saferl.envs.threads``).
    """

    def __init__(self, env_id: str, num_envs: int = 1, seed: int | list[int] | None = None,
                 max_episode_steps: int | None = None, num_threads: int | None = None):
        spec = task_spec(env_id)
        self.env_id = env_id
        self.cost_names = ["cost"]
        self.max_episode_steps = int(max_episode_steps or spec.max_episode_steps)
        self.single_observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (spec.obs_dim,), np.float64)
        self.sim = NavigationSim(env_id, num_envs, num_threads)
        self.single_action_space = action_space(self.sim.model)
        self._setup(num_envs, seed)
        self.num_threads = self.sim.num_threads
        self._renderer = None

    def _reset_envs(self, indices, seeds):
        for i, seed in zip(indices, seeds, strict=True):
            self.sim.reset_env(i, seed)
        if len(indices) == self.num_envs:
            return self.sim.observe()
        return self.sim.observe(idx=indices)

    def _step_envs(self, actions):
        reward, cost = self.sim.step(actions)
        never = np.zeros(self.num_envs, dtype=bool)
        return self.sim.observe(), reward, cost[:, None], self.sim.fallen(), never, {}

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

    def _close(self) -> None:
        self.sim.close()
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
