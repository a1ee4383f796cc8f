"""The report's statistics: small pure functions of arrays, checked against hand-computed answers."""

from __future__ import annotations

import math

import numpy as np

CVAR_ALPHA = 0.9
FINAL_ROWS = 5  # a run's "final" training numbers: the mean of its last logged epochs, less noisy than one


def finite_values(values) -> np.ndarray:
    values = np.asarray(values, dtype=float).ravel()
    return values[np.isfinite(values)]


def cvar(values, alpha: float = CVAR_ALPHA) -> float:
    """Mean of the worst (largest) 1 - alpha share of `values`: the tail a mean cost hides.

    The tail holds ceil((1 - alpha) n) values, at least one, so CVaR_0.9 of 10 episodes is the worst one.
    """
    values = np.sort(finite_values(values))
    if values.size == 0:
        return float("nan")
    k = max(1, math.ceil((1.0 - alpha) * values.size - 1e-9))
    return float(values[-k:].mean())


def violation_stats(episode_costs, limit: float | None) -> dict:
    """Distribution of episode costs against the limit (over the limit means cost > limit)."""
    costs = finite_values(episode_costs)
    stats = {"episodes": int(costs.size), "over_limit": None, "share_over_limit": None, "mean": None,
             "std": None, "worst": None, f"cvar{round(CVAR_ALPHA * 100)}": None, "total": float(costs.sum())}
    if costs.size == 0:
        return stats
    stats.update(mean=float(costs.mean()), std=float(costs.std()), worst=float(costs.max()))
    stats[f"cvar{round(CVAR_ALPHA * 100)}"] = cvar(costs)
    if limit is not None:
        over = int((costs > limit).sum())
        stats.update(over_limit=over, share_over_limit=over / costs.size)
    return stats


def first_safe_epoch(costs, limit: float, epochs=None) -> int | None:
    """First epoch from which every logged cost stays within the limit; None if the last one is over.

    Epochs with no cost logged (NaN: no episode finished yet) neither break nor start a safe stretch.
    """
    costs = np.asarray(costs, dtype=float)
    epochs = np.arange(1, costs.size + 1) if epochs is None else np.asarray(epochs)
    finite = np.isfinite(costs)
    if not finite.any():
        return None
    over = np.flatnonzero(finite & (costs > limit))
    start = 0 if over.size == 0 else over[-1] + 1
    after = np.flatnonzero(finite[start:])
    return None if after.size == 0 else int(epochs[start + after[0]])


def safety_regret(costs, limit: float) -> float:
    """Sum over epochs of the excess cost max(0, J_c - limit): cumulative constraint violation."""
    costs = finite_values(costs)
    return float(np.clip(costs - limit, 0.0, None).sum())


def training_stats(costs, limit: float | None, epochs=None) -> dict:
    """Per-epoch episode costs (progress.csv) against the limit."""
    costs = np.asarray(costs, dtype=float)
    finite = finite_values(costs)
    stats = {"epochs_logged": int(finite.size), "final": float(finite[-1]) if finite.size else None,
             "worst_epoch": float(finite.max()) if finite.size else None, "epochs_over_limit": None,
             "share_epochs_over_limit": None, "regret": None, "first_safe_epoch": None}
    if limit is not None and finite.size:
        over = int((finite > limit).sum())
        stats.update(epochs_over_limit=over, share_epochs_over_limit=over / finite.size,
                     regret=safety_regret(finite, limit), first_safe_epoch=first_safe_epoch(costs, limit, epochs))
    return stats


def mean_std(values) -> dict[str, float]:
    """{"mean", "std"} (population std) of the finite values (None and NaN are skipped); NaN for none."""
    values = finite_values(values)
    if values.size == 0:
        return {"mean": math.nan, "std": math.nan}
    return {"mean": float(values.mean()), "std": float(values.std())}


def band(xs: list, ys: list) -> dict | None:
    """Mean and min-max envelope of several runs' curves on a common x grid (the densest run's, clipped to
    the range every run covers), so seeds logged at slightly different steps still line up."""
    pairs = []
    for x, y in zip(xs, ys, strict=True):
        x, y = np.asarray(x, float), np.asarray(y, float)
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum():
            pairs.append((x[ok], y[ok]))
    if not pairs:
        return None
    lo_x = max(x.min() for x, _ in pairs)
    hi_x = min(x.max() for x, _ in pairs)
    grid = max((x for x, _ in pairs), key=len)
    grid = grid[(grid >= lo_x) & (grid <= hi_x)]
    if grid.size == 0:
        return None
    stack = np.stack([np.interp(grid, x, y) for x, y in pairs])
    return {"x": grid.tolist(), "mean": stack.mean(0).tolist(), "min": stack.min(0).tolist(),
            "max": stack.max(0).tolist(), "n": len(pairs)}


def where_stats(step_costs: list, k: int, limit: float | None) -> dict:
    """Where in an episode constraint k is violated: share of steps with cost, first costly step, and the
    step at which the episode's cumulative cost passes the limit (over-limit episodes only)."""
    if not step_costs:
        return {}
    shares, first, crossed = [], [], []
    for costs in step_costs:
        c = np.asarray(costs, float)[:, k]
        shares.append(float((c > 0).mean()))
        hits = np.flatnonzero(c > 0)
        if hits.size:
            first.append(int(hits[0]) + 1)
        if limit is not None:
            over = np.flatnonzero(np.cumsum(c) > limit)
            if over.size:
                crossed.append(int(over[0]) + 1)
    return {"share_of_steps_with_cost": float(np.mean(shares)),
            "first_cost_step_median": float(np.median(first)) if first else None,
            "limit_crossed_step_median": float(np.median(crossed)) if crossed else None}


def verdict(mean_costs: list[float], limits: list[float | None]) -> str:
    """'meets limit' when every constraint's mean cost (over seeds) is within its limit."""
    if not limits or limits[0] is None:
        return "no limit"
    if not mean_costs or not all(np.isfinite(mean_costs)):
        return "unknown"
    ok = all(m <= limits[k] for k, m in enumerate(mean_costs))
    return "meets limit" if ok else "over limit"


def final_mean(values, rows: int = FINAL_ROWS) -> float:
    """Mean of the last `rows` logged (finite) values: where training ended, without one epoch's noise."""
    values = finite_values(values)
    return float(values[-rows:].mean()) if values.size else float("nan")


def constraint_story(steps, returns, costs, limit: float) -> str:
    """One line on what the constraint did over training: where the episode cost peaked against the limit, where it
    ended, and how the return moved meanwhile (the line `make run` prints)."""
    steps, returns, costs = (np.asarray(v, dtype=float) for v in (steps, returns, costs))
    seen = np.isfinite(costs) & np.isfinite(returns)
    if not seen.any():
        return "no episode finished: nothing to say about the constraint yet"
    steps, returns, costs = steps[seen], returns[seen], costs[seen]
    peak = int(np.argmax(costs))
    line = (f"episode cost peaked at {costs[peak]:.1f} (limit {limit:g}) at {int(steps[peak]):,} steps and ended at "
            f"{costs[-1]:.1f}; return went from {returns[0]:.2f} to {returns[-1]:.2f}")
    if costs[peak] > limit and costs[-1] <= limit:
        return "safety at work: " + line
    if costs[peak] <= limit:
        return "the constraint never bound: " + line
    return "still over the limit: " + line
