"""The two navigation robots as MJCF fragments, with what the simulator needs to know about them.

Each robot is plain MJCF text that ``world.py`` splices into a task's world, so one generator
serves every task. Every number is Safety-Gymnasium 1.0.0's (its ``point.xml`` and ``car.xml``;
docs/reference.md lists them): geoms condim 6, density 1 (Point) or 5 (Car, wheels and caster
included), joint damping 0.001 unless given. Masses follow from the densities: Point 0.00519 kg
(sphere 0.00419, heading box 0.001), Car 0.0304 kg (box 0.02, bumpers and connectors 0.0039,
wheels 0.00196 each, caster 0.00262).
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
)

ROBOTS = {"Point": POINT, "Car": CAR}
