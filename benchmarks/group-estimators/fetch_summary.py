"""The Fetch table of issue 21 from fetch.sh's run directories: per estimator, mean ± std over seeds.

    python benchmarks/group-estimators/fetch_summary.py WORK/push-ft OUT_DIR   # writes OUT_DIR/fetch.{json,md}

and the learning curves, OUT_DIR/fetch-curves-SafetyFetchPush-v0.png (training success, both costs and the
cumulative violations against steps; mean over seeds, min-max band; the clone's sampled evaluation as a grey
dashed line).

Each finished run's small files (progress.csv, the two evaluations, config.yaml, meta.json, its peak memory; never
checkpoints) are kept under OUT_DIR/fetch-runs/<estimator>/seed-<n>/, and the table is made from everything kept
there: runs finished in earlier sessions (on a machine since gone) count with the new ones, and fetch.sh skips
them. `fetch_summary.py OUT_DIR/fetch-runs OUT_DIR` rebuilds the table from the kept files alone.

Training columns are the last progress.csv row (means of the last 100 episodes); success and costs with the mean
action and sampled come from 50 evaluation episodes (the clone's own row: the same evaluation before fine-tuning);
wall time is the sum of the epochs' collect and update seconds over every attempt; memory the largest peak resident
set of any attempt. Run it with saferl's Python.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np

from saferl.logger import read_progress
from saferl.report.figures import color, curves_figure
from saferl.report.render import pm
from saferl.report.runs import load_run
from saferl.report.stats import mean_std

STANDARD = {"ep_return", "ep_cost", "ep_length"}
MODES = ("deterministic", "sampled")
FIGURE = "fetch-curves-SafetyFetchPush-v0.png"


def one_run(run: Path) -> dict:
    rows = read_progress(run / "progress.csv")
    last = rows[-1]
    per_cost = sorted(key for key in last if key.startswith("ep_") and key not in STANDARD)
    evals = {mode: json.loads((run / f"eval-{mode}.json").read_text()) for mode in MODES}
    maxrss = Path(f"{run}.maxrss-kb.txt")
    peaks = [int(line) for line in maxrss.read_text().split() if line.isdigit()] if maxrss.exists() else []
    out = {"env_steps": int(float(last["env_steps"])), "return": float(last["ep_return"]),
           "success": float(last.get("success_rate") or math.nan),
           "total_violations": int(float(last["total_violations"])),
           "train_s": sum(float(r["collect_seconds"]) + float(r["update_seconds"]) for r in rows),
           "peak_rss_mb": max(peaks) / 1024 if peaks else math.nan}
    for key in per_cost:
        out[key.removeprefix("ep_")] = float(last[key])
    return out | eval_columns(evals)


def eval_columns(evals: dict) -> dict:
    out = {}
    for mode, result in evals.items():
        out[f"{mode}_success"] = result.get("success_rate")
        out[f"{mode}_return"] = result["mean_return"]
        for c, value in enumerate(result.get("mean_costs", [result.get("mean_cost")])):
            out[f"{mode}_cost_{c}"] = value
    return out


# eval-sampled.json last: a kept run is complete once it is there
KEPT_FILES = ("progress.csv", "config.yaml", "meta.json", "eval-deterministic.json", "eval-sampled.json")
BESIDE_FILES = ("maxrss-kb.txt", "clone-sha256.txt")  # fetch.sh writes these beside the run, as <run>.<name>


def keep_finished_runs(root: Path, kept: Path) -> None:
    """Copy each finished run's small files next to the table; a run already kept is left as it is."""
    for run in sorted(root.glob("*/seed-*")):
        target = kept / run.parent.name / run.name
        if not (run / "eval-sampled.json").exists() or (target / "eval-sampled.json").exists():
            continue
        target.mkdir(parents=True, exist_ok=True)
        for name in BESIDE_FILES:
            if Path(f"{run}.{name}").exists():
                shutil.copyfile(f"{run}.{name}", f"{target}.{name}")
        for name in KEPT_FILES:
            shutil.copyfile(run / name, target / name)


def keep_clone_evaluation(root: Path, kept: Path) -> None:
    """The clone's own evaluation (fetch.sh writes it to ROOT/clone/, as it is kept), kept beside the runs."""
    if not (root / "clone" / "eval-sampled.json").exists() or (kept / "clone" / "eval-sampled.json").exists():
        return
    (kept / "clone").mkdir(parents=True, exist_ok=True)
    for name in ("clone-sha256.txt", *(f"eval-{mode}.json" for mode in MODES)):  # eval-sampled.json last
        shutil.copyfile(root / "clone" / name, kept / "clone" / name)


def curve_panels(runs: dict[str, list[Path]], clone: dict | None) -> list[dict]:
    """Panels for curves_figure: training success, each cost (the limit dashed) and the cumulative violations
    against steps; one series per estimator (its finished run directories in `runs`), its seeds cut to the
    shortest run; the clone's sampled evaluation as a grey line on the panels it has a number for."""
    loaded = {estimator: [load_run(path) for path in paths] for estimator, paths in runs.items()}
    first = next(iter(loaded.values()))[0]
    quantities = [("success_rate", "success (last 100 training episodes)", "sampled_success", None)]
    quantities += [(column, f"cost {k}, {name} (per episode, last 100)", f"sampled_cost_{k}", first.limit(k))
                   for k, (name, column) in enumerate(first.cost_columns())]
    quantities.append(("total_violations", "cumulative violations (cost-steps)", None, None))
    panels = []
    for column, title, clone_key, limit in quantities:
        series = []
        for index, (estimator, seeds) in enumerate(loaded.items()):
            length = min(seed.rows for seed in seeds)
            values = np.array([seed.progress[column][:length] for seed in seeds])
            series.append({"label": estimator, "color": color(index), "n": len(seeds),
                           "x": seeds[0].x()[:length], "mean": np.nanmean(values, axis=0),
                           "min": np.nanmin(values, axis=0), "max": np.nanmax(values, axis=0)})
        limits = [] if limit is None else [(limit, f"cost limit {limit:g}", None)]
        if clone and clone_key and clone.get(clone_key) is not None:
            limits.append((clone[clone_key], "the clone, sampled (evaluation)", "grey"))
        panels.append({"title": title, "series": series, "limits": limits})
    return panels


def main(root: Path, out_dir: Path) -> None:
    kept = out_dir / "fetch-runs"
    if root.resolve() != kept.resolve():
        keep_finished_runs(root, kept)
        keep_clone_evaluation(root, kept)
    clones = {path.read_text().strip() for path in [*kept.glob("*/seed-*.clone-sha256.txt"),
                                                    *kept.glob("clone/clone-sha256.txt")]}
    if len(clones) > 1:
        sys.exit(f"error: the kept runs were fine-tuned from {len(clones)} different clones: {sorted(clones)}")
    table = {}
    for estimator_dir in sorted(p for p in kept.iterdir() if p.is_dir()) if kept.exists() else []:
        runs = {p.name: one_run(p) for p in sorted(estimator_dir.glob("seed-*"))
                if (p / "eval-sampled.json").exists()}
        if runs:
            keys = sorted({key for run in runs.values() for key in run})
            table[estimator_dir.name] = {"seeds": runs,
                                         "summary": {k: mean_std([r.get(k) for r in runs.values()]) for k in keys}}
    clone = None
    if (kept / "clone" / "eval-sampled.json").exists():
        clone = eval_columns({mode: json.loads((kept / "clone" / f"eval-{mode}.json").read_text()) for mode in MODES})
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "fetch.json").write_text(json.dumps(table | ({"clone": clone} if clone else {}), indent=1,
                                                   default=str))
    columns = [("success", "success (train)"), ("deterministic_success", "success, mean action"),
               ("sampled_success", "success, sampled"), ("deterministic_cost_0", "cost 0, mean action"),
               ("deterministic_cost_1", "cost 1, mean action"), ("sampled_cost_0", "cost 0, sampled"),
               ("sampled_cost_1", "cost 1, sampled"), ("total_violations", "cumulative violations"),
               ("train_s", "train s"), ("peak_rss_mb", "peak RSS MiB")]
    lines = ["| estimator | seeds | " + " | ".join(title for _, title in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for name, entry in table.items():
        cells = []
        for key, _ in columns:
            stats = entry["summary"].get(key, {"mean": math.nan, "std": math.nan})
            cells.append(pm(stats["mean"], stats["std"]))
        lines.append(f"| {name} | {len(entry['seeds'])} | " + " | ".join(cells) + " |")
    if clone:  # one evaluation of one clone, before any fine-tuning: no seeds, no spread, no training columns
        cells = [f"{clone[key]:.2f}" if key in clone else "–" for key, _ in columns]
        lines.append("| clone (before fine-tuning) | – | " + " | ".join(cells) + " |")
    (out_dir / "fetch.md").write_text("\n".join(lines) + "\n")
    if table:
        finished = {name: [kept / name / seed for seed in entry["seeds"]] for name, entry in table.items()}
        (out_dir / FIGURE).write_bytes(curves_figure(curve_panels(finished, clone)))
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
