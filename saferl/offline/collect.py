"""Collecting demonstrations: roll a run's policy out and write the episodes as a dataset (`saferl collect`).
The scripted demonstrators' collection is offline/scripted.py; the file format is offline/dataset.py.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from saferl.envs import seeds
from saferl.errors import SafeRLError
from saferl.evaluation import evaluation_seed, make_eval_env, run_episodes
from saferl.files import versions
from saferl.offline.dataset import STEP_KEYS, Dataset, write_dataset
from saferl.rundir import load_policy

RUN_FILES = ("config.yaml", "meta.json", "progress.csv", "eval.json", "members.json")


def check_dataset_out(out: Path, run_dir: Path | None, overwrite: bool = False) -> None:
    """Where a dataset may be written: never over the source run's own files (its config, checkpoints, logs),
    even with `overwrite`; over any other existing file only with `overwrite` (`--force`). `run_dir` is None
    for a scripted demonstrator, which has no run."""
    target = Path(out).resolve()
    if run_dir is not None:
        run = Path(run_dir).resolve()
        checkpoints = run / "checkpoints"
        if target == checkpoints or checkpoints in target.parents or target in {run / name for name in RUN_FILES}:
            raise SafeRLError(f"--out {out} would overwrite a file of the run {run_dir}; write the dataset "
                              f"elsewhere (e.g. {Path(run_dir) / 'demos.h5'})")
    if target.is_dir():
        raise SafeRLError(f"--out {out} is a directory; give a file name, e.g. {Path(out) / 'demos.h5'}")
    if target.exists() and not overwrite:
        raise SafeRLError(f"--out {out} already exists; pass --force to overwrite it")


def collect_demonstrations(run_dir: Path, episodes: int, out: Path, noise_std: float | None = None,
                           deterministic: bool = False, seed: int | None = None) -> dict:
    """Roll out a run's policy for `episodes` whole episodes and write them as a dataset.

    Actions: the policy's mean plus N(0, noise_std^2) when `noise_std` is given (imperfect demonstrations),
    the mean alone when `deterministic`, else the policy's own Gaussian. Per-env episode quotas, as in
    `evaluate`, keep short episodes from being over-represented.
    """
    if episodes < 1:
        raise SafeRLError(f"--episodes must be >= 1, got {episodes}")
    if noise_std is not None and (noise_std < 0 or not math.isfinite(noise_std)):
        raise SafeRLError(f"--noise must be a finite std >= 0, got {noise_std}")
    check_dataset_out(Path(out), Path(run_dir), overwrite=True)  # the run's own files are never a target
    config, policy, _ = load_policy(Path(run_dir))
    seed = evaluation_seed(config.train.seed, seeds.DEMONSTRATION_OFFSET) if seed is None else seed
    env = make_eval_env(config, episodes)
    try:
        result = run_episodes(policy, env, episodes, deterministic, seed, noise_std=noise_std, record=True)
        cost_names = list(getattr(env, "cost_names", ["cost"]))
    finally:
        env.close()
    columns = {key: np.concatenate([steps[key] for steps in result.steps]) for key in STEP_KEYS}
    normalizer = policy.normalizer
    dataset = Dataset.from_steps(
        columns,
        attrs={
            "env_id": config.env.id,
            "cost_names": cost_names,
            "source_run": str(Path(run_dir).resolve()),
            "source_algo": config.train.algo,
            "policy_mode": "noise" if noise_std is not None else ("deterministic" if deterministic else "stochastic"),
            "noise_std": float(noise_std) if noise_std is not None else None,
            "seed": seed,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "saferl_version": versions()["saferl"],
            **({"obs_mean": normalizer.mean[0].numpy(), "obs_var": normalizer.var[0].numpy(),
                "obs_count": float(normalizer.count[0])} if policy.normalize_obs else {}),
        },
    )
    write_dataset(Path(out), dataset)
    returns, costs = dataset.episode_returns(), dataset.episode_costs()[:, 0]
    return {"out": str(out), "episodes": len(result), "steps": len(dataset), "mean_return": float(returns.mean()),
            "mean_cost": float(costs.mean()), "cost_limit": config.env.cost_limit}
