"""Demonstrations from a scripted controller (`saferl collect --scripted ENV_ID`): the standard dataset, written
from the safe Fetch tasks' demonstrators (saferl/envs/fetch/demonstrators.py) instead of a trained policy.

Imperfect demonstrations give fine-tuning something to fix: `noise_std` adds Gaussian action noise (which also
breaks the speed limit now and then), and `unsafe_fraction` of the episodes come from the demonstrator's unsafe
variant, which cuts straight through the keep-out box at full speed.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from saferl.errors import SafeRLError
from saferl.io import versions
from saferl.offline.dataset import Dataset, write_dataset

SCRIPTED_SEED_OFFSET = 300_000  # demonstrations never share layouts with training's or evaluation's seeds


def scripted_ids() -> tuple[str, ...]:
    from saferl.envs.fetch import FETCH_IDS

    return tuple(FETCH_IDS)


def collect_scripted(env_id: str, episodes: int, out: Path, noise_std: float = 0.0, unsafe_fraction: float = 0.0,
                     seed: int = 0) -> dict:
    """Roll the demonstrator out for `episodes` episodes (the unsafe variant for round(unsafe_fraction *
    episodes) of them), write the dataset to `out`, and return what was collected."""
    from saferl.envs.fetch.demonstrators import run_scripted

    if env_id not in scripted_ids():
        raise SafeRLError(f"no scripted demonstrator for {env_id!r}; there is one for {', '.join(scripted_ids())}")
    if episodes < 1:
        raise SafeRLError(f"--episodes must be >= 1, got {episodes}")
    if not (math.isfinite(noise_std) and noise_std >= 0):
        raise SafeRLError(f"--noise must be a finite std >= 0, got {noise_std}")
    if not 0.0 <= unsafe_fraction <= 1.0:
        raise SafeRLError(f"--unsafe-fraction must be in [0, 1], got {unsafe_fraction}")
    unsafe = round(unsafe_fraction * episodes)
    parts = [(episodes - unsafe, False), (unsafe, True)]
    rollouts = [run_scripted(env_id, count, seed + SCRIPTED_SEED_OFFSET + 7919 * variant, noise_std, variant)
                for count, variant in parts if count > 0]
    joined = {key: np.concatenate([r[key] for r in rollouts]) for key in rollouts[0]}
    dataset = Dataset.from_steps(
        dict(joined, costs=joined["costs_per_step"]),
        attrs={"env_id": env_id, "cost_names": ["keepout", "speed"], "source_algo": "scripted",
               "policy_mode": "scripted", "noise_std": float(noise_std), "unsafe_fraction": float(unsafe_fraction),
               "seed": seed, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "saferl_version": versions()["saferl"]},
    )
    write_dataset(Path(out), dataset)
    costs = joined["costs"].sum(axis=1)
    return {"out": str(out), "episodes": len(joined["returns"]), "steps": len(dataset),
            "success_rate": float(joined["successes"].mean()), "mean_return": float(joined["returns"].mean()),
            "mean_cost": float(costs.mean()), "unsafe_episodes": unsafe}
