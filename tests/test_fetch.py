"""Safe Fetch tasks: cost semantics, seeded geometry, batched == gymnasium single env, demonstrators."""

import gymnasium
import numpy as np
import pytest
from conftest import slow_except

from saferl import envs
from saferl.envs.fetch import FETCH_IDS, MAX_EPISODE_STEPS
from saferl.envs.fetch.demonstrators import detour_waypoint, scripted_action
from saferl.envs.fetch.layout import (
    OBJECT_HALF,
    SPEED_LIMIT,
    TABLE_TOP,
    inside_box,
    sample_layout,
    segment_hits_rect,
    step_costs,
)
from saferl.envs.fetch.vector import FetchVectorEnv
from saferl.envs.vector import SyncVectorEnv, flatten_observation
from saferl.offline.scripted import run_scripted

G0 = np.array([1.342, 0.749, 0.535])
OBJECT_Z = 0.4249
TASK_IDS = ["SafetyFetchReach-v0", "SafetyFetchPush-v0", "SafetyFetchPickAndPlace-v0"]


def keys_for(env_id):
    observation = 10 if "Reach" in env_id else 25
    return [("achieved_goal", 3), ("desired_goal", 3), ("keepout", 6), ("observation", observation)]


# -- registration and the single env ---------------------------------------------------------------


def test_ids_are_registered_and_report_cost_and_success():
    assert sorted(FETCH_IDS) == sorted(TASK_IDS + [i.replace("-v0", "Dense-v0") for i in TASK_IDS])
    for env_id in FETCH_IDS:
        assert gymnasium.spec(env_id).max_episode_steps == MAX_EPISODE_STEPS == 100
    env = gymnasium.make("SafetyFetchPushDense-v0")
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"observation", "achieved_goal", "desired_goal", "keepout"} and obs["observation"].shape == (25,)
    np.testing.assert_array_equal(obs["keepout"], env.unwrapped.layout.box)
    obs, reward, terminated, truncated, info = env.step(np.zeros(4, np.float32))
    assert info["cost"].shape == (2,) and set(info["cost"]) <= {0.0, 1.0} and "is_success" in info
    assert reward == pytest.approx(-np.linalg.norm(obs["achieved_goal"] - obs["desired_goal"]))
    assert env.unwrapped.cost_names == ["keepout", "speed"]
    env.close()


# -- cost semantics -------------------------------------------------------------------------------------


def test_step_costs_by_hand():
    box = np.array([1.0, 2.0, 0.5, 0.25, 0.125, 0.25])  # x in [0.75, 1.25], y in [1.875, 2.125], z in [0.25, 0.75]
    dt = 0.04
    still = np.array([0.5, 0.5, 0.5])
    cases = [  # gripper, object, expected keepout
        ([1.25, 2.125, 0.75], None, 1.0),                          # a corner counts as inside
        ([1.25 + 1e-6, 2.0, 0.5], None, 0.0),
        (still, [1.25 + OBJECT_HALF - 1e-9, 2.0, 0.5], 1.0),       # the object's face touches the box
        (still, [1.25 + OBJECT_HALF + 1e-6, 2.0, 0.5], 0.0),
        (still, [1.0, 2.0, 0.75 + OBJECT_HALF + 1e-6], 0.0),       # carried over it
    ]
    for grip, obj, keepout in cases:
        grip = np.asarray(grip, dtype=float)
        cost, speed = step_costs(grip, grip, None if obj is None else np.asarray(obj, float), box, dt)
        assert cost[0] == keepout and cost[1] == 0.0 and speed == 0.0
    start = np.zeros(3)
    at_limit = start + np.array([SPEED_LIMIT * dt, 0.0, 0.0])
    assert step_costs(at_limit, start, None, box, dt)[0][1] == 0.0         # at the limit: fine
    assert step_costs(at_limit * 1.001, start, None, box, dt)[0][1] == 1.0
    # Batched: same rule per row.
    grips = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]])
    cost, _ = step_costs(grips, np.zeros((2, 3)), None, np.stack([box, box]), dt)
    np.testing.assert_array_equal(cost, [[1.0, 1.0], [0.0, 0.0]])


def test_env_cost_with_gripper_or_object_in_the_box_and_above_the_speed_limit():
    env = gymnasium.make("SafetyFetchPush-v0")
    env.reset(seed=3)
    fetch = env.unwrapped
    grip = fetch.data.site_xpos[fetch.model.site("robot0:grip").id].copy()
    obj = fetch.data.site_xpos[fetch.model.site("object0").id].copy()
    far = np.array([1.0, 0.45, 0.45, 0.01, 0.01, 0.01])
    for box, keepout in [(np.r_[grip, 0.03, 0.03, 0.03], 1.0), (np.r_[obj + [0.04, 0, 0], 0.02, 0.02, 0.02], 1.0),
                         (far, 0.0)]:
        fetch.layout.box[:] = box
        _, _, _, _, info = env.step(np.zeros(4, np.float32))
        assert info["cost"][0] == keepout and info["cost"][1] == 0.0  # still: under the speed limit
    speeds = [env.step(np.array([0.0, 1.0, 0.0, 0.0], np.float32))[4] for _ in range(3)]
    assert all(i["cost"][1] == 1.0 and i["ee_speed"] > SPEED_LIMIT for i in speeds)  # full action: ~0.83 m/s
    careful = [env.step(np.array([0.0, -0.5, 0.0, 0.0], np.float32))[4] for _ in range(6)]
    assert all(i["cost"][1] == 0.0 for i in careful[2:])  # half an action: ~0.41 m/s, once slowed down
    env.close()


# -- geometry and seeding -------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["Reach", "Push", "PickAndPlace"])
def test_layouts_stay_in_documented_ranges_and_block_the_straight_path(task):
    rng = np.random.default_rng(0)
    for _ in range(300):
        layout = sample_layout(rng, task, G0, OBJECT_Z)
        centre, half = layout.box[:3], layout.box[3:]
        assert centre[2] - half[2] == pytest.approx(TABLE_TOP)  # standing on the table
        assert 0.03 <= half[0] <= 0.06 and centre[0] - half[0] - 1.05 >= 0.13  # corridor on the robot's side
        if task == "Reach":
            assert 0.59 <= centre[2] + half[2] <= 0.63 and 0.015 <= half[1] <= 0.025
            start, half_grown = G0, half
            assert not inside_box(G0, layout.box) and not inside_box(layout.goal, layout.box)
        else:
            assert 0.05 <= 2 * half[2] <= 0.09 and centre[2] + half[2] < G0[2] and 0.015 <= half[1] <= 0.03
            start, half_grown = np.r_[layout.object_xy, OBJECT_Z], half + OBJECT_HALF
            assert np.all(np.abs(layout.object_xy - G0[:2]) <= [0.08, 0.15])
            assert not inside_box(start, layout.box, OBJECT_HALF)
            assert not inside_box(layout.goal, layout.box, OBJECT_HALF)
        assert (start[1] - centre[1]) * (layout.goal[1] - centre[1]) < 0  # start and goal on opposite sides
        if task != "PickAndPlace" or layout.goal[2] == OBJECT_Z:
            assert segment_hits_rect(start - centre, layout.goal - centre, half_grown)


def test_same_seed_same_geometry_different_seeds_differ():
    def geometry(seed):
        env = gymnasium.make("SafetyFetchPickAndPlace-v0")
        obs, _ = env.reset(seed=seed)
        return np.concatenate([obs["keepout"], obs["desired_goal"], obs["achieved_goal"]])

    np.testing.assert_array_equal(geometry(5), geometry(5))
    layouts = np.stack([geometry(s) for s in range(6)])
    assert len(np.unique(layouts.round(6), axis=0)) == 6
    with envs.make("SafetyFetchPickAndPlace-v0", 3, seed=4) as vec:  # env i gets seed + i
        obs, _ = vec.reset()
        np.testing.assert_array_equal(obs[1, 3:12], geometry(5)[[6, 7, 8, 0, 1, 2, 3, 4, 5]])


# -- the batched backend ---------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", slow_except(TASK_IDS + ["SafetyFetchReachDense-v0"], {"SafetyFetchReach-v0"}))
def test_batched_equals_gymnasium_single_env_across_autoresets(env_id):
    num_envs, seed, horizon, keys = 3, 11, 12, keys_for(env_id)
    vec = envs.make(env_id, num_envs, seed=seed, max_episode_steps=horizon)
    assert isinstance(vec, FetchVectorEnv) and vec.observation_keys == keys
    refs = [gymnasium.make(env_id, max_episode_steps=horizon) for _ in range(num_envs)]
    obs, _ = vec.reset()
    expected = [flatten_observation(ref.reset(seed=seed + i)[0], keys) for i, ref in enumerate(refs)]
    np.testing.assert_array_equal(obs, np.stack(expected))
    actions = np.random.default_rng(1).uniform(-1.3, 1.3, (2 * horizon + 3, num_envs, 4)).astype(np.float32)
    for batch in actions:
        obs, reward, cost, terminated, truncated, info = vec.step(batch)
        for i, ref in enumerate(refs):
            ref_obs, ref_reward, ref_term, ref_trunc, ref_info = ref.step(np.clip(batch[i], -1, 1))
            np.testing.assert_array_equal(info["final_obs"][i], flatten_observation(ref_obs, keys))
            assert reward[i] == ref_reward and info["is_success"][i] == ref_info["is_success"]
            np.testing.assert_array_equal(cost[i], ref_info["cost"])
            assert (terminated[i], truncated[i]) == (ref_term, ref_trunc)
            if ref_term or ref_trunc:
                np.testing.assert_array_equal(obs[i], flatten_observation(ref.reset()[0], keys))
    vec.close()


@pytest.mark.slow
def test_sync_backend_flattens_the_same_way_and_threads_change_nothing():
    env_id = "SafetyFetchPush-v0"
    actions = np.random.default_rng(2).uniform(-1, 1, (8, 3, 4)).astype(np.float32)
    outputs = []
    for kwargs in ({"backend": "sync"}, {"num_threads": 1}, {"num_threads": 3}):
        with envs.make(env_id, 3, seed=0, **kwargs) as vec:
            assert vec.observation_keys == keys_for(env_id) and vec.single_observation_space.shape == (37,)
            assert isinstance(vec, SyncVectorEnv) == (kwargs.get("backend") == "sync")
            steps = [vec.reset()[0]] + [vec.step(a)[0] for a in actions]
            outputs.append(np.stack(steps))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[0], outputs[2])


# -- demonstrators ------------------------------------------------------------------------------------------


def test_detour_goes_round_the_box_only_when_it_is_in_the_way():
    box = np.array([1.3, 0.75, 0.45, 0.05, 0.02, 0.05])
    goal = np.array([1.3, 0.9, 0.425])
    clear = np.array([1.45, 0.9, 0.425])
    np.testing.assert_array_equal(detour_waypoint(np.array([1.5, 0.6]), clear, box, 0.03), clear[:2])
    first = detour_waypoint(np.array([1.3, 0.6]), goal, box, 0.03)
    assert first[0] < 1.3 - 0.08 and first[1] < 0.75 - 0.05  # the robot side's near corner
    beside = detour_waypoint(np.array([first[0], 0.75]), goal, box, 0.03)
    assert beside[0] == first[0] and beside[1] > 0.75 + 0.05  # then past the far corner


@pytest.mark.slow
@pytest.mark.parametrize("task", ["Reach", "Push", "PickAndPlace"])
def test_scripted_demonstrators_succeed_safely(task):
    env_id = f"SafetyFetch{task}-v0"
    result = run_scripted(env_id, episodes=4, seed=1)
    assert result["successes"].mean() >= 0.75 and result["costs"].sum(axis=1).mean() <= 1.0
    steps = int(result["lengths"].sum())
    assert result["observations"].shape == (steps, 22 if task == "Reach" else 37)
    assert result["actions"].shape == (steps, 4) and result["costs_per_step"].shape == (steps, 2)
    assert result["timeouts"].sum() == 4 and not result["terminals"].any()
    np.testing.assert_allclose(result["rewards"].sum(), result["returns"].sum())


def test_unsafe_demonstrator_cuts_through_and_speeds():
    obs = np.zeros((1, 22))
    obs[0, 3:6] = [1.3, 0.95, 0.5]                     # goal beyond ...
    obs[0, 6:12] = [1.3, 0.85, 0.5, 0.05, 0.02, 0.1]  # ... the box, straight ahead of the gripper
    obs[0, 12:15] = [1.3, 0.75, 0.5]
    safe, unsafe = scripted_action("SafetyFetchReach-v0", obs), scripted_action("SafetyFetchReach-v0", obs, unsafe=True)
    assert np.linalg.norm(safe[0, :3]) <= 0.5 + 1e-9 and abs(safe[0, 0]) > 0.1  # slow, and sideways
    np.testing.assert_allclose(unsafe[0, :3], [0.0, 1.0, 0.0])                    # full speed, straight
    with pytest.raises(ValueError, match="no scripted demonstrator"):
        scripted_action("SafetyPointGoal1-v0", obs)


# -- Dict observations through the offline path -----------------------------------------------------


@pytest.mark.slow
def test_dict_observations_round_trip_through_collect_bc_and_eval(tmp_path, capsys):
    """Scripted Fetch demonstrations (Dict observations) -> dataset (flat, documented key order) -> BC -> eval,
    and the cloned policy acts the same on the Dict as on its flattening."""
    import json

    from saferl.cli import main
    from saferl.offline.dataset import read_dataset
    from saferl.rundir import load_policy

    env_id, out, run_dir = "SafetyFetchReach-v0", tmp_path / "reach.h5", tmp_path / "bc"
    assert main(["collect", "--scripted", env_id, "--episodes", "6", "--out", str(out), "--seed", "3"]) == 0
    dataset = read_dataset(out)
    flat_dim = sum(size for _, size in keys_for(env_id))
    assert dataset.observations.shape == (6 * MAX_EPISODE_STEPS, flat_dim)
    assert main(["bc", "--dataset", str(out), "--run-dir", str(run_dir), "--epochs", "5"]) == 0
    assert main(["eval", str(run_dir), "--episodes", "2", "--deterministic"]) == 0
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert evaluation["env_id"] == env_id and 0.0 <= evaluation["success_rate"] <= 1.0
    assert len(evaluation["mean_costs"]) == 2  # keepout, speed
    _, policy, _ = load_policy(run_dir)
    env = gymnasium.make(env_id)
    obs, _ = env.reset(seed=0)
    flat = flatten_observation(obs, keys_for(env_id))
    np.testing.assert_array_equal(policy.predict(obs), policy.predict(flat))
    env.close()
    capsys.readouterr()


def test_scripted_collect_never_overwrites_without_force(tmp_path, capsys):
    from saferl.cli import main

    existing = tmp_path / "kept.h5"
    existing.write_bytes(b"not to be lost")
    args = ["collect", "--scripted", "SafetyFetchReach-v0", "--episodes", "1"]
    assert main([*args, "--out", str(existing)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err and existing.read_bytes() == b"not to be lost"
    assert main([*args, "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
