"""What `saferl benchmark` writes from its cells' results: results.json, results.md, the OmniSafe section of
report.html / report.md, curves-<env>.png, and the one line per finished cell.

The formats are read back: a resumed grid reads each finished cell's cell.json (`benchmark.stored_cell`), so a
change here must still read what an older commit wrote.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from saferl.files import atomic_write_text, write_json

if TYPE_CHECKING:
    from saferl.benchmark_grid import Grid

EVAL_EPISODES = 10  # deterministic evaluation episodes per seed of a cell

# OmniSafe's published Table 2 (1e7 env steps, cost limit 25, 5 seeds): final episode (return, cost).
OMNISAFE_TABLE2 = {
    "SafetyHalfCheetahVelocity-v1": {"ppo_lag": (2946, 3.4), "trpo_lag": (2885, 9.0), "cpo": (2787, 4.7),
                                     "ppo": (6922, 919)},
    "SafetyAntVelocity-v1": {"ppo_lag": (3262, 12.1), "trpo_lag": (3042, 19.5), "cpo": (3099, 14.1),
                             "ppo": (5978, 958)},
    "SafetyWalker2dVelocity-v1": {"ppo_lag": (2982, 13.5), "trpo_lag": (3207, 15.0), "cpo": (2075, 21.9),
                                  "ppo": (6240, 903)},
    "SafetyHopperVelocity-v1": {"ppo_lag": (962, 14.0), "trpo_lag": (1392, 11.2), "cpo": (1714, 13.4),
                                "ppo": (2337, 550)},
    "SafetyHumanoidVelocity-v1": {"ppo_lag": (6625, 5.9), "trpo_lag": (6551, 59.6), "cpo": (6465, 0.2),
                                  "ppo": (9116, 960)},
    "SafetySwimmerVelocity-v1": {"ppo_lag": (64.7, 28.0), "trpo_lag": (81.2, 22.2), "cpo": (65.3, 18.2),
                                 "ppo": (119.8, 165)},
    "SafetyPointGoal1-v0": {"ppo_lag": (13.0, 25.8), "trpo_lag": (18.5, 23.0), "cpo": (20.5, 28.8),
                            "ppo": (25.4, 55.7)},
    "SafetyCarGoal1-v0": {"ppo_lag": (13.3, 21.7), "trpo_lag": (27.0, 26.8), "cpo": (25.5, 43.3),
                          "ppo": (33.4, 58.1)},
}
OMNISAFE_STEPS = 10_000_000


def omnisafe_entry(env_id: str, algo: str) -> dict | None:
    entry = OMNISAFE_TABLE2.get(env_id, {}).get(algo)
    return None if entry is None else {"return": entry[0], "cost": entry[1], "steps": OMNISAFE_STEPS}


def clean(value):
    """Strict JSON: NaN and inf become null."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def progress_line(index: int, total: int, result: dict) -> str:
    head = f"[{index}/{total}] {cell_name(result)} {result['env']}"
    if not result["ok"]:
        return f"{head}: FAILED: {result['error']}"
    rate = f", {result['steps_per_s']:.0f} steps/s" if result.get("steps_per_s") else ""
    return (f"{head}: return {_pm(result['return'])}, cost {_pm(result['cost'])} (eval {_pm(result['eval_return'])}"
            f" / {_pm(result['eval_cost'])}), {trained_steps(result)} steps x {len(result['seeds'])} seeds, "
            f"{result['wall_s']:.0f} s{rate} [{result['action']}]")


def trained_steps(cell: dict) -> str:
    """The env steps each seed trained (the grid's `steps` rounded up to whole epochs), one number when equal."""
    steps = [s.get("env_steps") for s in cell.get("per_seed") or []]
    if not steps or None in steps:
        return str(cell["steps"])
    return str(steps[0]) if len(set(steps)) == 1 else ", ".join(map(str, steps))


def cell_name(cell: dict) -> str:
    return f"{cell['algo']}-{cell['variant']}" if cell.get("variant") else cell["algo"]


def write_results(out: Path, grid: Grid, cells: list[dict], info: dict, name: str = "results") -> None:
    """`name`.json and `name`.md: results (what a grid run writes) or status (`saferl benchmark --status`)."""
    out.mkdir(parents=True, exist_ok=True)
    grid_data = {"algos": grid.algos, "envs": grid.envs, "seeds": grid.seeds, "steps": grid.steps, "set": grid.sets,
                 "variants": [vars(v) for v in grid.variants] if grid.variants else None}
    write_json(out / f"{name}.json", clean({"generated": time.strftime("%Y-%m-%d %H:%M:%S"), "grid": grid_data,
                                            "run": info, "cells": cells}))
    atomic_write_text(out / f"{name}.md", results_markdown(grid, cells))


def results_markdown(grid: Grid, cells: list[dict]) -> str:
    lines = ["# saferl benchmark", "",
             f"Grid: {', '.join(grid.algos)} on {', '.join(grid.envs)}; seeds {', '.join(map(str, grid.seeds))}; "
             f"{grid.steps} steps" + (f"; set {' '.join(grid.sets)}" if grid.sets else "") + ".", "",
             "Steps: the env steps each seed trained (the grid's steps rounded up to whole epochs). "
             "Return and cost: the mean of the last 100 training episodes (progress.csv), mean ± std over seeds; "
             f"eval: {EVAL_EPISODES} deterministic episodes per seed, mean over seeds. Train s: seconds of training "
             "epochs over every attempt (all seeds in one process); wall s: the Ray task's last attempt (training "
             "from where it resumed, and evaluation; a few seconds when the cell was already trained); steps/s: "
             "env steps of all seeds per train second. OmniSafe: its published Table 2 "
             "(1e7 steps, cost limit 25, 5 seeds).", "",
             "Under from: the env steps from which each seed's windowed cost stays at or under its limit to the "
             "end (– when it ends over).", "",
             *(["In progress (`saferl benchmark --status`): a cell still training shows the steps its seeds have "
                "reached (\"of\" the grid's budget), the training time still to go at the median rate of its "
                "last 10 epochs, and no evaluation yet.", ""]
               if any(cell.get("partial") for cell in cells) else []),
             "| task | algo | steps | seeds | return | cost | under from | eval return | eval cost | train s | wall s "
             "| steps/s | OmniSafe 1e7 return | OmniSafe 1e7 cost |", "|" + "---|" * 14]
    for cell in cells:
        if not cell["ok"]:
            lines.append(f"| {cell['env']} | {cell_name(cell)} | failed: {cell['error'].replace('|', '/')} |"
                         + " |" * 11)
            continue
        ref = cell.get("omnisafe") or {}
        under = ", ".join("–" if s.get("stays_under_limit_from") is None else _steps(s["stays_under_limit_from"])
                          for s in cell["per_seed"])
        lines.append(" | ".join([
            f"| {cell['env']}", cell_name(cell),
            trained_steps(cell) + (f" of {cell['steps']}{_time_left(cell)}" if cell.get("partial") else ""),
            str(len(cell["seeds"])),
            _pm(cell["return"]),
            _pm(cell["cost"]), under, _fmt(cell["eval_return"]["mean"]), _fmt(cell["eval_cost"]["mean"]),
            _fmt(cell.get("train_s"), 0), _fmt(cell["wall_s"], 0), _fmt(cell["steps_per_s"], 0),
            _fmt(ref.get("return"), 1),
            _fmt(ref.get("cost"), 1)]) + " |")
    return "\n".join(lines) + "\n"


def write_report(out: Path, cells: list[dict]) -> None:
    """`saferl report` over every member of every finished cell (reading the cells' eval.json, no new
    rollouts), with the OmniSafe comparison added as the last section of report.html and report.md."""
    from saferl.report import build_report
    from saferl.report.render import Section, Table, to_html, to_markdown

    done = [c for c in cells if c["ok"]]
    paths = build_report([s["dir"] for c in done for s in c["per_seed"]], out, eval_episodes=0, video=False,
                         deterministic=True)
    rows = [[c["env"], cell_name(c), trained_steps(c), _pm(c["return"]), _pm(c["cost"]),
             f"{_fmt(c['eval_return']['mean'])} / {_fmt(c['eval_cost']['mean'])}",
             _fmt((c.get("omnisafe") or {}).get("return"), 1), _fmt((c.get("omnisafe") or {}).get("cost"), 1)]
            for c in done]
    section = Section("OmniSafe's Table 2 side by side", [
        "OmniSafe's published final episode return and cost (1e7 steps, cost limit 25, 5 seeds) "
        "beside this benchmark's (mean of the last 100 training episodes, ± std over seeds; eval: deterministic "
        "episodes). Runs shorter than 1e7 steps are not expected to match.",
        Table(["task", "algo", "steps", "return", "cost", "eval return / cost", "OmniSafe return",
               "OmniSafe cost"], rows)])
    html_part = to_html([section], [], "")
    html_part = html_part[html_part.index("<h2>"):html_part.rindex("</body>")]
    page = paths["html"].read_text()
    cut = page.rindex("</body>")
    atomic_write_text(paths["html"], page[:cut] + html_part + page[cut:])
    md_part = to_markdown([section], [], "")
    atomic_write_text(paths["md"], paths["md"].read_text() + "\n" + md_part[md_part.index("## "):])


def write_curve_figures(out: Path, grid: Grid, cells: list[dict], prefix: str = "") -> None:
    """<prefix>curves-<env>.png: return and cost against env steps per cell (mean and min-max band over seeds), the cost
    limit, and OmniSafe's final 1e7-step numbers as markers."""
    from saferl.report.figures import benchmark_curves_figure

    for env_id in grid.envs:
        done = [c for c in cells if c["ok"] and c["env"] == env_id and c.get("per_seed")]
        if any("curve" in s for c in done for s in c["per_seed"]):
            png = benchmark_curves_figure(env_id, [(cell_name(c), c) for c in done])
            (out / f"{prefix}curves-{env_id}.png").write_bytes(png)


def _time_left(cell: dict) -> str:
    seconds = cell.get("train_s_left")
    if seconds is None:
        return ""
    if seconds == 0:
        return ", trained, not yet evaluated"
    if round(seconds / 60) >= 60:
        return f", {seconds / 3600:.1f} h to go"
    return f", {seconds / 60:.0f} min to go" if round(seconds) >= 60 else f", {seconds:.0f} s to go"


def _steps(value: float) -> str:
    return f"{value / 1e6:.2g}M" if value >= 1e6 else f"{value / 1e3:.3g}k"


def _fmt(value, digits: int = 2) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _pm(stats: dict, digits: int = 2) -> str:
    if stats.get("mean") is None:
        return "–"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"
