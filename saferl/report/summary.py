"""Per-run and per-group summaries: what report.json holds and the tables show, computed from loaded runs."""

from __future__ import annotations

import math

import numpy as np

from saferl.report.runs import LOSS_COLUMNS, Run
from saferl.report.stats import (
    FINAL_ROWS,
    band,
    final_mean,
    finite_values,
    mean_std,
    training_stats,
    verdict,
    violation_stats,
    where_stats,
)


def summarise_evaluation(run: Run) -> dict | None:
    ev = run.evaluation
    if ev is None:
        return None
    costs = np.asarray(ev["costs"], float)
    names = ev["cost_names"]
    trained = [name for name, _ in run.cost_columns()]
    if ev["source"] == "eval.json" and len(trained) == len(names):
        names = trained
    ev["cost_names"] = names
    returns = mean_std(ev["returns"])
    summary = {"source": ev["source"], "episodes": len(ev["returns"]), "deterministic": ev.get("deterministic"),
               "mean_return": returns["mean"], "std_return": returns["std"],
               "mean_length": float(np.mean(ev["lengths"])), "constraints": {}}
    for k, name in enumerate(names):
        stats = violation_stats(costs[:, k], run.limit(k))
        stats.update(where_stats(ev["step_costs"], k, run.limit(k)))
        summary["constraints"][name] = stats
    if ev["velocities"]:
        v = np.concatenate(ev["velocities"])
        threshold = ev.get("velocity_threshold")
        summary["velocity"] = {"threshold": threshold, "mean": float(v.mean()), "max": float(v.max()),
                               "share_of_steps_over_threshold": None if threshold is None
                               else float((v > threshold).mean())}
    if ev.get("successes"):
        summary["success_rate"] = float(np.mean(ev["successes"]))
    summary["episode_details"] = [{"return": r, "cost": c, "length": n}
                                  for r, c, n in zip(ev["returns"], ev["costs"], ev["lengths"], strict=True)]
    return summary


def summarise_run(run: Run) -> dict:
    last = {}
    for name in ("epoch", "env_steps", "ep_return", "total_violations"):
        values = run.column(name)
        last[name] = None if values is None else float(finite_values(values)[-1])
    epochs = run.column("epoch")
    constraints = {}
    for k, (name, column) in enumerate(run.cost_columns()):
        values = run.column(column)
        constraints[name] = training_stats(values if values is not None else [], run.limit(k), epochs)
    evaluation = summarise_evaluation(run)
    final = {"training": {"return": last["ep_return"], "costs": {n: c["final"] for n, c in constraints.items()}},
             "evaluation": None if evaluation is None else {
                 "return": evaluation["mean_return"],
                 "costs": {n: c["mean"] for n, c in evaluation["constraints"].items()}}}
    return {"label": run.label, "run_dir": str(run.path), "algo": run.algo, "env_id": run.env_id,
            "seed": run.seed, "cost_limit": run.cost_limit, "rows_read": run.rows,
            "last_epoch": last["epoch"], "env_steps": last["env_steps"],
            "training": {"cumulative_cost": last["total_violations"], "constraints": constraints},
            "evaluation": evaluation, "evaluation_note": run.eval_note or None, "final": final,
            "video": run.video, "warnings": run.notes}


def curve_columns(runs: list[Run]) -> list[str]:
    columns = ["ep_return"] + [c for r in runs for _, c in r.cost_columns()]
    columns += [c for r in runs for c in r.multiplier_columns()] + ["total_violations", *LOSS_COLUMNS]
    return list(dict.fromkeys(columns))


def summarise_group(group: list[Run], summaries: dict) -> dict:
    first = group[0]
    curves = {}
    for column in curve_columns(group):
        have = [r for r in group if r.column(column) is not None]
        if have:
            curve = band([r.x(column) for r in have], [r.column(column) for r in have])
            if curve is not None:
                curves[column] = curve
    use_eval = all(summaries[r.label]["final"]["evaluation"] is not None for r in group)
    finals = [summaries[r.label]["final"]["evaluation" if use_eval else "training"] for r in group]
    returns = [f["return"] for f in finals]
    costs = {n: [f["costs"].get(n) for f in finals] for n in finals[0]["costs"]}
    row = {"algo": first.algo, "env_id": first.env_id, "cost_limit": first.cost_limit, "seeds": len(group),
           "runs": [r.label for r in group], "source": "evaluation" if use_eval else "training (last epoch)",
           "return": mean_std(returns), "costs": {n: mean_std(vs) for n, vs in costs.items()}}
    means = [c["mean"] for c in row["costs"].values()]
    row["verdict"] = verdict(means, [first.limit(k) for k in range(max(1, len(means)))])
    return {"row": row, "curves": curves}


def budget_rows(groups: list[list[Run]], summaries: dict) -> list[dict]:
    """Return versus budget: where one algorithm on one env ran at two or more cost limits, each limit's final
    return and cost over seeds. Training: the mean of the last FINAL_ROWS logged epochs of each seed;
    evaluation: the evaluation episodes, when every seed has them. The first constraint only."""
    tasks: dict = {}
    for group in groups:
        if group[0].limit() is not None:
            tasks.setdefault((group[0].algo, group[0].env_id), []).append(group)
    rows = []
    for (algo, env_id), members in tasks.items():
        if len(members) < 2:
            continue
        for group in sorted(members, key=lambda g: g[0].limit()):
            train_return, train_cost, eval_return, eval_cost = [], [], [], []
            for run in group:
                columns = run.cost_columns()
                train_return.append(final_mean(_or_empty(run.column("ep_return"))))
                train_cost.append(final_mean(_or_empty(run.column(columns[0][1]))) if columns else math.nan)
                evaluation = summaries[run.label]["evaluation"]
                if evaluation is not None:
                    eval_return.append(evaluation["mean_return"])
                    eval_cost.append(next(iter(evaluation["constraints"].values()))["mean"])
            evaluated = len(eval_return) == len(group)
            rows.append({"algo": algo, "env_id": env_id, "cost_limit": group[0].limit(), "seeds": len(group),
                         "runs": [r.label for r in group], "final_rows": FINAL_ROWS,
                         "train_return": mean_std(train_return), "train_cost": mean_std(train_cost),
                         "eval_return": mean_std(eval_return) if evaluated else None,
                         "eval_cost": mean_std(eval_cost) if evaluated else None})
    return rows


def _or_empty(values):
    return [] if values is None else values
