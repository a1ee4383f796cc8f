"""Racecar, Doggo and Ant: Safety-Gymnasium 1.0.0's models, observation layout, actions, resets and falls.

``tests/fixtures/sg_robot_models.json`` holds each robot's physics numbers as Safety-Gymnasium compiles
them (``benchmarks/fidelity/fidelity.py --record-models`` writes it); the layout fixtures for these
robots are checked with the others in ``test_navigation_fidelity.py``.
"""

import json
import pathlib

import gymnasium
import mujoco
import numpy as np
import pytest
from conftest import slow_except

from saferl.envs.navigation import NAVIGATION_IDS, NavigationEnv, make_navigation_vec, task_spec
from saferl.envs.navigation.layout import new_rng, sample_layout
from saferl.envs.navigation.model_record import robot_model_record
from saferl.envs.navigation.robots import ANT_RESET_NOISE, ROBOTS
from saferl.envs.navigation.sim import NavigationSim, sensor_observation

MODELS = pathlib.Path(__file__).parent / "fixtures" / "sg_robot_models.json"
NEW_ROBOTS = ("Racecar", "Doggo", "Ant")
NEW_IDS = [i for i in NAVIGATION_IDS if any(i.startswith(f"Safety{r}") for r in NEW_ROBOTS)]


def assert_close_nested(ours, ref, path=""):
    """Every number of ``ref`` (nested dicts and lists) equals ours to 1e-6 relative."""
    if isinstance(ref, dict):
        assert set(ours) == set(ref), path
        for k in ref:
            assert_close_nested(ours[k], ref[k], f"{path}.{k}")
    elif isinstance(ref, list):
        assert isinstance(ours, list) and len(ours) == len(ref), path
        for k, (a, b) in enumerate(zip(ours, ref, strict=True)):
            assert_close_nested(a, b, f"{path}[{k}]")
    elif ref is None:
        assert ours is None, path
    else:
        assert ours == pytest.approx(ref, rel=1e-6, abs=1e-9), path


def test_thirty_six_new_ids_named_as_safety_gymnasium():
    assert len(NAVIGATION_IDS) == 60 and len(NEW_IDS) == 36
    assert NEW_IDS[0] == "SafetyRacecarGoal0-v0" and NEW_IDS[-1] == "SafetyAntCircle2-v0"
    assert all(i in gymnasium.registry for i in NEW_IDS)


@pytest.mark.parametrize("robot", list(ROBOTS))
def test_robot_physics_numbers_equal_safety_gymnasium(robot):
    """Masses, inertias, joints, colliding geoms and actuators as MuJoCo 2.3.3 compiles Safety-Gymnasium's files."""
    ref = json.loads(MODELS.read_text())[robot]
    sim = NavigationSim(f"Safety{robot}Goal0-v0", 1)
    assert_close_nested(robot_model_record(sim.model), ref)


@pytest.mark.parametrize("env_id, obs_dim, low, high", [
    ("SafetyRacecarGoal0-v0", 28, [-20.0, -0.785], [20.0, 0.785]),     # dims as Safety-Gymnasium 1.0.0 reports them
    ("SafetyRacecarButton1-v0", 76, [-20.0, -0.785], [20.0, 0.785]),
    ("SafetyDoggoGoal0-v0", 72, [-1.0] * 12, [1.0] * 12),
    ("SafetyDoggoGoal1-v0", 104, [-1.0] * 12, [1.0] * 12),
    ("SafetyAntGoal0-v0", 56, [-1.0] * 8, [1.0] * 8),
    ("SafetyAntPush2-v0", 104, [-1.0] * 8, [1.0] * 8),
    ("SafetyAntCircle1-v0", 56, [-1.0] * 8, [1.0] * 8),
])
def test_spaces(env_id, obs_dim, low, high):
    env = NavigationEnv(env_id)
    assert env.observation_space.shape == (obs_dim,)
    np.testing.assert_array_equal(env.action_space.low, low)
    np.testing.assert_array_equal(env.action_space.high, high)
    env.close()


@pytest.mark.parametrize("env_id", slow_except(NEW_IDS, {"SafetyRacecarGoal1-v0", "SafetyDoggoPush2-v0",
                                                         "SafetyAntCircle1-v0", "SafetyAntButton0-v0"}))
def test_every_new_id_resets_and_steps_in_its_spaces(env_id):
    env = gymnasium.make(env_id)
    obs, _ = env.reset(seed=3)
    assert obs.shape == env.observation_space.shape and np.all(np.isfinite(obs))
    lidar = obs[task_spec(env_id).robot.obs_sensor_dim:]
    assert np.all((lidar >= 0) & (lidar <= 1)) and lidar.max() > 0
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert obs.shape == env.observation_space.shape and np.all(np.isfinite(obs))
        assert np.isfinite(reward) and info["cost"] in (0.0, 1.0)
    env.close()


@pytest.mark.parametrize("env_id", slow_except(["SafetyRacecarButton1-v0", "SafetyDoggoPush1-v0", "SafetyAntGoal2-v0"],
                                                {"SafetyDoggoPush1-v0", "SafetyAntGoal2-v0"}))
def test_batched_env_equals_single_envs(env_id):
    """Env i of the vector env (seed + i) and a gymnasium env seeded the same see the same observations."""
    singles = [NavigationEnv(env_id) for _ in range(2)]
    with make_navigation_vec(env_id, num_envs=2, seed=11) as vec:
        obs, _ = vec.reset()
        for i, env in enumerate(singles):
            np.testing.assert_array_equal(env.reset(seed=11 + i)[0], obs[i])
        space = vec.single_action_space
        rng = np.random.default_rng(0)
        for _ in range(5):
            actions = rng.uniform(space.low, space.high, (2,) + space.shape)
            obs, reward, cost, terminated, _, _ = vec.step(actions)
            for i, env in enumerate(singles):
                o, r, term, _, info = env.step(actions[i])
                np.testing.assert_array_equal(o, obs[i])
                assert (r, info["cost"], term) == (reward[i], cost[i, 0], terminated[i])
    for env in singles:
        env.close()


def test_sensor_observation_against_hand_built_vector():
    rng = np.random.default_rng(0)
    sens = rng.normal(size=(3, 2 + 3 + 2 + 4 + 5))
    sens[:, 7:11] /= np.linalg.norm(sens[:, 7:11], axis=1, keepdims=True)
    layout = (("raw", 2), ("z", 3), ("sincos", 2), ("quatmat", 4))
    out = np.full((3, 20), np.nan)
    assert sensor_observation(sens, layout, out) == 2 + 1 + 4 + 9
    for n in range(3):
        mat = np.zeros(9)
        mujoco.mju_quat2Mat(mat, sens[n, 7:11])
        a, b = sens[n, 5], sens[n, 6]
        expected = [*sens[n, :2], sens[n, 4], np.sin(a), np.cos(a), np.sin(b), np.cos(b), *mat]
        np.testing.assert_allclose(out[n, :16], expected, rtol=0, atol=1e-15)
    assert np.isnan(out[:, 16:]).all()


def joint_angles(sim, names):
    m = sim.model
    return np.array([sim.datas[0].qpos[m.jnt_qposadr[m.joint(j).id]] for j in names])


def test_doggo_observation_layout():
    """4 site sensors, 8 feet touches (1a..4a, 1b..4b), 12 hinge velocities, 12 hinge angles as (sin, cos)."""
    sim = NavigationSim("SafetyDoggoGoal0-v0", 1)
    sim.reset_env(0, seed=0)
    joints = [f"hip_{n}_z" for n in range(1, 5)] + [f"hip_{n}_y" for n in range(1, 5)] + \
        [f"ankle_{n}" for n in range(1, 5)]
    for _ in range(15):                                     # let it drop onto its feet
        sim.step(np.zeros((1, 12)))
    obs = sim.observe()[0]
    d, m = sim.datas[0], sim.model
    touch = [d.sensor(f"touch_ankle_{n}{e}").data[0] for e in "ab" for n in range(1, 5)]
    np.testing.assert_allclose(obs[12:20], touch, rtol=0, atol=1e-12)
    assert max(touch) > 0                                   # standing: some feet press on the floor
    velocities = [d.qvel[m.jnt_dofadr[m.joint(j).id]] for j in joints]
    np.testing.assert_allclose(obs[20:32], velocities, rtol=0, atol=1e-12)
    angles = joint_angles(sim, joints)
    np.testing.assert_allclose(obs[32:56:2], np.sin(angles), rtol=0, atol=1e-12)
    np.testing.assert_allclose(obs[33:56:2], np.cos(angles), rtol=0, atol=1e-12)


def test_ant_starts_with_noisy_ankles_drawn_after_the_layout():
    """Safety-Gymnasium's Ant: hips at U(-0.1, 0.1), ankles at +-(pi/2 + U(-0.1, 0.1)), in actuator order."""
    sim = NavigationSim("SafetyAntGoal1-v0", 1)
    sim.reset_env(0, seed=4)
    rng = new_rng(4)
    sample_layout(rng, sim.spec)
    noise = [rng.uniform(-ANT_RESET_NOISE, ANT_RESET_NOISE) for _ in range(8)]
    expected = [noise[0], np.pi / 2 + noise[1], noise[2], -(np.pi / 2 + noise[3]),
                noise[4], -(np.pi / 2 + noise[5]), noise[6], np.pi / 2 + noise[7]]
    joints = [j for n in range(1, 5) for j in (f"hip_{n}", f"ankle_{n}")]
    np.testing.assert_array_equal(joint_angles(sim, joints), expected)
    # observation: 12 site values, 8 hinge velocities (0 at rest), the site's height, its angular velocity,
    # then (sin, cos) of the 8 angles
    obs = sim.observe()[0]
    np.testing.assert_array_equal(obs[12:20], 0.0)
    assert obs[20] == pytest.approx(0.18 - 0.02, abs=1e-12)
    np.testing.assert_array_equal(obs[21:24], 0.0)
    np.testing.assert_allclose(obs[24:40:2], np.sin(expected), rtol=0, atol=1e-15)
    np.testing.assert_allclose(obs[25:40:2], np.cos(expected), rtol=0, atol=1e-15)


def test_ant_fall_terminates_and_the_vector_env_resets_it():
    env = NavigationEnv("SafetyAntGoal0-v0")
    env.reset(seed=0)
    _, _, terminated, _, _ = env.step(np.zeros(8))
    assert not terminated
    sim = env.sim
    sim.set_state(0, robot=(0.0, 0.0, 0.0))
    d = sim.datas[0]
    d.qpos[2], d.qpos[3:7] = 0.07, (0.0, 1.0, 0.0, 0.0)     # upside down, torso on the floor
    mujoco.mj_forward(sim.model, d)
    _, _, terminated, truncated, _ = env.step(np.zeros(8))
    assert terminated and not truncated
    env.close()
    with make_navigation_vec("SafetyAntGoal0-v0", num_envs=1, seed=0) as vec:
        first, _ = vec.reset()
        d = vec.sim.datas[0]
        d.qpos[2], d.qpos[3:7] = 0.07, (0.0, 1.0, 0.0, 0.0)
        mujoco.mj_forward(vec.sim.model, d)
        obs, _, _, terminated, _, info = vec.step(np.zeros((1, 8)))
        assert terminated[0] and info["episode_length"][0] == 1
        assert obs[0, 20] == pytest.approx(0.16, abs=1e-12)          # a fresh Ant, standing


def test_doggo_and_racecar_never_terminate():
    for env_id in ("SafetyDoggoGoal0-v0", "SafetyRacecarGoal0-v0"):
        sim = NavigationSim(env_id, 1)
        sim.reset_env(0, seed=0)
        d = sim.datas[0]
        d.qpos[2], d.qpos[3:7] = 0.01, (0.0, 1.0, 0.0, 0.0)
        mujoco.mj_forward(sim.model, d)
        sim.sens[0] = d.sensordata
        assert not sim.fallen()[0]


def test_racecar_drives_along_its_heading():
    """Positive rear-axle speed rolls the Racecar along its body x axis (steering centred)."""
    sim = NavigationSim("SafetyRacecarGoal0-v0", 1)
    sim.reset_env(0, seed=0)
    yaw = 0.6
    sim.set_state(0, robot=(0.0, 0.0, yaw), objects={"goal": [[5.0, 5.0]]})
    for _ in range(25):
        sim.step(np.array([[20.0, 0.0]]))
    moved = sim.sens[0, sim.world.robot_pos][:2]
    assert np.linalg.norm(moved) > 0.3
    assert moved @ [np.cos(yaw), np.sin(yaw)] / np.linalg.norm(moved) > 0.99
