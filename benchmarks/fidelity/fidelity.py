"""``make fidelity``: every navigation id of saferl against Safety-Gymnasium 1.0.0, side by side.

Per id: layouts for ``--seeds`` seeds (robot, objects, yaws, goal button, then ``--replacements``
goal re-placements; must be equal), steps under fixed actions until the first observation differs by
more than 1e-4, random-action statistics (per-episode return, cost and mean of every observation
dimension; Welch z-scores), and single-env steps per second of both. The Safety-Gymnasium side runs
in a separate environment (``run.sh`` builds it) through ``reference_worker.py``; both sides run at
the same time. Writes ``results.json`` and ``results.md`` next to this file; exits 1 on a layout
mismatch or a flagged statistic.

Flags: return, cost or episode length (an Ant's fall) with |z| > 3; an observation dimension whose Welch
p-value is below 0.0027 / dims (the |z| > 3 rate, Bonferroni-corrected over the id's dimensions, so chance
alone flags about 0.3% of ids). Dimensions with |z| > 3 are counted in the table whatever their correction.

Also ``--record-fixtures PATH``: layouts from Safety-Gymnasium only, for tests/fixtures; ``--record-models
PATH``: each robot's physics numbers from Safety-Gymnasium, for tests/fixtures; and ``--merge``:
keep the rows of ids not run now from the existing ``results.json`` (same settings required), so a long
table can be filled a few ids at a time.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
from scipy import stats as sps

from saferl.envs.navigation import NAVIGATION_IDS
from saferl.envs.navigation import fidelity as ours
from saferl.envs.navigation.robots import ROBOTS

HERE = pathlib.Path(__file__).resolve().parent
WORKER = HERE / "reference_worker.py"
DIVERGENCE = 1e-4
LAYOUT_TOL = 1e-9
ALPHA = 0.0027           # two-sided tail of |z| > 3


def start_reference(python: str, job: dict, workdir: pathlib.Path) -> tuple[subprocess.Popen, pathlib.Path]:
    """Launch the Safety-Gymnasium side of ``job``; returns the process and where its answer will be."""
    job_path, out_path = workdir / f"{job['env_id']}.job.json", workdir / f"{job['env_id']}.out.json"
    job_path.write_text(json.dumps(job))
    proc = subprocess.Popen([python, str(WORKER), str(job_path), str(out_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, out_path


def finish_reference(proc: subprocess.Popen, out_path: pathlib.Path) -> dict:
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"reference worker failed:\n{err[-2000:]}")
    return json.loads(out_path.read_text())


def welch_z(a, b, atol: float = 1e-9) -> tuple[float, float]:
    """Welch's statistic (mean(a) - mean(b)) / se and its two-sided p-value (t with Welch's df).

    Means closer than ``atol`` count as equal (z 0): e.g. the Point's accelerometer z is constant, and
    the two simulators' constants differ in the last bits, which is no difference in distribution.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = a.mean() - b.mean()
    if abs(diff) <= atol:
        return 0.0, 1.0
    if va + vb == 0:
        return (0.0, 1.0) if diff == 0 else (float(np.sign(diff) * np.inf), 0.0)
    z = diff / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return float(z), float(2 * sps.t.sf(abs(z), df))


def steps_until_divergence(a: list, b: list) -> tuple[int | None, list[int]]:
    """First step whose observations differ by more than DIVERGENCE (None: never), and which dims."""
    n = min(len(a), len(b))
    gap = np.abs(np.asarray(a[:n]) - np.asarray(b[:n]))
    bad = np.flatnonzero(gap.max(axis=1) > DIVERGENCE)
    if len(bad) == 0:
        return None, []
    return int(bad[0]), np.flatnonzero(gap[bad[0]] > DIVERGENCE).tolist()


def compare_id(env_id: str, args, workdir: pathlib.Path) -> dict:
    seeds = list(range(args.seeds))
    actions = ours.random_actions(ours.action_space_of(env_id), args.steps, 12345)
    job = {"env_id": env_id, "layouts": {"seeds": seeds, "replacements": args.replacements},
           "trajectory": {"seed": 0, "actions": actions.tolist()},
           "stats": {"episodes": args.episodes, "seed": 1000}}
    proc, out_path = start_reference(args.reference_python, job, workdir)
    mine = {"layouts": [ours.layout_record(env_id, s, args.replacements) for s in seeds],
            "trajectory": ours.trajectory(env_id, 0, actions),
            "stats": ours.episode_stats(env_id, args.episodes, 1000)}
    ref = finish_reference(proc, out_path)
    # Speeds are timed one side after the other, so neither shares the CPU with the other.
    speed_job = {"env_id": env_id + ".speed", "speed": {"seconds": args.speed_seconds, "seed": 0}}
    ref["speed"] = finish_reference(*start_reference(args.reference_python, speed_job, workdir))["speed"]
    mine["speed"] = ours.single_env_speed(env_id, args.speed_seconds, 0)

    gaps = [ours.layout_difference(m, r) for m, r in zip(mine["layouts"], ref["layouts"], strict=True)]
    layouts_equal = sum(g <= LAYOUT_TOL for g in gaps)
    first, dims = steps_until_divergence(mine["trajectory"]["obs"], ref["trajectory"]["obs"])
    z_ret, _ = welch_z(mine["stats"]["return"], ref["stats"]["return"])
    z_cost, _ = welch_z(mine["stats"]["cost"], ref["stats"]["cost"])
    z_length, _ = welch_z(mine["stats"]["length"], ref["stats"]["length"])   # only a falling Ant ends early
    obs_m, obs_r = np.array(mine["stats"]["obs_mean"]), np.array(ref["stats"]["obs_mean"])
    obs_tests = [welch_z(obs_m[:, k], obs_r[:, k]) for k in range(obs_m.shape[1])]
    obs_z = np.array([z for z, _ in obs_tests])
    obs_p = np.array([p for _, p in obs_tests])
    flagged_dims = np.flatnonzero(obs_p < ALPHA / len(obs_p)).tolist()
    row = {
        "env_id": env_id, "seeds": len(seeds), "layouts_equal": int(layouts_equal),
        "layout_max_gap": float(max(gaps)),
        "steps_compared": len(ref["trajectory"]["obs"]) - 1,
        "first_divergence": first, "divergent_dims": dims[:8],
        "return": [float(np.mean(mine["stats"]["return"])), float(np.mean(ref["stats"]["return"]))],
        "cost": [float(np.mean(mine["stats"]["cost"])), float(np.mean(ref["stats"]["cost"]))],
        "z_return": z_ret, "z_cost": z_cost, "z_length": z_length,
        "length": [float(np.mean(mine["stats"]["length"])), float(np.mean(ref["stats"]["length"]))],
        "obs_dims": int(obs_z.size), "obs_dims_z_over_3": int((np.abs(obs_z) > 3).sum()),
        "obs_max_abs_z": float(np.abs(obs_z).max()), "obs_max_abs_z_dim": int(np.abs(obs_z).argmax()),
        "obs_flagged_dims": flagged_dims,
        "episodes": args.episodes,
        "speed": [mine["speed"], ref["speed"]],
        "raw": {side: {k: data["stats"][k] for k in ("return", "cost", "obs_mean", "length")}
                for side, data in (("saferl", mine), ("safety_gymnasium", ref))},   # to re-score without re-running
    }
    row["flags"] = ([] if layouts_equal == len(seeds) else ["layout"]) + \
        (["return"] if abs(z_ret) > 3 else []) + (["cost"] if abs(z_cost) > 3 else []) + \
        (["length"] if abs(z_length) > 3 else []) + \
        ([f"obs{flagged_dims}"] if flagged_dims else [])
    return row


def markdown(rows: list[dict], args, elapsed: float) -> str:
    lines = [
        "# Fidelity: saferl navigation vs Safety-Gymnasium 1.0.0",
        "",
        f"Written by `make fidelity` ({elapsed / 60:.1f} min in all). Layouts: {args.seeds} seeds per id, each "
        f"with up to {args.replacements} goal re-placements (Goal, Push). Divergence: {args.steps} fixed uniform "
        f"actions from `reset(seed=0)`, first step whose observation differs by more than {DIVERGENCE:g} ('-': none). "
        f"Statistics: {args.episodes} random-action episodes per side (seeds 1000+k), Welch z of ours minus "
        "Safety-Gymnasium's. Flags: |z| > 3 on return, cost or episode length; an observation dimension with a "
        "Welch p-value below 0.0027 / dims. Speed: one gymnasium env each, uniform random actions, steps/s on this "
        "machine (shared, so compare the ratio).",
        "",
        "| id | layouts equal | steps equal | first diverging dims | return ours / SG (z) | cost ours / SG (z) "
        "| obs dims \\|z\\|>3 (max \\|z\\|) | steps/s ours / SG (x) | flags |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        first = "-" if r["first_divergence"] is None else str(r["first_divergence"])
        lines.append(
            f"| {r['env_id']} | {r['layouts_equal']}/{r['seeds']} | {first} of {r['steps_compared']} "
            f"| {r['divergent_dims'] or '-'} "
            f"| {r['return'][0]:.2f} / {r['return'][1]:.2f} ({r['z_return']:+.2f}) "
            f"| {r['cost'][0]:.1f} / {r['cost'][1]:.1f} ({r['z_cost']:+.2f}) "
            f"| {r['obs_dims_z_over_3']} of {r['obs_dims']} ({r['obs_max_abs_z']:.1f}) "
            f"| {r['speed'][0]:.0f} / {r['speed'][1]:.0f} ({r['speed'][0] / r['speed'][1]:.1f}x) "
            f"| {', '.join(r['flags']) or 'none'} |")
    return "\n".join(lines) + "\n"


MERGED_SETTINGS = ("seeds", "replacements", "steps", "episodes", "speed_seconds")


def merge_rows(old: dict, settings: dict, rows: list[dict]) -> tuple[list[dict], list[str]]:
    """``rows`` merged into ``old`` (a results.json): new rows replace old rows of the same id, then all rows
    in NAVIGATION_IDS order; and the ids covered. Settings that shape a row must match the old file's."""
    differ = [k for k in MERGED_SETTINGS if old["settings"].get(k) != settings[k]]
    if differ:
        raise ValueError("--merge needs the settings of the existing results.json; these differ: "
                         + ", ".join(f"{k} {old['settings'].get(k)} vs {settings[k]}" for k in differ))
    by_id = {r["env_id"]: r for r in old["rows"]}
    by_id.update({r["env_id"]: r for r in rows})
    order = [i for i in NAVIGATION_IDS if i in by_id]
    return [by_id[i] for i in order], order


def record_fixtures(args) -> None:
    """Layouts from Safety-Gymnasium only (positions for given seeds), for the tests."""
    records = {}
    with tempfile.TemporaryDirectory() as tmp:
        for env_id in args.ids:
            seeds = list(range(args.seeds))
            job = {"env_id": env_id, "layouts": {"seeds": seeds, "replacements": args.replacements}}
            ref = finish_reference(*start_reference(args.reference_python, job, pathlib.Path(tmp)))
            records[env_id] = [{"seed": s, **r} for s, r in zip(seeds, ref["layouts"], strict=True)]
    pathlib.Path(args.record_fixtures).write_text(json.dumps(records, indent=1) + "\n")
    print(f"wrote {args.record_fixtures}: {len(records)} ids x {args.seeds} seeds")


def record_models(args) -> None:
    """Each robot's physics numbers from Safety-Gymnasium's compiled world (its Goal0 task), for the tests."""
    records = {}
    with tempfile.TemporaryDirectory() as tmp:
        for robot in ROBOTS:
            job = {"env_id": f"Safety{robot}Goal0-v0", "model": True}
            records[robot] = finish_reference(*start_reference(args.reference_python, job, pathlib.Path(tmp)))["model"]
    pathlib.Path(args.record_models).write_text(json.dumps(records, indent=1) + "\n")
    print(f"wrote {args.record_models}: {', '.join(records)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-python", default=str(HERE / ".reference" / "bin" / "python"))
    parser.add_argument("--ids", nargs="+", default=NAVIGATION_IDS)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--replacements", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--speed-seconds", type=float, default=2.0)
    parser.add_argument("--out-dir", default=str(HERE))
    parser.add_argument("--record-fixtures", metavar="PATH")
    parser.add_argument("--record-models", metavar="PATH")
    parser.add_argument("--merge", action="store_true",
                        help="keep the existing results.json rows of ids not run now (same settings required)")
    args = parser.parse_args(argv)
    unknown = [i for i in args.ids if i not in NAVIGATION_IDS]
    if unknown:
        print(f"saferl: error: unknown navigation ids {unknown}", file=sys.stderr)
        return 2
    if not pathlib.Path(args.reference_python).exists():
        print(f"saferl: error: no reference python at {args.reference_python} (run benchmarks/fidelity/run.sh)",
              file=sys.stderr)
        return 2
    if args.record_fixtures:
        record_fixtures(args)
        return 0
    if args.record_models:
        record_models(args)
        return 0
    out = pathlib.Path(args.out_dir)
    settings = {k: v for k, v in vars(args).items()
                if k not in ("reference_python", "out_dir", "record_fixtures", "record_models", "merge")}
    old = None
    if args.merge:
        if not (out / "results.json").exists():
            print(f"saferl: error: --merge: no {out / 'results.json'} to merge into", file=sys.stderr)
            return 2
        old = json.loads((out / "results.json").read_text())
        try:
            merge_rows(old, settings, [])
        except ValueError as e:
            print(f"saferl: error: {e}", file=sys.stderr)
            return 2
    start, rows = time.time(), []
    with tempfile.TemporaryDirectory() as tmp:
        for env_id in args.ids:
            row = compare_id(env_id, args, pathlib.Path(tmp))
            rows.append(row)
            print(f"{env_id}: layouts {row['layouts_equal']}/{row['seeds']}, diverges at {row['first_divergence']}, "
                  f"z return {row['z_return']:+.2f} cost {row['z_cost']:+.2f}, "
                  f"speed {row['speed'][0]:.0f}/{row['speed'][1]:.0f}, flags {row['flags'] or 'none'}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    elapsed = time.time() - start
    if old is not None:
        elapsed += old["settings"].get("minutes", 0.0) * 60
        rows, settings["ids"] = merge_rows(old, settings, rows)
    settings["minutes"] = round(elapsed / 60, 1)
    (out / "results.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=1) + "\n")
    (out / "results.md").write_text(markdown(rows, args, elapsed))
    flagged = [r["env_id"] for r in rows if r["flags"]]
    print(f"wrote {out / 'results.md'}; flagged: {flagged or 'none'}")
    return 1 if flagged else 0


if __name__ == "__main__":
    sys.exit(main())
