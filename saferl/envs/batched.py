"""Fast backend for the velocity tasks: N MuJoCo simulations advanced together, maths in numpy.

Results are bit-identical to N gymnasium single envs (``tests/test_envs.py`` checks every id).
How the time is spent, and why it is organised this way (2-core VM, HalfCheetah, N=16):

* One ``MjModel`` and N *persistent* ``MjData``. Keeping each env's own ``MjData`` keeps its
  constraint-solver warm start, which exact equality with gymnasium needs. ``mujoco.rollout``
  would run the whole batch in C, but it restarts the warm start on every call and cannot
  return it, so its trajectories drift from gymnasium's; we do not use it.
* Threads (``saferl.envs.threads``): ``mj_step`` releases the GIL, so the caller and helper
  threads step disjoint envs in parallel, each pulling the next env from one shared iterator.
* The python work per env is kept minimal because it holds the GIL, and a thread whose
  ``mj_step`` returns while the other holds it pays a full wake-up to get it back (the main
  remaining loss against the open-loop ``physics_ceiling``): copy the action into ``ctrl``,
  ``mj_step(nstep=frame_skip)``, ``mj_rnePostConstraint`` only when the observation needs
  contact forces (gymnasium calls it every step, but it only fills ``cacc``/``cfrc_*``, which
  nothing else reads), and copy a few MjData arrays into ``[N, ...]`` buffers through views
  bound once. Observation, reward, termination and cost are then a handful of numpy operations
  over all N envs, written to round exactly as v4's scalar code does; the action-only terms are
  computed by the caller while the helpers finish their last envs.

Resets replay gymnasium's ``reset_model`` draw for draw (one ``np.random.Generator`` per env,
seeded like ``Env.reset(seed=seed + i)``), then ``mj_resetData`` + state + ``mj_forward``.
"""

from __future__ import annotations

import threading
import time

import gymnasium
import mujoco
import numpy as np
from gymnasium.utils import seeding

from saferl.envs.threads import ThreadTeam, default_num_threads
from saferl.envs.vector import VectorEnv
from saferl.envs.velocity import MAX_EPISODE_STEPS, VELOCITY_TASKS, planar_speed, squared_norm

# ---------------------------------------------------------------------------------------------
# Per-robot v4 formulas, vectorised over envs. `g` maps an MjData field name to its [N, ...] buffer.
# ---------------------------------------------------------------------------------------------


class _Robot:
    """One v4 robot's observation, reward and health, read off a template env's parameters."""

    fields: tuple[str, ...] = ("qpos", "qvel")  # MjData arrays copied out after every step
    qvel_noise = "uniform"  # how reset_model perturbs qvel: "uniform" or "normal"
    obs_skip = 0  # leading qpos entries hidden from the observation by default
    needs_contact_forces = False  # whether mj_rnePostConstraint must follow mj_step

    def __init__(self, env):
        self.ctrl_weight = env._ctrl_cost_weight
        self.forward_weight = getattr(env, "_forward_reward_weight", 1.0)
        self.obs_start = self.obs_skip if env._exclude_current_positions_from_observation else 0
        self.healthy_weight = getattr(env, "_healthy_reward", 0.0)
        self.terminate_when_unhealthy = getattr(env, "_terminate_when_unhealthy", False)

    def field_index(self, model, field: str):
        """Row of an MjData field to copy (None: the whole array)."""
        return None

    def position(self, g) -> np.ndarray:
        """[N, 1] x or [N, 2] xy position whose finite difference v4 uses as velocity."""
        return g["qpos"][:, 0:1].copy()

    def observe(self, g) -> np.ndarray:
        return np.concatenate((g["qpos"][:, self.obs_start:], g["qvel"]), axis=1)

    def is_healthy(self, g) -> np.ndarray | None:
        return None

    def healthy_reward(self, healthy):
        return (healthy | self.terminate_when_unhealthy).astype(np.float64) * self.healthy_weight

    def ctrl_cost(self, actions):
        return self.ctrl_weight * squared_norm(actions)

    def reward(self, velocity, ctrl_cost, g, healthy) -> np.ndarray:
        return self.forward_weight * velocity[:, 0] - ctrl_cost


class _HalfCheetah(_Robot):
    qvel_noise = "normal"
    obs_skip = 1


class _Swimmer(_Robot):
    obs_skip = 2

    def position(self, g):
        return g["qpos"][:, 0:2].copy()


class _Walker2d(_Robot):
    obs_skip = 1

    def __init__(self, env):
        super().__init__(env)
        self.z_range = env._healthy_z_range
        self.angle_range = env._healthy_angle_range

    def observe(self, g):
        return np.concatenate((g["qpos"][:, self.obs_start:], np.clip(g["qvel"], -10, 10)), axis=1)

    def is_healthy(self, g):
        z, angle = g["qpos"][:, 1], g["qpos"][:, 2]
        (min_z, max_z), (min_angle, max_angle) = self.z_range, self.angle_range
        return (min_z < z) & (z < max_z) & (min_angle < angle) & (angle < max_angle)

    def reward(self, velocity, ctrl_cost, g, healthy):
        forward = self.forward_weight * velocity[:, 0]
        return (forward + self.healthy_reward(healthy)) - ctrl_cost


class _Hopper(_Walker2d):
    def __init__(self, env):
        super().__init__(env)
        self.state_range = env._healthy_state_range

    def is_healthy(self, g):
        state = np.concatenate((g["qpos"], g["qvel"]), axis=1)[:, 2:]
        min_state, max_state = self.state_range
        state_ok = np.all((min_state < state) & (state < max_state), axis=1)
        return state_ok & super().is_healthy(g)


class _Ant(_Robot):
    qvel_noise = "normal"
    obs_skip = 2

    def __init__(self, env):
        super().__init__(env)
        self.z_range = env._healthy_z_range
        self.use_contact_forces = env._use_contact_forces
        self.contact_force_range = env._contact_force_range
        self.contact_weight = env._contact_cost_weight
        if self.use_contact_forces:
            self.fields = ("qpos", "qvel", "xpos", "cfrc_ext")
            self.needs_contact_forces = True
        else:
            self.fields = ("qpos", "qvel", "xpos")

    def field_index(self, model, field):
        if field == "xpos":
            return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "torso")
        return None

    def position(self, g):
        return g["xpos"][:, 0:2].copy()

    def contact_forces(self, g):
        low, high = self.contact_force_range
        return np.clip(g["cfrc_ext"], low, high).reshape(len(g["cfrc_ext"]), -1)

    def observe(self, g):
        parts = [g["qpos"][:, self.obs_start:], g["qvel"]]
        if self.use_contact_forces:
            parts.append(self.contact_forces(g))
        return np.concatenate(parts, axis=1)

    def is_healthy(self, g):
        finite = np.isfinite(g["qpos"]).all(axis=1) & np.isfinite(g["qvel"]).all(axis=1)
        z = g["qpos"][:, 2]
        min_z, max_z = self.z_range
        return finite & (min_z <= z) & (z <= max_z)

    def reward(self, velocity, ctrl_cost, g, healthy):
        rewards = velocity[:, 0] + self.healthy_reward(healthy)
        costs = ctrl_cost
        if self.use_contact_forces:
            costs = costs + self.contact_weight * squared_norm(self.contact_forces(g))
        return rewards - costs


class _Humanoid(_Robot):
    fields = ("qpos", "qvel", "cinert", "cvel", "qfrc_actuator", "cfrc_ext", "xipos")
    obs_skip = 2
    needs_contact_forces = True

    def __init__(self, env):
        super().__init__(env)
        self.z_range = env._healthy_z_range
        self.body_mass = env.model.body_mass.copy()
        self.total_mass = self.body_mass.sum()

    def position(self, g):
        # The same contraction as v4's mass_center(), batched over envs: rounds identically.
        return (np.einsum("b,nbj->nj", self.body_mass, g["xipos"]) / self.total_mass)[:, 0:2]

    def observe(self, g):
        n = len(g["qpos"])
        return np.concatenate((g["qpos"][:, self.obs_start:], g["qvel"], g["cinert"].reshape(n, -1),
                               g["cvel"].reshape(n, -1), g["qfrc_actuator"], g["cfrc_ext"].reshape(n, -1)),
                              axis=1)

    def is_healthy(self, g):
        z = g["qpos"][:, 2]
        min_z, max_z = self.z_range
        return (min_z < z) & (z < max_z)

    def ctrl_cost(self, actions):
        # v4 squares data.ctrl, i.e. the action as float64.
        return self.ctrl_weight * squared_norm(actions.astype(np.float64))

    def reward(self, velocity, ctrl_cost, g, healthy):
        forward = self.forward_weight * velocity[:, 0]
        return (forward + self.healthy_reward(healthy)) - ctrl_cost


_ROBOT_FORMULAS = {
    "HalfCheetah": _HalfCheetah,
    "Hopper": _Hopper,
    "Walker2d": _Walker2d,
    "Ant": _Ant,
    "Humanoid": _Humanoid,
    "Swimmer": _Swimmer,
}


# ---------------------------------------------------------------------------------------------
# The batched env
# ---------------------------------------------------------------------------------------------


class BatchedVelocityEnv(VectorEnv):
    """All N envs of one velocity id in a single object; see the module docstring for the design.

    ``env_kwargs`` are the task's constructor arguments (v4 ones such as ``ctrl_cost_weight`` or
    ``exclude_current_positions_from_observation``, and ``velocity_threshold``); they are applied
    by building one template single env and reading its parameters, so both backends agree.
    """

    def __init__(self, env_id: str, num_envs: int = 1, seed: int | None = None,
                 max_episode_steps: int | None = None, num_threads: int | None = None, **env_kwargs):
        task = VELOCITY_TASKS[env_id]
        template = task.env_class(**{**task.kwargs, **env_kwargs})
        self._template = template
        self.env_id = env_id
        self.single_observation_space = template.observation_space
        self.single_action_space = template.action_space
        self.cost_names = list(template.cost_names)
        self.max_episode_steps = MAX_EPISODE_STEPS if max_episode_steps is None else max_episode_steps
        self._setup(num_envs, seed)

        self._robot = robot = _ROBOT_FORMULAS[task.robot](template)
        self._speed = template.speed
        self._velocity_threshold = template.velocity_threshold
        self.velocity_threshold = template.velocity_threshold
        self._effort_threshold = template.effort_threshold

        self.model = model = template.model
        self._frame_skip = template.frame_skip
        self._dt = template.dt
        self._init_qpos = template.init_qpos
        self._init_qvel = template.init_qvel
        self._noise_scale = template._reset_noise_scale
        self.datas = [mujoco.MjData(model) for _ in range(num_envs)]
        self._ctrls = [data.ctrl for data in self.datas]

        # Gather buffers, and per env the (buffer row, MjData view) pairs to copy after a step.
        self._gathered = {}
        self._copies = [[] for _ in range(num_envs)]
        for field in robot.fields:
            index = robot.field_index(model, field)
            views = [getattr(data, field) if index is None else getattr(data, field)[index]
                     for data in self.datas]
            buffer = np.zeros((num_envs,) + views[0].shape)
            self._gathered[field] = buffer
            for i, view in enumerate(views):
                self._copies[i].append((buffer[i], view))

        self._rngs: list[np.random.Generator | None] = [None] * num_envs
        self._position = None
        self._actions = None
        self.num_threads = default_num_threads(num_envs, num_threads)
        self._team = ThreadTeam(self.num_threads)

    # -- stepping ----------------------------------------------------------------------------

    def _step_some(self, pending) -> None:
        """Step the envs no other thread took (runs on every thread of the team)."""
        model, substeps, mj_step = self.model, self._frame_skip, mujoco.mj_step
        contact_forces = mujoco.mj_rnePostConstraint if self._robot.needs_contact_forces else None
        actions, datas, ctrls, copies = self._actions, self.datas, self._ctrls, self._copies
        for i in pending:
            ctrls[i][:] = actions[i]
            data = datas[i]
            mj_step(model, data, substeps)
            if contact_forces is not None:
                contact_forces(model, data)
            for row, view in copies[i]:
                row[...] = view

    def _step_envs(self, actions):
        self._actions = actions
        self._team.for_each(self._step_some, self.num_envs, then=self._action_terms)
        self._actions = None

        robot, g = self._robot, self._gathered
        position = robot.position(g)
        velocity = (position - self._position) / self._dt
        self._position = position
        healthy = robot.is_healthy(g)
        reward = robot.reward(velocity, self._ctrl_cost, g, healthy)
        if healthy is not None and robot.terminate_when_unhealthy:
            terminated = ~healthy
        else:
            terminated = np.zeros(self.num_envs, dtype=bool)
        cost = self._costs(velocity)
        obs = robot.observe(g)
        # info["velocity"]: what the speed limit is measured on (reports use it)
        return obs, reward, cost, terminated, np.zeros(self.num_envs, dtype=bool), {"velocity": self._speed_values}

    def _action_terms(self) -> None:
        """Terms that need only the actions, computed while the helper threads finish stepping."""
        actions = self._actions
        self._ctrl_cost = self._robot.ctrl_cost(actions)
        self._cost = cost = np.empty((self.num_envs, self.num_costs))
        if self._effort_threshold is not None:
            cost[:, 1] = squared_norm(actions) > self._effort_threshold

    def _costs(self, velocity) -> np.ndarray:
        if self._speed == "x":
            speed = velocity[:, 0]
        else:
            speed = planar_speed(velocity[:, 0], velocity[:, 1])
        self._speed_values = speed
        cost = self._cost
        cost[:, 0] = speed > self._velocity_threshold
        return cost

    # -- resetting ---------------------------------------------------------------------------

    def _reset_envs(self, indices, seeds):
        for i, seed in zip(indices, seeds, strict=True):
            self._reset_env(i, seed)
        robot, g = self._robot, self._gathered
        if self._position is None or len(indices) == self.num_envs:
            self._position = robot.position(g)
        else:
            self._position[indices] = robot.position(g)[indices]
        return robot.observe(g)[indices]

    def _reset_env(self, i: int, seed: int | None) -> None:
        """gymnasium's ``MujocoEnv.reset`` + v4 ``reset_model`` for env i, same draws in the same order."""
        if seed is not None or self._rngs[i] is None:  # never seeded: fresh entropy, as gymnasium's np_random
            self._rngs[i] = seeding.np_random(seed)[0]
        rng = self._rngs[i]
        model, data, scale = self.model, self.datas[i], self._noise_scale
        mujoco.mj_resetData(model, data)
        qpos = self._init_qpos + rng.uniform(low=-scale, high=scale, size=model.nq)
        if self._robot.qvel_noise == "normal":
            qvel = self._init_qvel + scale * rng.standard_normal(model.nv)
        else:
            qvel = self._init_qvel + rng.uniform(low=-scale, high=scale, size=model.nv)
        data.qpos[:] = qpos
        data.qvel[:] = qvel
        mujoco.mj_forward(model, data)
        for row, view in self._copies[i]:
            row[...] = view

    def _close(self) -> None:
        for part in (getattr(self, "_team", None), getattr(self, "_template", None)):
            if part is not None:
                part.close()

    def __del__(self):
        self.close()


def physics_ceiling(env_id: str, num_envs: int = 16, seconds: float = 2.0,
                    num_threads: int | None = None) -> float:
    """Open-loop env-steps/s of bare ``mj_step`` (``frame_skip`` substeps) over N MjData on all cores.

    Random constant controls, no observation/reward work and no per-step synchronisation:
    the upper bound for any backend of this env on this machine.
    """
    if env_id in VELOCITY_TASKS:
        task = VELOCITY_TASKS[env_id]
        env = task.env_class(**task.kwargs)
    else:
        env = gymnasium.make(env_id).unwrapped
    model, substeps = env.model, env.frame_skip
    rng = np.random.default_rng(0)
    datas = []
    for _ in range(num_envs):
        data = mujoco.MjData(model)
        low, high = model.actuator_ctrlrange.T
        data.ctrl[:] = rng.uniform(low, high)
        mujoco.mj_forward(model, data)
        datas.append(data)
    env.close()

    threads = default_num_threads(num_envs, num_threads)
    chunks = [chunk for chunk in np.array_split(np.arange(num_envs), threads) if len(chunk)]
    counts = [0] * len(chunks)
    ready = threading.Barrier(len(chunks))
    clock = {}

    def run(k: int) -> None:
        chunk = [datas[i] for i in chunks[k]]
        if ready.wait() == 0:  # exactly one thread starts the clock
            clock["start"] = time.perf_counter()
            clock["deadline"] = clock["start"] + seconds
        ready.wait()
        deadline = clock["deadline"]
        while time.perf_counter() < deadline:
            for data in chunk:
                mujoco.mj_step(model, data, substeps)
            counts[k] += len(chunk)

    helpers = [threading.Thread(target=run, args=(k,)) for k in range(1, len(chunks))]
    for helper in helpers:
        helper.start()
    run(0)
    for helper in helpers:
        helper.join()
    elapsed = time.perf_counter() - clock["start"]
    return sum(counts) / elapsed
