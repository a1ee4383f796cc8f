"""One safe Fetch task as a gymnasium env: gymnasium-robotics' Fetch (v4 physics, control, observation,
reward and success) with our episode layout, a keep-out box and a speed limit (see ``layout.py``).

Only the reset (object, goal and box drawn by ``sample_layout``), the extra ``keepout`` entry of the
Dict observation (box centre and half-sizes, 6 numbers) and ``info["cost"]`` are ours; ``step``
is gymnasium-robotics' own, so the batched backend (``vector.py``) is tested against it.
"""

from __future__ import annotations

import contextlib
import io
import os

import mujoco
import numpy as np
from gymnasium import spaces

from .layout import SPEED_LIMIT, TASKS, Layout, sample_layout, step_costs

with contextlib.redirect_stderr(io.StringIO()):  # its import prints a notice about the (unrelated) Adroit tasks
    from gymnasium_robotics.envs.fetch.fetch_env import MujocoFetchEnv
    from gymnasium_robotics.utils.rotations import mat2euler  # noqa: F401  (re-exported for vector.py)

_BASE_QPOS = {"robot0:slide0": 0.405, "robot0:slide1": 0.48, "robot0:slide2": 0.0}
_OBJECT_QPOS = {"object0:joint": [1.25, 0.53, 0.4, 1.0, 0.0, 0.0, 0.0]}

# The v4 constructor arguments, except Push's gripper_extra_height (0.0 there): every task starts above the box.
TASK_ARGS = {
    "Reach": dict(model_path=os.path.join("fetch", "reach.xml"), has_object=False, block_gripper=True,
                  target_in_the_air=True, initial_qpos={**_BASE_QPOS, "robot0:slide0": 0.4049}),
    "Push": dict(model_path=os.path.join("fetch", "push.xml"), has_object=True, block_gripper=True,
                 target_in_the_air=False, initial_qpos={**_BASE_QPOS, **_OBJECT_QPOS}),
    "PickAndPlace": dict(model_path=os.path.join("fetch", "pick_and_place.xml"), has_object=True,
                         block_gripper=False, target_in_the_air=True, initial_qpos={**_BASE_QPOS, **_OBJECT_QPOS}),
}


def reset_state(model, data, rng: np.random.Generator, setup: dict) -> Layout:
    """v4's ``_reset_sim`` with our layout: initial state, object placed, ``mj_forward``. Shared by both backends."""
    mujoco.mj_resetData(model, data)
    data.time = setup["time"]
    data.qpos[:] = setup["qpos"]
    data.qvel[:] = setup["qvel"]
    layout = sample_layout(rng, setup["task"], setup["gripper_start"], setup["object_z"])
    if layout.object_xy is not None:
        adr = setup["object_qpos_adr"]
        data.qpos[adr:adr + 2] = layout.object_xy
    mujoco.mj_forward(model, data)
    return layout


class SafetyFetchEnv(MujocoFetchEnv):
    """``SafetyFetch{Reach,Push,PickAndPlace}[Dense]-v0``; ``info["cost"] = [keepout, speed]``, plus v4's
    ``info["is_success"]`` and the gripper speed ``info["ee_speed"]``."""

    cost_names = ["keepout", "speed"]

    def __init__(self, task: str = "Push", reward_type: str = "sparse", speed_limit: float = SPEED_LIMIT, **kwargs):
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.task = task
        self.speed_limit = speed_limit
        self._layout = Layout(goal=np.zeros(3), box=np.zeros(6))
        super().__init__(n_substeps=20, gripper_extra_height=0.2, target_offset=0.0, obj_range=0.15,
                         target_range=0.15, distance_threshold=0.05, reward_type=reward_type,
                         **TASK_ARGS[task], **kwargs)
        self.observation_space = spaces.Dict({**self.observation_space.spaces,
                                              "keepout": spaces.Box(-np.inf, np.inf, (6,), np.float64)})
        self._grip_site = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, "robot0:grip")
        self._keepout_site = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, "keepout0")

    def _initialize_simulation(self):
        """v4's, plus a box site (visual only: sites never collide) that shows the keep-out zone."""
        spec = mujoco.MjSpec.from_file(self.fullpath)
        spec.worldbody.add_site(name="keepout0", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.01, 0.01, 0.01],
                                pos=[0.0, 0.0, -1.0], rgba=[1.0, 0.2, 0.1, 0.35])
        self.model = spec.compile()
        self.data = self._mujoco.MjData(self.model)
        self._model_names = self._utils.MujocoModelNames(self.model)
        self.model.vis.global_.offwidth = self.width
        self.model.vis.global_.offheight = self.height
        self._env_setup(initial_qpos=self.initial_qpos)
        self.initial_time = self.data.time
        self.initial_qpos = np.copy(self.data.qpos)
        self.initial_qvel = np.copy(self.data.qvel)

    @property
    def setup(self) -> dict:
        """What a reset needs besides the RNG (the batched backend reads it off one template env)."""
        object_adr = None
        if self.has_object:
            object_adr = int(self.model.jnt_qposadr[mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT,
                                                                      "object0:joint")])
        return {"task": self.task, "time": self.initial_time, "qpos": self.initial_qpos, "qvel": self.initial_qvel,
                "gripper_start": self.initial_gripper_xpos.copy(), "object_z": getattr(self, "height_offset", 0.0),
                "object_qpos_adr": object_adr}

    @property
    def layout(self) -> Layout:
        """This episode's goal and keep-out box (for demonstrators and tests)."""
        return self._layout

    def _reset_sim(self):
        self._layout = reset_state(self.model, self.data, self.np_random, self.setup)
        return True

    def _sample_goal(self):
        return self._layout.goal.copy()

    def _get_obs(self):
        obs = super()._get_obs()
        obs["keepout"] = self._layout.box.copy()
        return obs

    def step(self, action):
        grip_before = self.data.site_xpos[self._grip_site].copy()
        obs, reward, terminated, truncated, info = super().step(action)
        object_pos = obs["observation"][3:6] if self.has_object else None
        cost, speed = step_costs(obs["observation"][:3], grip_before, object_pos, self._layout.box, self.dt,
                                 self.speed_limit)
        info["cost"] = cost
        info["ee_speed"] = float(speed)
        return obs, reward, terminated, truncated, info

    def _render_callback(self):
        box = self._layout.box
        sites_offset = (self.data.site_xpos - self.model.site_pos).copy()
        self.model.site_pos[self._keepout_site] = box[:3] - sites_offset[self._keepout_site]
        self.model.site_size[self._keepout_site] = box[3:]
        super()._render_callback()  # places the goal marker and runs mj_forward
