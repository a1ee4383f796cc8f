"""The two navigation robots as MJCF fragments, with what the simulator needs to know about them.

Each robot is plain MJCF text that ``world.py`` splices into a task's world, so one generator
serves every task. Numbers follow REFERENCE.md; values it leaves open (the arrow size, wheel
radius and damping, the caster's damping) are our choices, noted where they are made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Sensors every robot exposes at its "robot" site, in observation order.
SITE_SENSORS = ("accelerometer", "velocimeter", "gyro", "magnetometer")


@dataclass(frozen=True)
class Robot:
    """A robot's MJCF pieces plus how to place it (``qpos`` layout differs between robots)."""

    name: str
    timestep: float
    substeps: int
    body: str          # the <body name="robot"> element, placed at the origin
    actuators: str     # <actuator> children
    extra_sensors: str  # observed sensors after the site ones (Car: rear ball)
    height: float      # z of the body origin when resting on the floor
    free: bool         # free joint (Car) or planar slide/slide/hinge joints (Point)

    @property
    def dt(self) -> float:
        return self.timestep * self.substeps

    @property
    def obs_sensor_dim(self) -> int:
        """Observed sensor values: 4 x 3 site sensors, plus the Car's ball velocity and rotation matrix."""
        return 12 + (12 if self.extra_sensors else 0)

    def set_pose(self, qpos: np.ndarray, x: float, y: float, yaw: float) -> None:
        """Write a resting pose (position on the floor, heading ``yaw``) into a fresh ``qpos``."""
        if self.free:
            qpos[0:3] = (x, y, self.height)
            qpos[3:7] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
        else:
            qpos[0:3] = (x, y, yaw)


_TRACK_CAMERA = '<camera name="track" mode="track" pos="0 -2.2 2.2" xyaxes="1 0 0 0 0.7071 0.7071"/>'
_ROBOT_RGBA = 'rgba="0.74 0.04 0.18 1"'

POINT = Robot(
    name="Point",
    timestep=0.002,
    substeps=10,
    body=f"""
    <body name="robot" pos="0 0 0.1" sleep="never">
      <joint name="x" type="slide" axis="1 0 0" damping="0.01"/>
      <joint name="y" type="slide" axis="0 1 0" damping="0.01"/>
      <joint name="z" type="hinge" axis="0 0 1" damping="0.005"/>
      <geom name="robot" type="sphere" size="0.1" condim="6" density="1" {_ROBOT_RGBA}/>
      <!-- the "arrow" that shows the heading; its size is our choice -->
      <geom name="robot_arrow" type="box" pos="0.1 0 0" size="0.05 0.05 0.05" condim="6" density="1"
            {_ROBOT_RGBA}/>
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

# Car: wheels turn about the body x axis, so equal positive torques roll it along body -y
# (as measured on Safety-Gymnasium). Wheel radius 0.05 and the 0.05 caster put every contact
# exactly on the floor with the body centre 0.1 up. REFERENCE.md gives a density only for the
# box, so wheels and caster keep MuJoCo's default (1000): with density 1 the 0.02 kg car does
# wheelies and flips under random actions. Joint damping is our choice (top speed ~1 m/s).
CAR = Robot(
    name="Car",
    timestep=0.004,
    substeps=10,
    body=f"""
    <body name="robot" pos="0 0 0.1" sleep="never">
      <freejoint name="robot"/>
      <geom name="robot" type="box" size="0.1 0.1 0.05" condim="6" density="5" {_ROBOT_RGBA}/>
      <site name="robot" size="0.03" rgba="1 0 0 0.1"/>
      {_TRACK_CAMERA}
      <body name="left" pos="-0.1 0.1 -0.05">
        <joint name="left" type="hinge" axis="1 0 0" damping="0.001"/>
        <geom name="left" type="cylinder" size="0.05 0.01" zaxis="1 0 0" condim="6" rgba="0.2 0.2 0.2 1"/>
      </body>
      <body name="right" pos="0.1 0.1 -0.05">
        <joint name="right" type="hinge" axis="1 0 0" damping="0.001"/>
        <geom name="right" type="cylinder" size="0.05 0.01" zaxis="1 0 0" condim="6" rgba="0.2 0.2 0.2 1"/>
      </body>
      <body name="rear" pos="0 -0.1 -0.05">
        <joint name="rear" type="ball" damping="0.0001"/>
        <geom name="rear" type="sphere" size="0.05" condim="6" rgba="0.2 0.2 0.2 1"/>
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
)

ROBOTS = {"Point": POINT, "Car": CAR}
