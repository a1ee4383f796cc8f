"""The batched simulator behind every navigation env: N ``MjData`` sharing one model.

Per step, the only per-env Python is writing the controls, ``mj_step``, one ``mj_forward`` (as
Safety-Gymnasium, so sensors describe the state after the last substep) and one copy of
``sensordata`` (``world.py`` puts everything we need there); tasks with gremlins also move their
weld targets before every substep. (RK4 robots, Racecar and Ant, cannot let resting objects sleep,
so their vases and boxes cost every substep as they do in Safety-Gymnasium.) Observation, reward and cost are
then computed for the whole batch with numpy (reward and cost live in ``rules.py``). Physics
runs on the project's shared thread team (``saferl.envs.threads``): ``mj_step`` releases the GIL.
Resets, goal re-placements and button re-choices are rare, so they stay simple per-env Python.
"""

from __future__ import annotations

import mujoco
import numpy as np

from saferl.envs.threads import ThreadTeam, default_num_threads

from . import tasks as T
from .layout import new_rng, sample_layout
from .lidar import ego_xy, pseudo_lidar
from .robots import ANT_RESET_NOISE
from .rules import TaskRules
from .world import build_world


def quat_to_mat(q: np.ndarray) -> np.ndarray:
    """Row-major 3x3 rotation matrices [N, 9] from unit quaternions (w, x, y, z) [N, 4]."""
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=1)


def sensor_observation(sens: np.ndarray, layout: tuple[tuple[str, int], ...], out: np.ndarray) -> int:
    """Write the robot's observed sensors (the first values of ``sens`` [N, ...]) into ``out`` [N, ...] as
    ``layout`` says (see ``robots.OBS_WIDTH``); returns how many observation columns were written."""
    src = dst = 0
    for kind, n in layout:
        block = sens[:, src:src + n]
        if kind == "raw":
            out[:, dst:dst + n] = block
            width = n
        elif kind == "z":                 # a position: its height only
            out[:, dst] = block[:, 2]
            width = 1
        elif kind == "sincos":            # angles as (sin, cos) pairs
            width = 2 * n
            out[:, dst:dst + width:2] = np.sin(block)
            out[:, dst + 1:dst + width:2] = np.cos(block)
        elif kind == "quatmat":           # a quaternion as a rotation matrix
            width = 9
            out[:, dst:dst + width] = quat_to_mat(block)
        else:
            raise ValueError(f"unknown observation kind {kind!r}")
        src += n
        dst += width
    return dst


def _yaw_quat(yaw: float) -> tuple[float, float, float, float]:
    return (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))


class NavigationSim(TaskRules):
    """Physics, layouts, observation, reward and cost for ``num_envs`` copies of one task.

    No episode bookkeeping: ``reset_env`` starts env i afresh and ``step`` advances all envs;
    the vector env and the gymnasium env decide when to reset.
    """

    def __init__(self, env_id: str, num_envs: int = 1, num_threads: int | None = None):
        self.spec = spec = T.task_spec(env_id)
        self.world = world = build_world(spec)
        self.model = model = world.model
        self.num_envs = n = num_envs
        self.robot = spec.robot
        self.datas = [mujoco.MjData(model) for _ in range(n)]
        # Cached numpy views into each MjData (cheaper than attribute lookups every step).
        self._ctrl = [d.ctrl for d in self.datas]
        self._sensordata = [d.sensordata for d in self.datas]
        self._mocap = [d.mocap_pos for d in self.datas]
        self.sens = np.zeros((n, model.nsensordata))
        self.obs_dim = spec.obs_dim
        self.rngs: list[np.random.RandomState | None] = [None] * n
        self.steps = np.zeros(n, dtype=np.int64)     # steps since reset
        # Safety-Gymnasium draws its frame skip (binomial(10, 1.0): always 10, one uniform consumed)
        # from the layout RNG every step; we skip those draws lazily, just before the RNG is next used.
        self.pending_draws = np.zeros(n, dtype=np.int64)
        # The "split" first substep (mj_step2 after the last forward) is exact for Euler only, not RK4.
        self._split_step = self.robot.integrator == "Euler"
        self._init_qpos = np.array([model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j)]
                                    for j, _, _ in self.robot.joint_init], dtype=np.int64)
        self._pos = world.robot_pos                  # slices of sensordata
        self._axes = slice(world.robot_xaxis.start, world.robot_yaxis.stop)
        assert world.robot_yaxis.start == world.robot_xaxis.stop, "x and y axes must be adjacent"

        # Object table [N, M, 3] (z = 0: lidar sees centres on the floor), grouped by kind in
        # lidar order; every observed object has a slot, plus the goal's for reward and cost.
        counts = {"goal": 1, "circle": 1}
        counts.update({g.kind: g.count for g in spec.groups})
        self.slots, start = {}, 0
        for kind in spec.lidar_kinds:
            self.slots[kind] = slice(start, start + counts[kind])
            start += counts[kind]
        self.obj = np.zeros((n, start, 3))
        self.lidar_starts = np.array([self.slots[k].start for k in spec.lidar_kinds])
        keepouts = {g.kind: g.keepout for g in spec.groups}
        self.slot_keepout = np.concatenate([np.full(counts[k], keepouts.get(k, 0.0))
                                            for k in spec.lidar_kinds])
        self._goal = self.slots["goal"].start if "goal" in self.slots else None
        self._free = [(self.slots[k], adr[:, :2]) for k, adr in world.free_pos.items()]
        self._box = world.free_pos["push_box"][0] if "push_box" in world.free_pos else None  # 3 sensordata indices

        self.last_dist = np.zeros(n)        # robot to goal (Push: box to goal)
        self.last_box_dist = np.zeros(n)    # Push: robot to box
        self.goal_button = np.zeros(n, dtype=np.int64)
        self.button_timer = np.zeros(n, dtype=np.int64)
        self._gremlins = "gremlins" in self.slots
        if self._gremlins:
            g = spec.group("gremlins").count
            self.gremlin_centre = np.zeros((n, g, 2))    # layout points (the goal keeps clear of these)
            ids = world.mocap["gremlins"]
            contiguous = np.array_equal(ids, np.arange(ids[0], ids[0] + len(ids)))
            self._gremlin_mocap = slice(int(ids[0]), int(ids[0]) + len(ids)) if contiguous else ids   # cheaper writes
        self._cost_terms()
        self.num_threads = default_num_threads(n, num_threads)
        self._team = ThreadTeam(self.num_threads)

    # -- physics --------------------------------------------------------------------------------

    def _step_some(self, pending, actions: np.ndarray) -> None:
        """Step the envs no other thread took (runs on every thread of the team)."""
        model, nstep, forward = self.model, self.robot.substeps, mujoco.mj_forward
        ctrl, datas, sensordata, sens = self._ctrl, self.datas, self._sensordata, self.sens
        for i in pending:
            ctrl[i][:] = actions[i]
            d = datas[i]
            if self._gremlins:
                self._step_with_gremlins(i)
            elif not self._split_step:
                mujoco.mj_step(model, d, nstep)
            else:
                # The forward that ended the last step (or the reset) already ran this state's position
                # and velocity stages, so mj_step2 completes the first substep (same numbers, less work).
                mujoco.mj_step2(model, d)
                mujoco.mj_step(model, d, nstep - 1)
            forward(model, d)             # sensors (and contacts) of the state after the last substep
            sens[i] = sensordata[i]

    def _step_with_gremlins(self, i: int) -> None:
        """Substeps of env i, each after moving every gremlin's target to its place at ``data.time``.

        Target = layout point + travel * (sin t, cos t) at twice the box's half-size above the floor:
        all gremlins in phase, clockwise, starting (0, +travel) off their point; the boxes follow
        through their soft welds, so they spring out over the first steps and then lag a little.
        """
        d, model, mocap, ids = self.datas[i], self.model, self._mocap[i], self._gremlin_mocap
        # The substeps' times as MuJoCo will reach them (it adds the timestep once per substep).
        times = np.empty(self.robot.substeps)
        t = d.time
        for k in range(len(times)):
            times[k] = t
            t += model.opt.timestep
        offset = T.GREMLIN_TRAVEL * np.stack((np.sin(times), np.cos(times)), axis=-1)   # [substeps, 2]
        targets = self.gremlin_centre[i][None] + offset[:, None]                         # [substeps, G, 2]
        mocap[ids, 2] = 2 * self.spec.group("gremlins").size
        step = mujoco.mj_step
        for target in targets:
            mocap[ids, :2] = target
            step(model, d)

    def _physics(self, actions: np.ndarray) -> None:
        self._team.for_each(lambda pending: self._step_some(pending, actions), self.num_envs)

    def _place_gremlins(self, i: int, centre: np.ndarray, yaw: np.ndarray | None = None) -> None:
        """Gremlin boxes of env i at rest on their points (``centre`` [count, 2]), targets on the boxes."""
        d, world, size = self.datas[i], self.world, self.spec.group("gremlins").size
        self.gremlin_centre[i] = centre
        quats = [_yaw_quat(a) for a in (np.zeros(len(centre)) if yaw is None else yaw)]
        for adr, p, q in zip(world.free_qpos["gremlins"], centre, quats, strict=True):
            d.qpos[adr:adr + 3] = (p[0], p[1], size)
            d.qpos[adr + 3:adr + 7] = q
        d.mocap_pos[self._gremlin_mocap, :2] = centre
        d.mocap_pos[self._gremlin_mocap, 2] = size
        d.mocap_quat[self._gremlin_mocap] = quats
        self.obj[i, self.slots["gremlins"], :2] = centre

    # -- reset ----------------------------------------------------------------------------------

    def reset_env(self, i: int, seed: int | None = None) -> None:
        """New layout for env i; ``seed`` (or a first reset) restarts its RNG, else the RNG continues."""
        if seed is not None or self.rngs[i] is None:
            self.rngs[i] = new_rng(seed)
            self.pending_draws[i] = 0
        rng, world, d = self.rng(i), self.world, self.datas[i]
        layout = sample_layout(rng, self.spec)
        mujoco.mj_resetData(self.model, d)
        self.robot.set_pose(d.qpos, layout.robot_xy[0], layout.robot_xy[1], layout.robot_yaw)
        for kind, xy in layout.xy.items():
            if kind == "gremlins":
                self._place_gremlins(i, xy, layout.yaw[kind])
                continue
            if kind in world.mocap:
                d.mocap_pos[world.mocap[kind], :2] = xy
            height = self.spec.group(kind).size - (T.VASE_SINK if kind == "vases" else 0.0)
            for adr, p, yaw in zip(world.free_qpos.get(kind, ()), xy, layout.yaw[kind], strict=False):
                d.qpos[adr:adr + 3] = (p[0], p[1], height)
                d.qpos[adr + 3:adr + 7] = _yaw_quat(yaw)
            if kind in self.slots:
                self.obj[i, self.slots[kind], :2] = xy
        self.steps[i] = 0
        self.button_timer[i] = 0
        if self.spec.task == "Button":
            self._choose_button(i)
        self._init_joints(i)
        mujoco.mj_forward(self.model, d)
        self.sens[i] = d.sensordata
        self._read_free_objects(i)
        self._reset_progress(i)

    def _init_joints(self, i: int) -> None:
        """The robot's starting joint angles with their noise (Ant), drawn after everything else of a reset."""
        if not len(self._init_qpos):
            return
        rng, qpos = self.rng(i), self.datas[i].qpos
        for adr, (_, angle, sign) in zip(self._init_qpos, self.robot.joint_init, strict=True):
            qpos[adr] = angle + sign * rng.uniform(-ANT_RESET_NOISE, ANT_RESET_NOISE)

    def fallen(self) -> np.ndarray:
        """Envs whose robot has fallen over [N] (Ant: its torso centre at or below ``fall_height``)."""
        if self.robot.fall_height is None:
            return np.zeros(self.num_envs, dtype=bool)
        return self.sens[:, self._pos.start + 2] <= self.robot.fall_height

    def robot_yaw(self, i: int) -> float:
        """Env i's heading: the angle of the robot's body x axis in the floor plane."""
        xaxis = self.sens[i, self.world.robot_xaxis]
        return float(np.arctan2(xaxis[1], xaxis[0]))

    def rng(self, i: int) -> np.random.RandomState:
        """Env i's layout RNG, advanced past the per-step draws Safety-Gymnasium made since its last use."""
        if self.pending_draws[i]:
            self.rngs[i].random_sample(self.pending_draws[i])
            self.pending_draws[i] = 0
        return self.rngs[i]

    def set_state(self, i: int, robot: tuple[float, float, float] | None = None,
                  objects: dict[str, np.ndarray] | None = None,
                  robot_vel: tuple[float, float] | None = None) -> None:
        """Hand-place env i's robot (x, y, yaw), its planar velocity and objects ({kind: [count, 2]}).

        For tests and demos: builds exact scenes (lidar, cost and reward checks) without sampling.
        Progress distances restart from the new positions, so the next reward is pure progress.
        """
        world, d = self.world, self.datas[i]
        if robot is not None:
            self.robot.set_pose(d.qpos, *robot)
            d.qvel[:] = 0.0
        if robot_vel is not None:
            d.qvel[:2] = robot_vel
        for kind, xy in (objects or {}).items():
            xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
            if kind == "goal":
                self._set_goal(i, xy[0])
                continue
            if kind == "gremlins":
                self._place_gremlins(i, xy)
                continue
            if kind in world.mocap:
                d.mocap_pos[world.mocap[kind], :2] = xy
            for adr, p in zip(world.free_qpos.get(kind, ()), xy, strict=False):
                d.qpos[adr:adr + 2] = p
            self.obj[i, self.slots[kind], :2] = xy
        if objects and "buttons" in objects:
            self._set_goal(i, self.obj[i, self.slots["buttons"].start + self.goal_button[i], :2])
        mujoco.mj_forward(self.model, d)
        self.sens[i] = d.sensordata
        self._read_free_objects(i)
        self._reset_progress(i)

    def _read_free_objects(self, idx) -> None:
        """Copy the positions of physics-driven objects (vases, push box) into the object table."""
        for slot, adr in self._free:
            self.obj[idx, slot, :2] = self.sens[idx][..., adr]

    # -- step -----------------------------------------------------------------------------------

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance every env by one action (already clipped); returns (reward [N], cost [N])."""
        self._physics(actions)
        self.steps += 1
        self.pending_draws += 1
        if self._free:
            self._read_free_objects(slice(None))
        robot_xy = self.sens[:, self._pos.start:self._pos.start + 2]
        cost = self._cost(robot_xy)
        reward = self._reward(robot_xy)
        return reward, cost

    # -- observation ----------------------------------------------------------------------------

    def observe(self, idx=None) -> np.ndarray:
        """Observations [N, obs_dim] (or of envs ``idx``): the robot's sensors, then one lidar per kind."""
        s = self.sens if idx is None else self.sens[idx]
        obj = self.obj if idx is None else self.obj[idx]
        n = len(s)
        obs = np.empty((n, self.obs_dim))
        k = sensor_observation(s, self.robot.obs_layout, obs)
        ego = ego_xy(obj - s[:, None, self._pos], s[:, self._axes].reshape(n, 2, 3))
        lidar = pseudo_lidar(ego, self.lidar_starts, self.spec.lidar_range, T.LIDAR_BINS)
        self._hide_buttons(lidar, idx)
        obs[:, k:] = lidar.reshape(n, -1)
        return obs

    def close(self) -> None:
        self._team.close()
