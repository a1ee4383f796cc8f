"""CPO's linearised subproblem, solved through its (K + 1)-dimensional Lagrangian dual.

Each CPO update (Achiam et al., 2017) solves, in policy-parameter space,

    maximise    g'x
    subject to  b_i'x + c_i <= 0    for i = 1..K     (linearised cost constraints, B = [b_1 .. b_K])
                (1/2) x'Hx <= delta                  (trust region, H = Fisher of the mean KL)

x has as many entries as the policy, the dual only K + 1, and it needs H only through
q = g'H^-1 g, r = B'H^-1 g (K) and S = B'H^-1 B (K x K), which conjugate gradient supplies.

Dual (signs). This is a maximisation, so the multipliers lam >= 0, nu >= 0 enter with a minus sign:

    L(x, lam, nu) = g'x - lam ((1/2) x'Hx - delta) - nu'(B'x + c).

Stationarity g - lam Hx - B nu = 0 gives x = H^-1 (g - B nu) / lam; substituting back,

    max_x L = (q - 2 r'nu + nu'S nu) / (2 lam) + lam delta - nu'c,

an upper bound on the primal optimum for every lam, nu >= 0. Minimising it over the multipliers is the dual

    maximise_{lam >= 0, nu >= 0}  -(q - 2 r'nu + nu'S nu) / (2 lam) + nu'c - lam delta,

and with strong duality (the linearised constraints strictly feasible inside the trust region) the step is
x* = (H^-1 g - H^-1 B nu*) / lam*. With this convention the K = 1 multiplier at a given lam is
nu = max(0, (lam c + r) / s); formulas quoted as (lam c - r) / s use the opposite sign for r.

DPP form. 1 / lam * (quadratic) is not DCP. Let G = [[q, r'], [r, S]] = M'H^-1 M with M = [g, B]: a Gram
matrix, so PSD. With any factor F'F = G, q - 2 r'nu + nu'S nu = ||F [1; -nu]||^2, so the first term is
quad_over_lin(F[:, 0] - F[:, 1:] nu, lam) / 2: a perspective (DCP) in which the parameter F multiplies the
variable nu (DPP). The cvxpy problem is therefore built once per K and only re-solved.

Normalisation. Solving the rescaled problem g -> g / sqrt(q), b_i -> b_i / sqrt(s_i), x -> x / sqrt(2 delta)
makes G unit-diagonal and delta = 1/2, so the conic solver always sees O(1) data however the batch is scaled.
Its offsets become c_i / sqrt(2 delta s_i): c_i in units of the largest change one trust-region step can make
to constraint i. The multipliers map back as lam = lam~ sqrt(q / (2 delta)), nu_i = nu~_i sqrt(q / s_i).

Feasibility. The constraints can be met inside the trust region iff the shortest point satisfying them does.
In whitened coordinates y = H^(1/2) x, A = H^(-1/2) B (A'A = S):

    min (1/2)||y||^2 s.t. A'y + c <= 0   has dual   max_{mu >= 0} mu'c - (1/2) mu'S mu,

so the set is nonempty iff that maximum is <= delta (an unbounded maximum means the half-spaces alone are
inconsistent). For K = 1 the maximiser is mu = c/s when c > 0: infeasible iff c > 0 and c^2/s - 2 delta > 0.
Two exact shortcuts skip the solver: a normalised offset > 1 can never be met (infeasible), and one < -1 can
never bind inside the trust region (its nu is exactly 0, so it is dropped from the solve).

Recovery. When infeasible, CPO steps purely to reduce the violation: x = -H^-1 B w. For K = 1 that is the
full trust-region step along -H^-1 b, w = sqrt(2 delta / s). For K > 1 we take the step inside the trust
region that minimises the summed positive violation, each measured in the normalised units above (so costs of
different scales count alike): min_w sum_i max(0, c_i - (S w)_i) s.t. (1/2) w'S w <= delta, w >= 0. Steps
outside span(H^-1 B) cannot change any constraint, and its KKT conditions give x = -H^-1 B t / lam with
t in [0, 1]^K, so restricting to this form and to w >= 0 loses nothing. A tiny ||step||^2 penalty breaks ties
towards the shortest step; for K = 1 it leaves the answer exactly at the boundary.

The cached cvxpy problems carry parameter state: these functions are not thread-safe.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import cvxpy as cp
import numpy as np

SOLVER = cp.CLARABEL  # interior point, deterministic, ships with cvxpy
SOLVER_OPTIONS = {"tol_gap_abs": 1e-8, "tol_gap_rel": 1e-8, "tol_feas": 1e-8, "max_iter": 200}
GRAM_JITTER = 1e-12  # added to eigenvalues of the unit-diagonal Grams: keeps singular S solvable
FEASIBILITY_TOL = 1e-9  # relative slack when comparing the shortest feasible step with the trust region
# Normalised multipliers above these count as active when guessing the active set to polish, loosest last:
# interior-point multipliers of inactive constraints decay slowly (1e-8..1e-7 is common).
ACTIVE_SET_THRESHOLDS = (1e-8, 1e-6, 1e-4)
KKT_TOL = 1e-9  # allowed violation (in trust-region radii) of an inactive constraint when polishing
RECOVERY_TIE_BREAK = 1e-6
_OK_STATUSES = (cp.OPTIMAL, cp.OPTIMAL_INACCURATE)


class CPODualSolution(NamedTuple):
    """Dual optimum of the CPO subproblem; the step is x = (H^-1 g - H^-1 B nu) / lam when feasible.

    case: "reward_only" (nu = 0, the plain TRPO step, lam = sqrt(q / (2 delta))), "normal" (some
    constraint binds) or "infeasible" (lam = 0, nu = 0: use cpo_recovery_weights instead).
    """

    lam: float
    nu: np.ndarray
    feasible: bool
    case: str


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


def _solve(problem: cp.Problem) -> None:
    problem.solve(solver=SOLVER, **SOLVER_OPTIONS)
    if problem.status not in _OK_STATUSES:
        raise RuntimeError(f"CPO dual sub-solve failed with status {problem.status!r}")


def _unit_diagonal(S: np.ndarray) -> np.ndarray:
    inv_scale = 1.0 / np.sqrt(np.diag(S))
    return S * np.outer(inv_scale, inv_scale)


def jointly_reachable(S: np.ndarray, c: np.ndarray, delta: float) -> bool:
    """Whether {x : (1/2) x'Hx <= delta, B'x + c <= 0} is nonempty, using only S = B'H^-1 B (diag(S) > 0).

    Solves the dual of the shortest-feasible-step problem (module docstring) in normalised units.
    """
    offsets = normalised_offsets(np.diag(S), c, delta)
    if np.all(offsets <= 0.0):
        return True  # x = 0 already satisfies every constraint
    if np.any(offsets > 1.0):
        return False
    program = feasibility_program(len(c))
    program.constraint_factor.value = psd_factor(_unit_diagonal(S))
    program.offsets.value = offsets
    program.problem.solve(solver=SOLVER, **SOLVER_OPTIONS)
    if program.problem.status in (cp.UNBOUNDED, cp.UNBOUNDED_INACCURATE):
        return False  # the half-spaces alone do not intersect
    if program.problem.status not in _OK_STATUSES:
        raise RuntimeError(f"CPO feasibility check failed with status {program.problem.status!r}")
    return program.problem.value <= 0.5 * (1.0 + FEASIBILITY_TOL)


def solve_cpo_dual(q: float, r, S, c, delta: float) -> CPODualSolution:
    """Solve CPO's dual for K >= 1 constraints: maximise g'x s.t. B'x + c <= 0, (1/2) x'Hx <= delta.

    q = g'H^-1 g (> 0), r = B'H^-1 g, S = B'H^-1 B, c = J_C(pi_old) - limits (positive means violated).
    Accepts scalars for K = 1. Infeasible problems return feasible=False; see cpo_recovery_weights.
    """
    r, S, c = _validated(r, S, c, delta)
    if not q > 0.0:
        raise ValueError(f"q = g'H^-1 g must be positive (zero reward gradient?), got {q}")
    k = len(c)
    s_diag = np.diag(S)
    offsets = normalised_offsets(s_diag, c, delta)
    infeasible = CPODualSolution(0.0, np.zeros(k), False, "infeasible")
    reward_only = CPODualSolution(float(np.sqrt(q / (2.0 * delta))), np.zeros(k), True, "reward_only")
    if np.any(offsets > 1.0):
        return infeasible
    can_bind = np.flatnonzero(offsets >= -1.0)
    if len(can_bind) == 0:
        return reward_only
    S_sub, r_sub = S[np.ix_(can_bind, can_bind)], r[can_bind]
    if len(can_bind) > 1 and not jointly_reachable(S_sub, c[can_bind], delta):
        return infeasible

    inv_scale = 1.0 / np.sqrt(np.concatenate(([q], s_diag[can_bind])))
    gram = np.block([[np.array([[q]]), r_sub[None, :]], [r_sub[:, None], S_sub]])
    gram *= np.outer(inv_scale, inv_scale)  # unit diagonal: [[1, r~'], [r~, S~]]
    lam_normalised, nu_normalised = solve_normalised_dual(gram, offsets[can_bind])
    for threshold in ACTIVE_SET_THRESHOLDS:
        polished = polish_on_active_set(gram, offsets[can_bind], nu_normalised > threshold)
        if polished is not None:
            lam_normalised, nu_normalised = polished
            break
    nu_normalised = np.where(nu_normalised > ACTIVE_SET_THRESHOLDS[0], nu_normalised, 0.0)
    if not np.any(nu_normalised > 0.0):
        return reward_only
    nu = np.zeros(k)
    nu[can_bind] = nu_normalised * np.sqrt(q / s_diag[can_bind])
    lam = float(lam_normalised * np.sqrt(q / (2.0 * delta)))
    return CPODualSolution(lam, nu, True, "normal")


def solve_normalised_dual(gram: np.ndarray, offsets: np.ndarray) -> tuple[float, np.ndarray]:
    """Solve the cached DPP dual for a unit-diagonal Gram [[1, r'], [r, S]] (q = 1, delta = 1/2)."""
    factor = psd_factor(gram)
    program = dual_program(len(offsets))
    program.gram_factor_g.value = factor[:, 0]
    program.gram_factor_b.value = factor[:, 1:]
    program.offsets.value = offsets
    _solve(program.problem)
    return float(program.lam.value), np.asarray(program.nu.value)


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
    S = np.atleast_2d(np.asarray(S, dtype=np.float64))
    c = np.atleast_1d(np.asarray(c, dtype=np.float64))
    _validated(np.zeros_like(c), S, c, delta)
    s_diag = np.diag(S)
    steerable = np.flatnonzero(s_diag > 0.0)
    weights = np.zeros(len(c))
    if len(steerable) == 0:
        return weights
    S_sub = S[np.ix_(steerable, steerable)]
    program = recovery_program(len(steerable))
    factor = psd_factor(_unit_diagonal(S_sub))
    program.constraint_factor.value = factor
    program.constraint_gram.value = factor.T @ factor
    program.offsets.value = normalised_offsets(s_diag[steerable], c[steerable], delta)
    _solve(program.problem)
    weights[steerable] = np.clip(program.weights.value, 0.0, None) * np.sqrt(2.0 * delta / s_diag[steerable])
    return weights


def primal_step(hinv_g: np.ndarray, hinv_b: np.ndarray, solution: CPODualSolution) -> np.ndarray:
    """x* = (H^-1 g - H^-1 B nu) / lam for a feasible solution; hinv_b has shape (n, K)."""
    if not solution.feasible:
        raise ValueError("infeasible subproblem: build the step from cpo_recovery_weights instead")
    hinv_b = np.asarray(hinv_b).reshape(len(hinv_g), -1)
    return (hinv_g - hinv_b @ solution.nu) / solution.lam


def random_dual_inputs(rng: np.random.Generator, num_constraints: int, dim: int = 8):
    """Random (q, r, S, c, delta) from a whitened [g, B] with offsets inside the trust region's reach."""
    directions = rng.standard_normal((dim, num_constraints + 1)) * rng.uniform(0.1, 10.0, num_constraints + 1)
    gram = directions.T @ directions
    delta = rng.uniform(0.005, 0.05)
    S = gram[1:, 1:]
    c = rng.uniform(-0.8, 0.5, num_constraints) * np.sqrt(2.0 * delta * np.diag(S))
    return gram[0, 0], gram[0, 1:], S, c, delta


def benchmark_dual(num_constraints: int, n_calls: int = 100, seed: int = 0) -> float:
    """Median wall time (ms) of solve_cpo_dual on random instances; a warm-up call builds the cache first."""
    rng = np.random.default_rng(seed)
    instances = [random_dual_inputs(rng, num_constraints) for _ in range(n_calls + 1)]
    solve_cpo_dual(*instances[0])
    times = []
    for instance in instances[1:]:
        start = time.perf_counter()
        solve_cpo_dual(*instance)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))
