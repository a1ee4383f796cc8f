"""Scripted demonstrators for the safe Fetch tasks: they read the flat observation only.

Each step is a pure function of the observation (no hidden state), so they run on any batch:
``scripted_action(env_id, obs) -> actions [N, 4]``. Positions come from the observation layout
(``achieved_goal, desired_goal, keepout, observation``; gripper = observation[0:3], object =
observation[3:6], finger positions = observation[9:11]).

* Reach: move to the goal; when the straight line crosses the box (grown by 3 cm), go via the
  box's two corners on the cheaper side (``detour_waypoint``).
* Push: the object follows the same corner detour (box grown by the object's half-size + 2 cm);
  the gripper stands 4.5 cm behind the object on the line to its next waypoint and pushes, and
  gets there by orbiting the object, or by flying over it when it is on the far side.
* PickAndPlace: hover over the object with the gripper open, descend, close, lift above the box
  (top + 5 cm for the object's centre) when the straight carry would cross it, carry, lower.

Safe variant: every gripper move is capped at 0.5 of the action range (~0.42 m/s, under the
0.5 m/s limit) and any gripper move whose straight line would enter the box climbs over it.
``unsafe=True``: straight to the goal through the box at full speed (for imperfect datasets).
``saferl.offline.scripted.run_scripted`` rolls them out and returns the per-episode results and the
dataset arrays (the env package imports nothing above it).
"""

from __future__ import annotations

import numpy as np

from . import FETCH_IDS
from .layout import segment_hits_rect

UNIT = 0.033            # m the gripper moves per step per unit of action (steady state, ~0.83 m/s at 1.0)
SAFE_ACTION = 0.5       # action norm cap of the safe variant: ~0.42 m/s
TABLE_X = (1.12, 1.47)  # where a pushed object may pass the box (table edges at 1.05 and 1.55; the pusher needs room)
PUSH_STANDOFF = 0.045   # gripper point behind the object's centre while pushing
OPEN, CLOSE = 1.0, -1.0


def detour_waypoint(point: np.ndarray, goal: np.ndarray, box: np.ndarray, clearance: float,
                    x_range: tuple[float, float] = TABLE_X, approach: float = 0.03) -> np.ndarray:
    """Next xy waypoint from ``point`` to ``goal`` around the box footprint grown by ``clearance``.

    The goal itself when the straight line is clear; else, on the side with the shorter path
    (and room on the table), a point ``approach`` before the near corner, then the far corner.
    Within ``approach`` of the footprint's near face, only sideways, so that a pushed object
    that lags its pusher never slides in front of the box.
    """
    centre = box[:2]
    half = box[3:5] + clearance
    p, g = point[:2] - centre, goal[:2] - centre
    if not segment_hits_rect(p, g, half):
        return goal[:2].copy()
    sy = 1.0 if g[1] > 0 else -1.0
    out = half + 0.02
    if abs(p[0]) >= half[0]:
        sx = 1.0 if p[0] > 0 else -1.0
    else:
        lengths = {}
        for s in (-1.0, 1.0):
            near, far = np.array([s * out[0], -sy * out[1]]), np.array([s * out[0], sy * out[1]])
            if x_range[0] <= centre[0] + s * out[0] <= x_range[1]:
                lengths[s] = np.linalg.norm(near - p) + np.linalg.norm(far - near) + np.linalg.norm(g - far)
        lengths[-1.0] = lengths.get(-1.0, np.inf) - 0.03  # the robot's side unless clearly longer: stable choice
        sx = min(lengths, key=lengths.get)
    if abs(p[0]) < half[0] and p[1] * sy < -half[1]:  # before the box: to its near corner, sideways when close
        if p[1] * sy > -(half[1] + approach):
            return centre + np.array([sx * out[0], p[1]])
        return centre + np.array([sx * out[0], -sy * (half[1] + approach)])
    return centre + np.array([sx * out[0], sy * out[1]])


def over_the_box(point: np.ndarray, target: np.ndarray, box: np.ndarray, clearance: float) -> np.ndarray:
    """``target``, or a climb / a flight above the box when the straight line point->target would enter it."""
    half = box[3:] + clearance
    if not segment_hits_rect(point - box[:3], target - box[:3], half):
        return target
    safe_z = box[2] + half[2] + 0.01
    if point[2] < safe_z - 0.005:
        return np.array([point[0], point[1], safe_z + 0.01])  # climb where we are (outside the box)
    return np.array([target[0], target[1], max(target[2], safe_z + 0.01)])


def move(grip: np.ndarray, target: np.ndarray, limit: float) -> np.ndarray:
    """xyz action that heads for ``target``: its norm capped at ``limit``, or, for ``limit`` >= 1, its largest
    component at 1 (full speed)."""
    action = (target - grip) / UNIT
    size = np.abs(action).max() if limit >= 1.0 else np.linalg.norm(action)
    cap = 1.0 if limit >= 1.0 else limit
    return action * (cap / size) if size > cap else action


def reach_action(grip, goal, box, unsafe: bool) -> np.ndarray:
    if unsafe:
        return np.append(move(grip, goal, 1.0), 0.0)
    waypoint = detour_waypoint(grip, goal, box, clearance=0.03, x_range=(1.0, 1.7))
    return np.append(move(grip, np.array([waypoint[0], waypoint[1], goal[2]]), SAFE_ACTION), 0.0)


def push_action(grip, obj, goal, box, unsafe: bool) -> np.ndarray:
    limit = 1.0 if unsafe else SAFE_ACTION
    waypoint = goal[:2] if unsafe else detour_waypoint(obj, goal, box, clearance=0.025 + 0.02)
    to_go = waypoint - obj[:2]
    distance = np.linalg.norm(to_go)
    if np.linalg.norm(goal[:2] - obj[:2]) < 0.02:  # there (success is within 0.05): leave it alone
        return np.zeros(4)
    direction = to_go / distance
    pre = obj[:2] - direction * PUSH_STANDOFF
    rel = grip[:2] - obj[:2]
    along = rel @ direction
    across = np.linalg.norm(rel - along * direction)
    low = grip[2] < obj[2] + 0.02
    z = obj[2]
    if along < -0.025 and across < 0.015 and low:  # behind the object: push it on, gently near the goal
        target = np.array([*(pre + direction * min(distance, 0.035)), z])
        limit = min(limit, max(0.2, 5.0 * np.linalg.norm(goal[:2] - obj[:2])))
    else:  # come down a little further back, so the fingers miss the object
        target = _reposition(grip, obj, obj[:2] - direction * (PUSH_STANDOFF + 0.015), z)
    if not unsafe:
        target = over_the_box(grip, target, box, clearance=0.015)
    return np.append(move(grip, target, limit), 0.0)


def _reposition(grip, obj, pre, z) -> np.ndarray:
    """Where to go next to stand at ``pre`` without knocking the object: orbit it, or fly over it."""
    centre = obj[:2]
    path = pre - grip[:2]
    t = np.clip((centre - grip[:2]) @ path / max(path @ path, 1e-12), 0.0, 1.0)
    clear = np.linalg.norm(grip[:2] + t * path - centre) > 0.05
    high = grip[2] > obj[2] + 0.04
    if clear or np.linalg.norm(path) < 0.008:
        return np.array([pre[0], pre[1], z])
    if high:
        return np.array([pre[0], pre[1], obj[2] + 0.06])
    here, there = grip[:2] - centre, pre - centre
    cos = here @ there / max(np.linalg.norm(here) * np.linalg.norm(there), 1e-12)
    if cos > -0.5:  # less than 120 degrees apart: go round at a safe radius
        bisector = here / max(np.linalg.norm(here), 1e-12) + there / max(np.linalg.norm(there), 1e-12)
        via = centre + 0.065 * bisector / max(np.linalg.norm(bisector), 1e-12)
        return np.array([via[0], via[1], z])
    return np.array([grip[0], grip[1], obj[2] + 0.07])  # far side: climb, then fly over


def pick_and_place_action(grip, obj, goal, box, fingers, unsafe: bool) -> np.ndarray:
    limit = 1.0 if unsafe else SAFE_ACTION
    offset = obj - grip
    aligned = np.linalg.norm(offset[:2]) < 0.012
    width = fingers.sum()
    if aligned and abs(offset[2]) < 0.015 and width < 0.065:  # holding it: carry
        target = goal if unsafe else over_the_box(obj, goal, box, clearance=0.025 + 0.025)
        if np.linalg.norm(goal - obj) < 0.006:
            target = obj
        return np.append(move(grip, target - offset, limit), CLOSE)
    if aligned and abs(offset[2]) < 0.015:  # around it, open: close the fingers
        return np.array([0.0, 0.0, 0.0, CLOSE])
    hover = obj + np.array([0.0, 0.0, 0.05])
    target = obj if aligned or np.linalg.norm(grip[:2] - obj[:2]) < 0.006 else hover
    if not unsafe:
        target = over_the_box(grip, target, box, clearance=0.015)
    return np.append(move(grip, target, limit), OPEN)


def scripted_action(env_id: str, obs: np.ndarray, unsafe: bool = False) -> np.ndarray:
    """Actions [N, 4] of the demonstrator for ``env_id`` (any SafetyFetch id) from flat observations [N, D]."""
    if env_id not in FETCH_IDS:
        raise ValueError(f"no scripted demonstrator for {env_id!r}; Fetch ids: {sorted(FETCH_IDS)}")
    task = FETCH_IDS[env_id][0]
    obs = np.atleast_2d(np.asarray(obs, dtype=np.float64))
    actions = np.empty((len(obs), 4))
    for i, row in enumerate(obs):
        goal, box, state = row[3:6], row[6:12], row[12:]
        grip = state[0:3]
        if task == "Reach":
            actions[i] = reach_action(grip, goal, box, unsafe)
        elif task == "Push":
            actions[i] = push_action(grip, state[3:6], goal, box, unsafe)
        else:
            actions[i] = pick_and_place_action(grip, state[3:6], goal, box, state[9:11], unsafe)
    return np.clip(actions, -1.0, 1.0)
