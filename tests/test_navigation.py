"""Native Safety-Gymnasium navigation suite against Safety-Gymnasium 1.0.0's numbers, worked by hand.

Scenes are built with ``NavigationSim.set_state`` (robot pose and object positions set
exactly), so lidar, cost and reward checks compare against numbers written out by hand.
"""

import os
import subprocess
import sys

import gymnasium
import numpy as np
import pytest
from conftest import slow_except

from saferl.envs.navigation import NAVIGATION_IDS, make_navigation_vec, register_navigation_envs, task_spec
from saferl.envs.navigation.layout import new_rng, sample_layout
from saferl.envs.navigation.lidar import pseudo_lidar
from saferl.envs.navigation.sim import NavigationSim
from saferl.envs.navigation.tasks import ROBOT_KEEPOUT

FAR = [[5.0, 5.0 + k] for k in range(10)]  # parking spots well beyond lidar range and every keepout
ZERO = np.zeros((1, 2))


def bins(**values):
    """A 16-bin lidar vector from ``{"b3": 0.5, ...}``."""
    out = np.zeros(16)
    for name, v in values.items():
        out[int(name[1:])] = v
    return out


def ego_to_world(robot_xy, yaw, angle_bins, dist):
    """World position of a point seen at ``angle_bins`` (in 22.5 degree bins) and ``dist`` by a robot."""
    a = yaw + angle_bins * 2 * np.pi / 16
    return [robot_xy[0] + dist * np.cos(a), robot_xy[1] + dist * np.sin(a)]


# -- observation layout --------------------------------------------------------------------------

@pytest.mark.parametrize("env_id, dim", slow_except([
    ("SafetyPointGoal1-v0", 60), ("SafetyCarGoal1-v0", 72), ("SafetyPointButton1-v0", 76),
    ("SafetyPointCircle1-v0", 28), ("SafetyPointGoal0-v0", 28), ("SafetyPointGoal2-v0", 60),
    ("SafetyCarButton2-v0", 88), ("SafetyPointPush1-v0", 76), ("SafetyCarCircle0-v0", 40),
], {"SafetyPointGoal1-v0", "SafetyCarGoal1-v0", "SafetyPointCircle1-v0", "SafetyPointGoal0-v0", "SafetyPointGoal2-v0",
    "SafetyPointPush1-v0", "SafetyCarCircle0-v0"}))
def test_observation_sizes(env_id, dim):
    with make_navigation_vec(env_id, num_envs=2, seed=0) as env:
        assert env.single_observation_space.shape == (dim,)
        assert env.single_action_space == gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float64)
        assert env.reset()[0].shape == (2, dim)
        assert env.num_costs == 1 and env.cost_names == ["cost"]


def test_lidar_kinds_follow_safety_gymnasium_order():
    assert task_spec("SafetyPointGoal1-v0").lidar_kinds == ("goal", "hazards", "vases")
    assert task_spec("SafetyPointButton1-v0").lidar_kinds == ("buttons", "goal", "hazards", "gremlins")
    assert task_spec("SafetyCarPush2-v0").lidar_kinds == ("goal", "hazards", "pillars", "push_box")
    assert task_spec("SafetyPointCircle2-v0").lidar_kinds == ("circle",)
    assert task_spec("SafetyAntButton2-v0").lidar_kinds == ("buttons", "goal", "hazards", "gremlins")
    assert len(NAVIGATION_IDS) == 60


@pytest.mark.slow
def test_button_hazards_lidar_sits_at_dims_44_to_60():
    sim = NavigationSim("SafetyPointButton1-v0", 1)
    sim.reset_env(0, seed=0)
    hazards = np.array(FAR[:4])
    hazards[0] = [1.0, 0.0]                                   # dead ahead at 1 m: 2/3 in bin 0, aliased to bin 15
    sim.set_state(0, robot=(0.0, 0.0, 0.0), objects={
        "buttons": -np.array(FAR[:4]), "hazards": hazards, "gremlins": -np.array(FAR[4:8])})
    obs = sim.observe()[0]
    np.testing.assert_allclose(obs[44:60], bins(b0=2 / 3, b15=2 / 3), atol=1e-9)
    np.testing.assert_allclose(obs[12:44], 0.0, atol=0)       # buttons, goal (on a button): out of range
    np.testing.assert_allclose(obs[60:76], 0.0, atol=0)       # gremlins


# -- robot models: Safety-Gymnasium 1.0.0's point.xml and car.xml ---------------------------------------------

def robot_model(env_id):
    return NavigationSim(env_id, 1).model


def test_point_model_numbers():
    m = robot_model("SafetyPointGoal0-v0")
    sphere, arrow = m.geom("robot"), m.geom("robot_arrow")
    np.testing.assert_allclose(sphere.size[0], 0.1)
    np.testing.assert_allclose(sphere.friction, [1.0, 0.01, 0.01])      # its own, not MuJoCo's default
    np.testing.assert_allclose(arrow.size, [0.05, 0.05, 0.05])
    np.testing.assert_allclose(arrow.pos, [0.1, 0.0, 0.0])
    assert sphere.condim[0] == arrow.condim[0] == 6
    # density 1: the masses follow from the volumes
    np.testing.assert_allclose(m.body("robot").mass, 4 / 3 * np.pi * 0.1 ** 3 + 0.1 ** 3, rtol=1e-12)
    np.testing.assert_allclose([m.joint(j).damping[0] for j in ("x", "y", "z")], [0.01, 0.01, 0.005])
    assert m.opt.timestep == 0.002


def test_car_model_numbers():
    m = robot_model("SafetyCarGoal0-v0")
    boxes = {"robot": ((0.0, 0.0, 0.0), (0.1, 0.1, 0.05)), "back_bumper": ((0.0, 0.15, 0.0), (0.1, 0.01, 0.05)),
             "back_connector": ((0.0, 0.125, 0.0), (0.01, 0.025, 0.03)),
             "front_bumper": ((0.0, -0.165, 0.0), (0.05, 0.01, 0.05)),
             "front_connector": ((0.0, -0.13, 0.04), (0.05, 0.03, 0.01))}
    for name, (pos, size) in boxes.items():
        np.testing.assert_allclose(m.geom(name).pos, pos, atol=1e-12)
        np.testing.assert_allclose(m.geom(name).size, size)
    for side, x in (("left", -0.03), ("right", 0.03)):                # cylinders from |x| = 0.005 to 0.055
        np.testing.assert_allclose(m.geom(side).size[:2], [0.05, 0.025])
        np.testing.assert_allclose(m.geom(side).pos, [x, 0.0, 0.0], atol=1e-12)
        np.testing.assert_allclose(m.body(side).pos, [x / 0.3, 0.1, -0.05])   # wheel bodies at x = -+0.1
        assert m.joint(side).damping[0] == 0.001
    np.testing.assert_allclose(m.geom("rear").size[0], 0.05)
    assert m.joint("rear").damping[0] == 0.001 and m.joint("robot").damping[0] == 0.0
    names = [*boxes, "left", "right", "rear"]
    assert all(m.geom(n).condim[0] == 6 for n in names)
    # density 5 for every geom, wheels and caster included: the masses follow from the volumes
    box_volume = sum(8 * np.prod(size) for _, size in boxes.values())
    wheel_volume, caster_volume = np.pi * 0.05 ** 2 * 0.05, 4 / 3 * np.pi * 0.05 ** 3
    np.testing.assert_allclose(m.body("robot").mass, 5 * box_volume, rtol=1e-12)
    np.testing.assert_allclose(m.body("left").mass, 5 * wheel_volume, rtol=1e-12)
    np.testing.assert_allclose(m.body("rear").mass, 5 * caster_volume, rtol=1e-12)
    np.testing.assert_allclose(m.body("robot").subtreemass, 0.030445, rtol=1e-4)
    assert m.opt.timestep == 0.004
    np.testing.assert_allclose(m.actuator_forcerange[:2], [[-0.02, 0.02]] * 2)


@pytest.mark.slow
def test_car_under_random_actions_travels_and_pitches_like_safety_gymnasium():
    """Safety-Gymnasium's Car travels about 6.0 m per 1000-step episode and its gyro x averages about -0.10.

    Before its wheels and caster had density 5 our Car travelled 2.5 m with gyro x 0.00. Per episode the
    path length varies by about 0.3 m and the gyro mean by 0.01, so three episodes separate the two clearly.
    """
    sim = NavigationSim("SafetyCarGoal1-v0", 1)
    lengths, gyro_x = [], []
    for seed in range(3):
        sim.reset_env(0, seed=seed)
        rng = np.random.default_rng(1000 + seed)
        xy, length, gyro = sim.sens[0, sim.world.robot_pos][:2].copy(), 0.0, 0.0
        for _ in range(1000):
            sim.step(rng.uniform(-1.0, 1.0, (1, 2)))
            new = sim.sens[0, sim.world.robot_pos][:2].copy()
            length, xy = length + np.linalg.norm(new - xy), new
            gyro += sim.observe()[0, 6] / 1000
        lengths.append(length)
        gyro_x.append(gyro)
    assert 5.0 < np.mean(lengths) < 7.0
    assert -0.13 < np.mean(gyro_x) < -0.06


@pytest.mark.parametrize("env_id, action, body_direction", [
    ("SafetyPointGoal0-v0", [1.0, 0.0], (1.0, 0.0)),    # the Point's motor pushes along body x
    ("SafetyCarGoal0-v0", [1.0, 1.0], (0.0, -1.0)),     # equal wheel commands drive the Car along body -y
])
def test_robot_drive_directions(env_id, action, body_direction):
    sim = NavigationSim(env_id, 1)
    sim.reset_env(0, seed=0)
    yaw = 0.6
    sim.set_state(0, robot=(0.0, 0.0, yaw), objects={"goal": [[5.0, 5.0]]})
    for _ in range(25):
        sim.step(np.array([action]))
    moved = sim.sens[0, sim.world.robot_pos][:2]
    c, s = np.cos(yaw), np.sin(yaw)
    expected = np.array([c * body_direction[0] - s * body_direction[1], s * body_direction[0] + c * body_direction[1]])
    assert np.linalg.norm(moved) > 0.1 and moved @ expected / np.linalg.norm(moved) > 0.99


# -- pseudo-lidar ---------------------------------------------------------------------------------

def test_pseudo_lidar_hand_numbers():
    # 61.875 deg = 2.75 bins, 78.75 deg = 3.5 bins
    b275 = [1.5 * np.cos(np.radians(61.875)), 1.5 * np.sin(np.radians(61.875))]
    b350 = [0.3 * np.cos(np.radians(78.75)), 0.3 * np.sin(np.radians(78.75))]
    ego = np.array([[
        [1.0, 0.0],      # kind 0: dead ahead at 1 m -> value 2/3 in bin 0, and all of it aliased to bin 15
        b275,            # kind 1: 1.5 m (value 0.5) at a = 0.75 in bin 2
        b350,            # kind 1: 0.3 m (value 0.9) at a = 0.5 in bin 3; bins keep the max
        [0.0, -2.4],     # kind 2: behind-right, 270 deg = bin 12 exactly, value 0.2
        [3.5, 0.0],      # kind 3: out of range
    ]])
    out = pseudo_lidar(ego, np.array([0, 1, 3, 4]), max_range=3.0)
    np.testing.assert_allclose(out[0, 0], bins(b0=2 / 3, b15=2 / 3), atol=1e-12)
    np.testing.assert_allclose(out[0, 1], bins(b1=0.125, b2=0.5, b3=0.9, b4=0.45), atol=1e-12)
    np.testing.assert_allclose(out[0, 2], bins(b11=0.2, b12=0.2), atol=1e-12)
    np.testing.assert_allclose(out[0, 3], np.zeros(16), atol=0)


@pytest.mark.parametrize("env_id, base", [("SafetyPointGoal1-v0", 12), ("SafetyCarGoal1-v0", 24)])
def test_lidar_in_env_on_hand_placed_objects(env_id, base):
    sim = NavigationSim(env_id, 1)
    sim.reset_env(0, seed=0)
    xy, yaw = (0.2, -0.3), np.pi / 2                       # facing world +y
    hazards = np.array(FAR[:8])
    hazards[0] = ego_to_world(xy, yaw, 4.0, 1.0)           # 90 deg, 1 m: value 2/3, aliased to bin 3
    hazards[1] = ego_to_world(xy, yaw, 10.5, 2.25)         # 236.25 deg, value 0.25, a = 0.5
    sim.set_state(0, robot=(*xy, yaw), objects={
        "goal": [ego_to_world(xy, yaw, 0.0, 1.5)],         # dead ahead, value 0.5
        "hazards": hazards,
        "vases": [ego_to_world(xy, yaw, 8.0, 2.7)],        # straight behind, value 0.1
    })
    obs = sim.observe()[0]
    np.testing.assert_allclose(obs[base:base + 16], bins(b0=0.5, b15=0.5), atol=1e-9)
    np.testing.assert_allclose(obs[base + 16:base + 32],
                               bins(b3=2 / 3, b4=2 / 3, b9=0.125, b10=0.25, b11=0.125), atol=1e-9)
    np.testing.assert_allclose(obs[base + 32:base + 48], bins(b7=0.1, b8=0.1), atol=1e-9)


def test_circle_lidar_range_is_six_metres():
    sim = NavigationSim("SafetyPointCircle0-v0", 1)
    sim.reset_env(0, seed=0)
    sim.set_state(0, robot=(-1.5, 0.0, 0.0))               # circle centre 1.5 m dead ahead
    np.testing.assert_allclose(sim.observe()[0, 12:], bins(b0=0.75, b15=0.75), atol=1e-9)


# -- cost -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("env_id, radius, eps", [
    ("SafetyPointGoal1-v0", 0.2, 1e-3), ("SafetyCarGoal1-v0", 0.2, 5e-3), ("SafetyPointPush1-v0", 0.3, 1e-3),
])
def test_hazard_cost_exactly_inside_radius(env_id, radius, eps):
    sim = NavigationSim(env_id, 1)
    sim.reset_env(0, seed=0)
    n_hazards = sim.spec.group("hazards").count
    others = {k: -np.array(FAR[:sim.spec.group(k).count]) + [0.0, 20.0 * j]
              for j, k in enumerate(("vases", "pillars", "push_box")) if sim.spec.group(k)}
    for dist, expected in [(0.0, 1.0), (radius - eps, 1.0), (radius + eps, 0.0), (0.6, 0.0)]:
        hazards = np.array(FAR[:n_hazards])
        hazards[0] = ego_to_world((0.3, 0.1), 0.0, 1.5, dist)
        scene = {"goal": [[-3.0, -3.0]], "hazards": hazards, **others}
        sim.set_state(0, robot=(0.3, 0.1, 0.7), objects=scene)
        _, cost = sim.step(ZERO)
        assert cost[0] == expected, (dist, cost)


@pytest.mark.parametrize("env_id, expected", [("SafetyPointGoal2-v0", 1.0), ("SafetyPointGoal1-v0", 0.0)])
def test_vase_contact_costs_only_at_level_two(env_id, expected):
    sim = NavigationSim(env_id, 1)
    sim.reset_env(0, seed=0)
    n = sim.spec.group("vases").count
    vases = np.array(FAR[:n]) * -1
    vases[0] = [0.19, 0.0]                                   # overlaps the Point's 0.1 sphere
    sim.set_state(0, robot=(0.0, 0.0, np.pi), objects={
        "goal": [[-3.0, 3.0]], "hazards": FAR[:sim.spec.group("hazards").count], "vases": vases})
    _, cost = sim.step(ZERO)
    assert cost[0] == expected


@pytest.mark.parametrize("env_id, pos, expected", [
    ("SafetyPointCircle1-v0", (1.2, 0.0), 1.0), ("SafetyPointCircle1-v0", (-1.2, 0.0), 1.0),
    ("SafetyPointCircle1-v0", (1.0, 0.0), 0.0), ("SafetyPointCircle1-v0", (0.0, 1.2), 0.0),
    ("SafetyPointCircle2-v0", (0.0, 1.2), 1.0), ("SafetyPointCircle2-v0", (0.5, -1.2), 1.0),
    ("SafetyPointCircle0-v0", (1.4, 1.4), 0.0),
])
def test_circle_walls(env_id, pos, expected):
    sim = NavigationSim(env_id, 1)
    sim.reset_env(0, seed=0)
    sim.set_state(0, robot=(*pos, 0.0))
    _, cost = sim.step(ZERO)
    assert cost[0] == expected


class Draws:
    """Stands in for an env's RNG where only the goal-button draws matter: choice() gives these in turn."""

    def __init__(self, *values):
        self.values = list(values)

    def choice(self, *args, **kwargs):
        return self.values.pop(0)

    def random_sample(self, *args, **kwargs):  # the per-step draws skipped before each use
        return None


def button_scene(*draws):
    """PointButton1, robot pressing button 0 (the goal) behind it; later goal draws are ``draws``."""
    sim = NavigationSim("SafetyPointButton1-v0", 1)
    sim.reset_env(0, seed=0)
    sim.goal_button[0] = 0
    buttons = np.array([[-0.199, 0.0], [-1.0, -1.0], [1.0, -1.0], [1.0, 1.0]])
    sim.set_state(0, robot=(0.0, 0.0, 0.0), objects={
        "hazards": FAR[:4], "gremlins": -np.array(FAR[4:8]), "buttons": buttons})
    sim.rngs[0] = Draws(*draws)
    return sim, buttons


@pytest.mark.slow
def test_button_press_draws_at_once_and_the_same_button_pays_again():
    sim, buttons = button_scene(0, 0, 2)
    push = np.array([[-1.0, 0.0]])                            # reversing into button 0
    for _ in range(3):                                        # drawn again, still pressed: pays every step
        reward, cost = sim.step(push)
        assert reward[0] == pytest.approx(1.0, abs=0.02) and cost[0] == 0.0
    assert sim.goal_button[0] == 2                            # the third press drew button 2 ...
    np.testing.assert_allclose(sim.obj[0, sim.slots["goal"], :2][0], buttons[2])   # ... and the goal moved
    assert sim.last_dist[0] == pytest.approx(np.linalg.norm(buttons[2] - sim.sens[0, sim.world.robot_pos][:2]))
    reward, _ = sim.step(push)
    assert abs(reward[0]) < 0.02                              # pressing a wrong button pays nothing


@pytest.mark.slow
def test_after_a_press_buttons_lidar_reads_zero_and_wrong_buttons_are_free_for_ten_steps():
    sim, _ = button_scene(1)
    push = np.array([[-1.0, 0.0]])                            # reversing into button 0
    reward, cost = sim.step(push)                             # the press: button 1 becomes the goal
    assert reward[0] > 0.5 and sim.goal_button[0] == 1
    for t in range(1, 12):                                    # still pressing button 0, now a wrong one
        assert np.all(sim.observe()[0, 12:28] == 0.0) == (t <= 10)   # lidar of the press step and 9 more
        _, cost = sim.step(push)
        assert sim.sens[0, sim.world.touch["buttons"][0]] > 0
        assert cost[0] == (0.0 if t <= 10 else 1.0)            # free on the 10 steps after the press
    assert np.any(sim.observe()[0, 12:28] > 0.0)


# -- push -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("env_id, half, density", [("SafetyPointPush1-v0", 0.2, 0.001),
                                                   ("SafetyCarPush1-v0", 0.125, 0.0005)])
def test_push_box_geometry_and_placement(env_id, half, density):
    sim = NavigationSim(env_id, 1)
    m = sim.model
    body = m.body("push_box0")
    geoms = [g for g in range(m.ngeom) if m.geom_bodyid[g] == body.id]
    assert len(geoms) == 5                                    # the cube and four corner columns
    np.testing.assert_allclose(m.geom_size[geoms[0]], [half] * 3)
    for g in geoms[1:]:
        np.testing.assert_allclose(m.geom_size[g], [half / 2, half / 2, half])
        np.testing.assert_allclose(np.abs(m.geom_pos[g]), [half, half, 0.0])
    reach = max(np.abs(m.geom_pos[g][0]) + m.geom_size[g][0] for g in geoms)
    np.testing.assert_allclose(reach, 1.5 * half)             # Point: +-0.3
    np.testing.assert_allclose(body.mass, density * (8 * half ** 3 + 4 * 2 * half ** 3), rtol=1e-12)
    spec = sim.spec
    assert [g.kind for g in spec.groups] == ["goal", "hazards", "pillars", "push_box"]   # the box is placed last
    assert spec.group("hazards").keepout == 0.4 and spec.group("goal").keepout == 0.4
    assert spec.group("push_box").keepout == half
    sim.reset_env(0, seed=0)
    np.testing.assert_allclose(sim.sens[0, sim.world.free_pos["push_box"][0]][2], half, atol=1e-3)


def test_keepouts_per_task():
    goal1, button1 = task_spec("SafetyPointGoal1-v0"), task_spec("SafetyPointButton1-v0")
    assert goal1.group("goal").keepout == 0.305 and goal1.group("hazards").keepout == 0.18
    assert [g.kind for g in button1.groups] == ["buttons", "goal", "hazards", "gremlins"]  # the goal is placed too
    assert button1.group("goal").keepout == 0.4 and button1.group("goal").size == 0.2
    assert button1.group("hazards").keepout == 0.18 and button1.group("gremlins").keepout == 0.4


# -- reward ---------------------------------------------------------------------------------------

def point_goal_scene(goal):
    sim = NavigationSim("SafetyPointGoal1-v0", 1)
    sim.reset_env(0, seed=0)
    sim.set_state(0, robot=(0.0, 0.0, 0.0), objects={"goal": [goal], "hazards": FAR[:8], "vases": FAR[8:9]})
    return sim


def test_goal_reached_gives_bonus_and_moves_goal():
    sim = point_goal_scene([0.29, 0.0])
    reward, _ = sim.step(ZERO)
    assert reward[0] == pytest.approx(1.0, abs=1e-9)        # no motion: pure bonus
    new_goal = sim.obj[0, sim.slots["goal"], :2][0]
    assert np.linalg.norm(new_goal) >= ROBOT_KEEPOUT + 0.305   # re-placed with keepouts
    assert np.all(np.abs(new_goal) <= 1.5 - 0.305)
    assert sim.last_dist[0] == pytest.approx(np.linalg.norm(new_goal), abs=1e-6)
    reward, _ = sim.step(ZERO)
    assert reward[0] == pytest.approx(0.0, abs=1e-9)


def test_goal_progress_reward():
    sim = point_goal_scene([1.0, 0.0])
    reward, _ = sim.step(np.array([[1.0, 0.0]]))             # drive along body x, straight at the goal
    x = sim.sens[0, sim.world.robot_pos][0]
    assert x > 0.0 and reward[0] == pytest.approx(x, rel=1e-6)   # (1.0) - (1.0 - x)


@pytest.mark.parametrize("vel, sign", [((0.0, 1.0), 1.0), ((0.0, -1.0), -1.0)])
def test_circle_reward(vel, sign):
    sim = NavigationSim("SafetyPointCircle0-v0", 1)
    sim.reset_env(0, seed=0)
    sim.set_state(0, robot=(1.5, 0.0, 0.0), robot_vel=vel)
    reward, _ = sim.step(ZERO)
    # 0.1 * (-u y + v x) / rho / (1 + |rho - 1.5|) at x = 1.5, (u, v) = (0, +-1), minus a few % of damping
    assert 0.09 < sign * reward[0] < 0.1


def test_push_box_on_goal_gives_bonus():
    sim = NavigationSim("SafetyPointPush0-v0", 1)
    sim.reset_env(0, seed=0)
    sim.set_state(0, robot=(0.0, 0.0, 0.0), objects={"push_box": [[-0.5, 0.5]], "goal": [[-0.25, 0.5]]})
    reward, _ = sim.step(ZERO)
    assert reward[0] == pytest.approx(1.0, abs=1e-3)
    assert np.linalg.norm(sim.obj[0, sim.slots["goal"], :2][0] - [-0.25, 0.5]) > 0.1


@pytest.mark.parametrize("env_id", slow_except(
    [i for i in NAVIGATION_IDS if "Point" in i or "Car" in i or "Goal2" in i],
    {"SafetyPointGoal1-v0", "SafetyCarPush2-v0", "SafetyPointCircle2-v0", "SafetyDoggoGoal2-v0"}))
def test_random_rollout_ranges(env_id):
    with make_navigation_vec(env_id, num_envs=2, seed=1, max_episode_steps=30) as env:
        obs, _ = env.reset()
        base = task_spec(env_id).robot.obs_sensor_dim
        rng = np.random.default_rng(0)
        space = env.single_action_space
        for _ in range(40):
            actions = rng.uniform(1.5 * space.low, 1.5 * space.high, (2,) + space.shape)   # clipped by the env
            obs, reward, cost, terminated, truncated, info = env.step(actions)
            assert obs.shape == (2, env.single_observation_space.shape[0]) and obs.dtype == np.float64
            assert np.all(np.isfinite(obs)) and np.all((obs[:, base:] >= 0) & (obs[:, base:] <= 1))
            assert np.all(np.abs(reward) <= 10.0)
            assert cost.shape == (2, 1) and set(np.unique(cost)) <= {0.0, 1.0}
            assert not terminated.any() or "Ant" in env_id          # only a fallen Ant terminates


# -- layouts --------------------------------------------------------------------------------------

@pytest.mark.parametrize("env_id", slow_except(["SafetyPointGoal2-v0", "SafetyCarButton2-v0", "SafetyPointPush2-v0"],
                                                {"SafetyPointGoal2-v0", "SafetyPointPush2-v0"}))
def test_layouts_respect_keepouts(env_id):
    spec = task_spec(env_id)
    rng = new_rng(0)
    for _ in range(20):
        layout = sample_layout(rng, spec)
        xy = [layout.robot_xy] + [layout.xy[g.kind] for g in spec.groups]
        keep = [[ROBOT_KEEPOUT]] + [[g.keepout] * g.count for g in spec.groups]
        xy, keep = np.vstack(xy), np.concatenate(keep)
        assert np.all(np.abs(xy) <= spec.extent - keep[:, None] + 1e-12)
        gap = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(len(xy)) * 1e9
        assert np.all(gap >= keep[:, None] + keep[None] - 1e-12)


def test_layouts_reproducible_by_seed():
    with make_navigation_vec("SafetyPointGoal1-v0", num_envs=3, seed=7) as a, \
         make_navigation_vec("SafetyPointGoal1-v0", num_envs=1, seed=8) as b:
        first, _ = a.reset()
        np.testing.assert_array_equal(a.reset(seed=7)[0], first)
        np.testing.assert_array_equal(b.reset()[0][0], first[1])   # env i is seeded with seed + i
        assert not np.allclose(first[0], first[1])
        assert not np.allclose(a.reset(seed=100)[0], first)
        assert not np.allclose(a.reset()[0], a.reset()[0])       # no seed: RNGs keep going


# -- episodes -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_default_episode_lengths():
    for env_id in NAVIGATION_IDS:
        expected = 500 if "Circle" in env_id else 1000
        assert task_spec(env_id).max_episode_steps == expected
    register_navigation_envs()
    assert gymnasium.spec("SafetyCarCircle2-v0").max_episode_steps == 500
    for env_id, length in [("SafetyPointGoal0-v0", 1000), ("SafetyPointCircle0-v0", 500)]:
        with make_navigation_vec(env_id, seed=0) as env:
            assert env.max_episode_steps == length
            env.reset()
            for t in range(1, length + 1):
                _, _, _, terminated, truncated, info = env.step(ZERO)
                assert truncated[0] == (t == length) and not terminated[0]
            assert info["episode_length"][0] == length


def test_autoreset_final_obs_and_episode_stats():
    with make_navigation_vec("SafetyPointGoal1-v0", num_envs=3, seed=0, max_episode_steps=5) as env:
        obs, _ = env.reset()
        rng = np.random.default_rng(0)
        rewards, costs = [], []
        for t in range(1, 6):
            action = np.tile([1.0, 0.3], (3, 1)) * rng.choice([-1, 1], (3, 1))
            obs, reward, cost, _, truncated, info = env.step(action)
            rewards.append(reward)
            costs.append(cost)
            assert np.array_equal(info["episode_done"], truncated) and truncated.all() == (t == 5)
            if t < 5:
                np.testing.assert_array_equal(info["final_obs"], obs)
        np.testing.assert_allclose(info["episode_return"], np.sum(rewards, axis=0))
        np.testing.assert_allclose(info["episode_cost"], np.sum(costs, axis=0))
        np.testing.assert_array_equal(info["episode_length"], [5, 5, 5])
        # obs already starts the next episode (robot at rest); final_obs is the moving robot
        assert np.all(np.abs(info["final_obs"][:, 3:6]).max(axis=1) > 1e-3)
        np.testing.assert_allclose(obs[:, 3:6], 0.0, atol=1e-9)
        _, _, _, _, _, info = env.step(np.zeros((3, 2)))
        np.testing.assert_array_equal(info["episode_length"], [1, 1, 1])


def test_gymnasium_registration_and_single_env():
    register_navigation_envs()
    register_navigation_envs()                                   # idempotent
    env = gymnasium.make("SafetyPointGoal1-v0")
    obs, info = env.reset(seed=0)
    assert obs.shape == (60,)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert info["cost"] in (0.0, 1.0) and isinstance(reward, float) and not terminated
    env.close()
    with make_navigation_vec("SafetyPointGoal1-v0", seed=0) as vec:
        np.testing.assert_array_equal(vec.reset()[0][0], gymnasium.make("SafetyPointGoal1-v0").reset(seed=0)[0])


@pytest.mark.slow
def test_render_offscreen():
    code = ("from saferl.envs.navigation import make_navigation_vec\n"
            "env = make_navigation_vec('SafetyCarGoal1-v0', seed=0); env.reset()\n"
            "for cam in ('track', 'overhead'):\n"
            "    img = env.render(0, camera=cam, width=64, height=48)\n"
            "    assert img.shape == (48, 64, 3) and img.std() > 0\n"
            "print('RENDER_OK')\n")
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "osmesa")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if "RENDER_OK" not in proc.stdout:
        if "GL" in proc.stderr or "gl" in proc.stderr:
            pytest.skip(f"no OpenGL backend: {proc.stderr.strip().splitlines()[-1]}")
        raise AssertionError(proc.stderr)


def test_threads_and_clipping_leave_results_unchanged():
    actions = np.random.default_rng(0).uniform(-3.0, 3.0, (30, 4, 2))
    with make_navigation_vec("SafetyCarGoal1-v0", 4, seed=0, num_threads=1) as a, \
         make_navigation_vec("SafetyCarGoal1-v0", 4, seed=0, num_threads=2) as b:
        a.reset()
        b.reset()
        for act in actions:
            out_a, out_b = a.step(act), b.step(np.clip(act, -1.0, 1.0))
            for x, y in zip(out_a[:5], out_b[:5], strict=True):
                np.testing.assert_array_equal(x, y)
