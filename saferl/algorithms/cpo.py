"""Constrained Policy Optimization (Achiam et al., 2017) for K >= 1 cost constraints.

Each update linearises reward and costs around pi_old and solves, in parameter space,

    maximise g'x   s.t.   b_i'x + c_i <= 0 (i = 1..K),   (1/2) x'Hx <= delta,

through its (K + 1)-dimensional dual (saferl/maths/cpo_dual.py), g and b_i the gradients of the per-step reward
and cost surrogates mean(pi / pi_old * A), H the Fisher of the mean KL, c_i = J_c + margin - limit_i in episode
units or per step (`cpo.cost_scale`). A backtracking line search then takes the first fraction of the step that
keeps the KL bound, the cost change the linearisation allowed and, when every constraint holds, the reward; if
none does, the policy keeps its parameters. The cases (`cpo_case` in the logs), the units of c and the line
search's rules, with the reasons and the evidence: docs/safety.md ("CPO's update").
"""

from __future__ import annotations

import time

import numpy as np
import torch

from saferl.algorithms.policy_gradient import (
    PG,
    MemberUpdate,
    gaussian_fisher_product_fn,
    kl_scale,
    mean_kl,
    surrogate,
)
from saferl.buffer import RolloutBatch
from saferl.config import Config
from saferl.maths.cpo_dual import CASE_CODES, SOLVER_CODES, cpo_step
from saferl.maths.trust_region import backtracking_line_search, conjugate_gradient, flat_grad

DEFAULT_EPISODE_LENGTH = 1000  # T when neither the runner nor env.max_episode_steps gives one


def constraint_gap(gap: np.ndarray, episode_length: float, cost_scale: str) -> np.ndarray:
    """CPO's c from the episode-cost gap J_c + margin - limit. `episode`: as it is, so any violation is beyond
    one step's reach and the update recovers; `per_step`: divided by T, so the `normal` step aims the linearised
    cost at the limit; `mixed`: episode units over the limit (recover), per step under it (a step may raise the
    linearised cost only up to the limit, where `episode` would let TRPO's step raise it freely)."""
    if cost_scale == "episode":
        return gap
    if cost_scale == "per_step":
        return gap / episode_length
    return np.where(gap > 0.0, gap, gap / episode_length)


class CPO(PG):
    uses_cost_critic = True
    section = "cpo"

    def __init__(self, policy, config: Config, anneal_epochs: int, generators: list[torch.Generator],
                 cost_limits: np.ndarray):
        super().__init__(policy, config, anneal_epochs, generators, cost_limits)
        self.cost_limits = np.asarray(cost_limits, dtype=np.float64)  # [K, C]
        self.episode_length = config.env.max_episode_steps or DEFAULT_EPISODE_LENGTH
        self.case_counts = np.zeros((policy.members, len(CASE_CODES)), dtype=np.int64)
        self.margin = np.zeros_like(self.cost_limits)  # the learned margin per member and constraint (cpo.margin_lr)

    def update(self, batch: RolloutBatch, episode_cost: np.ndarray, episode_length: np.ndarray) -> dict:
        if self.cfg.margin_lr > 0:  # safety-starter-agents' learn_margin: m <- max(0, m + lr (J_c - limit))
            cost = np.asarray(episode_cost, dtype=np.float64).reshape(self.cost_limits.shape)
            gap = np.where(np.isfinite(cost), cost - self.cost_limits, 0.0)
            self.margin = np.maximum(0.0, self.margin + self.cfg.margin_lr * gap)
        return super().update(batch, episode_cost, episode_length)

    def actor_step(self, step: MemberUpdate) -> dict:
        """One member's CPO step, from its batch's reward and cost advantages (kept apart, so `step.advantages`
        is not read) and its episodes' cost and length."""
        start = time.perf_counter()
        cfg, member, actor, batch = self.cfg, step.member, step.actor, step.batch
        params = actor.params
        num_costs = batch.cost_advantages.shape[1]
        delta = cfg.target_kl
        scale = kl_scale(cfg.kl, batch.actions.shape[-1])
        with torch.no_grad():
            old_mean, old_log_std = actor(batch.obs), actor.log_std.detach().clone()

        # 1. g and B = [b_1 .. b_K]: gradients of the reward and cost surrogates at pi_old.
        reward_surrogate = surrogate(actor, batch, batch.reward_advantages)
        grad = flat_grad(reward_surrogate, params)
        cost_surrogates = surrogate(actor, batch, batch.cost_advantages)  # [C]
        cost_grads = torch.stack([flat_grad(cost_surrogates[i], params, retain_graph=i < num_costs - 1)
                                  for i in range(num_costs)], dim=1)  # [n, C]

        # 2. H^-1 g and H^-1 B by conjugate gradient, hence the dual's q = g'H^-1 g, r = B'H^-1 g, S = B'H^-1 B.
        fisher = gaussian_fisher_product_fn(actor, batch.obs, scale, cfg.cg_damping)
        hinv_grad = conjugate_gradient(fisher, grad, cfg.cg_iters)
        hinv_cost_grads = torch.stack([conjugate_gradient(fisher, cost_grads[:, i], cfg.cg_iters)
                                       for i in range(num_costs)], dim=1)
        del fisher
        q = float(grad.double() @ hinv_grad.double())
        r = (cost_grads.T.double() @ hinv_grad.double()).numpy()
        S = (cost_grads.T.double() @ hinv_cost_grads.double()).numpy()
        S = 0.5 * (S + S.T)  # CG makes it slightly asymmetric

        # 3. c = J_c + margin - limit, in episode units or per step (cpo.cost_scale; docs/safety.md).
        length = step.episode_length
        episode_length = float(length) if np.isfinite(length) else float(self.episode_length)
        limits = self.cost_limits[member]
        episode_cost = np.where(np.isfinite(step.episode_cost), step.episode_cost, limits)
        gap = episode_cost + self.margin[member] - limits  # no finished episode yet: 0 (plus the margin)
        c = constraint_gap(gap, episode_length, cfg.cost_scale)

        # 4. The dual, then the step: primal when feasible, recovery otherwise (every case: cpo_dual.cpo_step).
        dual_start = time.perf_counter()
        solution, x = cpo_step(q, r, S, c, delta, hinv_grad.double().numpy(), hinv_cost_grads.double().numpy())
        dual_solve_ms = 1e3 * (time.perf_counter() - dual_start)
        full_step = torch.as_tensor(x, dtype=grad.dtype)

        # 5. Line search against the measured KL, the linearisation's cost promise and (if safe) the reward.
        predicted_cost_change = (cost_grads.T @ full_step).detach()  # b_i'x for the full step, [C]
        reach = np.sqrt(2.0 * delta * np.clip(np.diag(S), 0.0, None))  # most a full step can change b_i'x
        tolerance = torch.as_tensor(cfg.cost_tolerance * reach, dtype=grad.dtype)
        reward_old, costs_old = float(reward_surrogate.detach()), cost_surrogates.detach()

        def measure() -> dict:
            return {"kl": float(mean_kl(actor, batch.obs, old_mean, old_log_std, scale)),
                    "reward": float(surrogate(actor, batch, batch.reward_advantages)),
                    "cost_change": surrogate(actor, batch, batch.cost_advantages) - costs_old}

        currently_safe = bool(np.all(c <= 0.0))  # x = 0 is admissible: a step must then beat it on reward

        def accept(info: dict, step_fraction: float) -> bool:
            allowed = torch.clamp(step_fraction * predicted_cost_change, min=0.0) + step_fraction * tolerance
            return (info["kl"] <= delta and bool(torch.all(info["cost_change"] <= allowed))
                    and (not currently_safe or info["reward"] >= reward_old))

        search = backtracking_line_search(params, full_step, measure, accept, cfg.max_backtracks,
                                          cfg.backtrack_coef)

        with torch.no_grad():
            kl = float(mean_kl(actor, batch.obs, old_mean, old_log_std, scale))
            reward_change = float(surrogate(actor, batch, batch.reward_advantages)) - reward_old
            cost_change = (surrogate(actor, batch, batch.cost_advantages) - costs_old).numpy()
        self.case_counts[member, CASE_CODES[solution.case]] += 1
        stats = {"cpo_case": CASE_CODES[solution.case], "cpo_lambda": solution.lam, "cpo_q": q, "kl": kl,
                 "step_fraction": search.step_fraction, "line_search_accepted": float(search.accepted),
                 "reward_surrogate_change": reward_change, "dual_solve_ms": dual_solve_ms,
                 "cpo_dual_solver": SOLVER_CODES[solution.solver],
                 "step_norm": float(search.step_fraction * full_step.norm())}
        stats.update({f"cpo_case_{case}_count": self.case_counts[member, code] for case, code in CASE_CODES.items()})
        for i in range(num_costs):
            stats[f"cpo_nu_{i}"] = float(solution.nu[i])
            stats[f"cpo_c_{i}"] = float(gap[i])  # in episode-cost units, as logged costs
            stats[f"cpo_margin_{i}"] = float(self.margin[member, i])
            # Linearised and measured change of the episode cost from the accepted step, in episode units.
            stats[f"cpo_predicted_cost_change_{i}"] = float(search.step_fraction * predicted_cost_change[i]
                                                            * episode_length)
            stats[f"cpo_cost_change_{i}"] = float(cost_change[i] * episode_length)
        stats["update_ms"] = 1e3 * (time.perf_counter() - start)
        return stats

    def state_dict(self) -> dict:
        return {**super().state_dict(), "case_counts": self.case_counts.copy(), "margin": self.margin.copy()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        counts = np.asarray(state["case_counts"], dtype=np.int64)
        self.case_counts = np.zeros((counts.shape[0], len(CASE_CODES)), dtype=np.int64)
        self.case_counts[:, : counts.shape[1]] = counts  # checkpoints from before a case was added have fewer
        if "margin" in state:  # checkpoints from before the learned margin have none (margin 0)
            self.margin = np.asarray(state["margin"], dtype=np.float64).reshape(self.cost_limits.shape)
