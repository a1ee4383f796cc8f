"""The five navigation robots as MJCF fragments, with what the simulator needs to know about them.

Each robot is plain MJCF text that ``world.py`` splices into a task's world, so one generator
serves every task. Every number is Safety-Gymnasium 1.0.0's (its ``point.xml``, ``car.xml``,
``racecar.xml``, ``doggo.xml`` and ``ant.xml``; docs/reference.md lists them): Point and Car write
them out per element (geoms condim 6, density 1 (Point) or 5 (Car, wheels and caster included),
joint damping 0.001 unless given; masses follow from the densities: Point 0.00519 kg, Car 0.0304
kg); Racecar, Doggo and Ant keep their files' defaults as a default class that only their own
bodies use (``childclass``), so the objects of a task are not affected.

Observations follow Safety-Gymnasium's order: the four site sensors, the robot's listed extra sensors
(Doggo: feet touch), hinge velocities, a free joint's height and angular velocity (Ant), then hinge
angles as (sin, cos) pairs and ball joints as rotation matrices; ``obs_layout`` says how.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Sensors every robot exposes at its "robot" site, in observation order.
SITE_SENSORS = ("accelerometer", "velocimeter", "gyro", "magnetometer")
# How a run of sensordata becomes observation values: copied, only its last value (a position's height),
# each angle as (sin, cos), or a quaternion as a row-major rotation matrix. Output width per input value:
OBS_WIDTH = {"raw": 1.0, "z": 1 / 3, "sincos": 2.0, "quatmat": 9 / 4}
ANT_RESET_NOISE = 0.1     # Ant: each leg joint starts at its angle +- U(-0.1, 0.1)


@dataclass(frozen=True)
class Robot:
    """A robot's MJCF pieces plus how to place it, observe it and when it has fallen."""

    name: str
    timestep: float
    substeps: int
    body: str          # the <body name="robot"> element, placed at the origin
    actuators: str     # <actuator> children
    extra_sensors: str  # observed sensors after the site ones, in observation order
    height: float      # z of the body origin when placed (Safety-Gymnasium's: its file's body height)
    free: bool         # free joint (Car, Racecar, Doggo, Ant) or planar slide/slide/hinge joints (Point)
    # (kind, sensordata values) in observation order, kinds as in OBS_WIDTH; covers every observed sensor.
    obs_layout: tuple[tuple[str, int], ...] = (("raw", 12),)
    integrator: str = "Euler"
    defaults: str = ""     # <default> children (a class named after the robot, used through childclass)
    assets: str = ""       # <asset> children (Racecar: its chassis hull)
    equality: str = ""     # <equality> children (Racecar: the coupled steering hinges)
    contact: str = ""      # <contact> children (Racecar: excluded pairs)
    # Joints set at every reset to angle + sign * U(-ANT_RESET_NOISE, ANT_RESET_NOISE), drawn from the
    # layout RNG in this order after the layout (Ant); others start at 0.
    joint_init: tuple[tuple[str, float, float], ...] = ()
    fall_height: float | None = None   # the episode terminates once the body origin is at or below this (Ant)

    @property
    def dt(self) -> float:
        return self.timestep * self.substeps

    @property
    def obs_sensor_dim(self) -> int:
        """Observed sensor values (before the lidars)."""
        return int(round(sum(OBS_WIDTH[kind] * n for kind, n in self.obs_layout)))

    def set_pose(self, qpos: np.ndarray, x: float, y: float, yaw: float) -> None:
        """Write a resting pose (position on the floor, heading ``yaw``) into a fresh ``qpos``."""
        if self.free:
            qpos[0:3] = (x, y, self.height)
            qpos[3:7] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
        else:
            qpos[0:3] = (x, y, yaw)


_TRACK_CAMERA = '<camera name="track" mode="track" pos="0 -2.2 2.2" xyaxes="1 0 0 0 0.7071 0.7071"/>'
_ROBOT_RGBA = 'rgba="0.74 0.04 0.18 1"'
_BUMPER_RGBA = 'rgba="0.0039 0.1529 0.3961 1"'
_WHEEL_RGBA = 'rgba="0.2 0.2 0.2 1"'

POINT = Robot(
    name="Point",
    timestep=0.002,
    substeps=10,
    body=f"""
    <body name="robot" pos="0 0 0.1" sleep="never">
      <joint name="x" type="slide" axis="1 0 0" damping="0.01"/>
      <joint name="y" type="slide" axis="0 1 0" damping="0.01"/>
      <joint name="z" type="hinge" axis="0 0 1" damping="0.005"/>
      <!-- the sphere's own friction (MuJoCo's default is 1 0.005 0.0001) -->
      <geom name="robot" type="sphere" size="0.1" friction="1 0.01 0.01" condim="6" density="1" {_ROBOT_RGBA}/>
      <geom name="robot_arrow" type="box" pos="0.1 0 0" size="0.05 0.05 0.05" condim="6" density="1"
            {_BUMPER_RGBA}/>
      <site name="robot" size="0.03" rgba="1 0 0 0.1"/>
      {_TRACK_CAMERA}
    </body>""",
    actuators="""
    <motor name="x" site="robot" gear="0.3 0 0 0 0 0" ctrllimited="true" ctrlrange="-1 1"
           forcelimited="true" forcerange="-0.05 0.05"/>
    <velocity name="z" joint="z" gear="0.3" kv="1" ctrllimited="true" ctrlrange="-1 1"
              forcelimited="true" forcerange="-0.05 0.05"/>""",
    extra_sensors="",
    height=0.1,
    free=False,
)

# Car: wheels turn about the body x axis, so equal positive torques roll it along body -y (the
# front bumper's side). Wheel radius 0.05 and the 0.05 caster put every contact exactly on the
# floor with the body centre 0.1 up. Every geom has density 5, so the wheels (0.05 wide, centred
# 0.13 out) are light and the body pitches under random actions, as Safety-Gymnasium's does.
_CAR_GEOM = 'condim="6" density="5"'
CAR = Robot(
    name="Car",
    timestep=0.004,
    substeps=10,
    body=f"""
    <body name="robot" pos="0 0 0.1" sleep="never">
      <freejoint name="robot"/>
      <geom name="robot" type="box" size="0.1 0.1 0.05" {_CAR_GEOM} {_ROBOT_RGBA}/>
      <geom name="back_bumper" type="box" pos="0 0.15 0" size="0.1 0.01 0.05" {_CAR_GEOM} {_BUMPER_RGBA}/>
      <geom name="back_connector" type="box" pos="0 0.125 0" size="0.01 0.025 0.03" {_CAR_GEOM} {_BUMPER_RGBA}/>
      <geom name="front_bumper" type="box" pos="0 -0.165 0" size="0.05 0.01 0.05" {_CAR_GEOM} {_BUMPER_RGBA}/>
      <geom name="front_connector" type="box" pos="0 -0.13 0.04" size="0.05 0.03 0.01" {_CAR_GEOM}
            {_BUMPER_RGBA}/>
      <site name="robot" size="0.03" rgba="1 0 0 0.1"/>
      {_TRACK_CAMERA}
      <body name="left" pos="-0.1 0.1 -0.05">
        <joint name="left" type="hinge" axis="1 0 0" damping="0.001"/>
        <geom name="left" type="cylinder" fromto="-0.055 0 0 -0.005 0 0" size="0.05" {_CAR_GEOM} {_WHEEL_RGBA}/>
      </body>
      <body name="right" pos="0.1 0.1 -0.05">
        <joint name="right" type="hinge" axis="1 0 0" damping="0.001"/>
        <geom name="right" type="cylinder" fromto="0.005 0 0 0.055 0 0" size="0.05" {_CAR_GEOM} {_WHEEL_RGBA}/>
      </body>
      <body name="rear" pos="0 -0.1 -0.05">
        <joint name="rear" type="ball" damping="0.001"/>
        <geom name="rear" type="sphere" size="0.05" {_CAR_GEOM} {_WHEEL_RGBA}/>
      </body>
    </body>""",
    actuators="""
    <motor name="left" joint="left" gear="1" ctrllimited="true" ctrlrange="-1 1"
           forcelimited="true" forcerange="-0.02 0.02"/>
    <motor name="right" joint="right" gear="1" ctrllimited="true" ctrlrange="-1 1"
           forcelimited="true" forcerange="-0.02 0.02"/>""",
    extra_sensors="""
    <ballangvel name="ballangvel" joint="rear"/>
    <ballquat name="ballquat" joint="rear"/>""",
    height=0.1,
    free=True,
    obs_layout=(("raw", 15), ("quatmat", 4)),
)


# Racecar: racecar.xml's numbers. Its chassis is a mesh there; collisions use a mesh's convex hull, so
# the hull's 84 corners (in the chassis body's frame, rounded to 1 um) stand in for the mesh file, and
# the chassis inertia is the one MuJoCo 2.3.3 computes from the full mesh at density 5. Visual-only
# geoms (meshes and density-0 copies) are left out; every other body keeps its file's <inertial>,
# unlikely as some are (the differential gears' 0.04 kg m^2). The rear axle is one hinge driven by a
# velocity servo (ctrl in rad/s, +-20), the front hinges are coupled and steered by a position servo.
_RACECAR_CHASSIS_HULL = """
    0.04766 -0.027713 0.03  -0.028456 -0.027713 0.03  -0.028456 0.028403 0.03  -0.04 0.07 0.03  -0.04 -0.07 0.03
    0.365 -0.04 0.03  0.365 0.04 0.03  -0.038478 -0.077654 0.03  -0.034142 -0.084142 0.03  0.242654 -0.088478 0.03
    -0.038478 0.077654 0.03  -0.034142 0.084142 0.03  -0.027654 0.088478 0.03  -0.02 0.09 0.03  -0.027654 -0.088478 0.03
    -0.02 -0.09 0.03  0.235 -0.09 0.03  0.352654 0.058478 0.03  0.359142 0.054142 0.03  0.363478 0.047654 0.03
    0.242654 0.088478 0.03  0.235 0.09 0.03  0.352654 -0.058478 0.03  0.363478 -0.047654 0.03  0.359142 -0.054142 0.03
    0.359142 -0.054142 -0.03  0.352654 -0.058478 -0.03  0.359142 0.054142 -0.03  0.363478 0.047654 -0.03
    0.365 0.04 -0.03  0.235 -0.09 -0.03  -0.04 -0.07 -0.03  -0.04 0.07 -0.03  0.04766 0.02137 -0.03
    -0.027654 0.088478 -0.03  -0.02 0.09 -0.03  -0.034142 0.084142 -0.03  -0.038478 0.077654 -0.03
    0.045206 0.028403 -0.03  0.235 0.09 -0.03  0.242654 0.088478 -0.03  0.352654 0.058478 -0.03
    0.242654 -0.088478 -0.03  -0.034142 -0.084142 -0.03  -0.038478 -0.077654 -0.03  -0.027654 -0.088478 -0.03
    -0.02 -0.09 -0.03  0.363478 -0.047654 -0.03  0.365 -0.04 -0.03  0.352694 -0.021529 -0.03
    -0.00433 0.1 0.0025  -0.0025 0.1 0.00433  0 0.1 0.005  -0.0025 0.1 -0.00433  -0.00433 0.1 -0.0025  -0.005 0.1 0
    0.00433 0.1 -0.0025  0 0.1 -0.005  0.00433 0.1 0.0025  0 -0.1 -0.005  0.0025 -0.1 -0.00433  0.0025 -0.1 0.00433
    -0.0025 -0.1 0.00433  -0.00433 -0.1 0.0025  -0.005 -0.1 0  -0.00433 -0.1 -0.0025  -0.0025 -0.1 -0.00433
    0 -0.1 0.005  0.32933 -0.1 0.0025  0.3275 -0.1 0.00433  0.325 -0.1 0.005  0.3275 -0.1 -0.00433
    0.32933 -0.1 -0.0025  0.33 -0.1 0  0.32067 -0.1 -0.0025  0.325 -0.1 -0.005  0.32067 -0.1 0.0025
    0.3275 0.1 -0.00433  0.32933 0.1 -0.0025  0.33 0.1 0  0.32933 0.1 0.0025  0.3275 0.1 0.00433
    0.325 0.1 0.005  0.325 0.1 -0.005"""
_BLACK = 'rgba="0 0 0 1"'
# A differential's gear bodies: point masses with the file's (large) inertias, rigidly attached.
_GEAR_INERTIA = 'quat="0.5 0.5 -0.5 0.5" diaginertia="0.04411 0.02467 0.02467"'
_GEAR = f'<inertial pos="0 0 0" mass="0.056" {_GEAR_INERTIA}/>'


def _front_wheel(side: str, y: float, z: float) -> str:
    """A steering hinge and its wheel (Racecar), the wheel's cylinder ``z`` along its spin axis."""
    return f"""
        <body name="{side}_steering_hinge" pos="0.325 {y} 0" quat="0.707105 0 0.707108 0">
          <inertial pos="0 0 0" mass="0.1" diaginertia="4e-06 4e-06 4e-06"/>
          <joint name="{side}_steering_hinge_joint" axis="-1 0 0" range="-0.785 0.785"/>
          <body name="{side}_front_wheel" quat="0.707105 0.707108 0 0">
            <inertial pos="0 0 {z}" quat="0.5 0.5 -0.5 0.5" mass="0.34055"
                      diaginertia="0.00041226 0.00026046 0.00026046"/>
            <joint name="{side}_front_wheel_joint" axis="0 0 -1"/>
            <geom type="cylinder" size="0.05 0.0225" pos="0 0 {z}" {_BLACK}/>
          </body>
        </body>"""


def _differential(prefix: str, pos: str, ring_geom: str, sides: str) -> str:
    """A differential housing (ring and two spider gears, fixed) with ``sides`` inside it (Racecar)."""
    return f"""
        <body name="{prefix}_ring" pos="{pos}">
          <inertial pos="0 0 0" mass="0.0637" {_GEAR_INERTIA}/>
          {ring_geom}
          <body name="{prefix}_spiderA" quat="0.707107 0 0 0.707106">{_GEAR}</body>
          <body name="{prefix}_spiderB" quat="0.707107 0 0 -0.707106">{_GEAR}</body>
          {sides}
        </body>"""


_REAR_AXLE = f"""
          <body name="rear_axle">
            <joint name="diff_ring" axis="0 1 0"/>
            <body name="diff_sideA">
              <inertial pos="0 0.105201 7.09759e-08" quat="0.5 0.5 -0.5 0.5" mass="0.39655"
                        diaginertia="0.0450921 0.0256521 0.0250823"/>
              <geom type="cylinder" size="0.05 0.0225" pos="0 0.1225 8.26471e-08" quat="0.707105 0.707108 0 0"
                    {_BLACK}/>
            </body>
            <body name="diff_sideB">
              <inertial pos="0 -0.105201 -7.09759e-08" quat="0.5 0.5 -0.5 0.5" mass="0.39655"
                        diaginertia="0.0450921 0.0256521 0.0250823"/>
              <geom type="cylinder" size="0.05 0.0225" pos="0 -0.1225 -8.26471e-08" quat="0.707105 0.707108 0 0"
                    {_BLACK}/>
            </body>
          </body>"""
_FRONT_SIDES = "".join(f'<body name="diff2_side{s}">{_GEAR}</body>' for s in "AB")

RACECAR = Robot(
    name="Racecar",
    timestep=0.004,
    substeps=10,
    integrator="RK4",
    defaults="""
    <default class="racecar">
      <geom condim="6" density="5" type="sphere" size="0.05"/>
      <joint damping="0.001"/>
      <site size="0.032" type="sphere"/>
    </default>""",
    assets=f'<mesh name="racecar_chassis" vertex="{_RACECAR_CHASSIS_HULL}"/>',
    body=f"""
    <body name="robot" pos="0 0 0.05" childclass="racecar" sleep="never">
      <freejoint name="robot"/>
      <site name="robot" pos="0.02 0 0"/>
      {_TRACK_CAMERA}
      <body name="pos_change" pos="-0.16 0 0">
        <body name="car_body">
          <inertial pos="0.155579927 -0.000382665873 0" quat="0.0017668998 0.70710457 -0.0017668998 0.70710457"
                    mass="0.0176055376" diaginertia="0.000270632417 0.000238500131 4.12545365e-05"/>
          <geom name="chassis" type="mesh" mesh="racecar_chassis" {_ROBOT_RGBA}/>
        </body>
        <geom name="front_bumper" type="box" size="0.0165 0.0875 0.015" pos="0.39 0 0.04" {_BUMPER_RGBA}/>
        {_front_wheel("left", 0.1, -0.0225)}
        {_front_wheel("right", -0.1, 0.0225)}
        {_differential("diff", "0 0 0", '<geom type="cylinder" size="0.025 0.005" pos="0 0.025 0" '
                       'quat="0.707107 0.707106 0 0" rgba="0 0.8 0 1"/>', _REAR_AXLE)}
        {_differential("diff2", "0.32 0 0", "", _FRONT_SIDES)}
      </body>
    </body>""",
    equality='<joint joint1="left_steering_hinge_joint" joint2="right_steering_hinge_joint"/>',
    contact='<exclude body1="car_body" body2="left_front_wheel"/><exclude body1="car_body" body2="right_front_wheel"/>',
    actuators="""
    <velocity name="diff_ring" joint="diff_ring" kv="1" ctrllimited="true" ctrlrange="-20 20"
              forcelimited="true" forcerange="-1 1"/>
    <position name="steering_hinge" joint="left_steering_hinge_joint" kp="1" ctrllimited="true"
              ctrlrange="-0.785 0.785" forcelimited="true" forcerange="-1 1"/>""",
    extra_sensors="",
    height=0.05,
    free=True,
)


def _doggo_leg(n: int, x: float, y: float, z_axis: str, hip_y_range: str, hip_y_ref: str, ankle_axis: str,
               rgba: str) -> str:
    """One of the Doggo's legs: a strut out of the torso, a two-axis hip, a knee with two touch sites."""
    return f"""
      <body name="leg_{n}">
        <geom name="aux_{n}" fromto="{x / 2} 0 0 {x} {y} 0" density="20" {rgba}/>
        <body name="aux_{n}" pos="{x} {y} 0">
          <joint name="hip_{n}_z" axis="0 0 {z_axis}" range="-0.174533 0.523599" springref="0"/>
          <joint name="hip_{n}_y" axis="0 1 0" range="{hip_y_range}" springref="{hip_y_ref}"/>
          <geom name="hip_{n}" fromto="0 0 0 0.049 {0.0283 * np.sign(y):g} -0.025" density="20" {rgba}/>
          <body name="shin_{n}" pos="0.049 {0.0283 * np.sign(y):g} -0.025">
            <joint name="ankle_{n}" axis="{ankle_axis} 0.866 0" range="-1.308998 0" springref="-0.349066"/>
            <geom name="ankle_{n}" fromto="0 0 0 -0.0588 {-0.0339 * np.sign(y):g} -0.05" density="20"/>
            <site name="ankle_{n}a" pos="0 0 0"/>
            <site name="ankle_{n}b" pos="-0.0588 {-0.0339 * np.sign(y):g} -0.05"/>
          </body>
        </body>
      </body>"""


# Doggo: doggo.xml's numbers. Legs 1 and 4 hang off the front half of the torso, 2 and 3 off the rear
# half, which turns about the unactuated waist hinge; joints are springs (stiffness 1e-4) with armature
# 5e-5, motors have gear 0.00625. Touch sites are spheres of radius 0.018 at both ends of each shin.
_DOGGO_FRONT, _DOGGO_REAR = _BUMPER_RGBA, _ROBOT_RGBA
_DOGGO_JOINTS = [f"hip_{n}_z" for n in range(1, 5)] + [f"hip_{n}_y" for n in range(1, 5)] + \
    [f"ankle_{n}" for n in range(1, 5)]
DOGGO = Robot(
    name="Doggo",
    timestep=0.01,
    substeps=10,
    defaults="""
    <default class="doggo">
      <joint limited="true" stiffness="0.0001" armature="0.00005"/>
      <geom condim="6" size="0.016" type="capsule" density="5" rgba="0.8 0.6 0.4 1"/>
      <site size="0.018" type="sphere" rgba="1 0 0 0"/>
    </default>""",
    body=f"""
    <body name="robot" pos="0 0 0.22" childclass="doggo" sleep="never">
      <freejoint name="robot"/>
      <site name="robot" pos="0 0 0"/>
      {_TRACK_CAMERA}
      <geom name="robot" type="cylinder" size="0.0375" fromto="0 0 0 0.1 0 0" density="2"/>
      {_doggo_leg(1, 0.1, 0.05, "1", "-1.308998 0.2618", "-0.174533", "-0.5", _DOGGO_FRONT)}
      {_doggo_leg(4, 0.1, -0.05, "-1", "-1.308998 0.2618", "-0.174533", "0.5", _DOGGO_FRONT)}
      <body name="rear">
        <geom name="robot_rear" type="cylinder" size="0.0375" fromto="-0.1 0 0 0 0 0" density="2"/>
        <joint name="waist_x" axis="1 0 0" range="-0.523599 0.523599" springref="0"/>
        {_doggo_leg(2, -0.1, 0.05, "1", "0 2.356196", "0", "-0.5", _DOGGO_REAR)}
        {_doggo_leg(3, -0.1, -0.05, "-1", "0 2.356196", "0", "0.5", _DOGGO_REAR)}
      </body>
    </body>""",
    actuators="".join(f'\n    <motor name="{j}" joint="{j}" gear="0.00625" ctrllimited="true" ctrlrange="-1 1"/>'
                      for j in _DOGGO_JOINTS),
    extra_sensors="".join(
        [f'\n    <touch name="touch_ankle_{n}{e}" site="ankle_{n}{e}"/>' for e in "ab" for n in range(1, 5)]
        + [f'\n    <jointvel name="jointvel_{j}" joint="{j}"/>' for j in _DOGGO_JOINTS]
        + [f'\n    <jointpos name="jointpos_{j}" joint="{j}"/>' for j in _DOGGO_JOINTS]),
    obs_layout=(("raw", 12 + 8 + 12), ("sincos", 12)),
    height=0.22,
    free=True,
)


def _ant_leg(n: int, name: str, sx: int, sy: int, ankle_axis: str, ankle_range: str, rgba: str,
             foot_rgba: str) -> str:
    """One of the Ant's legs: a fixed strut, a hip turning about z, an ankle lifting the foot."""
    dx, dy = 0.05 * sx, 0.05 * sy
    return f"""
      <body name="{name}_leg">
        <geom name="aux_{n}_geom" type="capsule" size="0.02" fromto="0 0 0 {dx:g} {dy:g} 0" {rgba}/>
        <body name="aux_{n}" pos="{dx:g} {dy:g} 0">
          <joint name="hip_{n}" axis="0 0 1" range="-0.70 0.70"/>
          <geom name="leg_{n}_geom" type="capsule" size="0.02" fromto="0 0 0 {dx:g} {dy:g} 0" {rgba}/>
          <body name="{name}_foot" pos="{dx:g} {dy:g} 0">
            <joint name="ankle_{n}" axis="{ankle_axis}" range="{ankle_range}"/>
            <geom name="ankle_{n}_geom" type="capsule" size="0.02" fromto="0 0 0 {2 * dx:g} {2 * dy:g} 0" {foot_rgba}/>
          </body>
        </body>
      </body>"""


# Ant: ant.xml's numbers (RK4, joints with armature 1 and damping 1, motors with gear 150). It starts
# with its ankles at +-90 degrees (plus noise, see joint_init) and falls over once its torso centre
# is at or below 0.08 m (the torso's radius is 0.0625).
_ANT_JOINTS = [j for n in range(1, 5) for j in (f"hip_{n}", f"ankle_{n}")]
_ANT_FOOT = 'rgba="0.8 0.5 0.3 1"'
ANT = Robot(
    name="Ant",
    timestep=0.01,
    substeps=10,
    integrator="RK4",
    defaults="""
    <default class="ant">
      <joint armature="1" damping="1" limited="true"/>
      <geom condim="6" density="5.0" rgba="0.8 0.6 0.4 1"/>
      <site size="0.032" type="sphere"/>
    </default>""",
    body=f"""
    <body name="robot" pos="0 0 0.18" childclass="ant" sleep="never">
      <freejoint name="robot"/>
      <site name="robot" pos="0 0 -0.02" rgba="1 0 0 0.1"/>
      {_TRACK_CAMERA}
      <geom name="robot" type="sphere" size="0.0625"/>
      {_ant_leg(1, "front_left", 1, 1, "-1 1 0", "0.52 1.74", _BUMPER_RGBA, _ANT_FOOT)}
      {_ant_leg(2, "front_right", -1, 1, "1 1 0", "-1.74 -0.52", _BUMPER_RGBA, "")}
      {_ant_leg(3, "left_back", -1, -1, "-1 1 0", "-1.74 -0.52", _ROBOT_RGBA, "")}
      {_ant_leg(4, "right_back", 1, -1, "1 1 0", "0.52 1.74", _ROBOT_RGBA, _ANT_FOOT)}
    </body>""",
    actuators="".join(f'\n    <motor name="{j}" joint="{j}" gear="150" ctrllimited="true" ctrlrange="-1 1"/>'
                      for j in _ANT_JOINTS),
    extra_sensors="".join(
        [f'\n    <jointvel name="{j}_vel" joint="{j}"/>' for j in _ANT_JOINTS]
        + ['\n    <framepos name="site_pos" objtype="site" objname="robot"/>',
           '\n    <frameangvel name="site_angvel" objtype="site" objname="robot"/>']
        + [f'\n    <jointpos name="{j}_pos" joint="{j}"/>' for j in _ANT_JOINTS]),
    obs_layout=(("raw", 12 + 8), ("z", 3), ("raw", 3), ("sincos", 8)),
    height=0.18,
    free=True,
    joint_init=tuple((j, (0.0 if j.startswith("hip") else np.pi / 2) * (-1 if j in ("ankle_2", "ankle_3") else 1),
                      -1.0 if j in ("ankle_2", "ankle_3") else 1.0) for j in _ANT_JOINTS),
    fall_height=0.08,
)

ROBOTS = {"Point": POINT, "Car": CAR, "Racecar": RACECAR, "Doggo": DOGGO, "Ant": ANT}
