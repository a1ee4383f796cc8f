"""`saferl benchmark GRID.yaml --out DIR`: every (algorithm, task) cell of a grid trained as one multi-seed process in
a Ray task, then results.json, results.md and report.html beside OmniSafe's published numbers.

The grid is a YAML mapping: `algos` (list), `envs` (list of task ids), `seeds` (list of ints), `steps` (int) and
optionally `set` (list of `key=value`, as `saferl train --set`) and `variants` (a list of `{name, set, algos}`: each
variant adds its `set` to the grid's, for the algorithms it names or for all; an ablation). Cell (algo, env[,
variant]) is the ordinary multi-seed run directory DIR/<env>/<algo>[-<variant>]/ (members seed-<s>/), so `saferl
eval`, `saferl report` and `saferl train --resume` work on it by hand too. results.json holds every epoch's return
and cost per seed (`curve`), and curves-<env>.png draws them. A cell whose cell.json matches the grid is skipped;
any other cell with a run directory resumes from its checkpoints. Ray does the scheduling: each cell asks for
`cpus_per_cell` CPUs, and at most `max_parallel` cells are in flight. With `--address` the cells run on an existing
cluster, which needs saferl installed on every node and DIR on a filesystem they share.
"""

from __future__ import annotations

import json
import math
import os
import socket
import statistics
import sys
import time
from pathlib import Path

from saferl.benchmark_grid import Grid, Variant, load_grid
from saferl.benchmark_results import (
    EVAL_EPISODES,
    cell_name,
    clean,
    omnisafe_entry,
    progress_line,
    write_curve_figures,
    write_report,
    write_results,
)
from saferl.errors import SafeRLError, os_error_text
from saferl.files import write_json
from saferl.logger import progress_number, read_progress
from saferl.ray_watchdog import watch

QUIET = ["train.progress_bar=false"]  # nobody watches a Ray worker's terminal (a resumed run may change it)
CELL_FILE = "cell.json"
OBJECT_STORE_BYTES = 100 * 1024**2  # cells return small dicts; Ray's default reserves 30% of the RAM
WATCHDOGS: list = []  # saferl.ray_watchdog processes of the local Rays this process started


def cell_spec(grid: Grid, algo: str, env_id: str, out: Path, variant: Variant | None = None) -> dict:
    """All a Ray task needs to train one cell (plain data: it crosses to another process or node)."""
    name = f"{algo}-{variant.name}" if variant else algo
    return {"algo": algo, "env": env_id, "seeds": grid.seeds, "steps": grid.steps,
            "set": grid.sets + (variant.sets if variant else []), "variant": variant.name if variant else None,
            "dir": str((out / env_id / name).resolve())}


def cell_key(spec_or_result: dict) -> tuple:
    return spec_or_result["env"], spec_or_result["algo"], spec_or_result.get("variant")


def member_dirs(root: Path, seeds: list[int]) -> list[Path]:
    from saferl.members import member_dir_name

    return [root / member_dir_name(seed) for seed in seeds]


def progress_rows(run_dir: Path) -> list[dict[str, str]]:
    """A member's progress.csv rows; none when it has not written one yet."""
    path = run_dir / "progress.csv"
    return read_progress(path, notes=[]) if path.is_file() else []


def last_row(run_dir: Path) -> dict:
    rows = progress_rows(run_dir)
    return rows[-1] if rows else {}


def trained(root: Path, seeds: list[int], steps: int) -> bool:
    """Every member's last progress row has reached `steps`."""
    return all(progress_number(last_row(d).get("env_steps")) >= steps for d in member_dirs(root, seeds))


def spec_identity(spec: dict) -> dict:
    """What makes a cell the same cell (the variant only when there is one: older cell.json files have none)."""
    keys = ("algo", "env", "seeds", "steps", "set") + (("variant",) if spec.get("variant") else ())
    return {k: spec[k] for k in keys}


def stored_cell(spec: dict) -> dict | None:
    """The cell's result from an earlier call when it still describes the grid's cell and its files."""
    root = Path(spec["dir"])
    try:
        stored = json.loads((root / CELL_FILE).read_text())
    except (OSError, ValueError):
        return None
    same = isinstance(stored, dict) and stored.get("spec") == spec_identity(spec)
    return stored if same and trained(root, spec["seeds"], spec["steps"]) else None


# -- one cell, inside a Ray task -------------------------------------------------------------------------------
def run_cell(spec: dict) -> dict:
    """Train (or resume) the cell's seeds in this process, evaluate each, write cell.json; a small dict back.
    The cell's directory is owned by this process throughout; its runs are checked to be the grid's first."""
    from saferl.ownership import claim

    try:
        with claim(Path(spec["dir"])):
            return train_cell(spec)
    except SafeRLError as exc:
        return failed_cell(spec, str(exc))


def failed_cell(spec: dict, error: str) -> dict:
    return {"algo": spec["algo"], "env": spec["env"], "variant": spec.get("variant"), "ok": False, "error": error}


def train_cell(spec: dict) -> dict:
    from saferl.cells import check_cell_settings, check_rows_reach_checkpoints
    from saferl.evaluation import evaluate

    start = time.perf_counter()
    root, seeds, steps = Path(spec["dir"]), spec["seeds"], spec["steps"]
    dirs = member_dirs(root, seeds)
    check_cell_settings(spec, [*spec["set"], *QUIET])
    check_rows_reach_checkpoints(spec)
    started_at = min(progress_number(last_row(d).get("env_steps"), 0.0) for d in dirs)
    action = "evaluated"  # trained before; only the evaluation is missing
    if not trained(root, seeds, steps):
        resume = any((d / "config.yaml").is_file() for d in dirs)
        action = "resumed" if resume else "trained"
        error = train_logged(spec, resume)
        if error is not None:
            return failed_cell(spec, error)
    per_seed = []
    for seed, directory in zip(seeds, dirs, strict=True):
        evaluation = evaluate(directory, EVAL_EPISODES, deterministic=True)
        per_seed.append({**seed_progress(seed, directory),
                         "eval_return": evaluation["mean_return"], "eval_cost": evaluation["mean_cost"]})
    result = {**cell_summary(spec, per_seed, ("return", "cost", "eval_return", "eval_cost")), "action": action,
              "resumed_at_steps": int(started_at) if action == "resumed" else 0,
              "wall_s": time.perf_counter() - start}
    result = clean(result)
    write_json(root / CELL_FILE, result)
    return result


def seed_progress(seed: int, directory: Path) -> dict:
    """A seed's entry in a cell's per_seed as far as its progress.csv goes (a finished cell adds its evaluation)."""
    rows = progress_rows(directory)
    row = rows[-1] if rows else {}
    curve = learning_curve(rows)
    limit = progress_number(row.get("cost_limit"))
    return {"seed": seed, "dir": str(directory), "env_steps": int(progress_number(row.get("env_steps"), 0)),
            "return": progress_number(row.get("ep_return")), "cost": progress_number(row.get("ep_cost")),
            "cost_limit": limit, "stays_under_limit_from": stays_under_from(curve, limit), "curve": curve}


def cell_summary(spec: dict, per_seed: list[dict], keys: tuple[str, ...]) -> dict:
    """What a finished and a partial cell both report: the cell, its seeds, the mean ± std over seeds of `keys`,
    training time and rate, and OmniSafe's published numbers."""
    from saferl.report.stats import mean_std

    train_s = training_seconds(Path(per_seed[0]["dir"]))  # the seeds train together, in one process
    total_steps = sum(s["env_steps"] for s in per_seed)
    return {"algo": spec["algo"], "env": spec["env"], "variant": spec.get("variant"), "ok": True,
            "spec": spec_identity(spec), "dir": spec["dir"], "steps": spec["steps"], "seeds": spec["seeds"],
            "per_seed": per_seed, **{key: mean_std([s[key] for s in per_seed]) for key in keys},
            "train_s": train_s, "steps_per_s": total_steps / train_s if train_s > 0 else None,
            "omnisafe": omnisafe_entry(spec["env"], spec["algo"])}


def train_logged(spec: dict, resume: bool) -> str | None:
    """Train (or resume) the cell's seeds in one process, its announcements and any error appended to the cell's
    train.log; the error (None when it trained)."""
    from saferl.training import Interrupted, TrainRequest, train, train_summary

    root, seeds = Path(spec["dir"]), spec["seeds"]
    run_dir = member_dirs(root, seeds)[0] if resume and len(seeds) == 1 else root  # one seed: no members.json
    request = TrainRequest(algo=spec["algo"], env=spec["env"], seeds=seeds, steps=spec["steps"], run_dir=run_dir,
                           resume=resume, sets=[*spec["set"], *QUIET])
    root.mkdir(parents=True, exist_ok=True)
    log = root / "train.log"
    with open(log, "a") as handle:
        def say(line: str) -> None:
            handle.write(line + "\n")
            handle.flush()

        say(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {'resume' if resume else 'train'} {spec['algo']} on "
            f"{spec['env']}: seeds {','.join(map(str, seeds))}, {spec['steps']} steps, set {' '.join(request.sets)}")
        try:
            for line in train_summary(train(request, say=say)):
                say(line)
        except SafeRLError as exc:
            error = str(exc)
        except OSError as exc:
            error = os_error_text(exc)
        except Interrupted as stop:
            error = f"interrupted at epoch {stop.epoch}; see {log}"
        else:
            return None
        say(f"saferl: error: {error}")
        return error


CURVE_COLUMNS = ("env_steps", "ep_return", "ep_cost", "epoch_ep_return", "epoch_ep_cost")


def learning_curve(rows: list[dict[str, str]]) -> dict:
    """Every epoch's env steps, windowed return and cost (last 100 episodes) and this epoch's own means."""
    return {column: [progress_number(row.get(column)) for row in rows] for column in CURVE_COLUMNS}


def stays_under_from(curve: dict, limit: float) -> int | None:
    """The env steps from which the windowed cost stays at or under the limit to the end (None: it ends over)."""
    steps, costs = curve["env_steps"], curve["ep_cost"]
    first = None
    for step, cost in zip(steps, costs, strict=True):
        if not math.isfinite(cost) or cost > limit:
            first = None
        elif first is None:
            first = step
    return None if first is None else int(first)


def epoch_rates(run_dir: Path) -> list[tuple[float, float]]:
    """(env steps, fps) of each epoch in progress.csv that has both; none when the member has not written one yet.
    fps is the epoch's own rate: its new steps over its seconds."""
    rows = [(progress_number(row.get("env_steps")), progress_number(row.get("fps"))) for row in progress_rows(run_dir)]
    return [(steps, fps) for steps, fps in rows if math.isfinite(steps) and math.isfinite(fps) and fps > 0]


def training_seconds(run_dir: Path) -> float:
    """Time spent in epochs, from progress.csv: survives interruptions and resumes."""
    total, previous = 0.0, 0.0
    for steps, fps in epoch_rates(run_dir):
        total += (steps - previous) / fps
        previous = steps
    return total


def seconds_to_go(run_dir: Path, steps_left: float, recent: int = 10) -> float | None:
    """The training time a member's last `steps_left` steps should take: at the median rate of its last `recent`
    epochs, since early epochs run at other speeds (PPO's KL early stop shortens the update as training goes on)
    and an epoch that shared the machine with a paused or heavier neighbour is an outlier, not a rate."""
    rates = [fps for _, fps in epoch_rates(run_dir)[-recent:]]
    return max(steps_left, 0.0) / statistics.median(rates) if rates else None


# -- the driver ------------------------------------------------------------------------------------------------
def start_ray(address: str | None, num_cpus: int):
    """Ray, connected to `address` or to a new local instance; (ray, whether we started it)."""
    if address:
        use_token_auth_when_available()  # read when Ray is imported
    try:
        import ray
    except ImportError:
        raise SafeRLError("Ray is not installed: pip install 'saferl[cluster]' (or pip install ray)") from None
    if ray.is_initialized():
        return ray, False
    quiet = {"log_to_driver": False, "logging_level": "ERROR"}  # each cell logs to its train.log
    if address:
        check_reachable(address)
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            # Ray runs its workers at nice 15 by default: on a shared machine the cells would yield to everything
            # else. Workers at the driver's priority (the user's own RAY_worker_niceness wins).
            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(num_cpus=num_cpus, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES, **quiet)
            WATCHDOGS.append(watch())  # Ray's processes go with this one, even after kill -9
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...: say it in one line
        where = f"connect to Ray at {address}" if address else "start a local Ray instance"
        raise SafeRLError(f"cannot {where}: {_last_line(exc)}") from None
    return ray, True


def use_token_auth_when_available() -> None:
    """Ray >= 2.5x: `ray start` enables token authentication when a token exists (~/.ray/auth_token, which any
    local `ray.init` writes), but a driver connecting to it sends the token only with RAY_AUTH_MODE=token, and
    fails after ~30 s with "Failed to connect". Set it, as `ray start` decides, when the user left it unset."""
    token_sources = (os.environ.get("RAY_AUTH_TOKEN"), os.environ.get("RAY_AUTH_TOKEN_PATH"),
                     Path.home() / ".ray" / "auth_token")
    if "RAY_AUTH_MODE" not in os.environ and any(
            source and (not isinstance(source, Path) or source.is_file()) for source in token_sources):
        os.environ["RAY_AUTH_MODE"] = "token"
        if "ray" in sys.modules:  # imported already (a library user): Ray caches its config at import
            from ray._raylet import Config

            Config.initialize("")


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """`ray.init` retries an unreachable host:port for minutes; a plain TCP connect says it in seconds."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise SafeRLError(f"cannot connect to Ray at {address}: {exc.strerror or exc}") from None


def run_benchmark(grid_path: Path, out: Path, address: str | None = None, max_parallel: int | None = None,
                  cpus_per_cell: int = 2) -> int:
    """Train the grid's missing cells on Ray, then write results.json, results.md and report.html to `out`.
    Exit status: 0, 1 when a cell failed, 130 when interrupted (run it again to resume)."""
    grid = load_grid(grid_path)
    out = Path(out)
    specs = [cell_spec(grid, algo, env_id, out, variant) for env_id, algo, variant in grid.cells()]
    results: dict[tuple, dict] = {}
    todo = []
    for spec in specs:
        stored = stored_cell(spec)
        if stored is None:
            todo.append(spec)
        else:
            results[cell_key(spec)] = {**stored, "variant": spec.get("variant"), "action": "skipped"}
            print(progress_line(len(results), len(specs), results[cell_key(spec)]), flush=True)
    info = {"address": address, "cells_run": len(todo)}
    code = 0
    if todo:
        start = time.perf_counter()
        ray, started = start_ray(address, max(os.cpu_count() or 1, cpus_per_cell))
        info["ray_start_s"] = round(time.perf_counter() - start, 2)
        try:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            info["max_parallel"] = limit = max_parallel or max(1, cpus // cpus_per_cell)
            info["cpus_per_cell"] = cpus_per_cell
            print(f"ray: {cpus} CPUs, {len(todo)} cell(s) to train, {limit} at a time, {cpus_per_cell} CPU(s) each "
                  f"(started in {info['ray_start_s']:.1f} s)", flush=True)
            task = ray.remote(run_cell).options(num_cpus=cpus_per_cell, max_retries=0)
            pending: dict = {}
            queue = list(todo)
            while queue or pending:
                while queue and len(pending) < limit:
                    spec = queue.pop(0)
                    pending[task.remote(spec)] = spec
                done, _ = ray.wait(list(pending), num_returns=1)
                spec = pending.pop(done[0])
                try:
                    result = ray.get(done[0])
                except ray.exceptions.RayError as exc:
                    result = {"algo": spec["algo"], "env": spec["env"], "variant": spec.get("variant"), "ok": False,
                              "error": f"{type(exc).__name__}: {_last_line(exc)}"}
                results[cell_key(spec)] = result
                write_results(out, grid, [results[cell_key(s)] for s in specs if cell_key(s) in results], info)
                code = code or (0 if result["ok"] else 1)
                print(progress_line(len(results), len(specs), result), flush=True)
        except KeyboardInterrupt:
            print(f"\ninterrupted; run the same command again: finished cells are skipped, the others resume from "
                  f"their checkpoints in {out}", file=sys.stderr)
            code = 130
        finally:
            if started:
                ray.shutdown()
    ordered = [results[cell_key(s)] for s in specs if cell_key(s) in results]
    write_results(out, grid, ordered, info)
    write_curve_figures(out, grid, ordered)
    reported = code != 130 and any(r["ok"] for r in ordered)
    if reported:
        write_report(out, ordered)
    print(f"results: {out / 'results.json'} (also results.md" + (", report.html)" if reported else ")"))
    return code


def benchmark_status(grid_path: Path, out: Path) -> int:
    """Where a grid stands, training nothing: status.json, status.md and status-curves-<env>.png in `out`, with the
    finished cells as in results.md and every started one at the steps its seeds have reached (read-only: it may
    run while the grid trains). A long campaign's partial table, committed as cells progress."""
    grid = load_grid(grid_path)
    out = Path(out)
    specs = [cell_spec(grid, algo, env_id, out, variant) for env_id, algo, variant in grid.cells()]
    cells, waiting = [], []
    for spec in specs:
        cell = stored_cell(spec) or partial_cell(spec)
        if cell is None:
            waiting.append(f"{spec['env']} {cell_name(spec)}")
        else:
            cells.append({**cell, "variant": spec.get("variant")})
    finished = sum(not c.get("partial") for c in cells)
    info = {"finished": finished, "in_progress": len(cells) - finished, "not_started": waiting}
    write_results(out, grid, cells, info, name="status")
    write_curve_figures(out, grid, cells, prefix="status-")
    print(f"{finished} of {len(specs)} cells finished, {len(cells) - finished} in progress, {len(waiting)} not started:"
          f" {out / 'status.md'}")
    return 0


def partial_cell(spec: dict) -> dict | None:
    """A started, unfinished cell as far as its progress.csv files go (None when no seed has a row yet)."""
    dirs = member_dirs(Path(spec["dir"]), spec["seeds"])
    per_seed = [seed_progress(seed, directory) for seed, directory in zip(spec["seeds"], dirs, strict=True)]
    if not any(s["curve"]["env_steps"] for s in per_seed):
        return None
    summary = cell_summary(spec, per_seed, ("return", "cost"))
    # The seeds train together in one process, so the cell has left what its furthest-behind seed has, at the rate
    # of the seed with the most epochs to measure it by: a plan for the compute, not a promise.
    steps = [s["env_steps"] for s in per_seed]
    ahead = per_seed[steps.index(max(steps))]
    eta = seconds_to_go(Path(ahead["dir"]), spec["steps"] - min(steps))
    return clean({**summary, "partial": True, "train_s_left": eta,
                  "eval_return": {"mean": None}, "eval_cost": {"mean": None}, "wall_s": None})


def _last_line(exc: Exception) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else repr(exc)
