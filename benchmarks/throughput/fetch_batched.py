"""Steps/s of the Fetch tasks under random actions: gymnasium-robotics' own single env (FetchPush-v4), saferl's
single env (gymnasium.make of SafetyFetchPush-v0) and saferl's batched backend (envs.make, 16 envs, one thread
per core); the three interleaved, 3 repeats of about 5 s each, median and min reported.

Usage: python fetch_batched.py OUT.json [TASK]   (TASK: Reach, Push or PickAndPlace; default Push)
"""

import json
import statistics
import sys
import time

import gymnasium
import gymnasium_robotics
import numpy as np

from saferl import envs

SECONDS = 5.0


def gymnasium_rate(env_id: str) -> float:
    env = gymnasium.make(env_id)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS:
        _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        steps += 1
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def batched_rate(env_id: str, num_envs: int = 16) -> float:
    env = envs.make(env_id, num_envs, seed=0)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS:
        env.step(rng.uniform(-1, 1, (num_envs, 4)))
        steps += num_envs
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def main(out: str, task: str = "Push") -> None:
    gymnasium.register_envs(gymnasium_robotics)
    cases = {f"gymnasium-robotics Fetch{task}-v4, 1 env": lambda: gymnasium_rate(f"Fetch{task}-v4"),
             f"saferl SafetyFetch{task}-v0, gymnasium.make, 1 env": lambda: gymnasium_rate(f"SafetyFetch{task}-v0"),
             f"saferl SafetyFetch{task}-v0, batched, 16 envs": lambda: batched_rate(f"SafetyFetch{task}-v0")}
    rates = {name: [] for name in cases}
    for _ in range(3):
        for name, measure in cases.items():
            rates[name].append(measure())
    results = {name: {"runs": runs, "median": statistics.median(runs), "min": min(runs)}
               for name, runs in rates.items()}
    single = results[f"gymnasium-robotics Fetch{task}-v4, 1 env"]["median"]
    for name, entry in results.items():
        ratio = entry["median"] / single
        print(f"{name}: median {entry['median']:,.0f} steps/s (min {entry['min']:,.0f}) = {ratio:.2f}x")
    with open(out, "w") as f:
        json.dump({"task": task, "rates_steps_per_s": results}, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:])
