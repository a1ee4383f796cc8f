"""Tests for envs/: velocity costs, v4 fidelity, batched == gymnasium, vector API, user envs."""

import gymnasium
import numpy as np
import pytest
from conftest import slow_except
from gymnasium.spaces import Box

from saferl import envs
from saferl.envs.batched import BatchedVelocityEnv
from saferl.envs.vector import SyncVectorEnv
from saferl.envs.velocity import VELOCITY_TASKS

# Our -v0 ids coexist with -v1 on purpose; gymnasium warns about that, and about v4 itself.
pytestmark = pytest.mark.filterwarnings("ignore:.*out of date.*", "ignore:.*is out of date.*")

ROBOTS = ["HalfCheetah", "Hopper", "Walker2d", "Ant", "Humanoid", "Swimmer"]
ALL_IDS = list(envs.VELOCITY_ENV_IDS)


def random_actions(space, steps, num_envs, seed=0, spread=1.3):
    """float32 actions, some outside the bounds (the vector env clips them)."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(-spread, spread, (steps, num_envs) + space.shape) * space.high).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Single envs: registration, cost definition, fidelity to gymnasium's v4
# --------------------------------------------------------------------------------------------


def test_every_id_is_registered_with_gymnasium():
    assert len(ALL_IDS) == 13
    for env_id in ALL_IDS:
        spec = gymnasium.spec(env_id)
        assert spec.max_episode_steps == 1000
    env = gymnasium.make("SafetyHalfCheetahVelocity-v1")
    env.reset(seed=0)
    result = env.step(env.action_space.sample())
    assert len(result) == 5 and isinstance(result[4]["cost"], float)
    env = gymnasium.make("SafetyHalfCheetahVelocityEffort-v1")
    env.reset(seed=0)
    cost = env.step(env.action_space.sample())[4]["cost"]
    assert isinstance(cost, np.ndarray) and cost.shape == (2,)


def tracked_position(env_id, model, data):
    """The xy position whose velocity the task limits, read straight from MjData (not via the env)."""
    robot = VELOCITY_TASKS[env_id].robot
    if robot == "Ant":
        return data.body("torso").xpos[:2].copy()
    if robot == "Humanoid":
        mass = model.body_mass
        return (mass[:, None] * data.xipos).sum(axis=0)[:2] / mass.sum()
    return data.qpos[:2].copy()


def rollout_speeds_and_costs(env_id, actions, **kwargs):
    """Per step: the limited speed recomputed independently from positions, and the env's cost."""
    env = gymnasium.make(env_id, **kwargs)
    env.reset(seed=1)
    model, data = env.unwrapped.model, env.unwrapped.data
    dt = model.opt.timestep * env.unwrapped.frame_skip
    signed_x = VELOCITY_TASKS[env_id].kwargs["speed"] == "x"
    speeds, costs = [], []
    for action in actions:
        before = tracked_position(env_id, model, data)
        _, _, terminated, _, info = env.step(action)
        vx, vy = (tracked_position(env_id, model, data) - before) / dt
        speeds.append(vx if signed_x else np.sqrt(vx**2 + vy**2))
        costs.append(np.atleast_1d(info["cost"])[0])
        if terminated:
            break
    return np.array(speeds), np.array(costs)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_cost_is_one_exactly_when_signed_speed_exceeds_threshold(env_id):
    env = gymnasium.make(env_id)
    actions = random_actions(env.action_space, 60, 1, seed=3, spread=1.0)[:, 0]
    registered = VELOCITY_TASKS[env_id].kwargs["velocity_threshold"]
    speeds, costs = rollout_speeds_and_costs(env_id, actions)
    np.testing.assert_array_equal(costs, (speeds > registered).astype(float))

    # A threshold between two observed speeds exercises both outcomes.
    ordered = np.sort(speeds)
    middle = len(ordered) // 2
    split = 0.5 * (ordered[middle - 1] + ordered[middle])
    speeds, costs = rollout_speeds_and_costs(env_id, actions, velocity_threshold=split)
    np.testing.assert_array_equal(costs, (speeds > split).astype(float))
    assert 0 < costs.sum() < len(costs)

    if VELOCITY_TASKS[env_id].kwargs["speed"] == "x":  # signed: fast backwards costs nothing
        limit = np.median(np.abs(speeds))
        speeds, costs = rollout_speeds_and_costs(env_id, actions, velocity_threshold=limit)
        backwards = speeds < -limit
        assert backwards.any() and not costs[backwards].any()


def test_effort_cost_counts_large_actions():
    env = gymnasium.make("SafetyHalfCheetahVelocityEffort-v1")
    env.reset(seed=0)
    small, large = np.full(6, 0.1, np.float32), np.full(6, 0.9, np.float32)
    assert env.step(small)[4]["cost"][1] == 0.0
    assert env.step(large)[4]["cost"][1] == 1.0
    # A random policy violates the effort limit about half the time.
    actions = random_actions(env.action_space, 4000, 1, spread=1.0)[:, 0]
    share = np.mean(np.sum(actions.astype(np.float64) ** 2, axis=1) > envs.EFFORT_THRESHOLD)
    assert 0.4 < share < 0.6


@pytest.mark.parametrize("robot", ROBOTS)
def test_single_env_reproduces_gymnasium_v4(robot):
    ours = gymnasium.make(f"Safety{robot}Velocity-v1", max_episode_steps=30)
    theirs = gymnasium.make(f"{robot}-v4", max_episode_steps=30)
    np.testing.assert_array_equal(ours.reset(seed=5)[0], theirs.reset(seed=5)[0])
    for action in random_actions(ours.action_space, 70, 1, seed=1, spread=1.0)[:, 0]:
        mine, ref = ours.step(action), theirs.step(action)
        for a, b in zip(mine[:4], ref[:4], strict=True):
            np.testing.assert_array_equal(a, b)
        if mine[2] or mine[3]:
            np.testing.assert_array_equal(ours.reset()[0], theirs.reset()[0])


def test_make_safe_env_returns_six_tuple():
    env = envs.make_safe_env("SafetyHopperVelocity-v1")
    env.reset(seed=0)
    obs, reward, cost, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs.shape == (11,) and cost == info["cost"] and isinstance(cost, float)


# --------------------------------------------------------------------------------------------
# Vector envs: the batched backend must equal N gymnasium envs stepped by hand
# --------------------------------------------------------------------------------------------


def reference_rollout(env_id, num_envs, seed, actions, max_episode_steps, **kwargs):
    """N plain ``gymnasium.make`` envs with same-step autoreset: the definition both backends must meet."""
    refs = [gymnasium.make(env_id, max_episode_steps=max_episode_steps, **kwargs) for _ in range(num_envs)]
    first = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(refs)])
    low, high = refs[0].action_space.low, refs[0].action_space.high
    steps = []
    for batch in actions:
        batch = np.clip(batch, low, high)
        step = {key: [] for key in ("obs", "reward", "cost", "terminated", "truncated", "final_obs")}
        for env, action in zip(refs, batch, strict=True):
            obs, reward, terminated, truncated, info = env.step(action)
            step["final_obs"].append(obs)
            if terminated or truncated:
                obs = env.reset()[0]
            for key, value in zip(("obs", "reward", "cost", "terminated", "truncated"),
                                  (obs, reward, np.atleast_1d(info["cost"]), terminated, truncated), strict=True):
                step[key].append(value)
        steps.append({key: np.array(value) for key, value in step.items()})
    return first, steps


def assert_matches_reference(vec, first, steps, actions):
    np.testing.assert_array_equal(vec.reset()[0], first)
    ended = 0
    for batch, ref in zip(actions, steps, strict=True):
        obs, reward, cost, terminated, truncated, info = vec.step(batch)
        np.testing.assert_array_equal(obs, ref["obs"])
        np.testing.assert_array_equal(reward, ref["reward"])
        np.testing.assert_array_equal(cost, ref["cost"])
        np.testing.assert_array_equal(terminated, ref["terminated"])
        np.testing.assert_array_equal(truncated, ref["truncated"])
        done = info["episode_done"]
        np.testing.assert_array_equal(done, terminated | truncated)
        np.testing.assert_array_equal(info["final_obs"][done], ref["final_obs"][done])
        ended += done.sum()
    return ended


EQUALITY_CASES = [(env_id, {}) for env_id in ALL_IDS] + [
    ("SafetyAntVelocity-v1", {"use_contact_forces": True}),
    ("SafetyHopperVelocity-v1", {"exclude_current_positions_from_observation": False,
                                 "terminate_when_unhealthy": False, "ctrl_cost_weight": 0.01}),
]


# make test-fast keeps one env with its defaults and one with kwargs passed through
FAST_EQUALITY_CASES = {("SafetyHalfCheetahVelocity-v1", False), ("SafetyHopperVelocity-v1", True)}


@pytest.mark.parametrize(("env_id", "kwargs"),
                         slow_except(EQUALITY_CASES, FAST_EQUALITY_CASES, key=lambda case: (case[0], bool(case[1]))),
                         ids=lambda c: str(c) if c else "default")
def test_batched_and_sync_equal_gymnasium_across_autoresets(env_id, kwargs):
    num_envs, seed, horizon = 3, 11, 25
    probe = gymnasium.make(env_id, **kwargs)
    actions = random_actions(probe.action_space, 70, num_envs, seed=2)
    first, steps = reference_rollout(env_id, num_envs, seed, actions, horizon, **kwargs)

    batched = envs.make(env_id, num_envs, seed, max_episode_steps=horizon, **kwargs)
    assert isinstance(batched, BatchedVelocityEnv)
    ended = assert_matches_reference(batched, first, steps, actions)
    assert ended >= num_envs * 2  # several autoresets (truncations, and terminations where v4 has them)
    batched.close()

    sync = envs.make(env_id, num_envs, seed, max_episode_steps=horizon, backend="sync", **kwargs)
    assert isinstance(sync, SyncVectorEnv)
    assert_matches_reference(sync, first, steps, actions)
    sync.close()


def test_batched_result_does_not_depend_on_thread_count():
    actions = random_actions(Box(-1, 1, (6,)), 30, 5)
    outputs = []
    for threads in (1, 2, 3):
        with envs.make("SafetyHalfCheetahVelocity-v1", 5, seed=0, num_threads=threads) as vec:
            vec.reset()
            outputs.append([vec.step(a)[0] for a in actions])
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[0], outputs[2])


@pytest.mark.parametrize("backend", ["batched", "sync"])
def test_vector_api_attributes_and_shapes(backend):
    vec = envs.make("SafetyHalfCheetahVelocityEffort-v1", 4, seed=0, backend=backend)
    assert vec.num_envs == 4 and vec.env_id == "SafetyHalfCheetahVelocityEffort-v1"
    assert vec.single_observation_space.shape == (17,) and vec.single_action_space.shape == (6,)
    assert vec.num_costs == 2 and vec.cost_names == ["velocity", "effort"] and vec.max_episode_steps == 1000
    obs, infos = vec.reset()
    assert obs.shape == (4, 17) and obs.dtype == np.float64 and infos == {}
    assert vec.observation_keys is None
    obs, reward, cost, terminated, truncated, info = vec.step(np.zeros((4, 6)))
    assert obs.shape == (4, 17) and reward.shape == (4,) and reward.dtype == np.float64
    assert cost.shape == (4, 2) and cost.dtype == np.float64
    assert terminated.dtype == bool and truncated.dtype == bool
    assert info["final_obs"].shape == (4, 17) and info["episode_cost"].shape == (4, 2)
    with pytest.raises(ValueError):
        vec.step(np.zeros((3, 6)))
    vec.close()


@pytest.mark.parametrize("backend", ["batched", "sync"])
def test_actions_are_clipped_to_the_action_space(backend):
    results = []
    for scale in (1.0, 25.0):
        with envs.make("SafetyHopperVelocity-v1", 2, seed=0, backend=backend) as vec:
            vec.reset()
            results.append(vec.step(np.full((2, 3), scale))[:2])
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("backend", ["batched", "sync"])
def test_seeding_is_reproducible(backend):
    def first_obs(reset_seed, make_seed=None):
        with envs.make("SafetyAntVelocity-v1", 3, seed=make_seed, backend=backend) as vec:
            return vec.reset(seed=reset_seed)[0]

    np.testing.assert_array_equal(first_obs(4), first_obs(4))
    assert not np.array_equal(first_obs(4), first_obs(5))
    np.testing.assert_array_equal(first_obs(4)[1], first_obs(5)[0])  # env i gets seed + i
    np.testing.assert_array_equal(first_obs(None, make_seed=4), first_obs(4))  # make's seed is the default
    assert not np.array_equal(first_obs(None), first_obs(None))  # no seed: fresh entropy
    with envs.make("SafetyAntVelocity-v1", 2, seed=9, backend=backend) as vec:
        a, b = vec.reset()[0], vec.reset()[0]  # an unseeded reset continues each env's RNG
        assert not np.array_equal(a, b)
        np.testing.assert_array_equal(vec.reset(seed=9)[0], a)


@pytest.mark.parametrize("backend", ["batched", "sync"])
def test_final_obs_and_episode_statistics_on_truncation(backend):
    num_envs, horizon = 2, 6
    vec = envs.make("SafetySwimmerVelocity-v0", num_envs, seed=0, max_episode_steps=horizon, backend=backend)
    refs = [gymnasium.make("SafetySwimmerVelocity-v0", max_episode_steps=horizon) for _ in range(num_envs)]
    vec.reset()
    for i, ref in enumerate(refs):
        ref.reset(seed=i)
    returns, costs = np.zeros(num_envs), np.zeros((num_envs, 1))
    for t, batch in enumerate(random_actions(vec.single_action_space, 2 * horizon + 2, num_envs, seed=8)):
        obs, reward, cost, terminated, truncated, info = vec.step(batch)
        returns += reward
        costs += cost
        ref_steps = [ref.step(np.clip(a, -1, 1)) for ref, a in zip(refs, batch, strict=True)]
        ended = (t + 1) % horizon == 0
        assert not terminated.any()
        np.testing.assert_array_equal(truncated, np.full(num_envs, ended))
        np.testing.assert_array_equal(info["episode_done"], np.full(num_envs, ended))
        if ended:
            np.testing.assert_array_equal(info["final_obs"], np.stack([s[0] for s in ref_steps]))
            np.testing.assert_array_equal(obs, np.stack([ref.reset()[0] for ref in refs]))
            np.testing.assert_allclose(info["episode_return"], returns, rtol=0, atol=1e-12)
            np.testing.assert_allclose(info["episode_cost"], costs, rtol=0, atol=1e-12)
            np.testing.assert_array_equal(info["episode_length"], np.full(num_envs, horizon))
            returns[:], costs[:] = 0.0, 0.0
        else:
            np.testing.assert_array_equal(obs, np.stack([s[0] for s in ref_steps]))
    vec.close()


def test_episode_statistics_with_terminations():
    vec = envs.make("SafetyHopperVelocity-v1", 4, seed=0, max_episode_steps=40)
    vec.reset()
    returns, costs, lengths, finished = np.zeros(4), np.zeros((4, 1)), np.zeros(4, int), 0
    for batch in random_actions(vec.single_action_space, 90, 4, seed=4):
        _, reward, cost, terminated, truncated, info = vec.step(batch)
        returns, costs, lengths = returns + reward, costs + cost, lengths + 1
        done = info["episode_done"]
        np.testing.assert_allclose(info["episode_return"][done], returns[done], rtol=0, atol=1e-12)
        np.testing.assert_allclose(info["episode_cost"][done], costs[done], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(info["episode_length"][done], lengths[done])
        returns[done], costs[done], lengths[done] = 0.0, 0.0, 0
        finished += terminated.sum()
    assert finished > 0
    vec.close()


def test_unknown_id_suggests_close_ids():
    with pytest.raises(ValueError, match="SafetyHalfCheetahVelocity-v1"):
        envs.make("SafetyHalfCheetaVelocity-v1")
    with pytest.raises(ValueError, match="unknown env id"):
        envs.make_safe_env("NoSuchEnvAtAll-v9")


# --------------------------------------------------------------------------------------------
# User envs plug in through the generic backend
# --------------------------------------------------------------------------------------------


class LineWalk(gymnasium.Env):
    """A point on a line: reward -|x|, cost 1 beyond |x| > 1, episode ends beyond |x| > 3."""

    observation_space = Box(-np.inf, np.inf, (1,), np.float64)
    action_space = Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = self.np_random.uniform(-0.5, 0.5)
        return np.array([self.x]), {}

    def step(self, action):
        self.x += float(action[0])
        return np.array([self.x]), -abs(self.x), abs(self.x) > 3, False, {"cost": float(abs(self.x) > 1)}


class TwoCostLineWalk(LineWalk):
    cost_names = ["far", "fast"]

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        info["cost"] = np.array([info["cost"], float(abs(action[0]) > 0.5)])
        return obs, reward, terminated, truncated, info


class SixTupleWalk:
    """Not a gymnasium env: Safety-Gymnasium's 6-tuple step API."""

    observation_space = LineWalk.observation_space
    action_space = LineWalk.action_space

    def __init__(self):
        self.walk = LineWalk()

    def reset(self, seed=None):
        return self.walk.reset(seed=seed)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.walk.step(action)
        return obs, reward, info.pop("cost"), terminated, truncated, info


@pytest.mark.parametrize("factory", [LineWalk, SixTupleWalk], ids=["gymnasium", "six-tuple"])
def test_user_factory_envs(factory):
    vec = envs.make(factory, num_envs=3, seed=0, max_episode_steps=5)
    assert vec.num_costs == 1 and vec.max_episode_steps == 5
    start = vec.reset()[0]
    np.testing.assert_array_equal(start, envs.make(factory, num_envs=3, seed=0).reset()[0])
    x, length, terminations = start[:, 0].copy(), np.zeros(3, int), 0
    for step_size in [0.5] * 5 + [1.0] * 6:  # first a truncation at 5 steps, then terminations
        obs, reward, cost, terminated, truncated, info = vec.step(np.full((3, 1), step_size))
        x, length = x + step_size, length + 1
        np.testing.assert_array_equal(cost[:, 0], (np.abs(x) > 1).astype(float))
        np.testing.assert_array_equal(reward, -np.abs(x))
        np.testing.assert_array_equal(terminated, np.abs(x) > 3)
        np.testing.assert_array_equal(truncated, length == 5)
        done = terminated | truncated
        np.testing.assert_array_equal(info["final_obs"][done, 0], x[done])
        np.testing.assert_array_equal(info["episode_length"][done], length[done])
        assert np.all(np.abs(obs[done]) <= 0.5)  # the next episode has already started
        x[done], length[done] = obs[done, 0], 0
        terminations += terminated.sum()
    assert terminations >= 3
    vec.close()


def test_user_env_by_registered_id_and_multiple_costs():
    gymnasium.register(id="SaferlTestTwoCostWalk-v0", entry_point=TwoCostLineWalk, max_episode_steps=4)
    try:
        vec = envs.make("SaferlTestTwoCostWalk-v0", num_envs=2, seed=1)
        assert isinstance(vec, SyncVectorEnv) and vec.cost_names == ["far", "fast"] and vec.max_episode_steps == 4
        vec.reset()
        _, _, cost, _, _, _ = vec.step(np.full((2, 1), 0.9))
        np.testing.assert_array_equal(cost[:, 1], [1.0, 1.0])
        with pytest.raises(ValueError, match="batched"):
            envs.make("SaferlTestTwoCostWalk-v0", backend="batched")
    finally:
        del gymnasium.registry["SaferlTestTwoCostWalk-v0"]


def test_env_without_cost_is_rejected_clearly():
    vec = envs.make("Pendulum-v1", num_envs=1, seed=0)
    vec.reset()
    with pytest.raises(ValueError, match="cost"):
        vec.step(np.zeros((1, 1)))


def test_physics_ceiling_reports_a_rate():
    rate = envs.physics_ceiling("SafetyHalfCheetahVelocity-v1", num_envs=4, seconds=0.1)
    assert rate > 1000


def test_batched_env_reports_the_velocity_its_cost_is_measured_on():
    vec = envs.make("SafetyAntVelocity-v1", num_envs=3, seed=5)
    single = envs.make_safe_env("SafetyAntVelocity-v1")
    vec.reset(seed=5)
    single.reset(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(20):
        actions = rng.uniform(-1, 1, (3, 8)).astype(np.float32)
        _, _, cost, _, _, info = vec.step(actions)
        _, _, single_cost, _, _, single_info = single.step(actions[0])
        assert info["velocity"][0] == single_info["velocity"]
        np.testing.assert_array_equal(cost[:, 0], info["velocity"] > vec.velocity_threshold)
    vec.close()


def test_module_prefixed_id_imports_the_registering_module(tmp_path, monkeypatch):
    (tmp_path / "my_safe_task.py").write_text(
        "import gymnasium\n"
        "gymnasium.register('MySafeTaskForTest-v0', entry_point='gymnasium.envs.classic_control:PendulumEnv',"
        " max_episode_steps=5)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="unknown env id"):
        envs.make("MySafeTaskForTest-v0")
    with pytest.raises(ValueError, match="cannot import 'no_such_module'"):
        envs.make("no_such_module:X-v0")
    vec = envs.make("my_safe_task:MySafeTaskForTest-v0", num_envs=2, seed=0)
    assert vec.env_id == "MySafeTaskForTest-v0"
    vec.close()


# --------------------------------------------------------------------------------------------
# One base class: list seeds, Dict observations, success, thread policy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("env_id", "backend"), [
    ("SafetyHopperVelocity-v1", "auto"), ("SafetyHopperVelocity-v1", "sync"),
    ("SafetyPointGoal1-v0", "auto"), ("SafetyToyVelocity-v0", "auto")])
def test_list_seeds_let_members_share_one_env(env_id, backend):
    """Member k's envs (seeds s_k + i) behave exactly like a separate vector env seeded s_k, across autoresets."""
    members, per_member, horizon = (3, 40), 2, 7
    shared = envs.make(env_id, len(members) * per_member, backend=backend, max_episode_steps=horizon)
    separate = [envs.make(env_id, per_member, seed=s, backend=backend, max_episode_steps=horizon) for s in members]
    obs, infos = shared.reset(seed=[s + i for s in members for i in range(per_member)])
    assert infos == {}
    np.testing.assert_array_equal(obs, np.concatenate([vec.reset()[0] for vec in separate]))
    actions = random_actions(shared.single_action_space, 2 * horizon + 3, shared.num_envs, seed=1)
    for batch in actions:
        out = shared.step(batch)
        parts = [vec.step(chunk) for vec, chunk in zip(separate, np.split(batch, len(members)), strict=True)]
        for k in range(5):
            np.testing.assert_array_equal(out[k], np.concatenate([p[k] for p in parts]))
        np.testing.assert_array_equal(out[5]["final_obs"], np.concatenate([p[5]["final_obs"] for p in parts]))
    for vec in [shared, *separate]:
        vec.close()


def test_bad_seeds_are_one_line_errors():
    with pytest.raises(ValueError, match="got 2 seeds for 3 envs"):
        envs.make("SafetyToyVelocity-v0", 3, seed=[1, 2])
    vec = envs.make("SafetyToyVelocity-v0", 3)
    with pytest.raises(ValueError, match="seed must be None, an int or a list"):
        vec.reset(seed="7")
    with pytest.raises(ValueError, match="got 4 seeds for 3 envs"):
        vec.reset(seed=[1, 2, 3, 4])


class ReportsCost(gymnasium.Wrapper):
    """Any gymnasium env as a safe one: zero cost, for API tests."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "cost": 0.0}


def test_dict_observations_are_flattened_in_the_space_key_order():
    gymnasium_robotics = pytest.importorskip("gymnasium_robotics")
    gymnasium.register_envs(gymnasium_robotics)
    vec = envs.make(lambda: ReportsCost(gymnasium.make("FetchReach-v4")), num_envs=2, seed=3)
    assert vec.observation_keys == [("achieved_goal", 3), ("desired_goal", 3), ("observation", 10)]
    assert vec.single_observation_space.shape == (16,) and vec.single_observation_space.dtype == np.float64
    obs, _ = vec.reset()
    single = gymnasium.make("FetchReach-v4")
    first, _ = single.reset(seed=4)  # env 1 of the vector env
    np.testing.assert_array_equal(obs[1], np.concatenate([first["achieved_goal"], first["desired_goal"],
                                                          first["observation"]]))
    np.testing.assert_array_equal(obs[1], envs.flatten_observation(first, vec.observation_keys))
    action = np.full((2, 4), 0.3, np.float32)
    next_obs, _, _, _, _, info = vec.step(action)
    expected, _, _, _, single_info = single.step(action[1])
    np.testing.assert_array_equal(next_obs[1], envs.flatten_observation(expected, vec.observation_keys))
    assert info["is_success"].shape == (2,) and info["is_success"][1] == single_info["is_success"]
    vec.close()


def test_success_is_reported_for_finished_episodes_at_their_final_step():
    class Succeeds(LineWalk):
        def step(self, action):
            obs, reward, terminated, truncated, info = super().step(action)
            return obs, reward, terminated, truncated, {**info, "is_success": self.x > 0.9}

    vec = envs.make(Succeeds, num_envs=2, seed=0, max_episode_steps=3)
    obs, _ = vec.reset()
    for _ in range(3):
        _, _, _, _, _, info = vec.step(np.full((2, 1), 0.3))
    assert info["episode_done"].all() and info["is_success"].dtype == np.float64
    np.testing.assert_array_equal(info["is_success"], (obs[:, 0] + 0.9 > 0.9).astype(float))
    assert "is_success" not in envs.make(LineWalk, 1, seed=0).reset()[1]


def test_one_thread_policy_for_every_batched_backend():
    from saferl.envs.threads import available_cpus, default_num_threads

    assert default_num_threads(64) == available_cpus() and default_num_threads(1) == 1
    assert default_num_threads(8, 3) == 3 and default_num_threads(2, 5) == 2
    with pytest.raises(ValueError, match="num_threads"):
        default_num_threads(4, 0)
    expected = min(available_cpus(), 3)
    for env_id in ("SafetyHalfCheetahVelocity-v1", "SafetyPointGoal1-v0"):
        with envs.make(env_id, 3, seed=0) as vec:
            assert vec.num_threads == expected
