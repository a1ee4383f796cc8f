"""PG, NPG, TRPO, TRPO-Lag, CPO and the PID multiplier: step rules on synthetic batches, learning on the toy."""

import copy

import numpy as np
import pytest
import torch

from saferl.algorithms import ALGORITHMS
from saferl.algorithms.cpo import CASE_CODES, CPO
from saferl.algorithms.policy_gradient import NPG, PG, TRPO, clip_components, kl_to_detached_self, scale_to_norm
from saferl.buffer import RolloutBatch
from saferl.config import build_config
from saferl.logger import read_progress
from saferl.maths.lagrange import LagrangeMultiplier, PIDLagrangeMultiplier, make_multiplier
from saferl.maths.trust_region import fisher_vector_product, flat_params
from saferl.policies.actor_critic import ActorCritic, gaussian_kl
from saferl.runner import Runner

NEW_ALGOS = ["pg", "npg", "trpo", "trpo_lag", "cpo"]


def synthetic_batch(policy: ActorCritic, size: int = 512, seed: int = 0) -> RolloutBatch:
    """Actions sampled from the policy; reward favours a large first action, cost k fires when action k > 0.3."""
    generator = torch.Generator().manual_seed(seed)
    obs = torch.randn(size, policy.obs_dim, generator=generator)
    with torch.no_grad():
        mean = policy.actor(obs)
        actions = mean + torch.randn(mean.shape, generator=generator) * policy.actor.log_std.exp()
        log_probs = policy.actor.log_prob(mean, actions)
    reward = actions[:, 0] + 0.5 * obs[:, 0] * actions[:, -1]
    reward_advantages = (reward - reward.mean()) / reward.std()
    costs = (actions[:, : policy.num_costs] > 0.3).float()
    returns = torch.randn(size, generator=generator)
    return RolloutBatch(
        obs=obs, actions=actions, log_probs=log_probs, reward_advantages=reward_advantages,
        cost_advantages=costs - costs.mean(0), reward_returns=returns, cost_returns=costs * 10.0,
        reward_values=returns + 0.1 * torch.randn(size, generator=generator), cost_values=costs,
    )


def make_policy(num_costs: int = 1, seed: int = 0) -> ActorCritic:
    torch.manual_seed(seed)
    return ActorCritic(obs_dim=3, act_dim=2, num_costs=num_costs, actor_hidden=(16, 16), critic_hidden=(16, 16))


def true_mean_kl(old_actor, new_actor, obs) -> float:
    with torch.no_grad():
        return float(gaussian_kl(old_actor(obs), old_actor.log_std, new_actor(obs), new_actor.log_std).mean())


# -- step rules --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target_kl", [0.01, 0.2])
def test_trpo_accepted_step_never_exceeds_the_kl_bound(target_kl):
    backtracked = []
    for seed in range(4):
        policy = make_policy(seed=seed)
        config = build_config("trpo", sets=[f"trpo.target_kl={target_kl}", "trpo.critic_epochs=1"])
        algorithm = TRPO(policy, config, total_epochs=1)
        for epoch in range(2):  # the second update starts away from the initialisation
            batch = synthetic_batch(policy, seed=10 * seed + epoch)
            old_actor = copy.deepcopy(policy.actor)
            stats = algorithm.update(batch, np.array([0.0]))
            kl = true_mean_kl(old_actor, policy.actor, batch.obs)
            assert kl <= target_kl * (1 + 1e-5)
            assert stats["approx_kl"] == pytest.approx(kl, rel=1e-4, abs=1e-9)
            assert stats["line_search_accepted"] == 1.0 and kl > 0.0  # a real step, not a vacuous pass
            backtracked.append(stats["step_fraction"] < 1.0)
    if target_kl == 0.2:
        assert any(backtracked)  # the quadratic model is too optimistic here: the KL test did the work


def test_trpo_keeps_old_params_when_no_fraction_improves():
    policy = make_policy()
    config = build_config("trpo", sets=["trpo.critic_epochs=1", "trpo.max_backtracks=3"])
    batch = synthetic_batch(policy)
    batch.reward_advantages.zero_()  # nothing can improve a zero surrogate
    before = flat_params(policy.actor)
    stats = TRPO(policy, config, 1).update(batch, np.array([0.0]))
    assert stats["line_search_accepted"] == 0.0 and stats["step_fraction"] == 0.0
    assert torch.equal(flat_params(policy.actor), before)


def test_npg_step_meets_the_kl_bound_to_second_order():
    policy = make_policy()
    delta, damping = 1e-3, 1e-3
    config = build_config("npg", sets=[f"trpo.target_kl={delta}", f"trpo.cg_damping={damping}",
                                       "trpo.cg_iters=30", "trpo.critic_epochs=1"])
    batch = synthetic_batch(policy, size=1024)
    old_actor = copy.deepcopy(policy.actor)
    NPG(policy, config, 1).update(batch, np.array([0.0]))
    step = flat_params(policy.actor) - flat_params(old_actor)
    # By construction the damped quadratic model (1/2) x'(F + damping I)x is exactly delta ...
    kl_fn = kl_to_detached_self(old_actor, batch.obs)
    damped = 0.5 * float(step @ fisher_vector_product(kl_fn, old_actor, step, damping))
    assert damped == pytest.approx(delta, rel=1e-3)
    # ... the true KL matches the undamped model (1/2) x'Fx up to third-order terms ...
    quadratic = 0.5 * float(step @ fisher_vector_product(kl_fn, old_actor, step, 0.0))
    kl = true_mean_kl(old_actor, policy.actor, batch.obs)
    assert kl == pytest.approx(quadratic, rel=0.05)
    # ... and with little damping that is delta itself.
    assert kl == pytest.approx(delta, rel=0.1)


def test_gradient_preprocessing_norm_scaling_keeps_direction_and_clipping_clips():
    grad = torch.tensor([3.0, -4.0, 0.5])
    scaled = scale_to_norm(grad, 1.0)
    assert float(scaled.norm()) == pytest.approx(1.0)
    assert float(torch.nn.functional.cosine_similarity(scaled, grad, dim=0)) == pytest.approx(1.0)
    assert torch.equal(scale_to_norm(grad, 10.0), grad)  # short gradients pass unchanged
    clipped = clip_components(grad, 1.0)
    assert clipped.tolist() == [1.0, -1.0, 0.5]
    assert float(torch.nn.functional.cosine_similarity(clipped, grad, dim=0)) < 0.99  # the direction turns


@pytest.mark.parametrize("mode", ["norm", "clip"])
def test_pg_update_applies_the_preprocessed_gradient(mode):
    policy = make_policy()
    lr, bound = 0.5, 1e-3  # small bounds so both preprocessings are active
    config = build_config("pg", sets=[f"pg.grad_preprocess={mode}", f"pg.lr={lr}", f"pg.max_grad_norm={bound}",
                                      f"pg.clip_value={bound}", "trpo.critic_epochs=1"])
    batch = synthetic_batch(policy)
    before = flat_params(policy.actor)
    stats = PG(policy, config, 1).update(batch, np.array([0.0]))
    direction = (flat_params(policy.actor) - before) / lr
    assert stats["grad_norm"] > 10 * bound
    if mode == "norm":
        assert float(direction.norm()) == pytest.approx(bound, rel=1e-4)
    else:
        assert float(direction.abs().max()) == pytest.approx(bound, rel=1e-4)
        assert float(direction.norm()) > 2 * bound  # many components were clipped, not the whole vector


# -- the PID multiplier --------------------------------------------------------------------------------------
def test_pid_multiplier_rises_on_sustained_violation_and_stays_nonnegative():
    pid = PIDLagrangeMultiplier(num_costs=2, cost_limit=10.0, kp=0.1, ki=0.01, kd=0.0)
    values = [pid.update([15.0, 5.0]) for _ in range(20)]
    first = [v[0] for v in values]
    assert all(b > a for a, b in zip(first, first[1:], strict=False))  # the integral keeps pushing it up
    assert first[-1] == pytest.approx(0.1 * 5 + 0.01 * 5 * 20)
    assert all(v[1] == 0.0 for v in values)  # safe constraint: held at zero, never negative
    for _ in range(100):  # long safe stretch: the projected integral does not wind up below zero
        assert np.all(pid.update([0.0, 0.0]) >= 0.0)
    assert pid.integral.min() == 0.0
    assert pid.update([11.0, 0.0])[0] == pytest.approx(0.1 * 1 + 0.01 * 1)  # reacts at once, no debt to repay
    assert pid.update([float("nan"), 0.0])[0] == pytest.approx(0.11)  # no episode finished: unchanged


def test_pid_multiplier_reacts_to_a_rising_cost_before_the_limit():
    derivative_only = PIDLagrangeMultiplier(num_costs=1, cost_limit=10.0, kp=0.0, ki=0.0, kd=1.0,
                                            cost_smoothing=0.0)
    assert derivative_only.update([2.0])[0] == 0.0
    assert derivative_only.update([6.0])[0] == pytest.approx(4.0)  # rising, still under the limit
    assert derivative_only.update([3.0])[0] == 0.0  # falling: only increases push
    with_d = PIDLagrangeMultiplier(num_costs=1, cost_limit=10.0, kp=0.1, ki=0.01, kd=0.05)
    without_d = PIDLagrangeMultiplier(num_costs=1, cost_limit=10.0, kp=0.1, ki=0.01, kd=0.0)
    for cost in (2.0, 8.0, 9.8):  # approaching the limit fast
        with_d.update([cost]), without_d.update([cost])
    assert with_d.value[0] > without_d.value[0]


def test_make_multiplier_follows_the_config_and_pid_state_round_trips():
    assert isinstance(make_multiplier(build_config("trpo_lag"), 1), LagrangeMultiplier)
    config = build_config("trpo_lag", sets=["lagrange.method=pid", "lagrange.multiplier_init=0.5"])
    pid = make_multiplier(config, 2)
    assert isinstance(pid, PIDLagrangeMultiplier) and pid.value.tolist() == [0.5, 0.5]
    pid.update([30.0, 20.0])
    clone = make_multiplier(config, 2)
    clone.load_state_dict(pid.state_dict())
    assert np.array_equal(clone.update([26.0, 0.0]), pid.update([26.0, 0.0]))


# -- CPO on synthetic batches ------------------------------------------------------------------------------
@pytest.mark.parametrize("costs, case", [
    ([5.0, 5.0], "reward_only"),  # well under both limits (20): the plain TRPO step
    ([21.0, 21.0], "normal"),  # both violated a little: both bind
    ([18.0, 20.5], "normal"),  # one binds using its slack, the other must come down
    ([30.0, 10.0], "infeasible"),  # one violated beyond what one trust-region step can fix
    ([400.0, 400.0], "infeasible"),
])
def test_cpo_with_two_constraints(costs, case):
    """The synthetic batch's one-step reach is about 2 episode-cost units per constraint (limit 20, T = 50)."""
    policy = make_policy(num_costs=2)
    config = build_config("cpo", sets=["lagrange.cost_limit=20", "env.max_episode_steps=50", "trpo.critic_epochs=1"])
    batch = synthetic_batch(policy, size=1024)
    old_actor = copy.deepcopy(policy.actor)
    stats = CPO(policy, config, 1).update(batch, np.array(costs))
    assert stats["cpo_case"] == CASE_CODES[case] and stats[f"cpo_case_{case}_count"] == 1
    assert set(stats) >= {"cpo_lambda", "cpo_nu_0", "cpo_nu_1", "step_fraction", "dual_solve_ms", "update_ms"}
    assert 0.0 < stats["dual_solve_ms"] < stats["update_ms"]
    assert stats["line_search_accepted"] == 1.0
    assert true_mean_kl(old_actor, policy.actor, batch.obs) <= config.trpo.target_kl * (1 + 1e-5)
    c = np.array(costs) - 20.0
    assert [stats["cpo_c_0"], stats["cpo_c_1"]] == pytest.approx(c)  # logged in episode units
    nu = np.array([stats["cpo_nu_0"], stats["cpo_nu_1"]])
    predicted = np.array([stats["cpo_predicted_cost_change_0"], stats["cpo_predicted_cost_change_1"]])
    measured = np.array([stats["cpo_cost_change_0"], stats["cpo_cost_change_1"]])
    if case == "reward_only":
        assert np.all(nu == 0.0) and np.all(predicted < -c)
    elif case == "normal":
        assert stats["step_fraction"] == 1.0 and np.all(nu > 0.0)
        assert predicted == pytest.approx(-c, rel=1e-3)  # both linearised constraints are active: b'x = -c
        assert measured == pytest.approx(predicted, abs=0.1)
    else:
        assert stats["cpo_lambda"] == 0.0
        assert measured[0] < 0.0 and np.all(measured[c > 0] < 0.0)  # recovery lowers what is violated


def test_cpo_uses_the_runner_episode_length_for_c():
    policy = make_policy()
    algorithm = CPO(policy, build_config("cpo", sets=["trpo.critic_epochs=1"]), 1)
    assert algorithm.episode_length == 1000  # no env.max_episode_steps: the velocity tasks' limit
    stats = algorithm.update(synthetic_batch(policy), np.array([30.0]), mean_episode_length=50.0)
    assert stats["cpo_c_0"] == pytest.approx(5.0)


# -- through the runner on the toy task ----------------------------------------------------------------------
def rows_of(run_dir):
    return read_progress(run_dir / "progress.csv")


@pytest.mark.parametrize("algo", NEW_ALGOS + ["pid_trpo_lag"])
def test_new_algorithms_train_through_the_runner(tmp_path, toy_config, algo):
    extra = ["train.total_steps=6000", "env.max_episode_steps=50"]
    if algo == "pid_trpo_lag":
        algo, extra = "trpo_lag", extra + ["lagrange.method=pid"]
    assert algo in ALGORITHMS
    Runner(toy_config(algo, extra), tmp_path / "run").train()
    rows = rows_of(tmp_path / "run")
    assert len(rows) == 3
    assert all(np.isfinite(float(r["ep_cost"])) and np.isfinite(float(r["value_loss"])) for r in rows)
    assert float(rows[-1]["approx_kl"]) >= 0.0
    if algo == "trpo_lag":
        assert all(float(r["lagrange_multiplier"]) >= 0.0 for r in rows)
    if algo == "cpo":
        assert {"cpo_case", "cpo_lambda", "cpo_nu_0", "dual_solve_ms", "update_ms", "step_fraction"} <= set(rows[0])


@pytest.mark.parametrize("algo, extra", [("cpo", []), ("trpo_lag", ["lagrange.method=pid"])])
def test_resume_restores_algorithm_state(tmp_path, toy_config, algo, extra):
    settings = ["env.max_episode_steps=50"] + extra
    Runner(toy_config(algo, settings + ["train.total_steps=4000"]), tmp_path / "run").train()
    resumed = Runner(toy_config(algo, settings + ["train.total_steps=6000"]), tmp_path / "run", resume=True)
    saved = resumed.algorithm.state_dict()
    resumed.train()
    rows = rows_of(tmp_path / "run")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    if algo == "cpo":
        assert sum(saved["case_counts"].values()) == 2
        assert sum(int(float(rows[-1][f"cpo_case_{case}_count"])) for case in CASE_CODES) == 3
    else:
        assert saved["lagrange"]["multiplier"][0] == pytest.approx(float(rows[1]["lagrange_multiplier"]), rel=1e-5)


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
    """TRPO (unconstrained), TRPO-Lag and CPO on the toy task with the test suite's TOY_SETS (20 epochs)."""
    from conftest import TOY_SETS

    root = tmp_path_factory.mktemp("toy")
    torch.set_num_threads(1)
    runs = {}
    for algo in ("trpo", "trpo_lag", "cpo"):
        Runner(build_config(algo, sets=TOY_SETS + ["env.max_episode_steps=50"]), root / algo).train()
        runs[algo] = rows_of(root / algo)
    return runs


def test_trpo_lag_ends_under_the_cost_limit_where_trpo_does_not(toy_runs):
    trpo, lag = toy_runs["trpo"][-1], toy_runs["trpo_lag"][-1]
    assert float(trpo["ep_cost"]) > 30.0 and float(trpo["ep_return"]) > 30.0  # the task tempts: TRPO runs
    assert float(lag["ep_cost"]) < 10.0
    assert float(lag["lagrange_multiplier"]) > 0.0


def test_cpo_ends_at_the_cost_limit_and_stays_feasible(toy_runs):
    """CPO steers the linearised cost onto the limit, so it ends at 10 up to sampling noise.

    The final 40-episode mean has a standard error of about 0.45 at the limit (per-step cost rate 0.2 over
    50 steps), so a run that met the constraint may read slightly above 10: we allow 10 %, and ask the last
    five epochs together to be under 10.5. Unconstrained TRPO ends near 50 on the same settings.
    """
    rows = toy_runs["cpo"]
    costs = np.array([float(r["ep_cost"]) for r in rows])
    assert costs[-1] < 11.0
    assert costs[-5:].mean() < 10.5
    assert costs[-5:].mean() > 8.0  # and it uses the budget rather than giving up on reward
    returns = np.array([float(r["ep_return"]) for r in rows])
    assert returns[-1] > returns.min() + 5.0  # after the retreat to the limit, reward keeps improving along it
    # Once the cost is near or under the limit, the linearised problem is feasible nearly every update.
    settled = [r for r in rows if float(r["ep_cost"]) <= 11.0]
    feasible = [r for r in settled if int(float(r["cpo_case"])) in (CASE_CODES["normal"], CASE_CODES["reward_only"])]
    assert len(settled) >= 10 and len(feasible) >= 0.9 * len(settled)
    assert int(float(rows[-1]["cpo_case_infeasible_count"])) < len(rows) / 2
