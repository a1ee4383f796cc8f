"""Random layouts: rejection sampling with keepouts, robot first, then each group in order.

Candidates are drawn in small batches and checked with numpy, so a layout costs a handful of
array operations per object rather than one Python iteration per rejected draw. Everything is
drawn from the env's own ``numpy.random.Generator``: same seed, same layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tasks import CIRCLE_ROBOT_EXTENT, ROBOT_KEEPOUT, TaskSpec

_BATCH = 32
_TRIES_PER_OBJECT = 8    # batches, i.e. 256 candidate draws before the layout restarts
_LAYOUT_TRIES = 100


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
    for _ in range(_TRIES_PER_OBJECT):
        cand = rng.uniform(-half, half, size=(_BATCH, 2))
        if len(placed_xy) == 0:
            return cand[0]
        gap2 = np.sum((cand[:, None, :] - placed_xy[None, :, :]) ** 2, axis=-1)
        ok = np.all(gap2 >= (keepout + placed_keepout[None, :]) ** 2, axis=1)
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
    robot = sample_point(rng, spec.extent, ROBOT_KEEPOUT, np.zeros((0, 2)), np.zeros(0))
    placed_xy, placed_keepout = [robot], [ROBOT_KEEPOUT]
    xy, yaw = {}, {}
    for group in spec.groups:
        points = []
        for _ in range(group.count):
            p = sample_point(rng, spec.extent, group.keepout, np.array(placed_xy), np.array(placed_keepout))
            if p is None:
                return None
            points.append(p)
            placed_xy.append(p)
            placed_keepout.append(group.keepout)
        xy[group.kind] = np.array(points)
        yaw[group.kind] = rng.uniform(-np.pi, np.pi, size=group.count)
    return Layout(robot, float(rng.uniform(-np.pi, np.pi)), xy, yaw)
