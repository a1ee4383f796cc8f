"""One trained saferl policy, evaluated on saferl's navigation task and on Safety-Gymnasium 1.0.0's.

``make fidelity`` compares the two tasks under random actions; a learned policy visits other states (near the
goal, along hazards), so this rules the task in or out as a reason why learning curves differ (issue 17,
item 5). Each episode is paired: the same reset seed on both sides (the same layout, as ``make fidelity``
checks), and in the sampled mode the same noise draws, mean + std * z with z from ``numpy.random.default_rng
(seed)``. The two rollouts then differ only through the simulators (MuJoCo 3 against 2.3.3), which drift apart
within a few dozen steps, so the comparison is in distribution: per policy, the mean return and cost of each
side, Welch's z of the difference, and the paired difference's mean and standard error.

    python benchmarks/fidelity/policy_transfer.py RUN_DIR [RUN_DIR ...] --reference-python REF/bin/python \\
        --episodes 20 --out benchmarks/fidelity/policy-transfer

RUN_DIR: a trained run (one member's directory, e.g. ``.../seed-0``). The reference environment is the one
``benchmarks/fidelity/run.sh`` builds. Writes OUT.json (every episode) and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

import numpy as np

from saferl.envs.navigation.gym_env import NavigationEnv
from saferl.rundir import load_policy

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fidelity import welch_z  # noqa: E402  (make fidelity's script beside this one: the same statistic)

WORKER = HERE / "reference_worker.py"
FIRST_SEED = 3000  # reset seeds FIRST_SEED, FIRST_SEED + 1, ...: unused by training (0-2) and evaluation (1e6+)
MODES = ("deterministic", "sampled")


class ReferenceEnv:
    """Safety-Gymnasium's env in the reference environment, stepped over a pipe (reference_worker --serve)."""

    def __init__(self, python: str, env_id: str):
        self.proc = subprocess.Popen([python, str(WORKER), "--serve", env_id], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

    def ask(self, request: dict) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the reference worker stopped (exit {self.proc.wait()})")
        return json.loads(line)

    def reset(self, seed: int) -> np.ndarray:
        return np.asarray(self.ask({"reset": seed})["obs"])

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, float, bool]:
        answer = self.ask({"step": action.tolist()})
        return np.asarray(answer["obs"]), answer["reward"], answer["cost"], answer["terminated"] or answer["truncated"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


class SaferlEnv:
    """saferl's own single env with the same four calls."""

    def __init__(self, env_id: str):
        self.env = NavigationEnv(env_id)
        self.action_space = self.env.action_space

    def reset(self, seed: int) -> np.ndarray:
        return self.env.reset(seed=seed)[0]

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, float, bool]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float(reward), float(info["cost"]), terminated or truncated

    def close(self) -> None:
        self.env.close()


def episode(policy, env, seed: int, sampled: bool, low: np.ndarray, high: np.ndarray) -> dict:
    """One episode from reset(seed): the policy's mean action, plus std * z in the sampled mode."""
    noise = np.random.default_rng(seed)
    std = policy.log_std[0].detach().exp().numpy().astype(np.float64)
    obs = env.reset(seed)
    total_reward = total_cost = 0.0
    steps, done = 0, False
    while not done:
        action = np.asarray(policy.predict(obs, deterministic=True), np.float64)
        if sampled:
            action = action + std * noise.standard_normal(action.shape)
        obs, reward, cost, done = env.step(np.clip(action, low, high))
        total_reward += reward
        total_cost += cost
        steps += 1
    return {"return": total_reward, "cost": total_cost, "length": steps}


def compare(a: list[float], b: list[float]) -> dict:
    """Means, Welch's z of mean(a) - mean(b), and the paired difference's mean and standard error."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = a - b
    return {"saferl": float(a.mean()), "safety_gymnasium": float(b.mean()), "welch_z": welch_z(a, b)[0],
            "paired_mean": float(diff.mean()), "paired_se": float(diff.std(ddof=1) / np.sqrt(len(diff)))}


def evaluate_run(run_dir: pathlib.Path, episodes: int, reference_python: str) -> dict:
    config, policy, checkpoint = load_policy(run_dir)
    ours, theirs = SaferlEnv(config.env.id), ReferenceEnv(reference_python, config.env.id)
    low, high = ours.action_space.low.astype(np.float64), ours.action_space.high.astype(np.float64)
    row = {"run_dir": str(run_dir), "env_id": config.env.id, "algo": config.train.algo,
           "env_steps": checkpoint.get("env_steps"), "episodes": episodes}
    try:
        for mode in MODES:
            seeds = range(FIRST_SEED, FIRST_SEED + episodes)
            mine = [episode(policy, ours, s, mode == "sampled", low, high) for s in seeds]
            ref = [episode(policy, theirs, s, mode == "sampled", low, high) for s in seeds]
            row[mode] = {"saferl": mine, "safety_gymnasium": ref,
                         "return": compare([e["return"] for e in mine], [e["return"] for e in ref]),
                         "cost": compare([e["cost"] for e in mine], [e["cost"] for e in ref])}
    finally:
        ours.close()
        theirs.close()
    return row


def markdown(rows: list[dict], elapsed: float) -> str:
    lines = ["# One trained policy on saferl's task and on Safety-Gymnasium 1.0.0's", "",
             f"Written by `benchmarks/fidelity/policy_transfer.py` ({elapsed / 60:.1f} min). Each row: one saved "
             "policy, the same reset seeds on both sides (equal layouts) and, when sampled, the same noise draws; "
             "mean over episodes, Welch z of saferl minus Safety-Gymnasium, and the paired difference "
             "(mean ± standard error).", "",
             "| run | env steps | mode | episodes | return saferl / SG (z) | paired return diff | "
             "cost saferl / SG (z) | paired cost diff |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        name = "/".join(pathlib.Path(row["run_dir"]).parts[-3:])
        for mode in MODES:
            r, c = row[mode]["return"], row[mode]["cost"]
            lines.append(f"| {name} | {row['env_steps']:,} | {mode} | {row['episodes']} | "
                         f"{r['saferl']:.2f} / {r['safety_gymnasium']:.2f} ({r['welch_z']:+.2f}) | "
                         f"{r['paired_mean']:+.2f} ± {r['paired_se']:.2f} | "
                         f"{c['saferl']:.1f} / {c['safety_gymnasium']:.1f} ({c['welch_z']:+.2f}) | "
                         f"{c['paired_mean']:+.1f} ± {c['paired_se']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=pathlib.Path)
    parser.add_argument("--reference-python", required=True)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "policy-transfer")
    args = parser.parse_args(argv)
    start, rows = time.perf_counter(), []
    for run_dir in args.run_dirs:
        rows.append(evaluate_run(run_dir, args.episodes, args.reference_python))
        print("\n".join(markdown(rows[-1:], time.perf_counter() - start).splitlines()[-len(MODES):]), flush=True)
    elapsed = time.perf_counter() - start
    args.out.with_suffix(".json").write_text(json.dumps({"episodes": args.episodes, "first_seed": FIRST_SEED,
                                                         "elapsed_s": elapsed, "rows": rows}, indent=1))
    args.out.with_suffix(".md").write_text(markdown(rows, elapsed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
