"""Group rollouts and the critic-free estimators (saferl/groups.py, saferl/maths/group_advantages.py): the
estimators against hand computations, groups that start from one state and differ only through sampling,
masked and dropped steps that add nothing to the update, per-cost normalisation before the Lagrangian
scalarisation, no critic trained, the GAE path unchanged, and learning on the toy task."""

import csv
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import QUIET, TINY_CELL_SETS, TOY_SETS, slow_except

from saferl import benchmark, benchmark_grid, envs
from saferl.algorithms.common import lagrangian_advantages
from saferl.algorithms.policy_gradient import MemberActor, member_batch, surrogate
from saferl.cli import main
from saferl.config import build_config
from saferl.envs.toy import TOY_ID
from saferl.errors import SafeRLError
from saferl.groups import GroupRollout, episode_weights, group_batch
from saferl.launch import new_members
from saferl.logger import read_progress
from saferl.maths.group_advantages import (
    group_advantages,
    group_normalised,
    is_flat,
    leave_one_out,
    returns_to_go,
    weighted_standardised,
)
from saferl.runner import Runner

FIXTURES = Path(__file__).parent / "fixtures" / "gae-progress"
GRIDS = Path(__file__).parent.parent / "benchmarks" / "group-estimators"
GROUP_SETS = ["train.group_size=4"]
SMALL_EPOCH = ["train.steps_per_epoch=800"]  # 8 envs x 100 steps: 2 whole 50-step episodes per group
# The defaults the fixtures were made with (before OmniSafe's implementation details became the defaults)
FIXTURE_ERA_DEFAULTS = ["model.obs_clip=10", "model.normalizer_update=epoch", "model.init=orthogonal",
                        "ppo.kl_estimate=k3", "ppo.critic_l2=0", "trpo.critic_l2=0", "trpo.critic_max_grad_norm=null"]


# -- the estimators against hand computations -------------------------------------------------------------------
def test_rloo_episode_level_is_each_return_against_the_mean_of_the_others():
    rewards = np.array([[1.0, 2.0, 4.0], [2.0, 3.0, 6.0]])  # [L=2, G=3]: returns 3, 5, 10
    valid = np.ones((2, 3), bool)
    expected = [3 - (5 + 10) / 2, 5 - (3 + 10) / 2, 10 - (3 + 5) / 2]  # -4.5, -1.5, 6
    advantages = group_advantages("rloo", rewards, valid, gamma=1.0)
    np.testing.assert_allclose(advantages, [expected, expected])


def test_rloo_per_step_is_the_return_to_go_against_the_others_at_the_same_step():
    rewards = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    valid = np.ones((2, 3), bool)
    # gamma 1: returns-to-go at t=0 are 5, 7, 9 and at t=1 4, 5, 6
    np.testing.assert_allclose(group_advantages("rloo_step", rewards, valid, gamma=1.0),
                               [[5 - 8, 7 - 7, 9 - 6], [4 - 5.5, 5 - 5, 6 - 4.5]])
    # gamma 0.5: at t=0 1 + 2, 2 + 2.5, 3 + 3 = 3, 4.5, 6
    np.testing.assert_allclose(group_advantages("rloo_step", rewards, valid, gamma=0.5),
                               [[3 - 5.25, 4.5 - 4.5, 6 - 3.75], [4 - 5.5, 0.0, 1.5]])


def test_an_ended_member_scores_only_its_own_steps_and_earns_nothing_after_its_end():
    rewards = np.array([[1.0, 2.0, 3.0], [100.0, 5.0, 6.0]])  # member 0 ended after step 0: its 100 is a throwaway
    valid = np.array([[True, True, True], [False, True, True]])
    # per step, t=1: member 0's return-to-go is 0 (ended), so member 1's baseline is (0 + 6) / 2
    np.testing.assert_allclose(group_advantages("rloo_step", rewards, valid, gamma=1.0),
                               [[1 - (7 + 9) / 2, 7 - (1 + 9) / 2, 9 - (1 + 7) / 2], [0.0, 5 - 3.0, 6 - 2.5]])
    # episode level: returns 1, 7, 9; the ended member's masked step gets no advantage
    np.testing.assert_allclose(group_advantages("rloo", rewards, valid, gamma=1.0),
                               [[1 - 8, 7 - 5, 9 - 4], [0.0, 7 - 5, 9 - 4]])


def test_grpo_is_the_group_z_score_and_dr_grpo_drops_the_std():
    returns = [3.0, 5.0, 10.0, 2.0]
    rewards = np.array([returns])  # one step each
    valid = np.ones((1, 4), bool)
    mean, std = statistics.mean(returns), statistics.stdev(returns)  # sample std, as the module says
    np.testing.assert_allclose(group_advantages("grpo", rewards, valid, 1.0), [[(r - mean) / std for r in returns]],
                               rtol=1e-6)
    np.testing.assert_allclose(group_advantages("grpo", rewards, valid, 1.0, use_std=False),
                               [[r - mean for r in returns]])
    # a flat group: zero advantage, not 0 / 0
    np.testing.assert_array_equal(group_normalised(np.full(4, 7.0), axis=0), np.zeros(4))


def test_costs_get_the_same_estimator_per_column():
    costs = np.array([[[1.0, 10.0], [0.0, 30.0]], [[2.0, 0.0], [0.0, 0.0]]])  # [L=2, G=2, C=2]
    valid = np.ones((2, 2), bool)
    # column 0: returns 3, 0 -> RLOO +3, -3; column 1: returns 10, 30 -> -20, +20
    np.testing.assert_allclose(group_advantages("rloo", costs, valid, 1.0)[0], [[3.0, -20.0], [-3.0, 20.0]])
    np.testing.assert_allclose(returns_to_go(costs, valid, 1.0)[0], [[3.0, 10.0], [0.0, 30.0]])


def test_small_helpers():
    np.testing.assert_allclose(leave_one_out(np.array([1.0, 2.0]), axis=0), [-1.0, 1.0])
    with pytest.raises(ValueError):
        leave_one_out(np.array([1.0]), axis=0)
    assert is_flat(np.array([1.0, 1.0 + 1e-9]), 1e-6) and not is_flat(np.array([[1.0, 0.0], [1.0, 1.0]]), 1e-6)
    values, weights = np.array([1.0, 3.0, 100.0, 5.0]), np.array([1.0, 1.0, 0.0, 2.0])
    mean = (1 + 3 + 2 * 5) / 4  # 3.5
    std = np.sqrt(((1 - mean) ** 2 + (3 - mean) ** 2 + 2 * (5 - mean) ** 2) / 4)
    np.testing.assert_allclose(weighted_standardised(values, weights),
                               [(1 - mean) / std, (3 - mean) / std, 0.0, (5 - mean) / std], rtol=1e-6)
    np.testing.assert_allclose(weighted_standardised(values, weights, scale=False), [1 - mean, 3 - mean, 0, 5 - mean])


# -- group rollouts ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id", [TOY_ID, "SafetyHalfCheetahVelocity-v1", "SafetyPointGoal1-v0",
                                    "SafetyFetchReach-v0"])
def test_a_groups_envs_start_alike_and_differ_only_through_the_actions(env_id):
    """Two groups of 2: a group's envs start from one observation; fed the same actions they stay identical (the
    only source of difference is the policy's sampling), fed different actions they part."""
    env = envs.make(env_id, num_envs=4, seed=0)
    try:
        obs, _ = env.reset(seed=[10, 11, 12, 13])
        groups = GroupRollout([5], envs_per_member=4, group_size=2, rollout_length=8)
        obs = groups.start_epoch(env, 0, obs)
        np.testing.assert_array_equal(obs[0], obs[1])
        np.testing.assert_array_equal(obs[2], obs[3])
        assert not np.array_equal(obs[0], obs[2])  # two groups, two start states
        rng = np.random.default_rng(0)
        act_dim = env.single_action_space.shape[0]
        parted = False
        for _ in range(5):
            shared = rng.uniform(-1, 1, act_dim)
            actions = np.stack([shared, shared, rng.uniform(-1, 1, act_dim), rng.uniform(-1, 1, act_dim)])
            obs, reward, cost, *_ = env.step(actions.astype(env.single_action_space.dtype))
            np.testing.assert_array_equal(obs[0], obs[1])
            assert reward[0] == reward[1] and np.array_equal(cost[0], cost[1])
            parted |= not np.array_equal(obs[2], obs[3]) or reward[2] != reward[3]
        assert parted  # (the toy's observations ignore the actions; its rewards do not)
    finally:
        env.close()


class FakeEnv:
    """Records group resets; observations are the reset seed (so a test can see which envs share one)."""

    def __init__(self):
        self.resets = []

    def reset_envs(self, rows, seeds):
        self.resets.append((list(rows), list(seeds)))
        return np.array([[float(s)] for s in seeds])


def test_an_early_ender_waits_masked_until_its_group_is_done():
    env, groups = FakeEnv(), GroupRollout([0], envs_per_member=2, group_size=2, rollout_length=6)
    obs = groups.start_epoch(env, 0, np.zeros((2, 1)))
    assert obs[0, 0] == obs[1, 0]
    # env 0 ends at t=1 (and its throwaway episode again at t=3), env 1 at t=3; after the restart at t=4, env 0
    # ends at t=4 and env 1 is still running when the epoch ends
    ends = {1: {0: "a"}, 3: {0: "throwaway", 1: "b"}, 4: {0: "c"}}
    counted = []
    for t in range(6):
        obs, released = groups.after_step(env, t, obs, ends.get(t, {}))
        counted.append(released)
    np.testing.assert_array_equal(groups.valid[:, 0, 0], [True, True, False, False, True, False])
    np.testing.assert_array_equal(groups.valid[:, 0, 1], [True] * 6)
    # the group's two episodes count together when its last env ends; the throwaway end never counts
    assert counted == [{}, {}, {}, {0: "a", 1: "b"}, {}, {}]
    assert [(e.start, e.end) for e in groups.episodes] == [(0, 4), (4, None)]  # the second is cut by the epoch
    assert env.resets[1][0] == [0, 1] and len(set(env.resets[1][1])) == 1  # restarted together, one seed
    assert env.resets[0][1][0] != env.resets[1][1][0]
    # the cut group's early ender ("c") is left out of the statistics, as its steps are out of the batch
    assert groups.held == {0: "c"}
    obs = groups.start_epoch(env, 1, obs)
    assert groups.after_step(env, 0, obs, {0: "d", 1: "e"})[1] == {0: "d", 1: "e"}


def group_runner(tmp_path, algo="ppo_lag", extra=(), seeds=None, epoch=SMALL_EPOCH):
    config = build_config(algo, sets=TOY_SETS + GROUP_SETS + list(epoch) + list(extra))
    return Runner(new_members(config, seeds, None, tmp_path), resume=False)


def test_runner_groups_start_alike_per_member_and_a_member_collects_what_it_would_alone(tmp_path):
    together = group_runner(tmp_path / "both", extra=["train.advantage=rloo"], seeds=[0, 1])
    together.collect()
    raw = together.buffer.raw_obs  # [T, K, N, D]; 50-step episodes: groups restart at t = 0 and 50
    for t in (0, 50):
        for k in range(2):
            for g in range(2):
                np.testing.assert_array_equal(raw[t, k, 4 * g], raw[t, k, 4 * g + 1])
                np.testing.assert_array_equal(raw[t, k, 4 * g], raw[t, k, 4 * g + 3])
    actions, rewards = together.buffer.actions, together.buffer.rewards
    assert not np.array_equal(actions[0, 0, 0], actions[0, 0, 1]) and rewards[0, 0, 0] != rewards[0, 0, 1]  # sampling
    alone = group_runner(tmp_path / "one", extra=["train.advantage=rloo", "train.seed=1"])
    alone.collect()
    np.testing.assert_array_equal(alone.buffer.raw_obs[:, 0], raw[:, 1])
    np.testing.assert_array_equal(alone.buffer.actions[:, 0], together.buffer.actions[:, 1])


@pytest.mark.slow
def test_a_resumed_group_run_replays_the_groups_of_an_uninterrupted_one(tmp_path):
    """The group seeds come from (member seed, epoch, group, episode): an interrupted run, resumed, collects and
    learns exactly what the uninterrupted run does."""
    plan = ["train.advantage=rloo", "train.schedule_steps=2400"]
    group_runner(tmp_path / "whole", extra=plan + ["train.total_steps=2400"]).train()
    group_runner(tmp_path / "cut", extra=plan + ["train.total_steps=1600"]).train()
    config = build_config("ppo_lag", sets=TOY_SETS + GROUP_SETS + SMALL_EPOCH + plan + ["train.total_steps=2400"])
    Runner(new_members(config, None, None, tmp_path / "cut"), resume=True).train()
    whole = progress_without_timing(tmp_path / "whole" / "progress.csv")
    assert len(whole) == 3 and progress_without_timing(tmp_path / "cut" / "progress.csv") == whole


def test_a_dropped_group_contributes_nothing_to_the_update(tmp_path):
    runner = group_runner(tmp_path, extra=["train.advantage=rloo_step", "train.drop_flat_groups=true",
                                           "train.flat_group_threshold=1e-6"])
    runner.collect()
    buffer = runner.buffer
    flat_episode = runner.groups.complete_episodes()[0]  # member 0, group 0, the epoch's first episode
    window, envs_of_group = slice(flat_episode.start, flat_episode.end), slice(0, 4)
    buffer.rewards[window, 0, envs_of_group] = 1.0
    buffer.costs[window, 0, envs_of_group] = 0.0
    batch, stats = group_batch(buffer, runner.groups, runner.config, with_cost=True)
    assert stats["dropped_groups"][0] == 1 and stats["group_episodes"][0] == 4
    dropped = np.zeros(buffer.rewards.shape, bool)
    dropped[window, 0, envs_of_group] = True
    dropped = torch.from_numpy(dropped.swapaxes(0, 1).reshape(1, -1))
    assert torch.all(batch.reward_advantages[dropped] == 0) and torch.all(batch.cost_advantages[dropped] == 0)
    assert stats["batch_fraction"][0] == pytest.approx(0.75)  # 1 of the 4 group episodes (2 per group, 2 groups)
    # The policy gradient of the (Lagrangian) surrogate does not change when the dropped steps' data does.
    lambdas = np.array([[0.7]])
    gradients = []
    for scramble in (False, True):
        data = member_batch(batch, 0)
        if scramble:
            data.obs[dropped[0]] = torch.randn(int(dropped.sum()), data.obs.shape[-1])
            data.actions[dropped[0]] = torch.randn(int(dropped.sum()), data.actions.shape[-1])
        actor = MemberActor(runner.policy, 0)
        advantages = lagrangian_advantages(batch, lambdas)[0]
        gradients.append(torch.autograd.grad(surrogate(actor, data, advantages), actor.params))
    for a, b in zip(*gradients, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # and the kept steps' advantages are rescaled so that a mean over the batch is the mean over kept steps
    assert batch.reward_advantages[~dropped].mean().abs() < 1e-5
    assert batch.reward_advantages[~dropped].std(correction=0) == pytest.approx(1 / 0.75, rel=1e-4)


def test_each_cost_is_normalised_on_its_own_before_the_multipliers_scalarise(tmp_path):
    runner = group_runner(tmp_path, extra=["train.advantage=rloo"])
    runner.collect()
    buffer = runner.buffer
    rng = np.random.default_rng(0)
    buffer.costs = np.concatenate([buffer.costs, 1000.0 * rng.random(buffer.costs.shape)], axis=-1)  # 2 costs
    batch, _ = group_batch(buffer, runner.groups, runner.config, with_cost=True)
    cost = batch.cost_advantages[0].double()  # every step kept: 50-step episodes fill the epoch
    np.testing.assert_allclose(cost.mean(0), [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(cost.std(0, correction=0), [1.0, 1.0], rtol=1e-4)  # unit scale each, 1 vs 1000
    # the raw estimator per cost, z-scored by hand, then A = (z_R - lambda . z_C) / (1 + sum lambda)
    raw = np.zeros(buffer.costs.shape)
    raw_reward = np.zeros(buffer.rewards.shape)
    for episode in runner.groups.complete_episodes():
        w, g = slice(episode.start, episode.end), slice(4 * episode.group, 4 * episode.group + 4)
        raw[w, 0, g] = group_advantages("rloo", buffer.costs[w, 0, g], runner.groups.valid[w, 0, g], 1.0)
        raw_reward[w, 0, g] = group_advantages("rloo", buffer.rewards[w, 0, g], runner.groups.valid[w, 0, g], 1.0)
    z_cost = raw.swapaxes(0, 1).reshape(1, -1, 2)[0]
    z_cost = (z_cost - z_cost.mean(0)) / z_cost.std(0)
    z_reward = raw_reward.swapaxes(0, 1).reshape(1, -1)[0]
    z_reward = (z_reward - z_reward.mean()) / z_reward.std()
    lambdas = np.array([[0.5, 2.0]])
    expected = (z_reward - z_cost @ lambdas[0]) / (1 + lambdas.sum())
    np.testing.assert_allclose(lagrangian_advantages(batch, lambdas)[0].numpy(), expected, atol=2e-5)
    # CPO keeps its cost advantages in cost units (its constraint is linearised in them): centred, not scaled
    runner.config.train.algo = "cpo"
    cpo_batch, _ = group_batch(buffer, runner.groups, runner.config, with_cost=True)
    assert float(cpo_batch.cost_advantages[0, :, 1].std()) > 100.0


@pytest.mark.parametrize("algo", slow_except(["ppo_lag", "trpo_lag", "cpo"], {"trpo_lag", "cpo"}))
def test_no_critic_is_trained_when_the_estimator_needs_none(tmp_path, algo):
    l2 = ["ppo.critic_l2=0.001", "trpo.critic_l2=0.001", "cpo.critic_l2=0.001"]  # a weight penalty moves no critic
    runner = group_runner(tmp_path, algo, ["train.advantage=grpo", "train.total_steps=800", *l2])
    critics = [p.detach().clone() for p in runner.policy.critic_parameters(cost=True)]
    actor = [p.detach().clone() for p in runner.policy.actor_parameters()]
    rows = runner.train()
    for before, after in zip(critics, runner.policy.critic_parameters(cost=True), strict=True):
        torch.testing.assert_close(before, after, rtol=0, atol=0)
    assert any(not torch.equal(b, a) for b, a in zip(actor, runner.policy.actor_parameters(), strict=True))
    assert "value_loss" not in rows[0] and rows[0]["group_episodes"] == 4


def test_episode_averaging_weighs_every_episode_the_same():
    valid = np.array([[True, True], [True, False], [True, False], [True, False]])  # lengths 4 and 1
    np.testing.assert_allclose(episode_weights(valid, "episode"), [[0.25, 1.0], [0.25, 0], [0.25, 0], [0.25, 0]])
    np.testing.assert_array_equal(episode_weights(valid, "step"), valid.astype(float))


def test_config_errors_are_one_line(tmp_path, capsys):
    code = main(["train", "--algo", "ppo_lag", "--env", TOY_ID, "--set", "train.advantage=rloo",
                 "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "needs group rollouts" in err and err.count("\n") == 1 and not (tmp_path / "r").exists()
    with pytest.raises(SafeRLError, match="needs group rollouts"):
        build_config("ppo_lag", sets=["train.advantage=grpo"])
    with pytest.raises(SafeRLError, match="must be a multiple of train.group_size"):
        build_config("ppo_lag", sets=["train.group_size=3"])
    with pytest.raises(SafeRLError, match="train.advantage must be one of"):
        build_config("ppo_lag", sets=["train.advantage=ppo"])


@pytest.mark.slow
def test_the_benchmark_grids_load_and_a_tiny_grid_with_a_group_variant_trains(tmp_path):
    cells = [(env_id, variant.name) for env_id, _, variant in benchmark_grid.load_grid(GRIDS / "grid.yaml").cells()]
    assert len(cells) == 8 and ("SafetyPointGoal1-v0", "rloo-step") in cells
    sweep = benchmark_grid.load_grid(GRIDS / "sweep.yaml")
    assert [variant.name for _, _, variant in sweep.cells()] == ["g2", "g4", "g16"]
    # The sweep's G = 8 is the grid's HalfCheetah grpo cell: the same resolved config, so it is not trained twice.
    full = benchmark_grid.load_grid(GRIDS / "grid.yaml")
    grid_grpo = [v for v in full.variants if v.name == "grpo"][0]
    sweep_g8 = build_config("ppo_lag", sets=[*sweep.sets, "train.group_size=8"])
    assert build_config("ppo_lag", sets=[*full.sets, *grid_grpo.sets]) == sweep_g8
    assert sweep.envs[0] in full.envs and (sweep.seeds, sweep.steps) == (full.seeds, full.steps)
    grid = benchmark_grid.Grid(["ppo_lag"], [TOY_ID], [3], 800, TINY_CELL_SETS,
                          [benchmark_grid.Variant("grpo", ["train.advantage=grpo", "train.group_size=2"])])
    result = benchmark.run_cell(benchmark.cell_spec(grid, "ppo_lag", TOY_ID, tmp_path, grid.variants[0]))
    assert result["ok"] and result["action"] == "trained", result
    rows = read_progress(tmp_path / TOY_ID / "ppo_lag-grpo" / "seed-3" / "progress.csv")
    assert [int(r["group_episodes"]) for r in rows] == [4, 4]  # 2 groups x 2 whole 50-step episodes per epoch


# -- the GAE path is untouched -----------------------------------------------------------------------------------
def progress_without_timing(path):
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    timing = {"fps", "total_fps", "collect_fps", "collect_seconds", "update_seconds"}
    return [{k: v for k, v in row.items() if k not in timing} for row in rows]


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo_lag", "trpo_lag"])
def test_with_the_estimator_off_a_fixed_seed_run_writes_mains_progress(tmp_path, algo):
    """tests/fixtures/gae-progress/README.md: the same command on main's code before group estimators."""
    code = main(["train", "--algo", algo, "--env", TOY_ID, "--num-envs", "8", "--steps", "6000", "--seed", "3",
                 "--run-dir", str(tmp_path / "run"), "--set", "train.steps_per_epoch=2000",
                 *QUIET, "ppo.update_epochs=4", "lagrange.cost_limit=10", *FIXTURE_ERA_DEFAULTS])
    assert code == 0
    assert progress_without_timing(tmp_path / "run" / "progress.csv") == progress_without_timing(
        FIXTURES / f"{algo}.csv")


# -- learning ----------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["grpo", "rloo"])
def test_group_estimators_with_ppo_lag_learn_the_toy_task(tmp_path, estimator):
    runner = group_runner(tmp_path, "ppo_lag", [f"train.advantage={estimator}"], epoch=())
    runner.train()
    rows = read_progress(tmp_path / "progress.csv")
    costs = [float(r["ep_cost"]) for r in rows]
    assert costs[0] > 15.0 and costs[-1] < 10.0, costs  # from twice the limit to under it, critic-free
