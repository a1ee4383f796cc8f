"""The vectorised env API shared by every backend, and the generic (python loop) backend.

``VectorEnv`` fixes the contract (array shapes, same-step autoreset, episode statistics);
``SyncVectorEnv`` implements it for anything that reports a cost: a gymnasium env with
``info["cost"]`` or an object whose ``step`` returns Safety-Gymnasium's 6-tuple.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium
import numpy as np

DEFAULT_COST_NAMES = ["cost"]


def cost_names_of(env) -> list[str]:
    """Cost names an env declares via ``cost_names`` (or ``num_costs``); ``["cost"]`` if it declares none."""
    for source in (env, getattr(env, "unwrapped", None)):
        names = getattr(source, "cost_names", None)
        if names is not None:
            return list(names)
    if isinstance(env, gymnasium.Env):
        try:
            return list(env.get_wrapper_attr("cost_names"))
        except AttributeError:
            pass
    num_costs = getattr(env, "num_costs", None)
    if num_costs is not None and num_costs != 1:
        return [f"cost_{k}" for k in range(num_costs)]
    return list(DEFAULT_COST_NAMES)


def split_step(step_result) -> tuple:
    """Normalise a step result to the 6-tuple ``(obs, reward, cost, terminated, truncated, info)``.

    A 5-tuple is gymnasium's API, with the cost expected in ``info["cost"]``.
    """
    if len(step_result) == 6:
        return step_result
    obs, reward, terminated, truncated, info = step_result
    if "cost" not in info:
        raise KeyError("env.step() returned a 5-tuple without info['cost']; a safe env must report its cost "
                       "in info['cost'] (float or array) or return the 6-tuple (obs, r, cost, term, trunc, info)")
    return obs, reward, info["cost"], terminated, truncated, info


class SafetyGymnasiumStep(gymnasium.Wrapper):
    """Gives a gymnasium env Safety-Gymnasium's ``step`` API: ``(obs, reward, cost, terminated, truncated, info)``."""

    def step(self, action):
        return split_step(self.env.step(action))


class VectorEnv:
    """N environments stepped together, with same-step autoreset.

    ``step(actions)`` returns ``(obs [N, obs_dim], reward [N], cost [N, K], terminated [N],
    truncated [N], info)``. When env i's episode ends, ``obs[i]`` is already the first observation
    of its next episode, ``info["final_obs"][i]`` the last one of the finished episode (rows of
    envs that did not finish hold their current obs), and ``info["episode_done"]``,
    ``info["episode_return"]``, ``info["episode_cost"]`` ([N, K]) and ``info["episode_length"]``
    describe the finished episode (valid where ``episode_done``). Reward and cost are those of
    the step that ended the episode.

    Actions are cast to the action space's dtype and clipped to its bounds before stepping, so
    every backend sees identical controls and out-of-range policy samples are harmless.
    """

    num_envs: int
    env_id: str
    single_observation_space: gymnasium.spaces.Box
    single_action_space: gymnasium.spaces.Box
    cost_names: list[str]
    max_episode_steps: int | None

    @property
    def num_costs(self) -> int:
        return len(self.cost_names)

    def reset(self, seed: int | None = None) -> np.ndarray:
        raise NotImplementedError

    def step(self, actions):
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.env_id!r}, num_envs={self.num_envs})"

    # -- helpers shared by the backends ---------------------------------------------------------

    def _setup_common(self, num_envs: int, seed: int | None) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = num_envs
        self._default_seed = seed
        self._needs_reset = True
        self._action_low = self.single_action_space.low
        self._action_high = self.single_action_space.high
        self._action_dtype = self.single_action_space.dtype
        self._action_shape = (num_envs,) + self.single_action_space.shape
        self._episode_return = np.zeros(num_envs)
        self._episode_cost = np.zeros((num_envs, self.num_costs))
        self._episode_length = np.zeros(num_envs, dtype=np.int64)

    def _reset_seeds(self, seed: int | None) -> list[int | None] | None:
        """Per-env seeds for this reset: ``seed + i``; ``None`` means keep each env's RNG going.

        The first reset falls back to the seed given to ``make`` (or fresh entropy if none).
        """
        if seed is None and self._needs_reset:
            seed = self._default_seed
            if seed is None:
                return [None] * self.num_envs
        if seed is None:
            return None
        return [seed + i for i in range(self.num_envs)]

    def _clear_episodes(self) -> None:
        self._episode_return[:] = 0.0
        self._episode_cost[:] = 0.0
        self._episode_length[:] = 0
        self._needs_reset = False

    def _prepare_actions(self, actions) -> np.ndarray:
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions, dtype=self._action_dtype)
        if actions.shape != self._action_shape:
            raise ValueError(f"expected actions of shape {self._action_shape}, got {actions.shape}")
        return np.minimum(np.maximum(actions, self._action_low), self._action_high)  # np.clip, less overhead

    def _episode_info(self, reward: np.ndarray, cost: np.ndarray, done: np.ndarray) -> dict:
        """Accumulate this step into the running episodes; restart the accumulators of finished ones."""
        self._episode_return += reward
        self._episode_cost += cost
        self._episode_length += 1
        info = {
            "episode_done": done,
            "episode_return": self._episode_return.copy(),
            "episode_cost": self._episode_cost.copy(),
            "episode_length": self._episode_length.copy(),
        }
        if done.any():
            self._episode_return[done] = 0.0
            self._episode_cost[done] = 0.0
            self._episode_length[done] = 0
        return info


class SyncVectorEnv(VectorEnv):
    """Generic backend: a python loop over single envs built by ``env_factory``.

    The factory returns either a gymnasium env (cost in ``info["cost"]``) or any object with
    ``reset(seed=...) -> (obs, info)`` and a 6-tuple ``step``. ``max_episode_steps`` (if not None)
    truncates episodes here, on top of whatever time limit the env applies itself.
    """

    def __init__(self, env_factory: Callable[[], object], num_envs: int = 1, seed: int | None = None,
                 env_id: str | None = None, max_episode_steps: int | None = None):
        self.envs = [env_factory() for _ in range(num_envs)]
        first = self.envs[0]
        self.env_id = env_id or _describe(first)
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.cost_names = cost_names_of(first)
        if max_episode_steps is None:
            spec = getattr(first, "spec", None)
            max_episode_steps = getattr(spec, "max_episode_steps", None)
        self.max_episode_steps = max_episode_steps
        self._setup_common(num_envs, seed)

    def reset(self, seed: int | None = None) -> np.ndarray:
        seeds = self._reset_seeds(seed)
        if seeds is None:
            observations = [env.reset()[0] for env in self.envs]
        else:
            observations = [env.reset(seed=s)[0] for env, s in zip(self.envs, seeds, strict=True)]
        self._clear_episodes()
        return np.stack(observations).astype(np.float64, copy=False)

    def step(self, actions):
        actions = self._prepare_actions(actions)
        n = self.num_envs
        obs = np.empty((n,) + self.single_observation_space.shape)
        final_obs = np.empty_like(obs)
        reward = np.empty(n)
        cost = np.empty((n, self.num_costs))
        terminated = np.empty(n, dtype=bool)
        truncated = np.empty(n, dtype=bool)
        limit = self.max_episode_steps
        for i, env in enumerate(self.envs):
            o, r, c, term, trunc, _ = split_step(env.step(actions[i]))
            c = np.asarray(c, dtype=np.float64)
            if c.size != self.num_costs:
                raise ValueError(f"{self.env_id} returned a cost of shape {c.shape} but declares "
                                 f"{self.num_costs} cost(s) {self.cost_names}; set `cost_names` on the env")
            if limit is not None and self._episode_length[i] + 1 >= limit:
                trunc = True
            reward[i], cost[i], terminated[i], truncated[i] = r, c.reshape(-1), term, trunc
            final_obs[i] = o
            obs[i] = env.reset()[0] if (term or trunc) else o
        done = terminated | truncated
        info = self._episode_info(reward, cost, done)
        info["final_obs"] = final_obs
        return obs, reward, cost, terminated, truncated, info

    def close(self) -> None:
        for env in self.envs:
            close = getattr(env, "close", None)
            if close is not None:
                close()


def _describe(env) -> str:
    spec = getattr(env, "spec", None)
    if getattr(spec, "id", None):
        return spec.id
    return type(getattr(env, "unwrapped", env)).__name__
