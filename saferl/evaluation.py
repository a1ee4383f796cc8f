"""Evaluation episodes: the one rollout loop that `saferl eval`, `saferl collect`, the report and its video share.

A vector env finishes short episodes more often than long ones, so "the first N episodes to end" would
over-represent short (often failed) episodes. Each env therefore has a quota, N split as evenly as
possible, and episodes an env ends beyond its quota are dropped: every env contributes its share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from saferl.envs import seeds
from saferl.envs.vector import first_non_finite
from saferl.errors import SafeRLError
from saferl.files import write_json

STEP_FIELDS = ("observations", "next_observations", "actions", "rewards", "costs", "terminals", "timeouts")


def evaluation_seed(train_seed: int, offset: int = seeds.EVALUATION_OFFSET) -> int:
    """The seed of a run's evaluation episodes when none is given: the same episodes for every caller."""
    return int(train_seed) + offset


def episode_quotas(episodes: int, num_envs: int) -> np.ndarray:
    """Episodes each env contributes: `episodes` split as evenly as possible, the first envs taking fewer."""
    return np.array([(episodes + i) // num_envs for i in range(num_envs)])


@dataclass
class Episodes:
    """Finished episodes in the order they ended. `steps[e]` (when recorded) holds episode e's per-step arrays:
    STEP_FIELDS (observations raw; next_observations the true next, the final one at the last step;
    timeouts only where not terminal) and any recorded info keys."""

    returns: list[float] = field(default_factory=list)
    costs: list[list[float]] = field(default_factory=list)  # per episode, one total per constraint
    lengths: list[int] = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)  # empty when the env reports no "is_success"
    steps: list[dict[str, np.ndarray]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.returns)


def run_episodes(policy, env, episodes: int, deterministic: bool = False, seed: int | None = None, *,
                 noise_std: float | None = None, record: bool = False, info_keys: tuple[str, ...] = (),
                 before_step: Callable[[int], None] | None = None) -> Episodes:
    """Roll `policy` out in the vector `env` until `episodes` whole episodes (per-env quotas) have finished.

    `policy.predict(obs [N, obs_dim], deterministic) -> actions [N, act_dim]`; stochastic actions come from
    torch's global RNG, seeded with `seed` for the rollout and restored afterwards, so a fixed seed gives the
    same episodes without disturbing a caller's RNG. `noise_std`: the mean action plus Gaussian noise
    (imperfect demonstrations; numpy generator seeded with `seed`). Actions are clipped to the action space
    (as the env would) before stepping and recording. `record`: keep per-step arrays, plus the `info_keys`
    the env reports at every step (e.g. "velocity"). `before_step(t)`: called before each step with the
    number of steps taken so far (the video renders the current state there; after a step the env may
    already have reset).
    """
    if episodes < 1:
        raise SafeRLError(f"the number of episodes must be >= 1, got {episodes}")
    num_envs = env.num_envs
    low, high = env.single_action_space.low, env.single_action_space.high
    noise = np.random.default_rng(seed) if noise_std is not None else None
    quotas = episode_quotas(episodes, num_envs)
    pending: list[list[tuple]] = [[] for _ in range(num_envs)]  # the running episode's steps, per env
    result = Episodes()
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        obs, _ = env.reset(seed=seed)
        t = 0
        while len(result) < episodes:
            if before_step is not None:
                before_step(t)
            action = np.asarray(policy.predict(obs, deterministic=deterministic or noise is not None), np.float64)
            if noise is not None and noise_std:
                action = action + noise_std * noise.standard_normal(action.shape)
            action = np.clip(action, low, high)
            next_obs, reward, cost, terminated, truncated, info = env.step(action)
            found = first_non_finite(next_obs, reward, cost)
            if found is not None:
                raise SafeRLError(f"env {found[1]} of {env.env_id} returned a non-finite {found[0]} at step {t}; "
                                  "the episodes are not usable")
            t += 1
            done = np.asarray(info["episode_done"], bool)
            if record:
                true_next = np.where(done[:, None], info["final_obs"], next_obs)
                extra = [np.asarray(info[key]) if key in info else None for key in info_keys]
                for i in np.flatnonzero(quotas > 0):  # copies: a backend may reuse its output arrays
                    pending[i].append((obs[i].copy(), true_next[i].copy(), action[i].copy(), reward[i],
                                       np.ravel(cost[i]).copy(), terminated[i], truncated[i] and not terminated[i],
                                       *(x if x is None else np.copy(x[i]) for x in extra)))
            for i in np.flatnonzero(done):
                steps, pending[i] = pending[i], []
                if quotas[i] == 0:
                    continue
                quotas[i] -= 1
                result.returns.append(float(info["episode_return"][i]))
                result.costs.append([float(c) for c in np.ravel(info["episode_cost"][i])])
                result.lengths.append(int(info["episode_length"][i]))
                if "is_success" in info:
                    result.successes.append(bool(np.asarray(info["is_success"])[i]))
                if record:
                    columns = zip(STEP_FIELDS + tuple(info_keys), zip(*steps, strict=True), strict=True)
                    result.steps.append({key: np.stack(column) for key, column in columns
                                         if not any(x is None for x in column)})  # info keys of every step
            obs = next_obs
    return result


def make_eval_env(config, episodes: int, num_envs: int | None = None, **kwargs):
    """The env a run's policy is evaluated in: its task and time limit, at most one env per episode."""
    from saferl import envs

    num_envs = num_envs or max(1, min(episodes, config.env.num_envs))
    try:
        return envs.make(config.env.id, num_envs=num_envs, seed=None,
                         max_episode_steps=config.env.max_episode_steps, **kwargs)
    except ValueError as exc:
        raise SafeRLError(str(exc).splitlines()[0]) from None


def evaluate(run_dir: Path, episodes: int = 10, deterministic: bool = False, seed: int | None = None) -> dict:
    """Evaluate a run's saved policy for `episodes` episodes and write the summary to its eval.json."""
    from saferl.rundir import load_policy

    config, policy, checkpoint = load_policy(run_dir)
    seed = evaluation_seed(config.train.seed) if seed is None else seed
    env = make_eval_env(config, episodes)
    try:
        result = run_episodes(policy, env, episodes, deterministic, seed)
    finally:
        env.close()
    summary = summarise_episodes(result)
    summary = {"env_id": config.env.id, "algo": config.train.algo, "checkpoint_epoch": checkpoint.get("epoch"),
               "checkpoint_env_steps": checkpoint.get("env_steps"), "deterministic": deterministic, "seed": seed,
               **summary, "cost_limit": config.env.cost_limit}
    write_json(Path(run_dir) / "eval.json", summary)
    return summary


def summarise_episodes(result: Episodes) -> dict:
    """eval.json's episode list and means; success fields only when the env reports success."""
    episodes = [{"return": r, "cost": c, "length": n}
                for r, c, n in zip(result.returns, result.costs, result.lengths, strict=True)]
    for episode, success in zip(episodes, result.successes, strict=False):
        episode["success"] = success
    first_costs = [c[0] for c in result.costs]
    summary = {"episodes": episodes,
               "mean_return": float(np.mean(result.returns)), "std_return": float(np.std(result.returns)),
               "mean_cost": float(np.mean(first_costs)), "std_cost": float(np.std(first_costs)),
               "mean_length": float(np.mean(result.lengths)),
               "mean_costs": np.mean(np.asarray(result.costs, dtype=float), axis=0).tolist()}  # per constraint
    if result.successes:
        summary["success_rate"] = float(np.mean(result.successes))
    return summary
