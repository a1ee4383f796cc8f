"""Task definitions: which objects each Safety{Robot}{Task}{Level}-v0 holds, and where.

Pure data, no MuJoCo: the world builder, the layout sampler and the simulator all read the
same ``TaskSpec`` so a task is described in exactly one place. Sizes, keepouts, counts and the
placement order are Safety-Gymnasium 1.0.0's (docs/reference.md): the robot first, then the
objects in the order its tasks add them (static ones, then movable ones, then moving ones), which
is also the order of the lidar channels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .robots import ROBOTS, Robot

TASKS = ("Goal", "Button", "Push", "Circle")
LEVELS = (0, 1, 2)
ROBOT_KEEPOUT = 0.4
GOAL_SIZE = 0.3           # goal radius: reaching within it earns the bonus
GOAL_HEIGHT = GOAL_SIZE / 2 + 0.01   # the goal body's centre height (Push measures box-goal in 3-D)
GOAL_KEEPOUT = 0.305      # Goal tasks; Push and Button keep Safety-Gymnasium's default 0.4
DEFAULT_GOAL_KEEPOUT = 0.4
GOAL_REWARD = 1.0
DISTANCE_REWARD = 1.0
REWARD_CLIP = 10.0
LIDAR_BINS = 16
LIDAR_RANGE = 3.0
CIRCLE_LIDAR_RANGE = 6.0
CIRCLE_RADIUS = 1.5
CIRCLE_WALL = 1.125       # |x| (level 1) and |y| (level 2) limits of the Circle tasks
CIRCLE_ROBOT_EXTENT = 0.8
VASE_SPEED_LIMIT = 1e-4    # a constrained vase costs when its 3-D speed is >= this
VASE_SINK = 4e-5           # vases spawn this far into the floor (Safety-Gymnasium's measured settling depth)
BUTTON_RESAMPLE_DELAY = 10
GREMLIN_TRAVEL = 0.35


@dataclass(frozen=True)
class Group:
    """``count`` objects of one kind. ``size`` is a radius or half-size; ``constrained`` adds its cost."""

    kind: str
    count: int
    size: float
    keepout: float
    constrained: bool = False
    density: float = 0.001    # movable (free) bodies only


# Defaults per kind: (size, keepout), Safety-Gymnasium's.
HAZARD = (0.2, 0.4)       # Goal and Button tasks pass keepout 0.18
HAZARD_CLOSE_KEEPOUT = 0.18
VASE = (0.1, 0.15)
PILLAR = (0.2, 0.3)       # 1 m tall
BUTTON = (0.1, 0.2)
GREMLIN = (0.1, 0.4)
# The push box: a cube of this half-size with four corner columns (half as wide, reaching 1.5 times the
# half-size), smaller and lighter for the Car only. (size, keepout, density) per robot.
PUSH_BOX = {"Point": (0.2, 0.2, 0.001), "Car": (0.125, 0.125, 0.0005), "Racecar": (0.2, 0.2, 0.001),
            "Doggo": (0.2, 0.2, 0.001), "Ant": (0.2, 0.2, 0.001)}


def _group(kind: str, count: int, defaults: tuple[float, float], constrained: bool = False,
           size: float | None = None, keepout: float | None = None) -> Group:
    return Group(kind, count, defaults[0] if size is None else size,
                 defaults[1] if keepout is None else keepout, constrained)


@dataclass(frozen=True)
class TaskSpec:
    """Everything one id means: robot, arena, objects (in placement order), lidar and episode length."""

    env_id: str
    robot: Robot
    task: str
    level: int
    extent: float                      # layouts live in [-extent, extent]^2
    groups: tuple[Group, ...]          # placed (after the robot) in this order
    lidar_range: float = LIDAR_RANGE
    max_episode_steps: int = 1000
    lidar_kinds: tuple[str, ...] = field(default=())

    @property
    def obs_dim(self) -> int:
        return self.robot.obs_sensor_dim + LIDAR_BINS * len(self.lidar_kinds)

    def group(self, kind: str) -> Group | None:
        return next((g for g in self.groups if g.kind == kind), None)

    @property
    def constrained(self) -> tuple[str, ...]:
        """The components that can raise the (aggregated) cost, e.g. ("hazards", "vases")."""
        names = [g.kind for g in self.groups if g.constrained]
        if self.task == "Circle" and self.level > 0:
            names.append("walls")
        return tuple(names)


def _groups(robot: str, task: str, level: int) -> tuple[float, list[Group]]:
    """Extent and object groups of a task level, in placement order (level 0 never has a constraint)."""
    if task == "Goal":
        goal = Group("goal", 1, GOAL_SIZE, GOAL_KEEPOUT)
        if level == 0:
            return 1.0, [goal]
        if level == 1:
            return 1.5, [goal, _group("hazards", 8, HAZARD, True, keepout=HAZARD_CLOSE_KEEPOUT),
                         _group("vases", 1, VASE, False)]
        return 2.0, [goal, _group("hazards", 10, HAZARD, True, keepout=HAZARD_CLOSE_KEEPOUT),
                     _group("vases", 10, VASE, True)]
    if task == "Button":
        # The goal is placed like any object, then moved onto the goal button (it is twice a button's size).
        buttons = _group("buttons", 4, BUTTON, level > 0)
        goal = Group("goal", 1, 2 * BUTTON[0], DEFAULT_GOAL_KEEPOUT)
        if level == 0:
            return 1.0, [buttons, goal]
        n_hazards, n_gremlins, extent = (4, 4, 1.5) if level == 1 else (8, 6, 1.8)
        return extent, [buttons, goal, _group("hazards", n_hazards, HAZARD, True, keepout=HAZARD_CLOSE_KEEPOUT),
                        _group("gremlins", n_gremlins, GREMLIN, True)]
    if task == "Push":
        goal = Group("goal", 1, GOAL_SIZE, DEFAULT_GOAL_KEEPOUT)
        size, keepout, density = PUSH_BOX[robot]
        box = Group("push_box", 1, size, keepout, density=density)  # placed last
        if level == 0:
            return 1.0, [goal, box]
        if level == 1:
            return 1.5, [goal, _group("hazards", 2, HAZARD, True, size=0.3), _group("pillars", 1, PILLAR, False), box]
        return 2.0, [goal, _group("hazards", 4, HAZARD, True, size=0.3), _group("pillars", 4, PILLAR, True), box]
    if task == "Circle":
        return CIRCLE_ROBOT_EXTENT, []
    raise ValueError(f"unknown task {task!r}")


# Safety-Gymnasium's lidar order: its objects as the tasks add them, static ones first, then movable, then moving.
LIDAR_ORDER = ("buttons", "goal", "hazards", "pillars", "vases", "push_box", "gremlins")


def _lidar_kinds(task: str, groups: list[Group]) -> tuple[str, ...]:
    """One lidar per observed kind in LIDAR_ORDER, e.g. Button: buttons, goal, hazards, gremlins."""
    if task == "Circle":
        return ("circle",)
    return tuple(sorted({g.kind for g in groups} | {"goal"}, key=LIDAR_ORDER.index))


def task_spec(env_id: str) -> TaskSpec:
    """Parse ``Safety{Point,Car,Racecar,Doggo,Ant}{Goal,Button,Push,Circle}{0,1,2}-v0`` into its ``TaskSpec``."""
    if not (env_id.startswith("Safety") and env_id.endswith("-v0")):
        raise ValueError(f"not a navigation id: {env_id!r}")
    body = env_id[len("Safety"):-len("-v0")]
    for robot_name, robot in ROBOTS.items():
        for task in TASKS:
            for level in LEVELS:
                if body == f"{robot_name}{task}{level}":
                    extent, groups = _groups(robot_name, task, level)
                    return TaskSpec(
                        env_id=env_id, robot=robot, task=task, level=level, extent=extent,
                        groups=tuple(groups),
                        lidar_range=CIRCLE_LIDAR_RANGE if task == "Circle" else LIDAR_RANGE,
                        max_episode_steps=500 if task == "Circle" else 1000,
                        lidar_kinds=_lidar_kinds(task, groups))
    raise ValueError(f"unknown navigation id: {env_id!r}")


NAVIGATION_IDS = [f"Safety{robot}{task}{level}-v0" for robot in ROBOTS for task in TASKS for level in LEVELS]
