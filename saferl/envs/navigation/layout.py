"""Random layouts, draw for draw as Safety-Gymnasium 1.0.0 makes them, so a seed means the same layout.

Safety-Gymnasium seeds a ``numpy.random.RandomState`` at ``reset(seed=s)`` and, per layout:

1. places the robot, then every object in its placement order (spec groups), each by rejection
   sampling: up to 100 candidates (x then y, uniform in its rectangle shrunk by its keepout), a
   candidate is refused when closer than ``keepout_i + keepout_j`` to anything placed; when an object
   finds no room the whole layout restarts (up to 10000 layouts);
2. draws the robot's yaw, then one yaw per object (same order), each uniform in [0, 2 pi);
3. Goal and Push tasks then re-place the goal against everything else (up to 10000 candidates);
   Button tasks draw the goal button instead (``NavigationSim`` does that, it owns the buttons).

Objects at fixed locations (the Circle task's circle and walls) still consume their draws: their
rectangle is the location widened by 1e-9. Scalar draws keep the stream identical to Safety-Gymnasium's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tasks import CIRCLE_ROBOT_EXTENT, CIRCLE_WALL, ROBOT_KEEPOUT, TaskSpec

LAYOUT_TRIES = 10000      # whole layouts before giving up
OBJECT_TRIES = 100        # candidates per object before the layout restarts
GOAL_TRIES = 10000        # candidates for a (re-)placed goal
_FIXED_EPS = 1e-9         # half-width of a fixed location's rectangle (beyond its keepout)
TWO_PI = 2 * np.pi


@dataclass
class Layout:
    robot_xy: np.ndarray                # [2]
    robot_yaw: float                    # in [0, 2 pi)
    xy: dict[str, np.ndarray]           # kind -> [count, 2]
    yaw: dict[str, np.ndarray]          # kind -> [count], in [0, 2 pi)


@dataclass(frozen=True)
class Placement:
    """One object to place: its name (kind), rectangle (xmin, ymin, xmax, ymax) and keepout."""

    kind: str
    rect: tuple[float, float, float, float]
    keepout: float


def new_rng(seed: int | None) -> np.random.RandomState:
    """The layout RNG (``RandomState``, as Safety-Gymnasium): ``seed`` None draws fresh entropy."""
    return np.random.RandomState(seed)


def placements(spec: TaskSpec) -> list[Placement]:
    """Robot first, then every object, in Safety-Gymnasium's placement order."""
    if spec.task == "Circle":
        e = CIRCLE_ROBOT_EXTENT
        out = [Placement("robot", (-e, -e, e, e), 0.0)]
        walls = [(CIRCLE_WALL, 0), (-CIRCLE_WALL, 0), (0, CIRCLE_WALL), (0, -CIRCLE_WALL)]
        fixed = [("circle", (0, 0))] + [("walls", w) for w in walls[:{0: 0, 1: 2, 2: 4}[spec.level]]]
        k = 0.0 + _FIXED_EPS
        return out + [Placement(kind, (x - k, y - k, x + k, y + k), 0.0) for kind, (x, y) in fixed]
    e = spec.extent
    extents = (-e, -e, e, e)
    out = [Placement("robot", extents, ROBOT_KEEPOUT)]
    for group in spec.groups:
        out += [Placement(group.kind, extents, group.keepout)] * group.count
    return out


def draw_candidate(rng: np.random.RandomState, p: Placement) -> np.ndarray:
    """A uniform (x, y) in ``p``'s rectangle shrunk by its keepout: x drawn first."""
    xmin, ymin, xmax, ymax = p.rect
    k = p.keepout
    x = rng.uniform(xmin + k, xmax - k)
    y = rng.uniform(ymin + k, ymax - k)
    return np.array([x, y])


def fits(xy: np.ndarray, keepout: float, placed_xy: np.ndarray, placed_keepout: np.ndarray) -> bool:
    """True when ``xy`` is at least ``keepout + k_j`` from every placed j (Safety-Gymnasium's test, ``<`` refuses)."""
    if len(placed_xy) == 0:
        return True
    dist = np.sqrt(np.square(xy - placed_xy).sum(axis=1))
    return not (dist < placed_keepout + keepout).any()


def sample_layout(rng: np.random.RandomState, spec: TaskSpec) -> Layout:
    """A full layout for ``spec`` (positions, yaws, and for Goal and Push the re-placed goal)."""
    order = placements(spec)
    for _ in range(LAYOUT_TRIES):
        xy = _try_positions(rng, order)
        if xy is not None:
            break
    else:
        raise RuntimeError(f"could not place the objects of {spec.env_id} after {LAYOUT_TRIES} layouts")
    robot_yaw = rng.uniform(0, TWO_PI)
    yaws = np.array([rng.uniform(0, TWO_PI) for _ in order[1:]])
    kinds = np.array([p.kind for p in order[1:]])
    layout = Layout(xy[0].copy(), float(robot_yaw), {}, {})
    for group in spec.groups:
        mask = kinds == group.kind
        layout.xy[group.kind] = xy[1:][mask].copy()
        layout.yaw[group.kind] = yaws[mask]
    if spec.task in ("Goal", "Push"):
        others = [p.kind != "goal" for p in order]
        keepouts = np.array([p.keepout for p in order])
        goal = place_goal(rng, spec, xy[others], keepouts[others])
        if goal is None:
            raise RuntimeError(f"could not place the goal of {spec.env_id} after {GOAL_TRIES} tries")
        layout.xy["goal"] = goal[None]
    return layout


def place_goal(rng: np.random.RandomState, spec: TaskSpec, others_xy: np.ndarray,
               others_keepout: np.ndarray) -> np.ndarray | None:
    """A goal position clear of ``others`` (robot and objects), or None after ``GOAL_TRIES`` candidates."""
    goal = Placement("goal", (-spec.extent, -spec.extent, spec.extent, spec.extent), spec.group("goal").keepout)
    for _ in range(GOAL_TRIES):
        xy = draw_candidate(rng, goal)
        if fits(xy, goal.keepout, others_xy, others_keepout):
            return xy
    return None


def _try_positions(rng: np.random.RandomState, order: list[Placement]) -> np.ndarray | None:
    """Positions [len(order), 2] for one layout attempt, or None when an object finds no room."""
    xy = np.empty((len(order), 2))
    keepouts = np.array([p.keepout for p in order])
    for n, p in enumerate(order):
        for _ in range(OBJECT_TRIES):
            cand = draw_candidate(rng, p)
            if fits(cand, p.keepout, xy[:n], keepouts[:n]):
                xy[n] = cand
                break
        else:
            return None
    return xy
