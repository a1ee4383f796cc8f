"""Random layouts: rejection sampling with keepouts, robot first, then each group in order.

Candidates are drawn in small batches and checked with numpy, so a layout costs a handful of
array operations per object rather than one Python iteration per rejected draw. Everything is
drawn from the env's own ``numpy.random.Generator``: same seed, same layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tasks import CIRCLE_ROBOT_EXTENT, ROBOT_KEEPOUT, TaskSpec

# Safety-Gymnasium's budget: 100 candidates per object, then the layout restarts, up to 10000 times
# (crowded tasks such as Button1 succeed in about 1 layout of 20).
_BATCH = 25
_TRIES_PER_OBJECT = 4    # batches
_LAYOUT_TRIES = 10000


@dataclass
class Layout:
    robot_xy: np.ndarray                # [2]
    robot_yaw: float
    xy: dict[str, np.ndarray]           # kind -> [count, 2]
    yaw: dict[str, np.ndarray]          # kind -> [count]


def sample_point(rng: np.random.Generator, extent: float, keepout: float, placed_xy: np.ndarray,
                 placed_keepout: np.ndarray) -> np.ndarray | None:
    """A uniform point in the square shrunk by ``keepout``, at least ``keepout + k_j`` from every placed j."""
    half = extent - keepout
    min_gap2 = (keepout + placed_keepout) ** 2
    for _ in range(_TRIES_PER_OBJECT):
        cand = rng.uniform(-half, half, size=(_BATCH, 2))
        if len(placed_xy) == 0:
            return cand[0]
        dx = cand[:, 0, None] - placed_xy[:, 0]
        dy = cand[:, 1, None] - placed_xy[:, 1]
        ok = (dx * dx + dy * dy >= min_gap2).all(axis=1)
        if ok.any():
            return cand[int(np.argmax(ok))]
    return None


def sample_layout(rng: np.random.Generator, spec: TaskSpec) -> Layout:
    """A full layout for ``spec``; restarts from scratch when an object finds no room."""
    for _ in range(_LAYOUT_TRIES):
        layout = _try_layout(rng, spec)
        if layout is not None:
            return layout
    raise RuntimeError(f"could not place the objects of {spec.env_id} after {_LAYOUT_TRIES} layouts")


def _try_layout(rng: np.random.Generator, spec: TaskSpec) -> Layout | None:
    if spec.task == "Circle":
        robot = rng.uniform(-CIRCLE_ROBOT_EXTENT, CIRCLE_ROBOT_EXTENT, size=2)
        return Layout(robot, float(rng.uniform(-np.pi, np.pi)), {}, {})
    total = 1 + sum(group.count for group in spec.groups)
    placed_xy, placed_keepout = np.empty((total, 2)), np.empty(total)
    placed_xy[0] = robot = sample_point(rng, spec.extent, ROBOT_KEEPOUT, placed_xy[:0], placed_keepout[:0])
    placed_keepout[0] = ROBOT_KEEPOUT
    n = 1
    xy, yaw = {}, {}
    for group in spec.groups:
        for _ in range(group.count):
            p = sample_point(rng, spec.extent, group.keepout, placed_xy[:n], placed_keepout[:n])
            if p is None:
                return None
            placed_xy[n], placed_keepout[n] = p, group.keepout
            n += 1
        xy[group.kind] = placed_xy[n - group.count:n].copy()
        yaw[group.kind] = rng.uniform(-np.pi, np.pi, size=group.count)
    return Layout(robot.copy(), float(rng.uniform(-np.pi, np.pi)), xy, yaw)
