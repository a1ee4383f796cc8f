"""`saferl throughput`: throughput on this machine, measured side by side in one run.

Prints (and writes as JSON, to compare across commits):
1. the open-loop physics ceiling (bare `mj_step`, all cores), and the navigation suite's random-action rate;
2. collection with the policy in the loop and no updates;
3. end-to-end PPO at Stable-Baselines3's default hyperparameters, and SB3's own PPO on the same env
   and settings when it is installed (`pip install -e .[bench]`), with the ratio;
4. PPO-Lag at the project's defaults with K = 1, 4 and 8 members in one process (aggregate steps/s and the
   ratio to K = 1), and CPO.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from saferl.config import build_config
from saferl.envs.navigation import NAVIGATION_IDS, random_action_throughput
from saferl.files import versions, write_json

# Stable-Baselines3 PPO defaults: 64x64 tanh (separate actor and critic), n_steps 2048, batch 64,
# 10 epochs, lr 3e-4 constant, clip 0.2, gamma 0.99, GAE 0.95, vf_coef 0.5, max_grad_norm 0.5,
# no target KL, no observation normalisation, advantages standardised.
SB3_EQUIVALENT = [
    "train.steps_per_epoch=2048",
    "ppo.update_epochs=10",
    "ppo.minibatch_size=64",
    "ppo.actor_lr=3e-4",
    "ppo.critic_lr=3e-4",
    "ppo.anneal_lr=false",
    "ppo.clip_ratio=0.2",
    "ppo.target_kl=null",
    "ppo.value_coef=0.5",
    "ppo.max_grad_norm=0.5",
    "model.normalize_obs=false",
]
QUIET = ["train.progress_bar=false", "train.tensorboard=false"]


def train_rate(algo: str, env_id: str, steps: int, num_envs: int, sets: list[str], members: int = 1) -> dict:
    """Aggregate steps/s of a real `Runner.train()` (collection + update + logging + checkpoints) of `members`
    seeds trained together, each for `steps` steps with `num_envs` envs."""
    from saferl.launch import new_members
    from saferl.runner import Runner

    config = build_config(algo, sets=[f"env.id={env_id}", f"env.num_envs={num_envs}",
                                      f"train.total_steps={steps}", *QUIET, *sets])
    with tempfile.TemporaryDirectory() as tmp:
        seeds = list(range(members)) if members > 1 else None
        runner = Runner(new_members(config, seeds, None, Path(tmp) / "run"))
        start = time.perf_counter()
        row = runner.train()[0]
        seconds = time.perf_counter() - start
    total = runner.env_steps * members
    return {"algo": algo, "members": members, "steps": total, "seconds": seconds, "steps_per_s": total / seconds,
            "num_envs": num_envs, "update_seconds_last_epoch": row.get("update_seconds"),
            "collect_fps_last_epoch": row.get("collect_fps")}


def collection_rate(env_id: str, num_envs: int, steps: int) -> float:
    """Policy in the loop (normalise, act, store), no updates."""
    from saferl.launch import new_members
    from saferl.runner import Runner

    config = build_config("ppo", sets=[f"env.id={env_id}", f"env.num_envs={num_envs}",
                                       f"train.steps_per_epoch={steps}", *QUIET])
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(new_members(config, None, None, Path(tmp) / "run"))
        runner.collect()  # warm-up
        start = time.perf_counter()
        runner.collect()
        seconds = time.perf_counter() - start
        runner.env.close()
    return runner.steps_per_epoch / seconds


def sb3_rate(env_id: str, steps: int, num_envs: int = 1) -> float | None:
    """Stable-Baselines3's PPO on the same env: 1 env with n_steps 2048 (its default), or `num_envs`
    DummyVecEnv envs with n_steps 2048 / num_envs, the same layout and update as ours."""
    try:
        from stable_baselines3 import PPO as SB3PPO
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.vec_env import DummyVecEnv
    except ImportError:
        return None
    from saferl import envs  # noqa: F401  (registers the ids with gymnasium)

    torch.set_num_threads(1)
    vec_env = make_vec_env(env_id, n_envs=num_envs, seed=0, vec_env_cls=DummyVecEnv)
    model = SB3PPO("MlpPolicy", vec_env, n_steps=2048 // num_envs, batch_size=64, n_epochs=10,
                   device="cpu", seed=0, verbose=0)
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    return steps / (time.perf_counter() - start)


def run_throughput(env_id: str, steps: int = 100_000, num_envs: int = 16, constrained_steps: int = 40_000,
                   with_sb3: bool = True, out: Path | None = None, log=print, repeats: int = 1) -> dict:
    from saferl import envs

    torch.set_num_threads(1)
    results: dict = {"env_id": env_id, "cores": os.cpu_count(), "versions": versions(),
                     "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if env_id in NAVIGATION_IDS:  # no separate physics-only loop: the random-action rate is the ceiling
        ceiling = random_action_throughput(env_id, num_envs=16, seconds=3.0, num_threads=os.cpu_count())
        log(f"env ceiling (random actions, 16 envs, {os.cpu_count()} threads): {ceiling:,.0f} steps/s")
    else:
        ceiling = envs.physics_ceiling(env_id, num_envs=16, seconds=3.0)
        log(f"physics ceiling (mj_step, 16 envs, {os.cpu_count()} cores): {ceiling:,.0f} steps/s")
    results["physics_ceiling_steps_per_s"] = ceiling
    for nav_id in ("SafetyPointGoal1-v0", "SafetyCarGoal1-v0"):  # the native suite vs Safety-Gymnasium's ~0.6k/s
        single = random_action_throughput(nav_id, num_envs=1, seconds=2.0, num_threads=1)
        batched = random_action_throughput(nav_id, num_envs=16, seconds=2.0, num_threads=1)
        results[f"{nav_id}_random_steps_per_s"] = {"1_env_1_thread": single, "16_envs_1_thread": batched}
        log(f"{nav_id} random actions: {single:,.0f} steps/s (1 env, 1 core), {batched:,.0f} (16 envs, 1 core)")

    for collect_envs in (16, 32, 64):
        collect = collection_rate(env_id, num_envs=collect_envs, steps=collect_envs * 512)
        results[f"collection_steps_per_s_{collect_envs}_envs"] = collect
        log(f"collection, policy in the loop ({collect_envs} envs): {collect:,.0f} steps/s "
            f"= {collect / ceiling:.0%} of ceiling")

    # The side-by-side rates run interleaved `repeats` times (the machine is shared and noisy): each line is one
    # repeat, the summary lines give the median and the minimum, and the ratios are of medians.
    rates: dict[str, list[float]] = {}

    def measured(name: str, rate: float) -> float:
        rates.setdefault(name, []).append(rate)
        return rate

    for repeat in range(1, repeats + 1):
        tag = f"[{repeat}/{repeats}] " if repeats > 1 else ""
        ours = train_rate("ppo", env_id, steps, num_envs, SB3_EQUIVALENT)
        measured("ppo_sb3_settings", ours["steps_per_s"])
        log(f"{tag}PPO end-to-end, SB3 settings ({num_envs} envs x {2048 // num_envs} steps): "
            f"{ours['steps_per_s']:,.0f} steps/s ({ours['seconds']:.1f} s for {ours['steps']} steps)")
        for sb3_envs in (1, num_envs) if with_sb3 else ():
            sb3 = sb3_rate(env_id, steps, sb3_envs)
            if sb3 is None:
                log("Stable-Baselines3 not installed (pip install -e .[bench]): no side-by-side ratio")
                with_sb3 = False
                break
            measured(f"sb3_ppo_{sb3_envs}_envs", sb3)
            layout = "its default, 1 env x 2048 steps" if sb3_envs == 1 else f"same layout, {sb3_envs} DummyVecEnv envs"
            log(f"{tag}Stable-Baselines3 PPO ({layout}): {sb3:,.0f} steps/s -> ratio {ours['steps_per_s'] / sb3:.2f}x")
        for members in (1, 4, 8):
            rate = train_rate("ppo_lag", env_id, constrained_steps, num_envs, [], members=members)
            measured(f"ppo_lag_{members}_members", rate["steps_per_s"])
            log(f"{tag}ppo_lag end-to-end, project defaults, K={members} members: {rate['steps_per_s']:,.0f} steps/s "
                f"aggregate ({rate['steps']} steps, {rate['seconds']:.1f} s) = "
                f"{rate['steps_per_s'] / rates['ppo_lag_1_members'][-1]:.2f}x K=1")
    summary = {name: {"runs": runs, "median": statistics.median(runs), "min": min(runs)}
               for name, runs in rates.items()}
    results["rates_steps_per_s"] = summary
    median = {name: entry["median"] for name, entry in summary.items()}
    if repeats > 1:
        log(f"medians of {repeats} interleaved repeats (min in brackets):")
        for name, entry in summary.items():
            log(f"  {name}: {entry['median']:,.0f} steps/s ({entry['min']:,.0f})")
    for sb3_envs in (1, num_envs):
        if f"sb3_ppo_{sb3_envs}_envs" in median:
            ratio = median["ppo_sb3_settings"] / median[f"sb3_ppo_{sb3_envs}_envs"]
            results[f"ratio_vs_sb3_{sb3_envs}_envs"] = ratio
            log(f"ratio to Stable-Baselines3 with {sb3_envs} env(s): {ratio:.2f}x")
    for members in (4, 8):
        ratio = median[f"ppo_lag_{members}_members"] / median["ppo_lag_1_members"]
        results[f"ppo_lag_{members}_members_over_1"] = ratio
        log(f"ppo_lag members: K={members} gives {ratio:.2f}x the aggregate steps/s of K=1")
    rate = train_rate("cpo", env_id, constrained_steps, num_envs, [])
    results["cpo_defaults"] = rate
    log(f"cpo end-to-end, project defaults: {rate['steps_per_s']:,.0f} steps/s "
        f"({rate['steps']} steps, {rate['seconds']:.1f} s)")

    if out is not None:
        write_json(out, results)
        log(f"results written to {out}")
    return results


