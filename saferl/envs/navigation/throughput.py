"""Throughput of the navigation envs under random actions (the project's ``bench`` numbers)."""

from __future__ import annotations

import time

import numpy as np

from .vector import NavigationVectorEnv


def random_action_throughput(env_id: str = "SafetyPointGoal1-v0", num_envs: int = 1, seconds: float = 3.0,
              num_threads: int = 1, seed: int = 0) -> float:
    """Env steps per second (summed over the batch), autoresets included, for uniformly random actions.

    Actions are drawn up front in blocks so the RNG is not part of the measurement.
    """
    env = NavigationVectorEnv(env_id, num_envs=num_envs, seed=seed, num_threads=num_threads)
    try:
        env.reset()
        space = env.single_action_space
        actions = np.random.default_rng(seed).uniform(space.low, space.high, size=(256, num_envs) + space.shape)
        for k in range(20):  # warm up (thread pool, caches)
            env.step(actions[k])
        steps, start = 0, time.perf_counter()
        while True:
            for a in actions:
                env.step(a)
            steps += len(actions)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return steps * num_envs / elapsed
    finally:
        env.close()
