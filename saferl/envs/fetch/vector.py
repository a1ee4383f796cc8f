"""Batched backend for the safe Fetch tasks: one MjModel, N MjData, numpy over the batch.

Per env and step, the only Python is gymnasium-robotics' mocap control (mocap welded body
pose + 0.05 * action, fixed gripper orientation; finger position targets for PickAndPlace),
``mj_step`` with 20 substeps (the GIL is released, so the team of ``saferl.envs.threads`` steps
envs in parallel), v4's blocked-finger reset + ``mj_forward`` for Reach and Push, and copying
the few MjData values the observation needs (site positions, the object's orientation, three
site Jacobians times ``qvel`` for the velocities, finger joints). Observation, reward, success
and costs are then computed for all N envs at once, with the same floating-point operations
as v4's single-env code, and resets run ``single.reset_state`` with one RNG per env, seeded like
``env.reset(seed=seed + i)``. So every number equals ``gymnasium.make(id)`` stepped by hand
(``tests/test_fetch.py`` checks it across autoresets).

Physics is most of a single gymnasium-robotics step, so batching saves the Python around it and threads add
the cores; the throughput against gymnasium-robotics: benchmarks/throughput/fetch-push-batched.txt.
"""

from __future__ import annotations

import mujoco
import numpy as np
from gymnasium.utils import seeding

from saferl.envs.threads import ThreadTeam, default_num_threads
from saferl.envs.vector import VectorEnv, flat_observation_space

from .layout import MAX_EPISODE_STEPS, step_costs
from .single import SafetyFetchEnv, mat2euler, reset_state

QUAT_DELTA = np.array([1.0, 0.0, 1.0, 0.0])  # v4 adds this fixed "rotation" to the mocap quaternion every step
GAIN = np.float32(0.05)                       # v4: action * 0.05 m, in float32


class FetchVectorEnv(VectorEnv):
    """N copies of one Fetch task; observations are the flattened Dict (see ``observation_keys``)."""

    def __init__(self, env_id: str, task: str, reward_type: str = "sparse", num_envs: int = 1,
                 seed: int | list[int] | None = None, max_episode_steps: int | None = None,
                 num_threads: int | None = None, **env_kwargs):
        self._template = template = SafetyFetchEnv(task, reward_type, **env_kwargs)
        self.env_id = env_id
        self.cost_names = list(template.cost_names)
        self.max_episode_steps = max_episode_steps or MAX_EPISODE_STEPS
        self.single_observation_space, self.observation_keys = flat_observation_space(template.observation_space)
        self.single_action_space = template.action_space
        self._setup(num_envs, seed)

        self.model = model = template.model
        self._setup_state = template.setup
        self._has_object = template.has_object
        self._block_gripper = template.block_gripper
        self._dense = reward_type == "dense"
        self._threshold = template.distance_threshold
        self._speed_limit = template.speed_limit
        self._dt = template.dt
        self._substeps = template.n_substeps
        site = {name: mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, name) for name in ("robot0:grip", "object0")}
        self._grip_site, self._object_site = site["robot0:grip"], site["object0"]
        fingers = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, f"robot0:{side}_gripper_finger_joint")
                   for side in ("r", "l")]  # v4's gripper_state order: the robot's last two joints
        self._finger_qpos = model.jnt_qposadr[fingers]
        self._finger_dof = model.jnt_dofadr[fingers]
        # v4's ctrl_set_action: position actuators get (current joint position + gripper action).
        self._actuator_qpos = [int(model.jnt_qposadr[model.actuator_trnid[k, 0]]) for k in range(model.nu)]
        welded = int(model.eq_obj2id[0]) if model.body_mocapid[model.eq_obj1id[0]] != -1 else int(model.eq_obj1id[0])

        n = num_envs
        self.datas = [mujoco.MjData(model) for _ in range(n)]
        self._views = [(d.mocap_pos[0], d.mocap_quat[0], d.xpos[welded], d.xquat[welded]) for d in self.datas]
        self._jacobians = [(np.zeros((3, model.nv)), np.zeros((3, model.nv)), np.zeros((3, model.nv)))
                           for _ in range(n)]
        self._grip = np.zeros((n, 3))
        self._grip_velp = np.zeros((n, 3))
        self._finger_pos = np.zeros((n, 2))
        self._finger_vel = np.zeros((n, 2))
        self._object = np.zeros((n, 3))
        self._object_xmat = np.zeros((n, 9))
        self._object_velp = np.zeros((n, 3))
        self._object_velr = np.zeros((n, 3))
        self.goals = np.zeros((n, 3))
        self.boxes = np.zeros((n, 6))
        self._rngs: list[np.random.Generator | None] = [None] * n
        self._pos_delta = self._gripper_ctrl = None
        self.num_threads = default_num_threads(n, num_threads)
        self._team = ThreadTeam(self.num_threads)

    # -- per env (runs on the team's threads) ------------------------------------------------------

    def _gather(self, i: int) -> None:
        """Copy env i's MjData values that the observation needs into the [N, ...] buffers."""
        model, data = self.model, self.datas[i]
        jacp, jacp_object, jacr_object = self._jacobians[i]
        self._grip[i] = data.site_xpos[self._grip_site]
        mujoco.mj_jacSite(model, data, jacp, None, self._grip_site)
        self._grip_velp[i] = jacp @ data.qvel
        self._finger_pos[i] = data.qpos[self._finger_qpos]
        self._finger_vel[i] = data.qvel[self._finger_dof]
        if self._has_object:
            self._object[i] = data.site_xpos[self._object_site]
            self._object_xmat[i] = data.site_xmat[self._object_site]
            mujoco.mj_jacSite(model, data, jacp_object, jacr_object, self._object_site)
            self._object_velp[i] = jacp_object @ data.qvel
            self._object_velr[i] = jacr_object @ data.qvel

    def _step_some(self, pending) -> None:
        model, substeps, datas, views = self.model, self._substeps, self.datas, self._views
        pos_delta, gripper, actuators = self._pos_delta, self._gripper_ctrl, self._actuator_qpos
        for i in pending:
            data = datas[i]
            mocap_pos, mocap_quat, body_pos, body_quat = views[i]
            for k, adr in enumerate(actuators):
                data.ctrl[k] = data.qpos[adr] + gripper[i]
            mocap_pos[:] = body_pos + pos_delta[i]
            mocap_quat[:] = body_quat + QUAT_DELTA
            mujoco.mj_step(model, data, substeps)
            if self._block_gripper:
                data.qpos[self._finger_qpos] = 0.0
                mujoco.mj_forward(model, data)
            self._gather(i)

    # -- VectorEnv hooks ---------------------------------------------------------------------------

    def _step_envs(self, actions):
        self._pos_delta = (actions[:, :3] * GAIN).astype(np.float64)
        self._gripper_ctrl = np.zeros(self.num_envs) if self._block_gripper else actions[:, 3].astype(np.float64)
        grip_before = self._grip.copy()
        self._team.for_each(self._step_some, self.num_envs)
        obs = self._observe()
        achieved = self._object if self._has_object else self._grip
        distance = np.linalg.norm(achieved - self.goals, axis=-1)
        reward = -distance if self._dense else -(distance > self._threshold).astype(np.float32).astype(np.float64)
        success = (distance < self._threshold).astype(np.float32).astype(np.float64)
        cost, speed = step_costs(self._grip, grip_before, self._object if self._has_object else None, self.boxes,
                                 self._dt, self._speed_limit)
        never = np.zeros(self.num_envs, dtype=bool)
        return obs, reward, cost, never, never, {"is_success": success, "ee_speed": speed}

    def _reset_envs(self, indices, seeds):
        for i, seed in zip(indices, seeds, strict=True):
            if seed is not None or self._rngs[i] is None:  # as gymnasium's Env.reset(seed=...)
                self._rngs[i] = seeding.np_random(seed)[0]
            layout = reset_state(self.model, self.datas[i], self._rngs[i], self._setup_state)
            self.goals[i] = layout.goal
            self.boxes[i] = layout.box
            self._gather(i)
        return self._observe()[indices]

    def _observe(self) -> np.ndarray:
        """v4's observation for every env, flattened as (achieved_goal, desired_goal, keepout, observation)."""
        dt, grip = self._dt, self._grip
        grip_velp = self._grip_velp * dt
        parts = {"desired_goal": self.goals, "keepout": self.boxes}
        if self._has_object:
            n = self.num_envs
            object_pos = self._object
            object_velp = self._object_velp * dt
            object_velp -= grip_velp
            parts["achieved_goal"] = object_pos
            parts["observation"] = np.concatenate([
                grip, object_pos, object_pos - grip, self._finger_pos, mat2euler(self._object_xmat.reshape(n, 3, 3)),
                object_velp, self._object_velr * dt, grip_velp, self._finger_vel * dt], axis=1)
        else:
            parts["achieved_goal"] = grip
            parts["observation"] = np.concatenate([grip, self._finger_pos, grip_velp, self._finger_vel * dt], axis=1)
        return np.concatenate([parts[key] for key, _ in self.observation_keys], axis=1)

    def _close(self) -> None:
        for part in (getattr(self, "_team", None), getattr(self, "_template", None)):
            if part is not None:
                part.close()

    def __del__(self):
        self.close()
