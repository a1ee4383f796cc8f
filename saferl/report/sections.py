"""What the report says: its sections (paragraphs, tables, figures) built from the run and group summaries."""

from __future__ import annotations

import math
from pathlib import Path

from saferl.report.figures import budget_figure, color, curves_figure, evaluation_figure
from saferl.report.render import Image, Section, Table, flag, fmt, pm, share
from saferl.report.runs import Run, limit_text
from saferl.report.stats import CVAR_ALPHA, FINAL_ROWS


def group_label(group: list[Run], groups: list[list[Run]]) -> str:
    several_envs = len({g[0].env_id for g in groups}) > 1
    label = group[0].algo + (f" · {group[0].env_id}" if several_envs else "")
    twins = [g for g in groups if g[0].algo == group[0].algo and g[0].env_id == group[0].env_id]
    return label + (f" (limit {limit_text(group[0].cost_limit)})" if len(twins) > 1 else "")


def curve_panels(groups: list[list[Run]], group_summaries: list[dict]) -> list[dict]:
    labels = [group_label(g, groups) for g in groups]

    def series(column: str, suffix: str = "", linestyle: str = "-") -> list[dict]:
        found = []
        for i, summary in enumerate(group_summaries):
            curve = summary["curves"].get(column)
            if curve is not None:
                found.append({**curve, "label": labels[i] + suffix, "color": color(i), "linestyle": linestyle})
        return found

    panels = [{"title": "episode return", "ylabel": "return", "series": series("ep_return")}]
    cost_index = {}
    for group in groups:
        for run in group:
            for k, (name, column) in enumerate(run.cost_columns()):
                cost_index.setdefault(column, (k, name))
    for column, (k, name) in cost_index.items():
        limits = {}  # limit -> the first group with it, whose colour the line takes when limits differ
        for i, group in enumerate(groups):
            if group[0].limit(k) is not None:
                limits.setdefault(group[0].limit(k), i)
        panels.append({"title": f"episode {name}", "ylabel": name, "series": series(column),
                       "limits": [(v, "cost limit", None) if len(limits) == 1 else (v, f"cost limit {v:g}", color(i))
                                  for v, i in sorted(limits.items())]})
    multipliers = list(dict.fromkeys(c for g in groups for r in g for c in r.multiplier_columns()))
    styles = ["-", "--", ":", "-."]
    panels.append({"title": "Lagrange multipliers" + (" / CPO duals" if any("nu" in c for c in multipliers) else ""),
                   "ylabel": "multiplier",
                   "series": [s for j, c in enumerate(multipliers)
                              for s in series(c, f" {multiplier_name(c)}", styles[j % len(styles)])]})
    panels.append({"title": "cumulative training cost (all steps, all constraints)", "ylabel": "cost",
                   "series": series("total_violations")})
    panels.append({"title": "behaviour cloning loss (solid: train, dashed: validation)", "ylabel": "loss",
                   "xlabel": "epoch", "series": series("train_loss", " train") + series("val_loss", " val", "--")})
    return panels


def multiplier_name(column: str) -> str:
    """lagrange_multiplier -> λ, lagrange_multiplier_1 -> λ_1, cpo_nu_0 -> ν_0 (CPO's dual variable)."""
    if column.startswith("cpo_nu_"):
        return f"ν_{column[len('cpo_nu_'):]}"
    suffix = column[len("lagrange_multiplier"):].lstrip("_")
    return "λ" + (f"_{suffix}" if suffix else "")


def build_sections(runs, groups, summaries, group_summaries, budget: list[dict], video: bool) -> list[Section]:
    overview = Section("Runs", [Table(
        ["run", "algorithm", "env", "seed", "cost limit", "epochs read", "env steps", "evaluation", "directory"],
        [[r.label, r.algo, r.env_id, str(r.seed), str(r.cost_limit), str(r.rows),
          fmt(summaries[r.label]["env_steps"], 0), _eval_source(summaries[r.label]), str(r.path)] for r in runs])])

    curves = Section("1. Learning curves")
    png = curves_figure(curve_panels(groups, group_summaries))
    if png is None:
        curves.blocks.append("No learning curves: the progress files have no plottable columns.")
    else:
        several = any(len(g) > 1 for g in groups)
        curves.blocks.append("Episode return and cost (mean over the last episodes of each epoch) against "
                             "environment steps; the dashed line is the cost limit."
                             + (" Runs of the same algorithm and env are averaged; the band spans the "
                                "minimum to the maximum over seeds." if several else ""))
        curves.blocks.append(Image("curves.png", png, "learning curves"))

    stats = Section("2. Violation statistics", [
        "Over the limit means episode cost > limit. Regret is the sum over epochs of max(0, cost − limit); "
        "cumulative cost counts every costly training step. First safe epoch: the epoch from which every "
        f"logged epoch cost stays within the limit. CVaR{round(CVAR_ALPHA * 100)}: mean cost of the worst "
        f"{round(100 * (1 - CVAR_ALPHA))}% of episodes (at least one).",
        "Training (from progress.csv):", *training_blocks(runs, summaries),
        "Evaluation episodes (the saved policy):", evaluation_table(runs, summaries)])

    where = Section("3. Where violations happen", [
        "Per run, over the evaluation episodes: the distribution of episode costs (dashed: limit, dotted: CVaR), "
        "when in an episode costs occur (rows are episodes; red marks steps with cost), how each episode's "
        "cumulative cost approaches the limit, and for velocity tasks the distribution of the velocity the "
        "cost thresholds."])
    for run in runs:
        if run.evaluation is None:
            where.blocks.append(f"{run.label}: {run.eval_note}.")
            continue
        limits = [run.limit(k) for k in range(len(run.evaluation["cost_names"]))]
        index = runs.index(run)
        where.blocks.append(Image(f"evaluation-{index}.png", evaluation_figure(run.evaluation, limits, run.label),
                                  f"evaluation episodes of {run.label}"))
        if not run.evaluation["step_costs"]:
            where.blocks.append(f"{run.label}: episode totals from eval.json only; run with --eval-episodes N "
                                "for per-step costs.")
        elif not run.evaluation["velocities"]:
            where.blocks.append(f"{run.label}: the env reports no velocity, so no velocity histogram.")

    title = "4. Comparison" if len(runs) > 1 else "4. Summary"
    comparison = Section(title, [comparison_table(group_summaries),
                                 "Final = mean of the evaluation episodes when every seed has them, else the "
                                 "last epoch's logged episode return and cost; ± is the standard deviation over "
                                 "seeds. Verdict: every constraint's mean cost within its limit."])
    sections = [overview, curves, stats, where, comparison]
    if budget:
        sections.append(budget_section(budget))
    if video:
        sections.append(video_section(runs, f"{len(sections)}. Video"))
    return sections


def _eval_source(summary: dict) -> str:
    ev = summary["evaluation"]
    if ev is None:
        return "none"
    mode = {True: ", deterministic", False: ", stochastic"}.get(ev["deterministic"], "")
    return f"{ev['episodes']} episodes ({ev['source']}{mode})"


def training_blocks(runs, summaries) -> list:
    rows, missing = [], []
    for run in runs:
        s = summaries[run.label]
        constraints = s["training"]["constraints"]
        if not any(c["epochs_logged"] for c in constraints.values()):
            missing.append(run.label)
        for k, (name, c) in enumerate(constraints.items()):
            if not c["epochs_logged"]:
                continue
            over = c["epochs_over_limit"]
            final_over = None if over is None else c["final"] > run.limit(k)
            rows.append([run.label, name, share(over, c["share_epochs_over_limit"], c["epochs_logged"]),
                         fmt(c["first_safe_epoch"]) if over is not None else "–", fmt(c["regret"]),
                         fmt(c["worst_epoch"]), flag(fmt(c["final"]), final_over),
                         fmt(s["training"]["cumulative_cost"], 0)])
    blocks = [Table(["run", "constraint", "epochs over limit", "first safe epoch", "regret", "worst epoch cost",
                     "final epoch cost", "cumulative cost"], rows)] if rows else []
    if missing:
        blocks.append(f"No episode costs in the progress file of {', '.join(missing)} (e.g. behaviour cloning).")
    return blocks


def evaluation_table(runs, summaries) -> Table | str:
    cvar_key = f"cvar{round(CVAR_ALPHA * 100)}"
    evaluations = [(run, summaries[run.label]["evaluation"]) for run in runs]
    evaluations = [(run, ev) for run, ev in evaluations if ev is not None]
    successes = any("success_rate" in ev for _, ev in evaluations)  # a column only for envs that report it
    rows = []
    for run, ev in evaluations:
        for k, (name, c) in enumerate(ev["constraints"].items()):
            mean_over = None if run.limit(k) is None else c["mean"] > run.limit(k)
            where = "–" if "share_of_steps_with_cost" not in c else f"{100 * c['share_of_steps_with_cost']:.1f}%"
            rows.append([run.label, name, pm(ev["mean_return"], ev["std_return"], 1),
                         share(c["over_limit"], c["share_over_limit"], c["episodes"]),
                         flag(pm(c["mean"], c["std"]), mean_over), fmt(c["worst"]), fmt(c[cvar_key]), where,
                         fmt(c.get("limit_crossed_step_median"), 0)])
            if successes:
                rows[-1].append("–" if "success_rate" not in ev else f"{100 * ev['success_rate']:.0f}%")
    if not rows:
        return "No evaluation episodes (see section 3)."
    return Table(["run", "constraint", "return", "episodes over limit", "cost mean ± std", "worst episode",
                  f"CVaR{round(CVAR_ALPHA * 100)}", "steps with cost", "limit passed at step (median)"]
                 + (["success"] if successes else []), rows)


def comparison_table(group_summaries: list[dict]) -> Table:
    names = list(dict.fromkeys(n for g in group_summaries for n in g["row"]["costs"]))
    rows = []
    for g in group_summaries:
        row = g["row"]
        limit = row["cost_limit"]
        cells = [row["algo"], row["env_id"], str(limit), str(row["seeds"]),
                 pm(row["return"]["mean"], row["return"]["std"], 1)]
        for k, name in enumerate(names):
            c = row["costs"].get(name)
            if c is None:
                cells.append("–")
                continue
            d = limit[min(k, len(limit) - 1)] if isinstance(limit, list) else limit
            over = None if d is None or not math.isfinite(c["mean"]) else c["mean"] > d
            cells.append(flag(pm(c["mean"], c["std"]), over))
        ok = {"meets limit": True, "over limit": False}.get(row["verdict"])
        cells += [row["source"], flag(("✓ " if ok else "✗ " if ok is False else "") + row["verdict"],
                                      None if ok is None else not ok)]
        rows.append(cells)
    return Table(["algorithm", "env", "cost limit", "seeds", "return"] + [f"{n}" for n in names]
                 + ["final from", "verdict"], rows)


def video_section(runs: list[Run], title: str) -> Section:
    section = Section(title)
    for run in runs:
        if run.video is None:
            continue
        if run.video.get("ok"):
            v = run.video
            section.blocks.append(f"{run.label}: one evaluation episode ({v['steps']} steps, every "
                                  f"{v['steps_per_frame']} steps shown, episode cost {v['episode_cost']:g}); "
                                  f"{v['frames_with_cost']} of {v['frames']} frames follow a costly step and have "
                                  "a red border.")
            section.blocks.append(Image(Path(v["path"]).name, Path(v["path"]).read_bytes(),
                                        f"episode video of {run.label}"))
        else:
            section.blocks.append(f"{run.label}: no video, rendering is unavailable: {run.video['reason']}")
    return section


def budget_section(rows: list[dict]) -> Section:
    table = []
    for row in rows:
        limit = row["cost_limit"]
        cells = [row["algo"], row["env_id"], f"{limit:g}", str(row["seeds"]),
                 pm(row["train_return"]["mean"], row["train_return"]["std"], 1), _cost_cell(row["train_cost"], limit)]
        evaluated = row["eval_return"] is not None
        cells += [pm(row["eval_return"]["mean"], row["eval_return"]["std"], 1) if evaluated else "–",
                  _cost_cell(row["eval_cost"], limit) if evaluated else "–"]
        table.append(cells)
    return Section("5. Return versus budget", [
        "The same algorithm and env at different cost limits (never averaged together): the final return and "
        f"cost at each limit. Training: the mean of each seed's last {FINAL_ROWS} logged epochs; evaluation: "
        "the evaluation episodes, when every seed has them; ± is the standard deviation over seeds. A policy "
        "that meets its budget lies on or below the dashed line cost = limit.",
        Image("budget.png", budget_figure(rows), "final return and cost against the cost limit"),
        Table(["algorithm", "env", "cost limit", "seeds", "return (training)", "cost (training)",
               "return (evaluation)", "cost (evaluation)"], table)])


def _cost_cell(cost: dict, limit: float):
    over = None if not math.isfinite(cost["mean"]) else cost["mean"] > limit
    return flag(pm(cost["mean"], cost["std"]), over)
