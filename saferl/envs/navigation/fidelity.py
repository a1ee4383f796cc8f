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


