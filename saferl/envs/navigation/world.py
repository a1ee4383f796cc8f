"""Compile a task's world (floor, robot, objects, cameras, sensors) into one ``MjModel``.

Every env of a batch shares this model, so anything that differs between layouts must live in
``MjData``: static objects are mocap bodies (their pose is per-data), movable ones are free
bodies. The sensor block is laid out so that one copy of ``data.sensordata`` per env carries
everything the batched numpy code needs: observed sensors first, then robot pose and velocity,
then positions/speeds/contacts of the objects that the physics moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

from .robots import SITE_SENSORS
from .tasks import CIRCLE_RADIUS, CIRCLE_WALL, TaskSpec

MOCAP_KINDS = ("goal", "hazards", "pillars", "buttons", "gremlins")   # gremlins: their weld targets
FREE_KINDS = ("vases", "push_box", "gremlins")
# Objects whose contact with the robot matters: a cost when constrained, a press for buttons.
CONTACT_KINDS = ("vases", "pillars", "gremlins", "buttons")
PILLAR_HALF_HEIGHT = 0.5
# A gremlin is a light free box welded (soft: timeconst 0.02 s, damping ratio 1.5) to a mocap target
# that the simulator moves before every physics substep, as in Safety-Gymnasium.
GREMLIN_WELD_SOLREF = "0.02 1.5"
# Colliding objects take the robot files' default condim 6 (torsional and rolling friction), as in Safety-Gymnasium.
_SOLID = 'condim="6"'

_RGBA = {
    "goal": "0.2 0.9 0.2 0.3", "hazards": "0.2 0.2 1 0.35", "vases": "0 0.9 0.9 1",
    "pillars": "0.4 0.4 1 1", "buttons": "1 0.5 0 1", "gremlins": "0.5 0 1 1",
    "push_box": "1 0.8 0.2 1",
}
_GHOST = 'contype="0" conaffinity="0"'


def _object_body(kind: str, name: str, size: float, density: float = 0.001) -> str:
    """MJCF of one object, at the origin (layouts move it after compiling)."""
    rgba = f'rgba="{_RGBA[kind]}"'
    if kind == "goal":
        return (f'<body name="{name}" mocap="true"><geom type="cylinder" size="{size} 0.05" '
                f'pos="0 0 0.05" {_GHOST} {rgba}/></body>')
    if kind == "hazards":
        return (f'<body name="{name}" mocap="true"><geom type="cylinder" size="{size} 0.01" pos="0 0 0.01" '
                f'{_GHOST} {rgba}/></body>')
    if kind == "pillars":
        return (f'<body name="{name}" mocap="true"><geom type="cylinder" size="{size} {PILLAR_HALF_HEIGHT}" '
                f'pos="0 0 {PILLAR_HALF_HEIGHT}" {_SOLID} {rgba}/></body>')
    if kind == "buttons":
        return (f'<body name="{name}" mocap="true"><geom type="sphere" size="{size}" pos="0 0 {size}" '
                f'{_SOLID} {rgba}/></body>')
    if kind == "gremlins":
        # The target carries no geom; the box follows it through the weld (see GREMLIN_WELD_SOLREF).
        return (f'<body name="{name}_target" mocap="true"/>'
                f'<body name="{name}" pos="0 0 {size}" sleep="never"><freejoint/>'
                f'<geom type="box" size="{size} {size} {size}" density="{density}" {_SOLID} {rgba}/></body>')
    if kind in ("vases", "push_box"):
        # Light boxes the robot can shove around. Resting ones sleep (MuJoCo skips them until
        # touched): ten vases at rest otherwise cost 10x the robot. The push box has a column at
        # each corner (half as wide, as tall), so it reaches 1.5x its half-size.
        solid = f'density="{density}" {_SOLID} {rgba}'
        geoms = [f'<geom type="box" size="{size} {size} {size}" {solid}/>']
        if kind == "push_box":
            half = size / 2
            geoms += [f'<geom type="box" size="{half} {half} {size}" pos="{sx * size} {sy * size} 0" {solid}/>'
                      for sx in (1, -1) for sy in (1, -1)]
        return f'<body name="{name}" pos="0 0 {size}" sleep="allowed"><freejoint/>{"".join(geoms)}</body>'
    raise ValueError(kind)


def _circle_bodies(level: int) -> str:
    """The circle to run around and, from level 1, the (non-colliding) walls it must stay between."""
    parts = [f'<geom name="circle" type="cylinder" size="{CIRCLE_RADIUS} 0.001" pos="0 0 0.001" {_GHOST} '
             'rgba="0 1 0 0.15"/>']
    walls = [(f"{s * CIRCLE_WALL} 0 0.25", "0.02 2 0.25") for s in (-1, 1)]
    if level >= 2:
        walls += [(f"0 {s * CIRCLE_WALL} 0.25", "2 0.02 0.25") for s in (-1, 1)]
    if level >= 1:
        parts += [f'<geom name="wall{i}" type="box" pos="{p}" size="{s}" {_GHOST} rgba="1 0.2 0.2 0.3"/>'
                  for i, (p, s) in enumerate(walls)]
    return "\n".join(parts)


def world_xml(spec: TaskSpec) -> str:
    """The whole world as MJCF text (handy to inspect or load in MuJoCo's viewer)."""
    robot = spec.robot
    bodies = []
    for g in spec.groups:
        bodies += [_object_body(g.kind, f"{g.kind}{i}", g.size, g.density) for i in range(g.count)]
    if spec.task == "Circle":
        bodies.append(_circle_bodies(spec.level))
    sensors = [f'<{s} name="{s}" site="robot"/>' for s in SITE_SENSORS]
    sensors.append(robot.extra_sensors)
    sensors += ['<framepos name="robot_pos" objtype="xbody" objname="robot"/>',
                '<framexaxis name="robot_xaxis" objtype="xbody" objname="robot"/>',
                '<frameyaxis name="robot_yaxis" objtype="xbody" objname="robot"/>',
                '<framelinvel name="robot_vel" objtype="xbody" objname="robot"/>']
    for g in spec.groups:
        for i in range(g.count):
            name = f"{g.kind}{i}"
            if g.kind in FREE_KINDS:
                sensors.append(f'<framepos name="pos_{name}" objtype="xbody" objname="{name}"/>')
            if g.kind == "vases" and g.constrained:
                sensors.append(f'<framelinvel name="vel_{name}" objtype="xbody" objname="{name}"/>')
            if g.kind in CONTACT_KINDS and (g.constrained or g.kind == "buttons"):
                sensors.append(f'<contact name="touch_{name}" subtree1="robot" body2="{name}" data="found"/>')
    gremlins = spec.group("gremlins")
    welds = [f'<weld body1="gremlins{i}_target" body2="gremlins{i}" relpose="0 0 0 1 0 0 0" '
             f'solref="{GREMLIN_WELD_SOLREF}"/>' for i in range(gremlins.count if gremlins else 0)]
    cam_height = (spec.extent + 0.6) / np.tan(np.radians(22.5))
    return f"""
<mujoco model="{spec.env_id}">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{robot.timestep}" integrator="{robot.integrator}"><flag sleep="enable"/></option>
  <default>{robot.defaults}</default>
  <visual><global offwidth="1280" offheight="960"/><quality shadowsize="2048"/></visual>
  <asset>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.55 0.7 0.85" rgb2="0.2 0.25 0.3"
             width="256" height="256"/>
    <texture name="grid" type="2d" builtin="checker" rgb1="0.9 0.9 0.9" rgb2="0.78 0.78 0.78"
             width="256" height="256" mark="edge" markrgb="0.7 0.7 0.7"/>
    <material name="grid" texture="grid" texrepeat="1 1" texuniform="true"/>
    {robot.assets}
  </asset>
  <worldbody>
    <light pos="0 0 6" dir="0 0 -1" directional="true" diffuse="0.8 0.8 0.8"/>
    <geom name="floor" type="plane" size="10 10 0.1" condim="6" material="grid"/>
    <camera name="overhead" pos="0 0 {cam_height:.3f}" xyaxes="1 0 0 0 1 0" fovy="45"/>
    {robot.body}
    {chr(10).join(bodies)}
  </worldbody>
  <equality>{robot.equality}{"".join(welds)}</equality>
  <contact>{robot.contact}</contact>
  <actuator>{robot.actuators}</actuator>
  <sensor>
    {chr(10).join(sensors)}
  </sensor>
</mujoco>"""


@dataclass
class World:
    """The compiled model plus where each piece of state sits in ``sensordata``, ``mocap_pos``, ``qpos``."""

    spec: TaskSpec
    model: mujoco.MjModel
    robot_pos: slice
    robot_xaxis: slice
    robot_yaxis: slice
    robot_vel: slice
    mocap: dict[str, np.ndarray] = field(default_factory=dict)      # kind -> mocap indices
    free_qpos: dict[str, np.ndarray] = field(default_factory=dict)  # kind -> qpos address of each body
    free_pos: dict[str, np.ndarray] = field(default_factory=dict)   # kind -> sensordata index [count, 3]
    speed: dict[str, np.ndarray] = field(default_factory=dict)      # kind -> sensordata index [count, 3]
    touch: dict[str, np.ndarray] = field(default_factory=dict)      # kind -> sensordata index [count]


def build_world(spec: TaskSpec) -> World:
    """Compile ``spec``'s world and index it (sensors are looked up by the names ``world_xml`` gives them)."""
    model = mujoco.MjModel.from_xml_string(world_xml(spec))

    def adr(name: str, dim: int) -> np.ndarray:
        sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, name)
        return model.sensor_adr[sid] + np.arange(dim)

    def span(name: str) -> slice:
        a = adr(name, 3)
        return slice(int(a[0]), int(a[-1]) + 1)

    world = World(spec, model, span("robot_pos"), span("robot_xaxis"), span("robot_yaxis"), span("robot_vel"))
    sensor_names = {mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_SENSOR, i) for i in range(model.nsensor)}
    kinds = ["goal"] if spec.task != "Circle" else []
    kinds += [g.kind for g in spec.groups if g.kind != "goal"]
    for kind in kinds:
        count = 1 if kind == "goal" else spec.group(kind).count
        names = [f"{kind}{i}" for i in range(count)]
        body_ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, n) for n in names]
        if kind in MOCAP_KINDS:
            targets = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f"{n}_target") for n in names]
            world.mocap[kind] = model.body_mocapid[targets if kind == "gremlins" else body_ids].copy()
        if kind in FREE_KINDS:
            world.free_qpos[kind] = model.jnt_qposadr[model.body_jntadr[body_ids]].copy()
            world.free_pos[kind] = np.stack([adr(f"pos_{n}", 3) for n in names])
        if f"vel_{names[0]}" in sensor_names:
            world.speed[kind] = np.stack([adr(f"vel_{n}", 3) for n in names])
        if f"touch_{names[0]}" in sensor_names:
            world.touch[kind] = np.array([adr(f"touch_{n}", 1)[0] for n in names])
    return world
