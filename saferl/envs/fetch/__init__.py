"""Safe manipulation on gymnasium-robotics' Fetch arm: reach, push and pick-and-place around a keep-out box
under a gripper speed limit.

Ids (registered with gymnasium when ``saferl.envs`` is imported; 100-step episodes, twice v4's 50,
because the speed limit about halves the arm's speed and the box adds a detour):
``SafetyFetch{Reach,Push,PickAndPlace}-v0`` (sparse reward -1/0, as FetchReach-v4 etc.) and
``SafetyFetch{Reach,Push,PickAndPlace}Dense-v0`` (reward -distance). ``info["cost"]`` is
``[keepout, speed]``, ``info["is_success"]`` v4's success. The geometry, its ranges and the
limits are documented in ``layout.py``; the single env is ``single.SafetyFetchEnv``, the batched
backend ``vector.FetchVectorEnv`` (what ``saferl.envs.make`` returns) and scripted
demonstrators are in ``demonstrators.py``.

Nothing here imports gymnasium-robotics until a Fetch env is built.
"""

from __future__ import annotations

import gymnasium

from .layout import MAX_EPISODE_STEPS

FETCH_IDS = {
    f"SafetyFetch{task}{'Dense' if dense else ''}-v0": (task, "dense" if dense else "sparse")
    for task in ("Reach", "Push", "PickAndPlace") for dense in (False, True)
}


def register_fetch_envs() -> None:
    """Register every Fetch id with gymnasium (safe to call repeatedly)."""
    for env_id, (task, reward_type) in FETCH_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point="saferl.envs.fetch.single:SafetyFetchEnv",
                               kwargs={"task": task, "reward_type": reward_type},
                               max_episode_steps=MAX_EPISODE_STEPS)


def make_fetch_vec(env_id: str, num_envs: int = 1, seed: int | list[int] | None = None,
                   max_episode_steps: int | None = None, num_threads: int | None = None, **env_kwargs):
    """The batched backend for one Fetch id (see ``vector.FetchVectorEnv``)."""
    from .vector import FetchVectorEnv

    task, reward_type = FETCH_IDS[env_id]
    return FetchVectorEnv(env_id, task, reward_type, num_envs, seed, max_episode_steps=max_episode_steps,
                          num_threads=num_threads, **env_kwargs)


register_fetch_envs()
