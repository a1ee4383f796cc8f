"""saferl's side of the comparison with Safety-Gymnasium 1.0.0 (``make fidelity``, tests/fixtures).

Each function measures one thing the same way ``benchmarks/fidelity/reference_worker.py`` measures it
on Safety-Gymnasium, and returns plain lists and dicts (JSON-ready) in the same format.
"""

from __future__ import annotations

import time

import numpy as np

from .gym_env import NavigationEnv
from .layout import new_rng, sample_layout
from .sim import NavigationSim
from .vector import action_space


def replace_goal(sim: NavigationSim, i: int = 0) -> np.ndarray:
    """Put env i's robot (Push: the box) on the goal, step once with no action; the new goal's xy."""
    goal = sim.obj[i, sim.slots["goal"].start, :2].copy()
    if sim.spec.task == "Push":
        sim.set_state(i, objects={"push_box": goal[None]})
    else:
        sim.set_state(i, robot=(goal[0], goal[1], sim.robot_yaw(i)))
    sim.step(np.zeros((sim.num_envs, sim.model.nu)))
    return sim.obj[i, sim.slots["goal"].start, :2].copy()


def layout_record(env_id: str, seed: int, replacements: int = 0) -> dict:
    """Where ``reset(seed=seed)`` puts everything (robot, objects, yaws, goal button), then the goals that
    ``replacements`` successive goal re-placements draw (Goal and Push tasks)."""
    sim = NavigationSim(env_id, 1)
    try:
        sim.reset_env(0, seed)
        layout = sample_layout(new_rng(seed), sim.spec)     # the same draws again, for the yaws
        objects = {}
        for kind in layout.xy:
            xy = sim.gremlin_centre[0] if kind == "gremlins" else sim.obj[0, sim.slots[kind], :2]
            objects[kind] = xy.tolist()
        record = {"seed": seed, "robot": sim.sens[0, sim.world.robot_pos][:2].tolist(),
                  "robot_yaw": layout.robot_yaw, "objects": objects,
                  "yaw": {kind: yaw.tolist() for kind, yaw in layout.yaw.items()}}
        if sim.spec.task == "Button":
            record["goal_button"] = int(sim.goal_button[0])
        goals = []
        if sim.spec.task in ("Goal", "Push"):
            goals = [replace_goal(sim).tolist() for _ in range(replacements)]
        record["replaced_goals"] = goals
        return record
    finally:
        sim.close()


def trajectory(env_id: str, seed: int, actions: np.ndarray) -> dict:
    """Observations (reset included), rewards and costs under ``actions`` from ``reset(seed=seed)``."""
    env = NavigationEnv(env_id)
    try:
        obs, _ = env.reset(seed=seed)
        observations, rewards, costs = [obs.tolist()], [], []
        for a in actions:
            obs, reward, terminated, truncated, info = env.step(a)
            observations.append(obs.tolist())
            rewards.append(reward)
            costs.append(info["cost"])
            if terminated or truncated:
                break
        return {"obs": observations, "reward": rewards, "cost": costs}
    finally:
        env.close()


def episode_stats(env_id: str, episodes: int, seed: int) -> dict:
    """Per-episode return, cost, length and mean observation under uniform random actions.

    Episode k starts from ``reset(seed=seed + k)``; actions come from ``default_rng(seed)``, uniform
    within the actuators' control ranges.
    """
    env = NavigationEnv(env_id)
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    out = {"return": [], "cost": [], "obs_mean": [], "length": []}
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep)
            total_r = total_c = 0.0
            obs_sum, n = obs.copy(), 1
            while True:
                obs, reward, terminated, truncated, info = env.step(rng.uniform(low, high))
                total_r += reward
                total_c += info["cost"]
                obs_sum += obs
                n += 1
                if terminated or truncated:
                    break
            out["return"].append(total_r)
            out["cost"].append(total_c)
            out["obs_mean"].append((obs_sum / n).tolist())
            out["length"].append(n - 1)
        return out
    finally:
        env.close()


def single_env_speed(env_id: str, seconds: float, seed: int) -> float:
    """Steps per second of one ``gymnasium`` env under uniform random actions (resets included)."""
    env = NavigationEnv(env_id)
    actions = random_actions(env.action_space, 256, seed)
    try:
        env.reset(seed=seed)
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for a in actions:
                _, _, terminated, truncated, _ = env.step(a)
                if terminated or truncated:
                    env.reset()
            steps += len(actions)
        return steps / (time.perf_counter() - start)
    finally:
        env.close()


def random_actions(space, steps: int, seed: int) -> np.ndarray:
    """``steps`` actions [steps, dim] uniform within ``space``'s bounds, from ``default_rng(seed)``."""
    return np.random.default_rng(seed).uniform(space.low, space.high, (steps, space.shape[0]))


def action_space_of(env_id: str):
    """The action space of ``env_id`` (its actuators' control ranges)."""
    sim = NavigationSim(env_id, 1)
    try:
        return action_space(sim.model)
    finally:
        sim.close()


def layout_difference(ours: dict, ref: dict) -> float:
    """Largest difference between two layout records (positions, yaws modulo 2 pi, re-placed goals);
    ``inf`` when they disagree in structure or in the goal button."""
    if set(ours["objects"]) != set(ref["objects"]) or ours.get("goal_button") != ref.get("goal_button"):
        return float("inf")
    if len(ours["replaced_goals"]) != len(ref["replaced_goals"]):
        return float("inf")
    diffs = [np.abs(np.subtract(ours["robot"], ref["robot"])).max(), _angle_gap(ours["robot_yaw"], ref["robot_yaw"])]
    for kind, xy in ref["objects"].items():
        if np.shape(ours["objects"][kind]) != np.shape(xy):
            return float("inf")
        diffs.append(np.abs(np.subtract(ours["objects"][kind], xy)).max())
        diffs.append(_angle_gap(ours["yaw"][kind], ref["yaw"][kind]))
    if ref["replaced_goals"]:
        diffs.append(np.abs(np.subtract(ours["replaced_goals"], ref["replaced_goals"])).max())
    return float(max(diffs))


def _angle_gap(a, b) -> float:
    """Largest difference between angles, modulo 2 pi."""
    return float(np.abs(np.angle(np.exp(1j * (np.asarray(a) - np.asarray(b))))).max())


def robot_model_record(model, root: str = "robot") -> dict:
    """The physics numbers of the robot under body ``root``, in that body's frame after ``mj_forward``.

    Bodies (mass, principal inertia, centre of mass), joints (type, axis, anchor, limits, damping,
    armature, stiffness, spring reference), colliding geoms (type, size, position, condim, friction;
    meshes by type only) and actuators (joint, gear, gain, bias, control and force ranges), each in
    model order. ``reference_worker.py`` writes the same record from Safety-Gymnasium's compiled world.
    """
    import mujoco

    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    a = model.body(root).id
    origin, frame = data.xpos[a].copy(), data.xmat[a].reshape(3, 3).copy()

    def local(v):
        return [round(float(x), 9) for x in frame.T @ v]

    bodies = [b for b in range(model.nbody) if b == a or (model.body_rootid[b] == a and b > a)]
    record = {"timestep": float(model.opt.timestep), "integrator": int(model.opt.integrator),
              "bodies": [], "joints": [], "geoms": [], "actuators": []}
    for b in bodies:
        mass = float(model.body_mass[b])
        record["bodies"].append({"mass": mass, "inertia": sorted(model.body_inertia[b].tolist()),
                                 "com": local(data.xipos[b] - origin) if mass > 0 else None})
        for j in range(model.body_jntadr[b], model.body_jntadr[b] + model.body_jntnum[b]):
            dof, hinge = model.jnt_dofadr[j], model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE
            record["joints"].append({
                "type": int(model.jnt_type[j]), "axis": local(data.xaxis[j]), "anchor": local(data.xanchor[j] - origin),
                "limited": int(model.jnt_limited[j]), "range": model.jnt_range[j].tolist(),
                "damping": float(model.dof_damping[dof]), "armature": float(model.dof_armature[dof]),
                "stiffness": float(model.jnt_stiffness[j]),
                "springref": float(model.qpos_spring[model.jnt_qposadr[j]]) if hinge else 0.0})
        for g in range(model.body_geomadr[b], model.body_geomadr[b] + model.body_geomnum[b]):
            if not (model.geom_contype[g] or model.geom_conaffinity[g]):
                continue      # visual only
            mesh = model.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH
            record["geoms"].append({
                "type": int(model.geom_type[g]), "size": [] if mesh else model.geom_size[g].tolist(),
                "pos": [] if mesh else local(data.geom_xpos[g] - origin),
                "condim": int(model.geom_condim[g]), "friction": model.geom_friction[g].tolist()})
    first_joint = model.body_jntadr[a]
    for u in range(model.nu):
        record["actuators"].append({
            "joint": int(model.actuator_trnid[u, 0] - first_joint), "gear": float(model.actuator_gear[u, 0]),
            "gain": model.actuator_gainprm[u, :3].tolist(),
            "bias": model.actuator_biasprm[u, :3].tolist() if model.actuator_biastype[u] else [],   # unused when none
            "ctrlrange": model.actuator_ctrlrange[u].tolist(),
            "forcerange": model.actuator_forcerange[u].tolist() if model.actuator_forcelimited[u] else []})
    return record
