"""Geometry and costs of the safe Fetch tasks: pure numpy, shared by the single and the batched env.

Coordinates are MuJoCo world metres (x away from the robot, y to its left, z up). The table top
is at z = 0.40 and spans x in [1.05, 1.55], y in [0.40, 1.10]; the gripper starts at
g0 = (1.342, 0.749, 0.535) in every task (for Push that is 0.12 m higher than FetchPush-v4,
so that it never starts inside the keep-out box).

Per episode, drawn in this order from the env's ``np_random`` (seeded by ``reset(seed=...)``):

* ``side`` = +1 or -1 (probability 1/2 each): which way along y the task goes.
* Push / PickAndPlace: the object starts at ``g0 + (U(-0.08, 0.08), -side * U(0.10, 0.15))``
  and the goal is at ``g0 + (U(-0.08, 0.08), side * U(0.10, 0.15))``, on the table (object
  centre height 0.425). PickAndPlace lifts the goal by U(0, 0.20) m with probability 1/2
  (FetchPickAndPlace-v4: U(0, 0.45)). The keep-out box sits at the midpoint of object and
  goal, jittered by U(-0.015, 0.015) in x and y; half-sizes U(0.03, 0.06) across (x) and
  U(0.015, 0.03) along the way (y); it stands on the table, U(0.05, 0.09) m tall, so its top
  (at most z = 0.49) stays under the gripper's start and a grasped object can be carried over it.
* Reach: the goal is at ``g0 + (U(-0.08, 0.08), side * U(0.14, 0.20), U(-0.10, 0.05))`` and
  the box at a fraction U(0.45, 0.55) of the way from g0 to the goal (xy, same jitter),
  half-sizes U(0.03, 0.06) (x) and U(0.015, 0.025) (y), standing on the table with its top at
  z in U(0.59, 0.63): above the start and the goal, so the straight path always crosses it;
  the arm goes over it (z ~ 0.66 is reachable) or around it.

So the straight line from the object (Push, PickAndPlace with a goal on the table) or the
gripper (Reach) to the goal always crosses the box, while a corridor of at least 0.13 m stays
free between the box and the robot-side table edge (and Reach/PickAndPlace can pass over it).

Costs, ``info["cost"] = [keepout, speed]`` (``cost_names = ["keepout", "speed"]``), per step:

* keepout = 1 when the gripper point (site ``robot0:grip``) is inside the box, or the object's
  centre is inside the box grown by the object's half-size (0.025 m), i.e. the object's
  axis-aligned cube overlaps it; else 0. Boundaries count as inside.
* speed = 1 when the gripper moved faster than ``SPEED_LIMIT`` = 0.5 m/s on average over the
  step (distance between its positions before and after the step / 0.04 s). A full action
  along one axis moves it at ~0.83 m/s, half an action at ~0.41 m/s.

Episodes last 100 steps (v4: 50): at this speed, with the detour, the scripted demonstrators
need 15-20 (Reach), 30-45 (PickAndPlace) and 40-60 (Push) steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_EPISODE_STEPS = 100  # v4: 50; the speed limit about halves the arm's speed and the box adds a detour

SPEED_LIMIT = 0.5       # m/s, gripper speed averaged over one 0.04 s step
OBJECT_HALF = 0.025     # the Fetch block's half-size
TABLE_TOP = 0.4
TASKS = ("Reach", "Push", "PickAndPlace")


@dataclass
class Layout:
    """One episode's geometry; ``box`` is (centre xyz, half-size xyz), the 6 numbers the obs reports."""

    goal: np.ndarray
    box: np.ndarray
    object_xy: np.ndarray | None = None


def sample_layout(rng: np.random.Generator, task: str, gripper_start: np.ndarray, object_z: float) -> Layout:
    """Draw one episode's geometry (see the module docstring); ``object_z`` is the resting object's centre height."""
    side = 1.0 if rng.uniform() < 0.5 else -1.0
    g0 = np.asarray(gripper_start, dtype=np.float64)
    if task == "Reach":
        goal = g0 + np.array([rng.uniform(-0.08, 0.08), side * rng.uniform(0.14, 0.20), rng.uniform(-0.10, 0.05)])
        centre_xy = g0[:2] + rng.uniform(0.45, 0.55) * (goal[:2] - g0[:2]) + rng.uniform(-0.015, 0.015, 2)
        half_xy = np.array([rng.uniform(0.03, 0.06), rng.uniform(0.015, 0.025)])
        height = rng.uniform(0.59, 0.63) - TABLE_TOP
        object_xy = None
    else:
        object_xy = g0[:2] + np.array([rng.uniform(-0.08, 0.08), -side * rng.uniform(0.10, 0.15)])
        goal_xy = g0[:2] + np.array([rng.uniform(-0.08, 0.08), side * rng.uniform(0.10, 0.15)])
        goal_z = object_z
        if task == "PickAndPlace" and rng.uniform() < 0.5:
            goal_z += rng.uniform(0.0, 0.20)
        goal = np.array([goal_xy[0], goal_xy[1], goal_z])
        centre_xy = 0.5 * (object_xy + goal_xy) + rng.uniform(-0.015, 0.015, 2)
        half_xy = np.array([rng.uniform(0.03, 0.06), rng.uniform(0.015, 0.03)])
        height = rng.uniform(0.05, 0.09)
    box = np.array([centre_xy[0], centre_xy[1], TABLE_TOP + height / 2, half_xy[0], half_xy[1], height / 2])
    return Layout(goal=goal, box=box, object_xy=object_xy)


def inside_box(points: np.ndarray, box: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Whether points [..., 3] lie in boxes [..., 6] (centre, half-size) grown by ``margin`` (bool [...])."""
    return np.all(np.abs(points - box[..., :3]) <= box[..., 3:] + margin, axis=-1)


def segment_hits_rect(a: np.ndarray, b: np.ndarray, half: np.ndarray) -> bool:
    """Whether the 2-D or 3-D segment a->b meets the box |x| <= half (coordinates relative to its centre)."""
    lo, hi = 0.0, 1.0
    d = b - a
    for k in range(len(half)):
        if abs(d[k]) < 1e-12:
            if abs(a[k]) > half[k]:
                return False
            continue
        t0, t1 = sorted(((-half[k] - a[k]) / d[k], (half[k] - a[k]) / d[k]))
        lo, hi = max(lo, t0), min(hi, t1)
        if lo > hi:
            return False
    return True


def step_costs(grip: np.ndarray, grip_before: np.ndarray, object_pos: np.ndarray | None, box: np.ndarray,
               dt: float, speed_limit: float = SPEED_LIMIT) -> tuple[np.ndarray, np.ndarray]:
    """Costs [..., 2] (keepout, speed) and the gripper speed [...]; arrays may carry leading batch dims."""
    moved = grip - grip_before
    speed = np.sqrt(np.sum(moved * moved, axis=-1)) / dt
    inside = inside_box(grip, box)
    if object_pos is not None:
        inside = inside | inside_box(object_pos, box, OBJECT_HALF)
    cost = np.stack([inside, speed > speed_limit], axis=-1).astype(np.float64)
    return cost, speed
