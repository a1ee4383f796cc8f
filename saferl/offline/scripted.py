"""Demonstrations from a scripted controller (`saferl collect --scripted ENV_ID`): the standard dataset, written
from the safe Fetch tasks' demonstrators (saferl/envs/fetch/demonstrators.py: the controllers; rolled out here)
instead of a trained policy.

Imperfect demonstrations give fine-tuning something to fix: `noise_std` adds Gaussian action noise (which also
breaks the speed limit now and then), and `unsafe_fraction` of the episodes come from the demonstrator's unsafe
variant, which cuts straight through the keep-out box at full speed.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from saferl import envs
from saferl.envs import seeds
from saferl.envs.fetch.demonstrators import scripted_action
from saferl.errors import SafeRLError
from saferl.evaluation import run_episodes
from saferl.files import versions
from saferl.offline.dataset import Dataset, write_dataset


class ScriptedPolicy:
    """The demonstrator behind the ``predict(obs, deterministic)`` interface of ``saferl.evaluation``."""

    def __init__(self, env_id: str, unsafe: bool = False):
        self.env_id, self.unsafe = env_id, unsafe

    def predict(self, obs, deterministic: bool = True) -> np.ndarray:
        return scripted_action(self.env_id, obs, self.unsafe)


def run_scripted(env_id: str, episodes: int, seed: int = 0, noise_std: float = 0.0, unsafe: bool = False,
                 num_envs: int = 16) -> dict:
    """Roll the demonstrator out for ``episodes`` episodes; per-episode results and the dataset arrays.

    Returns ``returns [E]``, ``costs [E, 2]``, ``successes [E]`` (0/1 at the final step), ``lengths``
    and the steps of all episodes concatenated in the order they ended: ``observations``,
    ``next_observations``, ``actions`` (noisy and clipped, as executed), ``rewards``, ``costs_per_step``
    ``[T, 2]``, ``terminals``, ``timeouts`` (the layout of ``saferl.offline`` datasets).
    """
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    env = envs.make(env_id, num_envs=max(1, min(num_envs, episodes)), seed=seed)
    try:
        result = run_episodes(ScriptedPolicy(env_id, unsafe), env, episodes, deterministic=True, seed=seed,
                              noise_std=noise_std or None, record=True)
    finally:
        env.close()
    steps = {key: np.concatenate([episode[key] for episode in result.steps]) for key in result.steps[0]}
    return {
        "returns": np.array(result.returns), "costs": np.array(result.costs),
        "successes": np.array(result.successes, dtype=np.float64), "lengths": np.array(result.lengths),
        "observations": steps["observations"], "next_observations": steps["next_observations"],
        "actions": steps["actions"], "rewards": steps["rewards"], "costs_per_step": steps["costs"],
        "terminals": steps["terminals"], "timeouts": steps["timeouts"],
    }


def scripted_ids() -> tuple[str, ...]:
    from saferl.envs.fetch import FETCH_IDS

    return tuple(FETCH_IDS)


def collect_scripted(env_id: str, episodes: int, out: Path, noise_std: float = 0.0, unsafe_fraction: float = 0.0,
                     seed: int = 0) -> dict:
    """Roll the demonstrator out for `episodes` episodes (the unsafe variant for round(unsafe_fraction *
    episodes) of them), write the dataset to `out`, and return what was collected."""
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
    rollouts = [run_scripted(env_id, count, seed + seeds.SCRIPTED_OFFSET + seeds.block(variant), noise_std, variant)
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
