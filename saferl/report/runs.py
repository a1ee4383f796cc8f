"""Reading run directories for the report: config essentials, progress columns, evaluation episodes, labels.

A missing part (no checkpoint, a BC run without returns, a progress file cut mid-row) becomes a note on the
run rather than an error, so a crashed run can still be inspected.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from saferl.errors import SafeRLError
from saferl.logger import progress_number, read_progress
from saferl.report.stats import finite_values

NOT_COST_COLUMNS = ("ep_return", "ep_cost", "ep_length")
LOSS_COLUMNS = ("train_loss", "val_loss")  # behaviour cloning: plotted per epoch, it has no env steps


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


def progress_columns(rows: list[dict]) -> dict[str, np.ndarray]:
    """Rows of strings as float columns; a cell that is empty or not a number (e.g. `phase`) is NaN."""
    return {name: np.array([progress_number(row[name]) for row in rows]) for name in (rows[0] if rows else {})}


def cost_limit_value(value):
    """A config's cost limit as a float, a list of floats (one per constraint) or None."""
    try:
        if isinstance(value, (list, tuple)):
            return [float(v) for v in value]
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def limit_text(limit) -> str:
    if isinstance(limit, list):
        return "/".join(f"{v:g}" for v in limit)
    return "none" if limit is None else f"{limit:g}"


def load_run(path) -> Run:
    path = Path(path)
    config_path = path / "config.yaml"
    if not path.is_dir() or not config_path.is_file():
        members = sorted(p.name for p in path.glob("*/config.yaml")) if path.is_dir() else []
        hint = f"; it holds runs: pass them, e.g. {path}/*/" if members else ""
        raise SafeRLError(f"{path} is not a run directory (no config.yaml){hint}")
    try:
        config = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError:
        config = None
    if not isinstance(config, dict):
        raise SafeRLError(f"{path} is not a run directory (config.yaml is not a saferl config)")
    train, env, lagrange = (config.get(key) or {} for key in ("train", "env", "lagrange"))  # older runs: lagrange
    run = Run(path=path, config=config, algo=str(train.get("algo", "?")), env_id=str(env.get("id", "?")),
              seed=train.get("seed"), cost_limit=cost_limit_value(env.get("cost_limit", lagrange.get("cost_limit"))))
    progress_path = path / "progress.csv"
    if progress_path.is_file():
        run.progress = progress_columns(read_progress(progress_path, run.notes))
    else:
        run.notes.append(f"{path}: no progress.csv (training never logged an epoch)")
    logged_limit = run.column("cost_limit")
    if logged_limit is not None:  # what the run trained against (a schedule may have moved it)
        run.cost_limit = float(finite_values(logged_limit)[-1])
    return run


def assign_labels(runs: list[Run]) -> None:
    """Short unique names: 'ppo_lag s0', with the env when runs differ in env, the cost limit when runs of one
    algorithm and env differ in it, and the folder name (then its parent's too) on clashes."""
    several_envs = len({r.env_id for r in runs}) > 1
    limits: dict = {}
    for run in runs:
        limits.setdefault((run.algo, run.env_id), set()).add(json.dumps(run.cost_limit))
    for run in runs:
        run.label = f"{run.algo} " + (f"s{run.seed}" if run.seed is not None else run.path.name)
        run.label += f" {run.env_id}" if several_envs else ""
        run.label += f" limit {limit_text(run.cost_limit)}" if len(limits[(run.algo, run.env_id)]) > 1 else ""
    for folder in (lambda p: p.name, lambda p: f"{p.parent.name}/{p.name}"):
        labels = [r.label for r in runs]
        clashing = [r for r in runs if labels.count(r.label) > 1]
        for run in clashing:
            run.label = f"{run.label.split(' (')[0]} ({folder(run.path)})"


def group_runs(runs: list[Run]) -> list[list[Run]]:
    """Seeds of one algorithm on one env at one cost limit form a group: one table row, one curve. Runs at
    different limits are never averaged together."""
    groups: dict = {}
    for run in runs:
        groups.setdefault((run.algo, run.env_id, json.dumps(run.cost_limit)), []).append(run)
    return list(groups.values())


# ---------------------------------------------------------------------------------------------
# Evaluation episodes
# ---------------------------------------------------------------------------------------------


def evaluation_episodes(run_dir: Path, episodes: int, deterministic: bool = False, seed: int | None = None) -> dict:
    """The saved policy's evaluation episodes (the same ones as `saferl eval`) with every step's costs, and
    velocity where the env reports it, so the report can show where in an episode violations happen."""
    from saferl.evaluation import evaluation_seed, make_eval_env, run_episodes
    from saferl.rundir import load_policy

    config, policy, checkpoint = load_policy(run_dir)
    seed = evaluation_seed(config.train.seed) if seed is None else seed
    env = make_eval_env(config, episodes)
    try:
        result = run_episodes(policy, env, episodes, deterministic, seed, record=True, info_keys=("velocity",))
        names = list(getattr(env, "cost_names", []))
        threshold = getattr(env, "velocity_threshold", None)
    finally:
        env.close()
    return {"returns": result.returns, "costs": result.costs, "lengths": result.lengths,
            "successes": result.successes, "step_costs": [steps["costs"] for steps in result.steps],
            "velocities": [steps["velocity"] for steps in result.steps if "velocity" in steps],
            "source": "rollouts", "deterministic": deterministic, "seed": seed,
            "checkpoint_epoch": checkpoint.get("epoch"), "velocity_threshold": threshold,
            "cost_names": _cost_names(names, len(result.costs[0]))}


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
                "successes": [bool(e["success"]) for e in episodes if "success" in e],
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
                run.evaluation = evaluation_episodes(run.path, episodes, deterministic)
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
