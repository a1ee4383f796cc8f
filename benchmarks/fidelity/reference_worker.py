"""The Safety-Gymnasium 1.0.0 side of ``make fidelity``; runs inside the reference environment only.

Usage: ``python reference_worker.py JOB.json OUT.json``. A job names one env id and what to measure
(the same measurements ``fidelity.py`` makes on saferl's side):

- ``layouts``: after ``reset(seed=s)`` for each seed: robot position and yaw, every object's position
  and yaw, the goal button; then ``replacements`` times: put the robot (Push: the box) on the goal,
  step once with a zero action and record where the new goal went.
- ``trajectory``: observations, rewards and costs under the given actions from ``reset(seed)``.
- ``stats``: per-episode return, cost and mean observation under uniform random actions (within the
  actuators' control ranges, e.g. +-20 rad/s for the Racecar's drive).
- ``speed``: single-env steps per second under uniform random actions (autoresets included).
- ``model``: the robot's physics numbers (masses, inertias, joints, colliding geoms, actuators).

``python reference_worker.py --serve ENV_ID`` instead steps one env on request, one JSON line per request
on stdin and one per answer on stdout (``policy_transfer.py`` drives it with a saferl policy):
``{"reset": seed}`` -> ``{"obs": [...]}``; ``{"step": action}`` -> ``{"obs", "reward", "cost", "terminated",
"truncated"}``. Floats travel as Python's shortest round-trip repr, so nothing is lost on the way.

No saferl import here: this file must run with gymnasium 0.28.1 and MuJoCo 2.3.3.

Safety-Gymnasium compiles its world from XML at every reset, and most of that time goes to decoding
its skybox images (about 4 s per reset on a loaded 2-core machine). Except for ``speed`` jobs, which
time it as shipped, the worker drops the skybox from that XML: a visual-only element, so physics,
layouts and observations are unchanged, and resets take milliseconds.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import time
from pathlib import Path

import mujoco
import numpy as np

SKYBOX = re.compile(r'<texture type="skybox"[^>]*>(</texture>)?')


def compile_without_skybox() -> None:
    """Make ``MjModel.from_xml_string`` skip the skybox texture (visual only; see the module docstring)."""
    original = mujoco.MjModel.from_xml_string

    def from_xml_string(xml, *args, **kwargs):
        return original(SKYBOX.sub("", xml), *args, **kwargs)

    mujoco.MjModel.from_xml_string = staticmethod(from_xml_string)

# Safety-Gymnasium's object names -> saferl's kinds (the Circle task's circle and walls sit at fixed places).
KINDS = {"hazard": "hazards", "vase": "vases", "pillar": "pillars", "button": "buttons", "gremlin": "gremlins",
         "goal": "goal", "push_box": "push_box"}


def kind_of(name: str) -> str | None:
    base = name.rstrip("0123456789")
    return KINDS.get(base)


def layout_record(env) -> dict:
    task = env.unwrapped.task
    layout, config = task.world_info.layout, task.world_info.world_config_dict
    objects, yaws = {}, {}
    for name, xy in layout.items():
        kind = kind_of(name)
        if kind is None:
            continue
        entry = config["free_geoms"].get(f"{name}obj") or config["geoms"].get(name) or config["free_geoms"].get(name)
        objects.setdefault(kind, []).append([float(v) for v in xy])
        yaws.setdefault(kind, []).append(float(entry["rot"]))
    record = {"robot": [float(v) for v in layout["agent"]], "robot_yaw": float(config["agent_rot"]),
              "objects": objects, "yaw": yaws}
    if hasattr(task, "buttons") and hasattr(task.buttons, "goal_button"):
        record["goal_button"] = int(task.buttons.goal_button)
        record["objects"]["goal"] = [[float(v) for v in task.goal.pos[:2]]]
    return record


def move_body_xy(env, body: str, xy: np.ndarray) -> None:
    """Put a body's root (free joint, or the Point's x/y slides) at ``xy``."""
    task = env.unwrapped.task
    model, data = task.model, task.data

    bid = model.body(body).id
    jnt = model.body_jntadr[bid]
    if model.jnt_type[jnt] == mujoco.mjtJoint.mjJNT_FREE:
        adr = model.jnt_qposadr[jnt]
        data.qpos[adr:adr + 2] = xy
        data.qvel[model.jnt_dofadr[jnt]:model.jnt_dofadr[jnt] + 6] = 0
    else:  # the Point's slide joints, whose axes turn with the body's placed yaw
        axes = np.stack([data.xaxis[jnt][:2], data.xaxis[jnt + 1][:2]], axis=1)
        shift = np.linalg.solve(axes, xy - data.body(body).xpos[:2])
        for k in range(2):
            data.qpos[model.jnt_qposadr[jnt + k]] += shift[k]
        data.qvel[:] = 0
    mujoco.mj_forward(model, data)


def make(env_id: str):
    import safety_gymnasium  # after the optional patch, which must come first

    return safety_gymnasium.make(env_id)


def layouts(env_id: str, seeds: list[int], replacements: int) -> list[dict]:
    env = make(env_id)
    out = []
    task_name = env_id[len("Safety"):].split("-")[0]
    for seed in seeds:
        env.reset(seed=seed)
        record = layout_record(env)
        goals = []
        if replacements and ("Goal" in task_name or "Push" in task_name):
            task = env.unwrapped.task
            for _ in range(replacements):
                goal = task.goal.pos[:2].copy()
                move_body_xy(env, "push_box" if "Push" in task_name else "agent", goal)
                env.step(np.zeros(env.action_space.shape))
                goals.append([float(v) for v in task.goal.pos[:2]])
        record["replaced_goals"] = goals
        out.append(record)
    env.close()
    return out


def trajectory(env_id: str, seed: int, actions: list) -> dict:
    env = make(env_id)
    obs, _ = env.reset(seed=seed)
    observations, rewards, costs = [obs.tolist()], [], []
    for a in actions:
        obs, reward, cost, terminated, truncated, _ = env.step(np.asarray(a))
        observations.append(obs.tolist())
        rewards.append(float(reward))
        costs.append(float(cost))
        if terminated or truncated:
            break
    env.close()
    return {"obs": observations, "reward": rewards, "cost": costs}


def control_range(env) -> tuple[np.ndarray, np.ndarray]:
    """The actuators' control ranges (float64; the action space holds them rounded to float32)."""
    low, high = env.unwrapped.task.agent.engine.model.actuator_ctrlrange.T.copy()
    return low, high


def stats(env_id: str, episodes: int, seed: int) -> dict:
    env = make(env_id)
    rng = np.random.default_rng(seed)
    low, high = control_range(env)
    returns, costs, obs_means, lengths = [], [], [], []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        total_r = total_c = 0.0
        obs_sum, n = np.array(obs, dtype=np.float64), 1
        while True:
            obs, reward, cost, terminated, truncated, _ = env.step(rng.uniform(low, high))
            total_r += reward
            total_c += cost
            obs_sum += obs
            n += 1
            if terminated or truncated:
                break
        returns.append(total_r)
        costs.append(total_c)
        obs_means.append((obs_sum / n).tolist())
        lengths.append(n - 1)
    env.close()
    return {"return": returns, "cost": costs, "obs_mean": obs_means, "length": lengths}


def speed(env_id: str, seconds: float, seed: int) -> float:
    env = make(env_id)
    low, high = control_range(env)
    actions = np.random.default_rng(seed).uniform(low, high, (256,) + low.shape)
    env.reset(seed=seed)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for a in actions:
            _, _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()
        steps += len(actions)
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def robot_model(env_id: str) -> dict:
    """The robot's physics numbers in Safety-Gymnasium's compiled world, written by saferl's own
    ``robot_model_record`` (loaded by path: it needs only mujoco, and saferl is not installed here)."""
    path = Path(__file__).resolve().parents[2] / "saferl" / "envs" / "navigation" / "model_record.py"
    spec = importlib.util.spec_from_file_location("saferl_model_record", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    env = make(env_id)
    env.reset(seed=0)
    record = module.robot_model_record(env.unwrapped.task.model, root="agent")
    env.close()
    return record


def run(job: dict) -> dict:
    env_id = job["env_id"].removesuffix(".speed")
    out = {"env_id": env_id}
    if "speed" not in job:
        compile_without_skybox()
    if "layouts" in job:
        out["layouts"] = layouts(env_id, job["layouts"]["seeds"], job["layouts"].get("replacements", 0))
    if "trajectory" in job:
        out["trajectory"] = trajectory(env_id, job["trajectory"]["seed"], job["trajectory"]["actions"])
    if "stats" in job:
        out["stats"] = stats(env_id, job["stats"]["episodes"], job["stats"]["seed"])
    if "model" in job:
        out["model"] = robot_model(env_id)
    if "speed" in job:
        out["speed"] = speed(env_id, job["speed"]["seconds"], job["speed"]["seed"])
    return out


def serve(env_id: str) -> None:
    compile_without_skybox()
    env = make(env_id)
    for line in sys.stdin:
        request = json.loads(line)
        if "reset" in request:
            obs, _ = env.reset(seed=request["reset"])
            answer = {"obs": obs.tolist()}
        else:
            obs, reward, cost, terminated, truncated, _ = env.step(np.asarray(request["step"], dtype=np.float64))
            answer = {"obs": obs.tolist(), "reward": float(reward), "cost": float(cost),
                      "terminated": bool(terminated), "truncated": bool(truncated)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    env.close()


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        serve(sys.argv[2])
    else:
        with open(sys.argv[1]) as f:
            result = run(json.load(f))
        with open(sys.argv[2], "w") as f:
            json.dump(result, f)
