"""CPO's linearised subproblem, solved through its (K + 1)-dimensional Lagrangian dual.

Each CPO update (Achiam et al., 2017) maximises g'x subject to b_i'x + c_i <= 0 (i = 1..K) and
(1/2) x'Hx <= delta. The dual needs H only through q = g'H^-1 g, r = B'H^-1 g and S = B'H^-1 B, which conjugate
gradient supplies; its cvxpy form is DPP (built once per K, re-solved), on data normalised to a unit-diagonal
Gram and delta = 1/2. When the constraints cannot be met inside the trust region the step recovers (reduces
the summed normalised violation); with no reward gradient it takes the shortest feasible step. Solver failures
fall back Clarabel -> SCS -> exact KKT point of an active set -> shrunk radius -> recovery, each logged once and
named in the solution's `solver` field.

docs/cpo-dual.md derives each of these (signs, the DPP perspective, normalisation, feasibility, recovery, the
zero-gradient case, the fallbacks). The cached cvxpy problems carry parameter state: not thread-safe.
"""

from __future__ import annotations

import functools
import itertools
import logging
from typing import NamedTuple

import cvxpy as cp
import numpy as np

logger = logging.getLogger(__name__)

SOLVER = cp.CLARABEL  # interior point, deterministic, ships with cvxpy
SOLVER_OPTIONS = {"tol_gap_abs": 1e-8, "tol_gap_rel": 1e-8, "tol_feas": 1e-8, "max_iter": 200}
FALLBACK_SOLVER = cp.SCS  # first-order conic solver, also shipped with cvxpy; polishing makes up its accuracy
FALLBACK_SOLVER_OPTIONS = {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 20000}
GRAM_JITTER = 1e-12  # added to eigenvalues of the unit-diagonal Grams: keeps singular S solvable
FEASIBILITY_TOL = 1e-9  # relative slack when comparing the shortest feasible step with the trust region
# Normalised multipliers above these count as active when guessing the active set to polish, loosest last:
# interior-point multipliers of inactive constraints decay slowly (1e-8..1e-7 is common).
ACTIVE_SET_THRESHOLDS = (1e-8, 1e-6, 1e-4)
KKT_TOL = 1e-9  # allowed violation (in trust-region radii) of an inactive constraint when polishing
RECOVERY_TIE_BREAK = 1e-6
NO_GRADIENT_Q = 1e-12  # q = g'H^-1 g below this: no usable reward gradient (CG gives exactly 0 for ||g||^2 < 1e-10)
SHRUNK_DELTA = 1.0 - 1e-6  # trust-region factor of the last re-solve: moves a degenerate boundary point off it
MAX_ENUMERATED_CONSTRAINTS = 10  # active-set enumeration (2^K closed-form solves) only up to this K
_OK_STATUSES = (cp.OPTIMAL, cp.OPTIMAL_INACCURATE)
_UNBOUNDED_STATUSES = (cp.UNBOUNDED, cp.UNBOUNDED_INACCURATE)

# Which case produced a step, and which method produced the multipliers (numbers for the logs; a larger
# solver code is a later fallback). "shortcut": exact answer without a conic solve.
CASE_CODES = {"reward_only": 0, "normal": 1, "infeasible": 2, "no_reward_gradient": 3}
SOLVER_CODES = {"shortcut": 0, "clarabel": 1, "scs": 2, "active_set": 3, "shrunk_radius": 4, "single_constraint": 5}
_warned: set[str] = set()


class SubSolveFailed(RuntimeError):
    """A conic sub-solve failed with every solver; callers fall back to a closed form."""


class CPODualSolution(NamedTuple):
    """Dual optimum of the CPO subproblem; the step is x = (H^-1 g - H^-1 B nu) / lam when feasible.

    case: "reward_only" (nu = 0, the plain TRPO step, lam = sqrt(q / (2 delta))), "normal" (some
    constraint binds), "infeasible" (lam = 0, nu = 0: use cpo_recovery_weights instead) or
    "no_reward_gradient" (q ~ 0, lam = 0, and nu holds the weights of the shortest step x = -H^-1 B nu
    that meets the linearised constraints: zero when none is violated). solver: see SOLVER_CODES.
    """

    lam: float
    nu: np.ndarray
    feasible: bool
    case: str
    solver: str = "shortcut"


class DualProgram(NamedTuple):
    """The cached normalised dual for one K: minimise the dual function over (lam, nu)."""

    problem: cp.Problem
    gram_factor_g: cp.Parameter
    gram_factor_b: cp.Parameter
    offsets: cp.Parameter
    lam: cp.Variable
    nu: cp.Variable


class FeasibilityProgram(NamedTuple):
    """The cached normalised shortest-feasible-step dual: max_{mu >= 0} mu'c - (1/2) mu'S mu."""

    problem: cp.Problem
    constraint_factor: cp.Parameter
    offsets: cp.Parameter
    mu: cp.Variable


class RecoveryProgram(NamedTuple):
    """The cached normalised recovery problem over the weights w >= 0."""

    problem: cp.Problem
    constraint_factor: cp.Parameter
    constraint_gram: cp.Parameter
    offsets: cp.Parameter
    weights: cp.Variable


@functools.cache
def dual_program(num_constraints: int) -> DualProgram:
    """Build the DPP dual once per K (normalised: q = 1, delta = 1/2); later calls only set parameters."""
    k = num_constraints
    gram_factor_g = cp.Parameter(k + 1)
    gram_factor_b = cp.Parameter((k + 1, k))
    offsets = cp.Parameter(k)
    lam = cp.Variable(nonneg=True)
    nu = cp.Variable(k, nonneg=True)
    dual_value = 0.5 * cp.quad_over_lin(gram_factor_g - gram_factor_b @ nu, lam) + 0.5 * lam - offsets @ nu
    problem = cp.Problem(cp.Minimize(dual_value))
    return DualProgram(problem, gram_factor_g, gram_factor_b, offsets, lam, nu)


@functools.cache
def feasibility_program(num_constraints: int) -> FeasibilityProgram:
    """Build the DPP shortest-feasible-step dual once per K (normalised, so feasible iff value <= 1/2)."""
    constraint_factor = cp.Parameter((num_constraints, num_constraints))
    offsets = cp.Parameter(num_constraints)
    mu = cp.Variable(num_constraints, nonneg=True)
    objective = cp.Maximize(offsets @ mu - 0.5 * cp.sum_squares(constraint_factor @ mu))
    return FeasibilityProgram(cp.Problem(objective), constraint_factor, offsets, mu)


@functools.cache
def recovery_program(num_constraints: int) -> RecoveryProgram:
    """Build the DPP recovery problem once per K (normalised trust region: w'S w <= 1)."""
    constraint_factor = cp.Parameter((num_constraints, num_constraints))
    constraint_gram = cp.Parameter((num_constraints, num_constraints))
    offsets = cp.Parameter(num_constraints)
    weights = cp.Variable(num_constraints, nonneg=True)
    step_size_sq = cp.sum_squares(constraint_factor @ weights)
    violation = cp.sum(cp.pos(offsets - constraint_gram @ weights))
    problem = cp.Problem(cp.Minimize(violation + RECOVERY_TIE_BREAK * step_size_sq), [step_size_sq <= 1.0])
    return RecoveryProgram(problem, constraint_factor, constraint_gram, offsets, weights)


def psd_factor(matrix: np.ndarray) -> np.ndarray:
    """F with F'F = matrix, clipping negative eigenvalues: CG-estimated Grams can be slightly indefinite."""
    eigenvalues, eigenvectors = np.linalg.eigh(0.5 * (matrix + matrix.T))
    eigenvalues = np.clip(eigenvalues, 0.0, None) + GRAM_JITTER
    return np.sqrt(eigenvalues)[:, None] * eigenvectors.T


def normalised_offsets(s_diag: np.ndarray, c: np.ndarray, delta: float) -> np.ndarray:
    """c_i / sqrt(2 delta s_i): > 1 is unreachable, < -1 never binds; s_i = 0 maps to +-inf by c's sign."""
    reach = np.sqrt(2.0 * delta * np.clip(s_diag, 0.0, None))
    safe_reach = np.where(reach > 0.0, reach, 1.0)
    return np.where(reach > 0.0, c / safe_reach, np.where(c > 0.0, np.inf, -np.inf))


def _validated(r, S, c, delta) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = np.atleast_1d(np.asarray(r, dtype=np.float64))
    c = np.atleast_1d(np.asarray(c, dtype=np.float64))
    S = np.atleast_2d(np.asarray(S, dtype=np.float64))
    k = c.shape[0]
    if c.ndim != 1 or r.shape != (k,) or S.shape != (k, k):
        raise ValueError(f"need r, c of shape (K,), S of shape (K, K); got {r.shape}, {c.shape}, {S.shape}")
    if not delta > 0.0:
        raise ValueError(f"delta must be positive, got {delta}")
    return r, S, c


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning("CPO dual: %s (logged once; `cpo_dual_solver` counts later ones)", message)


def _solve(problem: cp.Problem, what: str, accept=_OK_STATUSES) -> str:
    """Solve with Clarabel, else SCS; returns the solver's name. Raises SubSolveFailed when both fail."""
    failures = []
    for name, solver, options in (("clarabel", SOLVER, SOLVER_OPTIONS), ("scs", FALLBACK_SOLVER,
                                                                          FALLBACK_SOLVER_OPTIONS)):
        try:
            problem.solve(solver=solver, **options)
        except cp.error.SolverError as error:
            failures.append(f"{name}: {error}")
            continue
        if problem.status in accept:
            if failures:
                _warn_once(f"{what}:{name}", f"the {what} fell back to {name} ({'; '.join(failures)})")
            return name
        failures.append(f"{name}: status {problem.status!r}")
    raise SubSolveFailed(f"the {what} failed with every solver ({'; '.join(failures)})")


def _unit_diagonal(S: np.ndarray) -> np.ndarray:
    inv_scale = 1.0 / np.sqrt(np.diag(S))
    return S * np.outer(inv_scale, inv_scale)


def _active_sets(k: int):
    """Every active-set mask over k constraints, smallest sets first (for closed-form enumeration)."""
    if k > MAX_ENUMERATED_CONSTRAINTS:
        return
    for size in range(k + 1):
        for members in itertools.combinations(range(k), size):
            mask = np.zeros(k, dtype=bool)
            mask[list(members)] = True
            yield mask


def polish_shortest_step(S: np.ndarray, offsets: np.ndarray, active: np.ndarray):
    """Exact shortest feasible step on a guessed active set (normalised, unit-diagonal S), or None.

    min (1/2)||y||^2 s.t. A'y + c <= 0 with A'A = S: on the active set mu_A = S_AA^-1 c_A; kept only if
    mu_A >= 0 and every constraint holds at y = -A mu (then it is the optimum, by convexity).
    """
    mu = np.zeros(len(offsets))
    try:
        mu[active] = np.linalg.solve(S[np.ix_(active, active)], offsets[active])
    except np.linalg.LinAlgError:
        return None
    if np.any(mu < 0.0) or np.any(offsets - S @ mu > KKT_TOL):
        return None
    return mu


def shortest_feasible_weights(S: np.ndarray, c: np.ndarray, delta: float) -> tuple[np.ndarray | None, str]:
    """Weights w >= 0 of the shortest x = -H^-1 B w with B'x + c <= 0 inside the trust region, or None.

    Needs diag(S) > 0. Solves the feasibility dual (module docstring) in normalised units, polishes it on
    its active set, and falls back to enumerating active sets. Returns (weights or None, solver name).
    """
    s_diag = np.diag(S)
    offsets = normalised_offsets(s_diag, c, delta)
    to_weights = np.sqrt(2.0 * delta / s_diag)
    if np.all(offsets <= 0.0):
        return np.zeros(len(c)), "shortcut"  # x = 0 already satisfies every constraint
    if np.any(offsets > 1.0):
        return None, "shortcut"
    unit_S = _unit_diagonal(S)
    if len(c) == 1:
        mu, solver = np.clip(offsets, 0.0, None), "shortcut"
    else:
        program = feasibility_program(len(c))
        program.constraint_factor.value = psd_factor(unit_S)
        program.offsets.value = offsets
        try:
            solver = _solve(program.problem, "feasibility check", _OK_STATUSES + _UNBOUNDED_STATUSES)
        except SubSolveFailed:
            solver, raw_mu = "active_set", None
        else:
            if program.problem.status in _UNBOUNDED_STATUSES:
                return None, solver  # the half-spaces alone do not intersect
            raw_mu = np.asarray(program.mu.value)
        mu = None
        if raw_mu is not None:
            for threshold in ACTIVE_SET_THRESHOLDS:
                mu = polish_shortest_step(unit_S, offsets, raw_mu > threshold)
                if mu is not None:
                    break
            mu = np.clip(raw_mu, 0.0, None) if mu is None else mu
        else:
            candidates = (polish_shortest_step(unit_S, offsets, active) for active in _active_sets(len(c)))
            mu = next((m for m in candidates if m is not None), None)
            if mu is None:
                _warn_once("feasibility:active_set", "no active set solves the shortest-step problem")
                raise SubSolveFailed("shortest feasible step: every solver and every active set failed")
            _warn_once("feasibility:active_set", "the feasibility check fell back to active-set enumeration")
    if 0.5 * mu @ unit_S @ mu > 0.5 * (1.0 + FEASIBILITY_TOL):
        return None, solver
    return mu * to_weights, solver


def jointly_reachable(S: np.ndarray, c: np.ndarray, delta: float) -> bool:
    """Whether {x : (1/2) x'Hx <= delta, B'x + c <= 0} is nonempty, using only S = B'H^-1 B (diag(S) > 0)."""
    return shortest_feasible_weights(S, c, delta)[0] is not None


def solve_cpo_dual(q: float, r, S, c, delta: float) -> CPODualSolution:
    """Solve CPO's dual for K >= 1 constraints: maximise g'x s.t. B'x + c <= 0, (1/2) x'Hx <= delta.

    q = g'H^-1 g, r = B'H^-1 g, S = B'H^-1 B, c = J_C(pi_old) - limits (positive means violated).
    Accepts scalars for K = 1. Infeasible problems return feasible=False; see cpo_recovery_weights.
    q < NO_GRADIENT_Q gives the "no_reward_gradient" case. Solver failures fall back (module docstring).
    """
    r, S, c = _validated(r, S, c, delta)
    if not np.isfinite(q):
        raise ValueError(f"q = g'H^-1 g must be finite, got {q}")
    try:
        return _solve_dual(q, r, S, c, delta)
    except SubSolveFailed as error:
        _warn_once("shrunk_radius", f"{error}; re-solving with the trust region shrunk by {SHRUNK_DELTA}")
    try:
        return _solve_dual(q, r, S, c, delta * SHRUNK_DELTA)._replace(solver="shrunk_radius")
    except SubSolveFailed as error:
        _warn_once("last_resort", f"{error} even with a shrunk trust region; taking the recovery step")
    return CPODualSolution(0.0, np.zeros(len(c)), False, "infeasible", "single_constraint")


def _solve_dual(q: float, r: np.ndarray, S: np.ndarray, c: np.ndarray, delta: float) -> CPODualSolution:
    k = len(c)
    s_diag = np.diag(S)
    offsets = normalised_offsets(s_diag, c, delta)
    infeasible = CPODualSolution(0.0, np.zeros(k), False, "infeasible")
    if np.any(offsets > 1.0):
        return infeasible
    can_bind = np.flatnonzero(offsets >= -1.0)
    if q < NO_GRADIENT_Q:
        return _shortest_step_solution(S, c, delta, can_bind)
    reward_only = CPODualSolution(float(np.sqrt(q / (2.0 * delta))), np.zeros(k), True, "reward_only")
    if len(can_bind) == 0:
        return reward_only
    S_sub, r_sub = S[np.ix_(can_bind, can_bind)], r[can_bind]
    solver = "shortcut"
    if len(can_bind) > 1:
        weights, solver = shortest_feasible_weights(S_sub, c[can_bind], delta)
        if weights is None:
            return infeasible._replace(solver=solver)

    inv_scale = 1.0 / np.sqrt(np.concatenate(([q], s_diag[can_bind])))
    gram = np.block([[np.array([[q]]), r_sub[None, :]], [r_sub[:, None], S_sub]])
    gram *= np.outer(inv_scale, inv_scale)  # unit diagonal: [[1, r~'], [r~, S~]]
    lam_normalised, nu_normalised, dual_solver = solve_normalised_dual(gram, offsets[can_bind])
    solver = max(solver, dual_solver, key=SOLVER_CODES.__getitem__)
    nu_normalised = np.where(nu_normalised > ACTIVE_SET_THRESHOLDS[0], nu_normalised, 0.0)
    if not np.any(nu_normalised > 0.0):
        return reward_only._replace(solver=solver)
    nu = np.zeros(k)
    nu[can_bind] = nu_normalised * np.sqrt(q / s_diag[can_bind])
    lam = float(lam_normalised * np.sqrt(q / (2.0 * delta)))
    return CPODualSolution(lam, nu, True, "normal", solver)


def _shortest_step_solution(S, c, delta, can_bind) -> CPODualSolution:
    """The "no_reward_gradient" case: the shortest step meeting the linearised constraints, if any."""
    k = len(c)
    weights = np.zeros(k)
    if len(can_bind) == 0 or np.all(c[can_bind] <= 0.0):
        return CPODualSolution(0.0, weights, True, "no_reward_gradient")
    sub_weights, solver = shortest_feasible_weights(S[np.ix_(can_bind, can_bind)], c[can_bind], delta)
    if sub_weights is None:
        return CPODualSolution(0.0, weights, False, "infeasible", solver)
    weights[can_bind] = sub_weights
    return CPODualSolution(0.0, weights, True, "no_reward_gradient", solver)


def solve_normalised_dual(gram: np.ndarray, offsets: np.ndarray) -> tuple[float, np.ndarray, str]:
    """Solve the cached DPP dual for a unit-diagonal Gram [[1, r'], [r, S]] (q = 1, delta = 1/2).

    The interior-point answer is polished on its guessed active set; if every conic solver fails, the
    exact KKT point is found by enumerating active sets. Returns (lam, nu, solver name).
    """
    factor = psd_factor(gram)
    program = dual_program(len(offsets))
    program.gram_factor_g.value = factor[:, 0]
    program.gram_factor_b.value = factor[:, 1:]
    program.offsets.value = offsets
    try:
        solver = _solve(program.problem, "dual")
    except SubSolveFailed:
        for active in _active_sets(len(offsets)):
            polished = polish_on_active_set(gram, offsets, active)
            if polished is not None:
                _warn_once("dual:active_set", "the dual fell back to active-set enumeration")
                return (*polished, "active_set")
        raise
    lam, nu = float(program.lam.value), np.asarray(program.nu.value)
    for threshold in ACTIVE_SET_THRESHOLDS:
        polished = polish_on_active_set(gram, offsets, nu > threshold)
        if polished is not None:
            return (*polished, solver)
    return lam, nu, solver


def polish_on_active_set(gram: np.ndarray, offsets: np.ndarray, active: np.ndarray):
    """Exact KKT point for a guessed active set, or None if the guess fails the KKT checks.

    The interior-point answer is accurate to ~1e-8 in the dual but x* divides by lam, so we re-solve the
    stationarity equations on the active set A (normalised, q = 1, 2 delta = 1) in closed form:
    d/dnu_A = 0 gives nu_A = S_AA^-1 (r_A + lam c_A); d/dlam = 0 then gives
    lam^2 = (1 - r_A'S_AA^-1 r_A) / (1 - c_A'S_AA^-1 c_A), the K-constraint form of CPO's sqrt(A / B).
    The candidate is kept only if nu_A >= 0 and every inactive constraint holds at x*, which with
    convexity makes it the exact optimum.
    """
    r, S = gram[0, 1:], gram[1:, 1:]
    S_active = S[np.ix_(active, active)]
    try:
        solve_r = np.linalg.solve(S_active, r[active])
        solve_c = np.linalg.solve(S_active, offsets[active])
    except np.linalg.LinAlgError:
        return None
    numerator, denominator = 1.0 - r[active] @ solve_r, 1.0 - offsets[active] @ solve_c
    if not (numerator > 0.0 and denominator > 0.0):
        return None
    lam = float(np.sqrt(numerator / denominator))
    nu = np.zeros(len(offsets))
    nu[active] = solve_r + lam * solve_c
    constraint_values = (r - S @ nu) / lam + offsets  # b~'x~ + c~ in trust-region radii
    if np.any(nu[active] < 0.0) or np.any(constraint_values[~active] > KKT_TOL):
        return None
    return lam, nu


def cpo_recovery_weights(S, c, delta: float) -> np.ndarray:
    """Weights w >= 0 of the infeasible-case recovery step x = -H^-1 B w (module docstring, "Recovery").

    K = 1 (or one constraint with a usable gradient) gives CPO's w = sqrt(2 delta / s). Constraints whose
    gradient is zero (s_i = 0) cannot be steered and get weight 0.
    """
    return _recovery_weights(S, c, delta)[0]


def _recovery_weights(S, c, delta: float) -> tuple[np.ndarray, str]:
    S = np.atleast_2d(np.asarray(S, dtype=np.float64))
    c = np.atleast_1d(np.asarray(c, dtype=np.float64))
    _validated(np.zeros_like(c), S, c, delta)
    s_diag = np.diag(S)
    steerable = np.flatnonzero(s_diag > 0.0)
    weights = np.zeros(len(c))
    if len(steerable) == 0:
        return weights, "shortcut"
    S_sub = S[np.ix_(steerable, steerable)]
    offsets = normalised_offsets(s_diag[steerable], c[steerable], delta)
    program = recovery_program(len(steerable))
    factor = psd_factor(_unit_diagonal(S_sub))
    program.constraint_factor.value = factor
    program.constraint_gram.value = factor.T @ factor
    program.offsets.value = offsets
    try:
        solver = _solve(program.problem, "recovery")
    except SubSolveFailed as error:
        # CPO's own K = 1 recovery: a full trust-region step against the most violated constraint.
        _warn_once("recovery:single_constraint", f"{error}; stepping against the most violated constraint")
        worst = int(np.argmax(offsets))
        weights[steerable[worst]] = np.sqrt(2.0 * delta / s_diag[steerable[worst]])
        return weights, "single_constraint"
    weights[steerable] = np.clip(program.weights.value, 0.0, None) * np.sqrt(2.0 * delta / s_diag[steerable])
    return weights, solver


def primal_step(hinv_g: np.ndarray, hinv_b: np.ndarray, solution: CPODualSolution) -> np.ndarray:
    """x* = (H^-1 g - H^-1 B nu) / lam for a feasible solution (-H^-1 B nu without a reward gradient)."""
    if not solution.feasible:
        raise ValueError("infeasible subproblem: build the step from cpo_recovery_weights instead")
    hinv_b = np.asarray(hinv_b).reshape(len(hinv_g), -1)
    if solution.case == "no_reward_gradient":
        return -hinv_b @ solution.nu
    return (hinv_g - hinv_b @ solution.nu) / solution.lam


def cpo_step(q: float, r, S, c, delta: float, hinv_g: np.ndarray, hinv_b: np.ndarray):
    """The CPO update's step for every case: (solution, x) with x the primal or the recovery step.

    hinv_b has shape (n, K). The returned solution's `solver` names the latest fallback of the dual and
    the recovery solves together.
    """
    solution = solve_cpo_dual(q, r, S, c, delta)
    if solution.feasible:
        return solution, primal_step(hinv_g, hinv_b, solution)
    weights, recovery_solver = _recovery_weights(S, c, delta)
    solver = max(solution.solver, recovery_solver, key=SOLVER_CODES.__getitem__)
    hinv_b = np.asarray(hinv_b).reshape(len(hinv_g), -1)
    return solution._replace(solver=solver), -hinv_b @ weights

