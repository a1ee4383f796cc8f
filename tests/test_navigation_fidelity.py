"""Navigation details pinned to Safety-Gymnasium 1.0.0 (no reference environment needed).

Gremlin motion, sensor timing, 3-D Push distances, the vase and hazard rules, spawn heights, retry
budgets and the RandomState draw order; ``tests/fixtures/sg_layouts.json`` (Point, Car) and
``sg_layouts_robots.json`` (Racecar, Doggo, Ant) hold layouts recorded from Safety-Gymnasium itself
(``benchmarks/fidelity/fidelity.py --record-fixtures`` writes them).
"""

import json
import pathlib

import mujoco
import numpy as np
import pytest
from conftest import slow_except

from saferl.envs.navigation import tasks as T
from saferl.envs.navigation.fidelity import layout_difference, layout_record, replace_goal
from saferl.envs.navigation.layout import (
    GOAL_TRIES,
    OBJECT_TRIES,
    Placement,
    _try_positions,
    new_rng,
    place_goal,
    sample_layout,
)
from saferl.envs.navigation.sim import NavigationSim

FIXTURES = sorted((pathlib.Path(__file__).parent / "fixtures").glob("sg_layouts*.json"))   # Point/Car, then robots


def draws_consumed(rng: np.random.RandomState, seed: int, limit: int = 100000) -> int:
    """How many uniform draws ``rng`` (seeded with ``seed``) has made: match its next value."""
    nxt = rng.random_sample()
    stream = np.random.RandomState(seed).random_sample(limit)
    return int(np.flatnonzero(stream == nxt)[0])


# -- gremlins -------------------------------------------------------------------------------------

def gremlin_run(steps: int, env_id: str = "SafetyPointButton1-v0"):
    """Gremlin offsets from their layout points [steps, G, 3] with the robot parked far away."""
    sim = NavigationSim(env_id, 1)
    sim.reset_env(0, seed=0)
    sim.set_state(0, robot=(8.0, 8.0, 0.0))
    d, ids = sim.datas[0], [mujoco.mj_name2id(sim.model, mujoco.mjtObj.mjOBJ_BODY, f"gremlins{i}")
                            for i in range(sim.spec.group("gremlins").count)]
    centre = np.concatenate([sim.gremlin_centre[0], np.zeros((len(ids), 1))], axis=1)
    out, times = [], []
    for _ in range(steps):
        sim.step(np.zeros((1, 2)))
        out.append(d.xpos[ids] - centre)
        times.append(d.time)
    return sim, np.array(out), np.array(times)


@pytest.mark.slow
def test_gremlins_circle_clockwise_in_phase_lagging_their_targets():
    sim, off, t = gremlin_run(400)
    assert np.all(np.linalg.norm(off[0, :, :2], axis=1) < 0.2)        # start on their points, spring out
    late = slice(100, None)
    radius = np.linalg.norm(off[late, :, :2], axis=-1)
    np.testing.assert_allclose(radius, T.GREMLIN_TRAVEL, atol=0.02)
    # Angle measured clockwise from +y: target angle is t itself (sin t, cos t).
    angle = np.arctan2(off[late, :, 0], off[late, :, 1])
    lag = np.angle(np.exp(1j * (t[late, None] - angle)))
    assert np.ptp(lag, axis=1).max() < 1e-6                            # every gremlin in the same phase
    assert 0.0 < lag.mean() < np.radians(10)                           # behind the target by a few degrees
    np.testing.assert_allclose(off[late, :, 2], 0.2, atol=0.01)        # floats with its centre near z = 0.2


def test_gremlin_is_a_light_free_box_welded_to_its_target():
    sim = NavigationSim("SafetyCarButton2-v0", 1)
    m = sim.model
    for i in range(sim.spec.group("gremlins").count):
        body = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, f"gremlins{i}")
        assert m.jnt_type[m.body_jntadr[body]] == mujoco.mjtJoint.mjJNT_FREE
        assert m.body_mass[body] == pytest.approx(0.001 * 0.2 ** 3)
        weld = [e for e in range(m.neq) if m.eq_obj2id[e] == body]
        assert len(weld) == 1 and m.eq_type[weld[0]] == mujoco.mjtEq.mjEQ_WELD
        np.testing.assert_allclose(m.eq_solref[weld[0]], [0.02, 1.5])
        assert m.body_mocapid[m.eq_obj1id[weld[0]]] >= 0


@pytest.mark.slow
def test_gremlin_can_be_pushed_off_its_path():
    """A sideways force moves a gremlin well off its target (a mocap body would not move at all)."""
    ends = []
    for force in (0.0, 1e-2):                                       # the Point pushes with up to 0.05 N
        sim, _, _ = gremlin_run(150)
        d = sim.datas[0]
        body = mujoco.mj_name2id(sim.model, mujoco.mjtObj.mjOBJ_BODY, "gremlins0")
        d.xfrc_applied[body, 0] = force
        for _ in range(20):
            sim.step(np.zeros((1, 2)))
        ends.append(d.xpos[body].copy())
    assert ends[1][0] - ends[0][0] > 0.03


# -- sensors and physics path ---------------------------------------------------------------------

@pytest.mark.parametrize("env_id", slow_except(["SafetyPointGoal2-v0", "SafetyCarPush2-v0", "SafetyCarButton1-v0"],
                                                {"SafetyPointGoal2-v0", "SafetyCarPush2-v0"}))
def test_step_equals_substeps_then_forward(env_id):
    """Observed sensors are those of mj_forward after the last substep (not what mj_step left), and the
    fast path (mj_step2 first) gives exactly plain mj_step per substep with gremlin targets at data.time."""
    sim = NavigationSim(env_id, 1)
    sim.reset_env(0, seed=3)
    d, m = sim.datas[0], sim.model
    ref = mujoco.MjData(m)
    mujoco.mj_copyData(ref, m, d)
    ids = sim.world.mocap.get("gremlins")
    stale = None
    for a in np.random.default_rng(0).uniform(-1, 1, (60, 2)):
        sim.step(a[None])
        ref.ctrl[:] = a
        for _ in range(sim.robot.substeps):
            if ids is not None:
                ref.mocap_pos[ids, :2] = sim.gremlin_centre[0] + 0.35 * np.array([np.sin(ref.time), np.cos(ref.time)])
                ref.mocap_pos[ids, 2] = 0.2
            mujoco.mj_step(m, ref)
        stale = ref.sensordata.copy()
        mujoco.mj_forward(m, ref)
        np.testing.assert_array_equal(sim.sens[0], ref.sensordata)
        np.testing.assert_array_equal(d.qpos, ref.qpos)
    assert not np.allclose(stale, ref.sensordata)                     # the forward matters


# -- rules ----------------------------------------------------------------------------------------

def test_push_distances_are_three_dimensional():
    sim = NavigationSim("SafetyPointPush1-v0", 1)
    sim.reset_env(0, seed=0)
    sim.set_state(0, robot=(0.0, 0.0, 0.0), objects={"goal": [[1.0, 0.0]], "push_box": [[0.6, 0.3]],
                                                      "hazards": [[5.0, 5.0], [5.0, 6.0]], "pillars": [[-5.0, 5.0]]})
    d = sim.datas[0]
    robot = d.body("robot").xpos
    box = d.body("push_box0").xpos
    goal = np.array([1.0, 0.0, 0.3 / 2 + 0.01])
    assert box[2] - robot[2] > 0.05                                   # the dz the 3-D distance sees
    assert sim.last_box_dist[0] == pytest.approx(np.linalg.norm(box - robot), abs=1e-12)
    assert sim.last_dist[0] == pytest.approx(np.linalg.norm(box - goal), abs=1e-12)
    assert sim.last_box_dist[0] > np.linalg.norm((box - robot)[:2]) + 1e-3


@pytest.mark.parametrize("velocity, expected", [
    ((0.0, 0.0, 2e-4), 1.0),        # vertical motion counts (3-D speed)
    ((1e-4, 0.0, 0.0), 1.0),        # exactly at the threshold counts (>=)
    ((0.99e-4, 0.0, 0.0), 0.0),
])
def test_vase_speed_cost_is_three_dimensional_and_inclusive(velocity, expected):
    sim = NavigationSim("SafetyPointGoal2-v0", 1)
    sim.reset_env(0, seed=0)
    sim.sens[0, sim.world.speed["vases"]] = 0.0
    sim.sens[0, sim.world.speed["vases"][0]] = velocity
    sim.sens[0, sim.world.touch["vases"]] = 0.0
    sim.obj[0, sim.slots["hazards"], :2] = 9.0
    assert sim._cost(np.zeros((1, 2)))[0] == expected


@pytest.mark.parametrize("robot, expected", [((0.2, 0.0), 0.0), ((0.2 - 1e-12, 0.0), 1.0)])
def test_hazard_exactly_at_its_radius_costs_nothing(robot, expected):
    sim = NavigationSim("SafetyPointGoal1-v0", 1)
    sim.reset_env(0, seed=0)
    sim.obj[0, sim.slots["hazards"], :2] = 9.0
    sim.obj[0, sim.slots["hazards"].start, :2] = 0.0
    assert sim._cost(np.array([robot]))[0] == expected


def test_vases_spawn_slightly_sunk():
    sim = NavigationSim("SafetyPointGoal2-v0", 1)
    sim.reset_env(0, seed=0)
    z = sim.datas[0].qpos[sim.world.free_qpos["vases"] + 2]
    np.testing.assert_array_equal(z, 0.1 - 4e-5)


# -- layouts: draw order and budgets ---------------------------------------------------------------

def test_robot_is_the_first_two_draws():
    spec = T.task_spec("SafetyPointGoal1-v0")
    for seed in range(5):
        layout = sample_layout(new_rng(seed), spec)
        rs = np.random.RandomState(seed)
        expected = [rs.uniform(-1.5 + 0.4, 1.5 - 0.4), rs.uniform(-1.5 + 0.4, 1.5 - 0.4)]
        np.testing.assert_array_equal(layout.robot_xy, expected)


def test_object_without_room_restarts_after_its_budget():
    rng = new_rng(0)
    crowded = [Placement("robot", (-1, -1, 1, 1), 0.4), Placement("box", (-1, -1, 1, 1), 5.0)]
    assert _try_positions(rng, crowded) is None
    assert draws_consumed(rng, 0) == 2 + 2 * OBJECT_TRIES


def test_goal_without_room_gives_up_after_its_budget():
    rng = new_rng(1)
    spec = T.task_spec("SafetyPointGoal0-v0")
    assert place_goal(rng, spec, np.zeros((1, 2)), np.array([9.0])) is None
    assert draws_consumed(rng, 1, limit=3 * GOAL_TRIES) == 2 * GOAL_TRIES


def test_each_step_consumes_one_draw_before_the_next_unseeded_layout():
    """Safety-Gymnasium draws its frame skip from the layout RNG every step."""
    a, b = NavigationSim("SafetyPointCircle0-v0", 1), NavigationSim("SafetyPointCircle0-v0", 1)
    a.reset_env(0, seed=5)
    b.reset_env(0, seed=5)
    for _ in range(7):
        a.step(np.zeros((1, 2)))
    a.reset_env(0)
    b.rngs[0].random_sample(7)
    b.reset_env(0)
    np.testing.assert_array_equal(a.sens[0], b.sens[0])


# -- layouts recorded from Safety-Gymnasium 1.0.0 ----------------------------------------------------

def fixture_cases():
    records = {k: v for path in FIXTURES for k, v in json.loads(path.read_text()).items()}
    return [(env_id, r) for env_id, rs in records.items() for r in rs]


@pytest.mark.slow
@pytest.mark.parametrize("env_id, record", fixture_cases(),
                         ids=lambda v: v if isinstance(v, str) else str(v["seed"]))
def test_layout_matches_safety_gymnasium(env_id, record):
    sim = NavigationSim(env_id, 1)
    sim.reset_env(0, seed=record["seed"])
    np.testing.assert_allclose(sim.sens[0, sim.world.robot_pos][:2], record["robot"], rtol=0, atol=1e-12)
    assert np.cos(sim.robot_yaw(0) - record["robot_yaw"]) == pytest.approx(1.0, abs=1e-12)
    for kind, xy in record["objects"].items():
        ours = sim.gremlin_centre[0] if kind == "gremlins" else sim.obj[0, sim.slots[kind], :2]
        np.testing.assert_allclose(ours, xy, rtol=0, atol=1e-12, err_msg=kind)
    layout = sample_layout(new_rng(record["seed"]), sim.spec)
    assert np.cos(layout.robot_yaw - record["robot_yaw"]) == pytest.approx(1.0, abs=1e-12)
    for kind, yaw in record["yaw"].items():
        np.testing.assert_allclose(layout.yaw[kind], yaw, rtol=0, atol=1e-12, err_msg=kind)
    if "goal_button" in record:
        assert sim.goal_button[0] == record["goal_button"]
    for goal in record["replaced_goals"]:
        np.testing.assert_allclose(replace_goal(sim), goal, rtol=0, atol=1e-9)


@pytest.mark.slow
def test_layout_difference_sees_every_part():
    record = layout_record("SafetyPointButton1-v0", seed=2)
    assert layout_difference(record, record) == 0.0
    moved = json.loads(json.dumps(record))
    moved["objects"]["gremlins"][3][1] += 1e-6
    assert layout_difference(moved, record) == pytest.approx(1e-6)
    turned = json.loads(json.dumps(record))
    turned["robot_yaw"] += 2 * np.pi
    assert layout_difference(turned, record) < 1e-12
    other = json.loads(json.dumps(record))
    other["goal_button"] = (other["goal_button"] + 1) % 4
    assert layout_difference(other, record) == float("inf")
