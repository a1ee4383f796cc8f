import itertools
import logging

import cvxpy as cp
import numpy as np
import pytest
from conftest import slow_except

from saferl.maths import cpo_dual
from saferl.maths.cpo_dual import (
    CPODualSolution,
    cpo_recovery_weights,
    cpo_step,
    dual_program,
    jointly_reachable,
    primal_step,
    solve_cpo_dual,
)


def random_subproblem(rng, dim, num_constraints):
    """Explicit (H, g, B, c, delta) with mixed scales, so the solver's normalisation is exercised."""
    root = rng.standard_normal((dim, dim))
    H = root @ root.T + 0.1 * np.eye(dim)
    g = rng.standard_normal(dim) * rng.uniform(0.1, 10.0)
    B = rng.standard_normal((dim, num_constraints)) * rng.uniform(0.1, 10.0, num_constraints)
    delta = rng.uniform(0.001, 0.1)
    hinv_g, hinv_b = np.linalg.solve(H, g), np.linalg.solve(H, B)
    reach = np.sqrt(2.0 * delta * np.einsum("ik,ik->k", B, hinv_b))
    c = rng.uniform(-1.2, 1.0, num_constraints) * reach
    return H, g, B, c, delta, hinv_g, hinv_b


def dual_inputs(g, B, hinv_g, hinv_b):
    return g @ hinv_g, B.T @ hinv_g, B.T @ hinv_b


def closed_form_k1(q, r, s, c, delta):
    """CPO's K = 1 dual optimum, derived by hand for: max g'x s.t. b'x + c <= 0, (1/2)x'Hx <= delta.

    For fixed lam the best nu is max(0, (lam c + r) / s). Where it is positive the dual reduces to
    f_a(lam) = -(A / lam + B lam) / 2 + r c / s with A = q - r^2/s, B = 2 delta - c^2/s; where it is zero, to
    f_b(lam) = -(q / lam + 2 delta lam) / 2. The region nu > 0 is lam > -r/c for c > 0 and lam < -r/c for
    c < 0. Both pieces are concave, so each is maximised at its stationary point projected onto its region.
    Returns None when infeasible.
    """
    if c > 0.0 and c * c / s - 2.0 * delta > 0.0:
        return None
    lam_b_free = np.sqrt(q / (2.0 * delta))
    if c < 0.0 and c * c / s - 2.0 * delta > 0.0:  # the whole trust region satisfies the constraint
        return lam_b_free, 0.0
    A, B = q - r * r / s, 2.0 * delta - c * c / s
    switch = max(0.0, -r / c)
    region_a, region_b = ((switch, np.inf), (0.0, switch)) if c > 0.0 else ((0.0, switch), (switch, np.inf))
    lam_a = float(np.clip(np.sqrt(A / B), *region_a))
    lam_b = float(np.clip(lam_b_free, *region_b))

    def f_a(lam):
        return -np.inf if lam <= 0.0 else -0.5 * (A / lam + B * lam) + r * c / s

    def f_b(lam):
        return -np.inf if lam <= 0.0 else -0.5 * (q / lam + 2.0 * delta * lam)

    lam = lam_a if f_a(lam_a) >= f_b(lam_b) else lam_b
    return lam, max(0.0, (lam * c + r) / s)


def primal_optimum(H, g, B, c, delta):
    """Independent solve of the primal QCQP in x; None when infeasible."""
    x = cp.Variable(len(g))
    constraints = [B.T @ x + c <= 0, 0.5 * cp.quad_form(x, cp.psd_wrap(H)) <= delta]
    problem = cp.Problem(cp.Maximize(g @ x), constraints)
    problem.solve(solver=cp.CLARABEL)
    if problem.status == cp.INFEASIBLE:
        return None
    assert problem.status == cp.OPTIMAL
    return problem.value


@pytest.mark.slow
def test_k1_matches_closed_form_and_primal_is_feasible():
    rng = np.random.default_rng(0)
    checked, cases = 0, set()
    while checked < 200:
        H, g, B, c, delta, hinv_g, hinv_b = random_subproblem(rng, dim=5, num_constraints=1)
        q, r, S = dual_inputs(g, B, hinv_g, hinv_b)
        oracle = closed_form_k1(q, r[0], S[0, 0], c[0], delta)
        if oracle is None:
            continue
        solution = solve_cpo_dual(q, r, S, c, delta)
        assert solution.feasible
        lam, nu = oracle
        assert solution.lam == pytest.approx(lam, rel=1e-6, abs=1e-6)
        assert solution.nu[0] == pytest.approx(nu, rel=1e-6, abs=1e-6 * np.sqrt(q / S[0, 0]))
        x = primal_step(hinv_g, hinv_b, solution)
        assert B[:, 0] @ x + c[0] <= 1e-6 * np.sqrt(2.0 * delta * S[0, 0])
        assert 0.5 * x @ H @ x == pytest.approx(delta, rel=1e-6)
        cases.add(solution.case)
        checked += 1
    assert cases == {"normal", "reward_only"}


def test_k1_scalar_inputs_and_closed_form_cases():
    solution = solve_cpo_dual(2.0, 0.5, 1.0, 0.1, 0.01)
    assert isinstance(solution, CPODualSolution) and solution.case == "normal"
    assert solution.lam == pytest.approx(np.sqrt(1.75 / 0.01), rel=1e-7)
    assert solution.nu[0] == pytest.approx(np.sqrt(1.75 / 0.01) * 0.1 + 0.5, rel=1e-7)
    whole_region_safe = solve_cpo_dual(2.0, 0.5, 1.0, -0.5, 0.01)
    assert whole_region_safe.case == "reward_only"
    assert whole_region_safe.lam == pytest.approx(np.sqrt(2.0 / 0.02)) and whole_region_safe.nu[0] == 0.0


@pytest.mark.parametrize("num_constraints", slow_except([2, 3], {2}))
def test_multi_constraint_kkt_and_primal_objective(num_constraints):
    rng = np.random.default_rng(num_constraints)
    checked, binding, infeasible = 0, 0, 0
    while checked < 15:
        H, g, B, c, delta, hinv_g, hinv_b = random_subproblem(rng, dim=6, num_constraints=num_constraints)
        q, r, S = dual_inputs(g, B, hinv_g, hinv_b)
        solution = solve_cpo_dual(q, r, S, c, delta)
        if not solution.feasible:
            assert primal_optimum(H, g, B, c, delta) is None
            infeasible += 1
            continue
        x = primal_step(hinv_g, hinv_b, solution)
        reach = np.sqrt(2.0 * delta * np.diag(S))
        slack = (B.T @ x + c) / reach
        assert solution.lam > 0.0 and np.all(solution.nu >= 0.0)
        assert np.all(slack <= 1e-6)
        assert np.all(np.abs(solution.nu * np.sqrt(S.diagonal() / q) * slack) <= 1e-6)
        assert 0.5 * x @ H @ x == pytest.approx(delta, rel=1e-6)
        assert g @ x == pytest.approx(primal_optimum(H, g, B, c, delta), rel=1e-5, abs=1e-7)
        binding += solution.case == "normal"
        checked += 1
    assert binding >= 5 and infeasible >= 1


def test_infeasibility_detection_k1_and_recovery_weight():
    rng = np.random.default_rng(7)
    for _ in range(50):
        q, r = rng.uniform(0.1, 10.0), rng.standard_normal()
        s, delta = rng.uniform(0.1, 10.0), rng.uniform(0.001, 0.1)
        c = np.sqrt(2.0 * delta * s) * rng.uniform(1.001, 3.0)
        assert closed_form_k1(q, r, s, c, delta) is None
        solution = solve_cpo_dual(q, r, s, c, delta)
        assert not solution.feasible and solution.case == "infeasible"
        assert cpo_recovery_weights(s, c, delta)[0] == pytest.approx(np.sqrt(2.0 * delta / s), rel=1e-6)


def test_k2_jointly_infeasible_is_detected_and_recovery_reduces_violation():
    # Each constraint alone is reachable (offsets 0.8 of a full step), but they pull in directions 120 degrees
    # apart, so meeting both needs a step of length 0.8 / cos(60 deg) = 1.6 trust-region radii.
    angle = np.deg2rad(120.0)
    B = np.array([[1.0, np.cos(angle)], [0.0, np.sin(angle)]])
    H, g, delta = np.eye(2), np.array([1.0, 0.3]), 0.02
    c = 0.8 * np.sqrt(2.0 * delta) * np.ones(2)
    S = B.T @ B
    assert not jointly_reachable(S, c, delta)
    solution = solve_cpo_dual(g @ g, B.T @ g, S, c, delta)
    assert not solution.feasible and solution.case == "infeasible"
    weights = cpo_recovery_weights(S, c, delta)
    x = -B @ weights
    assert 0.5 * x @ H @ x <= delta * (1 + 1e-6)
    violation_after = np.clip(B.T @ x + c, 0.0, None).sum()
    assert violation_after < 0.5 * c.sum()
    assert weights[0] == pytest.approx(weights[1], rel=1e-5)  # symmetric problem, symmetric recovery
    shrunk = solve_cpo_dual(g @ g, B.T @ g, S, 0.4 * c, delta)
    assert shrunk.feasible


def test_zero_constraint_gradient_is_handled():
    S = np.diag([1.0, 0.0])
    within_budget = solve_cpo_dual(2.0, np.array([0.5, 0.0]), S, np.array([-1.0, -0.1]), 0.01)
    assert within_budget.case == "reward_only" and np.all(within_budget.nu == 0.0)
    stuck = solve_cpo_dual(2.0, np.array([0.5, 0.0]), S, np.array([-1.0, 0.1]), 0.01)
    assert stuck.case == "infeasible"
    assert cpo_recovery_weights(S, np.array([0.5, 0.1]), 0.01)[1] == 0.0


def test_dual_program_is_dpp_and_cached():
    first = dual_program(2)
    solve_cpo_dual(*dual_inputs_from_seed(2))
    assert dual_program(2) is first and first.problem.is_dpp()
    assert dual_program(3) is not first


def dual_inputs_from_seed(num_constraints):
    rng = np.random.default_rng(123)
    _, g, B, c, delta, hinv_g, hinv_b = random_subproblem(rng, dim=6, num_constraints=num_constraints)
    return (*dual_inputs(g, B, hinv_g, hinv_b), 0.0 * c - 1e-3, delta)


# -- no reward gradient (q = 0: conjugate gradient returns H^-1 g = 0 when ||g||^2 < 1e-10) -----------------------
def shortest_feasible_step(H, B, c):
    """Independent solve of min (1/2) x'Hx s.t. B'x + c <= 0."""
    x = cp.Variable(H.shape[0])
    problem = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, cp.psd_wrap(H))), [B.T @ x + c <= 0])
    problem.solve(solver=cp.CLARABEL)
    return x.value


@pytest.mark.parametrize("num_constraints, q", [(1, 0.0), (2, 0.0), (3, 0.0), (2, 1e-13), (2, -1e-15)])
def test_zero_reward_gradient_with_violated_constraint_takes_the_shortest_feasible_step(num_constraints, q):
    rng = np.random.default_rng(num_constraints)
    checked = 0
    while checked < 5:
        H, _, B, c, delta, _, hinv_b = random_subproblem(rng, dim=6, num_constraints=num_constraints)
        S = B.T @ hinv_b
        reach = np.sqrt(2.0 * delta * np.diag(S))
        c = np.abs(c) if checked % 2 == 0 else c  # some with every constraint violated
        if np.all(c <= 0.0) or not jointly_reachable(S, c, delta):
            continue
        solution, x = cpo_step(q, np.zeros(num_constraints), S, c, delta, np.zeros(6), hinv_b)
        assert solution.feasible and solution.case == "no_reward_gradient" and solution.lam == 0.0
        assert np.all((B.T @ x + c) / reach <= 1e-7)  # the linearised violation is gone ...
        assert 0.5 * x @ H @ x <= delta * (1 + 1e-7)  # ... inside the trust region ...
        oracle = shortest_feasible_step(H, B, c)
        assert 0.5 * x @ H @ x == pytest.approx(0.5 * oracle @ H @ oracle, rel=1e-5)  # ... by the least change
        np.testing.assert_allclose(primal_step(np.zeros(6), hinv_b, solution), x)
        checked += 1


def test_zero_reward_gradient_with_unreachable_constraint_recovers():
    b, delta = np.sqrt(2.0), 0.01  # H = 1, so H^-1 b = b and s = 2
    c = 3.0 * np.sqrt(2.0 * delta * 2.0)  # three full trust-region steps away
    solution, x = cpo_step(0.0, [0.0], [[2.0]], [c], delta, np.zeros(1), np.array([[b]]))
    assert solution.case == "infeasible" and not solution.feasible
    assert x[0] == pytest.approx(-np.sqrt(2.0 * delta))  # CPO's recovery: a full trust-region step against b


@pytest.mark.parametrize("q", [0.0, 1e-14])
def test_zero_reward_gradient_within_limits_takes_no_step(q):
    rng = np.random.default_rng(5)
    _, _, B, _, delta, _, hinv_b = random_subproblem(rng, dim=4, num_constraints=2)
    c = np.array([-0.5, 0.0]) * np.sqrt(2.0 * delta * np.diag(B.T @ hinv_b))
    solution, x = cpo_step(q, np.zeros(2), B.T @ hinv_b, c, delta, np.zeros(4), hinv_b)
    assert solution.case == "no_reward_gradient" and solution.feasible
    assert np.all(x == 0.0) and np.all(solution.nu == 0.0)


def test_non_finite_q_is_a_clear_error():
    with pytest.raises(ValueError, match="finite"):
        solve_cpo_dual(float("nan"), 0.5, 1.0, 0.1, 0.01)


@pytest.mark.parametrize("episode_cost", [5.0, 21.0])
def test_cpo_update_with_all_zero_reward_advantages(episode_cost):
    """q is exactly 0 here; before the fix solve_cpo_dual raised ValueError and the update with it."""
    from test_trust_region_algos import NO_EPISODE, make_algorithm, make_policy, synthetic_batch

    from saferl.algorithms.cpo import CASE_CODES

    policy = make_policy()
    # per_step: a gap of 1 in 50 steps is within one step's reach (in episode units it would be infeasible).
    algorithm = make_algorithm("cpo", policy, ["env.cost_limit=20", "env.max_episode_steps=50",
                                               "cpo.critic_epochs=1", "cpo.cost_scale=per_step", "cpo.margin_lr=0"],
                               cost_limit=20.0)
    batch = synthetic_batch(policy)
    batch.reward_advantages.zero_()
    stats = {key: value[0] for key, value in algorithm.update(batch, np.array([[episode_cost]]), NO_EPISODE).items()}
    assert stats["cpo_q"] == 0.0 and stats["cpo_case"] == CASE_CODES["no_reward_gradient"]
    assert stats["line_search_accepted"] == 1.0 and stats["cpo_dual_solver"] == 0
    if episode_cost < 20.0:
        assert stats["step_norm"] == 0.0
    else:  # 1 above the limit, about half of what one step can fix: the least change that meets the limit
        assert stats["step_norm"] > 0.0
        assert stats["cpo_predicted_cost_change_0"] == pytest.approx(-1.0, rel=1e-6)
        assert stats["cpo_cost_change_0"] < 0.0


# -- solver failures -----------------------------------------------------------------------------------------
def boundary_cases():
    """216 K = 2 subproblems (H = I) with nearly collinear constraints, one tangent to the trust region.

    b1 = e1 with its half-space touching the trust region exactly at x* = -sqrt(2 delta) e1, b2 at angle
    theta to it (times a scale) through the same point: x* is the only feasible point, there is no Slater
    point and the dual optimum is not attained. Clarabel raised SolverError on 16 of these 216 (run alone) before the
    fallbacks (cvxpy 1.9.3, Clarabel through cvxpy, this exact order: solves share cached problems).
    """
    delta = 0.01
    for theta, phi, scale, tilt in itertools.product([1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7], np.linspace(0.1, 3.0, 6),
                                                     [1e-3, 1e3], [0.0, 0.5, 1.0]):
        B = np.stack([[1.0, 0.0, 0.0], [np.cos(theta), np.sin(theta), 0.0]], axis=1) * [1.0, scale]
        g = np.array([np.cos(phi), np.sin(phi) * np.cos(tilt), np.sin(phi) * np.sin(tilt)])
        x_star = np.array([-np.sqrt(2.0 * delta), 0.0, 0.0])
        yield g, B, -B.T @ x_star, delta, x_star


@pytest.mark.slow
def test_degenerate_boundary_sweep_returns_the_only_feasible_point():
    solvers = set()
    for g, B, c, delta, x_star in boundary_cases():
        solution, x = cpo_step(g @ g, B.T @ g, B.T @ B, c, delta, g, B)
        radius = np.sqrt(2.0 * delta)
        assert 0.5 * x @ x <= delta * (1 + 1e-4)
        assert np.all((B.T @ x + c) / (radius * np.linalg.norm(B, axis=0)) <= 1e-4)
        assert np.linalg.norm(x - x_star) <= 1e-2 * radius
        solvers.add(solution.solver)
    assert solvers <= set(cpo_dual.SOLVER_CODES), solvers  # each one a code of the logged cpo_dual_solver column


def failing_solvers(monkeypatch, *names):
    """Make cvxpy raise SolverError for the named solvers, as Clarabel does on degenerate problems."""
    original = cp.Problem.solve

    def solve(problem, *args, solver=None, **kwargs):
        if solver in names:
            raise cp.error.SolverError(f"Solver {solver!r} failed (simulated)")
        return original(problem, *args, solver=solver, **kwargs)

    monkeypatch.setattr(cp.Problem, "solve", solve)
    monkeypatch.setattr(cpo_dual, "_warned", set())


@pytest.mark.parametrize("failing, expected", [((cp.CLARABEL,), "scs"), ((cp.CLARABEL, cp.SCS), "active_set")])
def test_dual_falls_back_and_logs_once(monkeypatch, caplog, failing, expected):
    rng = np.random.default_rng(11)
    instances = []
    while len(instances) < 6:
        H, g, B, c, delta, hinv_g, hinv_b = random_subproblem(rng, dim=5, num_constraints=2)
        q, r, S = dual_inputs(g, B, hinv_g, hinv_b)
        reference = solve_cpo_dual(q, r, S, c, delta)
        if reference.case == "normal":
            instances.append(((q, r, S, c, delta), reference, (hinv_g, hinv_b)))
    failing_solvers(monkeypatch, *failing)
    with caplog.at_level(logging.WARNING, logger="saferl.maths.cpo_dual"):
        for inputs, reference, (hinv_g, hinv_b) in instances:
            solution = solve_cpo_dual(*inputs)
            assert solution.case == "normal" and solution.solver == expected
            assert cpo_dual.SOLVER_CODES[solution.solver] > cpo_dual.SOLVER_CODES["clarabel"]
            x, x_ref = primal_step(hinv_g, hinv_b, solution), primal_step(hinv_g, hinv_b, reference)
            np.testing.assert_allclose(x, x_ref, rtol=1e-6, atol=1e-9 * np.linalg.norm(x_ref))
    dual_warnings = [r for r in caplog.records if "dual fell back" in r.getMessage()]
    assert len(dual_warnings) == 1  # once, however many updates fall back


def test_every_solver_failing_still_gives_a_safe_step(monkeypatch, caplog):
    failing_solvers(monkeypatch, cp.CLARABEL, cp.SCS)
    with caplog.at_level(logging.WARNING, logger="saferl.maths.cpo_dual"):
        for g, B, c, delta, x_star in itertools.islice(boundary_cases(), 0, 216, 12):
            solution, x = cpo_step(g @ g, B.T @ g, B.T @ B, c, delta, g, B)
            assert solution.solver in ("shortcut", "active_set", "shrunk_radius", "single_constraint")
            assert 0.5 * x @ x <= delta * (1 + 1e-9)
            assert np.linalg.norm(x - x_star) <= 1e-2 * np.sqrt(2.0 * delta)
        # K = 2 recovery with no conic solver: CPO's K = 1 step against the most violated constraint
        weights = cpo_recovery_weights(np.eye(2), np.array([0.5, 0.3]), 0.02)
        np.testing.assert_allclose(weights, [0.2, 0.0])
    assert any("most violated" in r.getMessage() for r in caplog.records)
