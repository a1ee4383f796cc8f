import cvxpy as cp
import numpy as np
import pytest

from saferl.maths.cpo_dual import (
    CPODualSolution,
    benchmark_dual,
    cpo_recovery_weights,
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


@pytest.mark.parametrize("num_constraints", [2, 3])
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
    for k in (1, 2):
        print(f"median solve_cpo_dual time K={k}: {benchmark_dual(k, n_calls=30):.2f} ms")


def dual_inputs_from_seed(num_constraints):
    rng = np.random.default_rng(123)
    _, g, B, c, delta, hinv_g, hinv_b = random_subproblem(rng, dim=6, num_constraints=num_constraints)
    return (*dual_inputs(g, B, hinv_g, hinv_b), 0.0 * c - 1e-3, delta)
