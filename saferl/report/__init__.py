"""`saferl report`: how often, how badly and where runs break their cost limit, in one offline page.

Reads run directories (config.yaml, progress.csv, the checkpoint, eval.json), rolls the saved policies out
for fresh evaluation episodes with per-step costs, and writes report.html (self-contained: images are
embedded), report.md and report.json. A missing part (no checkpoint, a BC run without returns, a progress
file cut mid-row) is reported as missing rather than failing, so a crashed run can still be inspected.

The statistics are small pure functions at the top so they can be checked against hand-computed answers.
"""

from __future__ import annotations

import base64
import csv
import functools
import html
import json
import math
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from saferl.errors import SafeRLError
from saferl.io import atomic_write_bytes, atomic_write_text

CVAR_ALPHA = 0.9
NOT_COST_COLUMNS = ("ep_return", "ep_cost", "ep_length")
LOSS_COLUMNS = ("train_loss", "val_loss")  # behaviour cloning: plotted per epoch, it has no env steps


# ---------------------------------------------------------------------------------------------
# Statistics (pure)
# ---------------------------------------------------------------------------------------------


def _finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=float).ravel()
    return values[np.isfinite(values)]


def cvar(values, alpha: float = CVAR_ALPHA) -> float:
    """Mean of the worst (largest) 1 - alpha share of `values`: the tail a mean cost hides.

    The tail holds ceil((1 - alpha) n) values, at least one, so CVaR_0.9 of 10 episodes is the worst one.
    """
    values = np.sort(_finite(values))
    if values.size == 0:
        return float("nan")
    k = max(1, math.ceil((1.0 - alpha) * values.size - 1e-9))
    return float(values[-k:].mean())


def violation_stats(episode_costs, limit: float | None) -> dict:
    """Distribution of episode costs against the limit (over the limit means cost > limit)."""
    costs = _finite(episode_costs)
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
    costs = _finite(costs)
    return float(np.clip(costs - limit, 0.0, None).sum())


def training_stats(costs, limit: float | None, epochs=None) -> dict:
    """Per-epoch episode costs (progress.csv) against the limit."""
    costs = np.asarray(costs, dtype=float)
    finite = _finite(costs)
    stats = {"epochs_logged": int(finite.size), "final": float(finite[-1]) if finite.size else None,
             "worst_epoch": float(finite.max()) if finite.size else None, "epochs_over_limit": None,
             "share_epochs_over_limit": None, "regret": None, "first_safe_epoch": None}
    if limit is not None and finite.size:
        over = int((finite > limit).sum())
        stats.update(epochs_over_limit=over, share_epochs_over_limit=over / finite.size,
                     regret=safety_regret(finite, limit), first_safe_epoch=first_safe_epoch(costs, limit, epochs))
    return stats


def mean_std(values) -> tuple[float, float]:
    values = _finite(values)
    if values.size == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(values.std())


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


# ---------------------------------------------------------------------------------------------
# Reading run directories
# ---------------------------------------------------------------------------------------------


def read_progress_tolerant(path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """progress.csv as float columns (empty cell: NaN), dropping a last row cut mid-write, with warnings.

    The logger ends every row with a newline, so a file without one was interrupted mid-row.
    """
    text = Path(path).read_text(errors="replace")
    notes = []
    lines = text.split("\n")
    if text.endswith("\n"):
        lines = lines[:-1]
    elif len(lines) > 1:
        notes.append(f"{path}: the last line is cut mid-row (no newline); it was skipped and the "
                     f"{len(lines) - 2} complete rows are reported")
        lines = lines[:-1]
    if not lines or not lines[0].strip():
        return {}, notes + [f"{path} is empty"]
    header = next(csv.reader([lines[0]]))
    rows, malformed = [], 0
    for line in lines[1:]:
        if not line.strip():
            continue
        fields = next(csv.reader([line]))
        if len(fields) != len(header):
            malformed += 1
            continue
        rows.append(fields)
    if malformed:
        notes.append(f"{path}: skipped {malformed} malformed row(s) with the wrong number of fields")
    if not rows:
        notes.append(f"{path} has no complete rows")
    return {name: np.array([_to_float(r[j]) for r in rows]) for j, name in enumerate(header)}, notes


def _to_float(cell: str) -> float:
    try:
        return float(cell)
    except ValueError:
        return float("nan")


@dataclass
class Run:
    """One run directory as the report sees it: config essentials, progress columns, evaluation episodes."""

    path: Path
    config: dict
    algo: str
    env_id: str
    seed: int | None
    cost_limit: float | list | None
    progress: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    label: str = ""
    evaluation: dict | None = None
    eval_note: str = ""
    video: dict | None = None

    def limit(self, k: int = 0) -> float | None:
        if isinstance(self.cost_limit, (list, tuple)):
            return float(self.cost_limit[min(k, len(self.cost_limit) - 1)])
        return None if self.cost_limit is None else float(self.cost_limit)

    def column(self, name: str) -> np.ndarray | None:
        values = self.progress.get(name)
        return values if values is not None and np.isfinite(values).any() else None

    def x(self, column: str = "") -> np.ndarray:
        """env_steps, or the epoch for losses and for runs whose env_steps do not advance (BC)."""
        epochs = self.column("epoch")
        if epochs is None:
            epochs = np.arange(1, self.rows + 1, dtype=float)
        steps = self.column("env_steps")
        if column in LOSS_COLUMNS or steps is None or (self.rows > 1 and np.nanmax(steps) == np.nanmin(steps)):
            return epochs
        return steps

    @property
    def rows(self) -> int:
        return len(next(iter(self.progress.values()))) if self.progress else 0

    def cost_columns(self) -> list[tuple[str, str]]:
        """(constraint name, progress column): `ep_<name>` columns when K > 1, else just `ep_cost`.

        The logger sorts extra columns by name, so the constraint order (k, which limit and multiplier
        index belong to a cost) comes from the env's `cost_names`.
        """
        extra = [c[3:] for c in self.progress if c.startswith("ep_") and c not in NOT_COST_COLUMNS]
        if extra:
            order = env_cost_names(self.env_id)
            extra.sort(key=lambda n: order.index(n) if n in order else len(order))
            return [(name, f"ep_{name}") for name in extra]
        return [("cost", "ep_cost")] if "ep_cost" in self.progress else []

    def multiplier_columns(self) -> list[str]:
        names = [c for c in self.progress if c.startswith("lagrange_multiplier") or c.startswith("cpo_nu_")]
        return [c for c in names if self.column(c) is not None]


@functools.cache
def env_cost_names(env_id: str) -> list[str]:
    try:
        from saferl import envs

        env = envs.make(env_id, num_envs=1)
    except Exception:  # an env this installation cannot build: keep progress.csv's order
        return []
    names = list(getattr(env, "cost_names", []))
    env.close()
    return names


def load_run(path) -> Run:
    path = Path(path)
    config_path = path / "config.yaml"
    if not path.is_dir() or not config_path.is_file():
        raise SafeRLError(f"{path} is not a run directory (no config.yaml)")
    try:
        config = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError:
        config = None
    if not isinstance(config, dict):
        raise SafeRLError(f"{path} is not a run directory (config.yaml is not a saferl config)")
    train, env = config.get("train") or {}, config.get("env") or {}
    run = Run(path=path, config=config, algo=str(train.get("algo", "?")), env_id=str(env.get("id", "?")),
              seed=train.get("seed"), cost_limit=(config.get("lagrange") or {}).get("cost_limit"))
    progress_path = path / "progress.csv"
    if progress_path.is_file():
        run.progress, run.notes = read_progress_tolerant(progress_path)
    else:
        run.notes.append(f"{path}: no progress.csv (training never logged an epoch)")
    logged_limit = run.column("cost_limit")
    if logged_limit is not None:
        run.cost_limit = float(_finite(logged_limit)[-1])
    return run


def assign_labels(runs: list[Run]) -> None:
    """Short unique names: 'ppo_lag s0', with the env when runs differ in env, the folder name on clashes."""
    several_envs = len({r.env_id for r in runs}) > 1
    for run in runs:
        run.label = f"{run.algo} s{run.seed}" + (f" {run.env_id}" if several_envs else "")
    labels = [r.label for r in runs]
    for run in runs:
        if labels.count(run.label) > 1:
            run.label = f"{run.label} ({run.path.name})"


# ---------------------------------------------------------------------------------------------
# Evaluation episodes
# ---------------------------------------------------------------------------------------------


def rollout(run_dir: Path, episodes: int, deterministic: bool = False, seed: int | None = None) -> dict:
    """Roll the saved policy out for `episodes` episodes, keeping every step's costs (and velocity when the
    env reports it) so the report can show where in an episode the violations happen."""
    import torch

    from saferl.runner import load_policy, make_env

    config, policy, checkpoint = load_policy(run_dir)
    num_envs = max(1, min(episodes, config.env.num_envs))
    env = make_env(config, seed=None, num_envs=num_envs)
    seed = config.train.seed + 100_000 if seed is None else seed  # the same episodes as `saferl eval`
    torch.manual_seed(seed)
    quotas = np.array([(episodes + i) // num_envs for i in range(num_envs)])
    obs = env.reset(seed=seed)
    costs_log, velocity_log, start = [], [], np.zeros(num_envs, int)
    result = {"returns": [], "costs": [], "lengths": [], "step_costs": [], "velocities": []}
    try:
        while len(result["returns"]) < episodes:
            action = policy.act(torch.from_numpy(obs).float(), deterministic=deterministic)[0]
            obs, _, cost, _, _, info = env.step(action.numpy())
            costs_log.append(np.asarray(cost, float).reshape(num_envs, -1))
            velocity = info.get("velocity")
            velocity_log.append(None if velocity is None else np.asarray(velocity, float).reshape(num_envs))
            t = len(costs_log)
            for i in np.flatnonzero(info["episode_done"]):
                if quotas[i] > 0:
                    quotas[i] -= 1
                    result["returns"].append(float(info["episode_return"][i]))
                    result["costs"].append([float(c) for c in np.ravel(info["episode_cost"][i])])
                    result["lengths"].append(int(info["episode_length"][i]))
                    result["step_costs"].append(np.stack([c[i] for c in costs_log[start[i]:t]]))
                    if all(v is not None for v in velocity_log[start[i]:t]):
                        result["velocities"].append(np.array([v[i] for v in velocity_log[start[i]:t]]))
                start[i] = t
        names = list(getattr(env, "cost_names", []))
        threshold = getattr(env, "velocity_threshold", None)
    finally:
        env.close()
    result.update(source="rollouts", deterministic=deterministic, seed=seed,
                  checkpoint_epoch=checkpoint.get("epoch"), velocity_threshold=threshold,
                  cost_names=_cost_names(names, len(result["costs"][0])))
    return result


def _cost_names(names: list, k: int) -> list[str]:
    """'cost' for the usual single constraint (as progress.csv's ep_cost), the env's names for several."""
    if k == 1:
        return ["cost"]
    return list(names) if len(names) == k else [f"cost_{j}" for j in range(k)]


def load_eval_json(run_dir: Path) -> dict | None:
    """Episode totals from an earlier `saferl eval` (no per-step costs), used when rollouts are disabled."""
    path = Path(run_dir) / "eval.json"
    try:
        data = json.loads(path.read_text())
        episodes = data["episodes"]
        costs = [[float(c) for c in np.ravel(e["cost"])] for e in episodes]
        return {"source": "eval.json", "returns": [float(e["return"]) for e in episodes], "costs": costs,
                "lengths": [int(e["length"]) for e in episodes], "step_costs": [], "velocities": [],
                "deterministic": data.get("deterministic"), "velocity_threshold": None,
                "cost_names": _cost_names([], len(costs[0]))}
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def attach_evaluation(run: Run, episodes: int, deterministic: bool) -> None:
    if episodes > 0:
        if not (run.path / "checkpoints" / "latest.pt").is_file():
            run.eval_note = "no checkpoint (checkpoints/latest.pt), so no evaluation episodes"
        else:
            try:
                run.evaluation = rollout(run.path, episodes, deterministic)
            except SafeRLError as exc:
                run.eval_note = f"evaluation rollouts failed: {exc}"
            except (KeyError, RuntimeError, ValueError, TypeError) as exc:  # e.g. a policy this version can't run
                run.eval_note = f"evaluation rollouts failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        if run.eval_note:
            run.notes.append(f"{run.path}: {run.eval_note}")
    else:
        run.evaluation = load_eval_json(run.path)
        if run.evaluation is None:
            run.eval_note = "evaluation disabled (--eval-episodes 0) and no eval.json"


# ---------------------------------------------------------------------------------------------
# Summaries: per run, per algorithm x env group
# ---------------------------------------------------------------------------------------------


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
    summary = {"source": ev["source"], "episodes": len(ev["returns"]), "deterministic": ev.get("deterministic"),
               "mean_return": mean_std(ev["returns"])[0], "std_return": mean_std(ev["returns"])[1],
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
    summary["episode_details"] = [{"return": r, "cost": c, "length": n}
                                  for r, c, n in zip(ev["returns"], ev["costs"], ev["lengths"], strict=True)]
    return summary


def summarise_run(run: Run) -> dict:
    last = {}
    for name in ("epoch", "env_steps", "ep_return", "total_violations"):
        values = run.column(name)
        last[name] = None if values is None else float(_finite(values)[-1])
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


def group_runs(runs: list[Run]) -> list[list[Run]]:
    """Seeds of one algorithm on one env (at one cost limit) form a group: one table row, one curve."""
    groups: dict = {}
    for run in runs:
        key = (run.algo, run.env_id, json.dumps(run.cost_limit))
        groups.setdefault(key, []).append(run)
    return list(groups.values())


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
           "return": dict(zip(("mean", "std"), mean_std([_nan(v) for v in returns]), strict=True)),
           "costs": {n: dict(zip(("mean", "std"), mean_std([_nan(v) for v in vs]), strict=True))
                     for n, vs in costs.items()}}
    row["verdict"] = verdict(row["costs"], first)
    return {"row": row, "curves": curves}


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


def verdict(costs: dict, run: Run) -> str:
    """'meets limit' when every constraint's mean cost over seeds is within its limit."""
    if run.limit() is None:
        return "no limit"
    means = [c["mean"] for c in costs.values()]
    if not means or not all(np.isfinite(means)):
        return "unknown"
    ok = all(m <= run.limit(k) for k, m in enumerate(means))
    return "meets limit" if ok else "over limit"


# ---------------------------------------------------------------------------------------------
# The document: sections of paragraphs, tables and images, written as HTML and Markdown
# ---------------------------------------------------------------------------------------------


@dataclass
class Image:
    name: str  # file name under report_files/ (the Markdown links it; the HTML embeds it)
    data: bytes
    alt: str

    @property
    def mime(self) -> str:
        return "image/gif" if self.name.endswith(".gif") else "image/png"


@dataclass
class Table:
    headers: list
    rows: list  # cells: str, or (str, css class) to flag a value ("bad": over the limit, "ok": within)


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)  # str (paragraph), Table or Image


def fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(value)
    return f"{value:.{digits}f}"


def pm(mean, std, digits: int = 2) -> str:
    return "–" if mean is None or not math.isfinite(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def flag(text: str, over: bool | None):
    return text if over is None else (text, "bad" if over else "ok")


def share(count, fraction, total) -> str:
    return "–" if count is None else f"{count}/{total} ({100 * fraction:.0f}%)"


def group_label(group: list[Run], groups: list[list[Run]]) -> str:
    several_envs = len({g[0].env_id for g in groups}) > 1
    label = group[0].algo + (f" · {group[0].env_id}" if several_envs else "")
    twins = [g for g in groups if g[0].algo == group[0].algo and g[0].env_id == group[0].env_id]
    return label + (f" (limit {group[0].cost_limit})" if len(twins) > 1 else "")


def curve_panels(groups: list[list[Run]], group_summaries: list[dict]) -> list[dict]:
    from saferl.report.figures import color

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
        limits = sorted({g[0].limit(k) for g in groups if g[0].limit(k) is not None})
        panels.append({"title": f"episode {name}", "ylabel": name, "series": series(column),
                       "limits": [(v, "cost limit" if len(limits) == 1 else f"cost limit {v:g}") for v in limits]})
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


def build_sections(runs, groups, summaries, group_summaries, video: bool) -> list[Section]:
    from saferl.report.figures import curves_figure, evaluation_figure

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
    if video:
        sections.append(video_section(runs))
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
    rows = []
    for run in runs:
        ev = summaries[run.label]["evaluation"]
        if ev is None:
            continue
        for k, (name, c) in enumerate(ev["constraints"].items()):
            mean_over = None if run.limit(k) is None else c["mean"] > run.limit(k)
            where = "–" if "share_of_steps_with_cost" not in c else f"{100 * c['share_of_steps_with_cost']:.1f}%"
            rows.append([run.label, name, pm(ev["mean_return"], ev["std_return"], 1),
                         share(c["over_limit"], c["share_over_limit"], c["episodes"]),
                         flag(pm(c["mean"], c["std"]), mean_over), fmt(c["worst"]), fmt(c[cvar_key]), where,
                         fmt(c.get("limit_crossed_step_median"), 0)])
    if not rows:
        return "No evaluation episodes (see section 3)."
    return Table(["run", "constraint", "return", "episodes over limit", "cost mean ± std", "worst episode",
                  f"CVaR{round(CVAR_ALPHA * 100)}", "steps with cost", "limit passed at step (median)"], rows)


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


def video_section(runs: list[Run]) -> Section:
    section = Section("5. Video")
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


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f0f3f7; } td.num { text-align: right; } td:first-child { white-space: nowrap; }
td.bad { color: #b00020; font-weight: 600; background: #fdecee; } td.ok { color: #11691b; background: #ecf8ee; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.4em 0; }
.warn { background: #fff4d6; border: 1px solid #e0b84c; padding: 0.5em 1em; margin: 1em 0; }
.meta { color: #666; }
"""


def to_html(sections: list[Section], notes: list[str], generated: str) -> str:
    esc = html.escape
    parts = ["<!doctype html>", "<html lang='en'><head><meta charset='utf-8'><title>saferl report</title>",
             f"<style>{CSS}</style></head><body>", "<h1>saferl report</h1>",
             f"<p class='meta'>generated {esc(generated)}</p>"]
    if notes:
        parts.append("<div class='warn'><b>Warnings</b><ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes)
                     + "</ul></div>")
    for section in sections:
        parts.append(f"<h2>{esc(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                head = "".join(f"<th>{esc(h)}</th>" for h in block.headers)
                body = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in block.rows)
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif isinstance(block, Image):
                data = base64.b64encode(block.data).decode()
                parts.append(f"<div><img alt='{esc(block.alt)}' src='data:{block.mime};base64,{data}'></div>")
            else:
                parts.append(f"<p>{esc(block)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_cell(cell) -> str:
    text, css = cell if isinstance(cell, tuple) else (cell, "")
    if re.fullmatch(r"–|-?[\d.]+( ± [\d.]+|/\d+ \(\d+%\)|%)?", text):  # numbers right-aligned, words left
        css = f"{css} num".strip()
    return f"<td class='{css}'>{html.escape(text)}</td>" if css else f"<td>{html.escape(text)}</td>"


def to_markdown(sections: list[Section], notes: list[str], generated: str) -> str:
    lines = ["# saferl report", "", f"generated {generated}", ""]
    if notes:
        lines += ["> **Warnings**", ">"] + [f"> - {n}" for n in notes] + [""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                cells = [[c[0] if isinstance(c, tuple) else c for c in row] for row in block.rows]
                lines.append("| " + " | ".join(block.headers) + " |")
                lines.append("|" + "---|" * len(block.headers))
                lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
            elif isinstance(block, Image):
                lines.append(f"![{block.alt}](report_files/{block.name})")
            else:
                lines.append(block)
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _jsonable(value):
    """Strict JSON: numpy scalars to Python, NaN/inf to null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def build_report(run_dirs, out=None, eval_episodes: int = 10, video: bool = False,
                 deterministic: bool = False) -> dict:
    """Write report.html, report.md and report.json (+ report_files/ for the Markdown's images) to `out`.

    Default `out`: the run directory for one run, reports/<time> for several. Returns the paths and warnings.
    """
    from saferl.report.figures import render_video

    if eval_episodes < 0:
        raise SafeRLError(f"--eval-episodes must be >= 0, got {eval_episodes}")
    if not run_dirs:
        raise SafeRLError("give at least one run directory")
    unique = list(dict.fromkeys(Path(p).resolve() for p in run_dirs))
    runs = [load_run(p) for p in unique]
    assign_labels(runs)
    out = Path(out) if out else runs[0].path if len(runs) == 1 else Path("reports") / time.strftime("%Y%m%d-%H%M%S")
    files = out / "report_files"
    for run in runs:
        attach_evaluation(run, eval_episodes, deterministic)
    groups = group_runs(runs)
    if video:
        files.mkdir(parents=True, exist_ok=True)
        for group in groups:  # one episode per algorithm x env: rendering is the slow part
            run = group[0]
            run.video = render_video(run.path, files / f"video-{runs.index(run)}.gif", run.env_id, deterministic)
            if not run.video.get("ok"):
                run.notes.append(f"{run.path}: no video, rendering is unavailable: {run.video['reason']}")
    summaries = {r.label: summarise_run(r) for r in runs}
    group_summaries = [summarise_group(g, summaries) for g in groups]
    notes = [n for r in runs for n in r.notes]
    for note in notes:
        print(f"saferl: warning: {note}", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices in plots of partial runs
        sections = build_sections(runs, groups, summaries, group_summaries, video)
    generated = time.strftime("%Y-%m-%d %H:%M:%S")
    for section in sections:
        for block in section.blocks:
            if isinstance(block, Image) and not block.name.endswith(".gif"):
                atomic_write_bytes(files / block.name, block.data)
    report = {"generated": generated, "runs": list(summaries.values()),
              "comparison": [g["row"] for g in group_summaries],
              "groups": [{"label": group_label(g, groups), "runs": [r.label for r in g], "curves": s["curves"]}
                         for g, s in zip(groups, group_summaries, strict=True)],
              "warnings": notes}
    paths = {"html": out / "report.html", "md": out / "report.md", "json": out / "report.json"}
    atomic_write_text(paths["json"], json.dumps(_jsonable(report), indent=2, allow_nan=False) + "\n")
    atomic_write_text(paths["md"], to_markdown(sections, notes, generated))
    atomic_write_text(paths["html"], to_html(sections, notes, generated))
    return {**paths, "warnings": notes}
