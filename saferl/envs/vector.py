"""The vectorised env API: one base class that owns the bookkeeping, and the generic (python loop) backend.

``VectorEnv`` implements the contract every caller relies on (shapes, seeds, action clipping,
same-step autoreset, episode statistics, success); a backend only simulates, through three hooks
(see ``VectorEnv``). ``SyncVectorEnv`` is the backend for anything that reports a cost: a
gymnasium env with ``info["cost"]`` or an object whose ``step`` returns Safety-Gymnasium's 6-tuple.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gymnasium
import numpy as np

from saferl.errors import SafeRLError

DEFAULT_COST_NAMES = ["cost"]


class EnvError(SafeRLError, ValueError):
    """A user env that breaks the safe-env contract (cost missing or malformed, unsupported spaces): the CLI
    reports it in one line (SafeRLError), and code that builds envs can catch it as the ValueError it is."""


def cost_names_of(env) -> list[str]:
    """Cost names an env declares via ``cost_names`` (or ``num_costs``); ``["cost"]`` if it declares none."""
    names = None
    for source in (env, getattr(env, "unwrapped", None)):
        names = getattr(source, "cost_names", None)
        if names is not None:
            break
    if names is None and isinstance(env, gymnasium.Env):
        try:
            names = env.get_wrapper_attr("cost_names")
        except AttributeError:
            pass
    if names is not None:
        if isinstance(names, (str, bytes)) or not all(isinstance(name, str) for name in names):
            raise EnvError(f"{_describe(env)}: cost_names must be a list of strings, got {names!r}")
        names = list(names)
        if not names or len(set(names)) != len(names):
            raise EnvError(f"{_describe(env)}: cost_names must be non-empty and distinct, got {names!r}")
        return names
    num_costs = getattr(env, "num_costs", None)
    if num_costs is not None:
        if isinstance(num_costs, bool) or not isinstance(num_costs, (int, np.integer)) or num_costs < 1:
            raise EnvError(f"{_describe(env)}: num_costs must be an integer >= 1, got {num_costs!r}")
        if num_costs != 1:
            return [f"cost_{k}" for k in range(num_costs)]
    return list(DEFAULT_COST_NAMES)


def split_step(step_result, env_id: str | None = None) -> tuple:
    """Normalise a step result to the 6-tuple ``(obs, reward, cost, terminated, truncated, info)``.

    A 5-tuple is gymnasium's API, with the cost expected in ``info["cost"]``.
    """
    name = env_id or "env"
    if not isinstance(step_result, (tuple, list)) or len(step_result) not in (5, 6):
        size = len(step_result) if isinstance(step_result, (tuple, list)) else type(step_result).__name__
        raise EnvError(f"{name}.step() returned {size} values; expected gymnasium's 5 (obs, reward, terminated, "
                       "truncated, info) with info['cost'], or the 6-tuple (obs, reward, cost, terminated, "
                       "truncated, info)")
    if len(step_result) == 6:
        return step_result
    obs, reward, terminated, truncated, info = step_result
    if not isinstance(info, dict) or "cost" not in info:
        raise EnvError(f"{name}.step() returned a 5-tuple without info['cost']; a safe env must report its cost "
                       "in info['cost'] (float or array) or return the 6-tuple (obs, r, cost, term, trunc, info)")
    return obs, reward, info["cost"], terminated, truncated, info


def checked_cost(cost, num_costs: int, cost_names: list[str], env_id: str) -> np.ndarray:
    """One env's step cost as a float64 vector of the declared length. None and text are refused (a None would
    become NaN, a "0.5" a number); NaN and inf pass, for the caller to report with its context (the runner names
    the epoch and the checkpoint it keeps)."""
    array = np.asarray(cost) if cost is not None and not isinstance(cost, (str, bytes)) else None
    if array is None or array.dtype.kind not in "biuf":
        raise EnvError(f"{env_id} reported a cost of {cost!r}; a cost must be a number or an array of numbers")
    if array.size != num_costs:
        raise EnvError(f"{env_id} returned a cost of shape {array.shape} but declares {num_costs} cost(s) "
                       f"{cost_names}; set `cost_names` on the env")
    if (array < 0).any():  # NaN compares False: left for the caller's non-finite check
        raise EnvError(f"{env_id} reported a cost of {cost!r}; costs must be >= 0 (a cost counts what the "
                       "constraint limits, as in Safety-Gymnasium; give a penalty as a negative reward)")
    return array.astype(np.float64).reshape(-1)


def checked_observation(obs, space_shape: tuple, env_id: str, call: str) -> np.ndarray:
    """One env's observation, refused in one line when its shape is not the declared space's."""
    try:
        array = np.asarray(obs, dtype=np.float64)
    except (TypeError, ValueError):
        raise EnvError(f"{env_id}.{call}() returned an observation that is not an array of numbers: "
                       f"{type(obs).__name__}") from None
    shape = array.shape
    if shape != space_shape:
        raise EnvError(f"{env_id}.{call}() returned an observation of shape {shape} but its observation_space "
                       f"has shape {space_shape}")
    return array


def call_env(env_id: str, call: str, function, *args, **kwargs):
    """A user env's reset or step; what it raises becomes one line naming the env (the traceback is kept as the
    cause, and the CLI prints it with SAFERL_DEBUG=1)."""
    try:
        return function(*args, **kwargs)
    except EnvError:
        raise
    except Exception as exc:
        detail = str(exc).strip().splitlines()
        raise EnvError(f"{env_id}.{call}() raised {type(exc).__name__}{': ' + detail[0] if detail else ''} "
                       "(SAFERL_DEBUG=1 shows its traceback)") from exc


def check_spaces(env_id: str, observation_space, action_space) -> None:
    """The policies are Gaussian MLPs: flat Box (or Dict of Boxes) observations, flat Box actions."""
    if isinstance(observation_space, gymnasium.spaces.Box):
        if len(observation_space.shape) != 1:
            raise EnvError(f"{env_id}: observations of shape {observation_space.shape} (e.g. images) are not "
                           "supported; saferl's networks take flat vectors (wrap the env in "
                           "gymnasium.wrappers.FlattenObservation, or give it a 1-D Box)")
    elif not isinstance(observation_space, gymnasium.spaces.Dict):
        raise EnvError(f"{env_id}: a {type(observation_space).__name__} observation space is not supported; "
                       "use a 1-D Box (or a Dict of Boxes)")
    if not isinstance(action_space, gymnasium.spaces.Box) or len(action_space.shape) != 1:
        kind = type(action_space).__name__
        shape = f" of shape {action_space.shape}" if isinstance(action_space, gymnasium.spaces.Box) else ""
        raise EnvError(f"{env_id}: a {kind} action space{shape} is not supported; saferl's policies are "
                       "Gaussian over a 1-D continuous Box")


class SafetyGymnasiumStep(gymnasium.Wrapper):
    """Gives a gymnasium env Safety-Gymnasium's ``step`` API: ``(obs, reward, cost, terminated, truncated, info)``."""

    def step(self, action):
        return split_step(self.env.step(action))


def flat_observation_space(space: gymnasium.spaces.Space) -> tuple[gymnasium.spaces.Box, list[tuple[str, int]] | None]:
    """The vector API's flat float64 Box for ``space``, and the Dict layout ``[(key, size), ...]`` (None for a Box).

    Dict observations are flattened in ``gymnasium.spaces.flatten`` order, i.e. the Dict's own key order.
    """
    if isinstance(space, gymnasium.spaces.Dict):
        for key, sub in space.spaces.items():
            if not isinstance(sub, gymnasium.spaces.Box):
                raise ValueError(f"Dict observation key {key!r} is a {type(sub).__name__}; only Box entries are "
                                 "supported")
        flat = gymnasium.spaces.flatten_space(space)
        keys = [(key, int(np.prod(sub.shape))) for key, sub in space.spaces.items()]
        return gymnasium.spaces.Box(flat.low, flat.high, flat.shape, np.float64), keys
    return space, None


def flatten_observation(obs: dict, observation_keys: Sequence[tuple[str, int]]) -> np.ndarray:
    """One Dict observation (or a dict of [N, size] batches) as the flat vector the vector env returns."""
    parts = []
    for key, size in observation_keys:
        value = np.asarray(obs[key], dtype=np.float64)
        parts.append(value.reshape(value.shape[:-1] + (size,)) if value.ndim > 1 else value.reshape(size))
    return np.concatenate(parts, axis=-1)


class VectorEnv:
    """N environments stepped together, with same-step autoreset.

    ``reset(seed)`` returns ``(obs [N, obs_dim], infos)``. ``seed``: None (the seed given at
    construction on the first reset, else every env's RNG keeps going), an int (env i gets
    ``seed + i``) or a sequence of N ints (env i gets ``seed[i]``; several training members with
    seeds s_k share one env by passing ``[s_k + i for k ... for i ...]``).

    ``step(actions)`` returns ``(obs [N, obs_dim], reward [N], cost [N, K], terminated [N],
    truncated [N], info)``. When env i's episode ends, ``obs[i]`` is already the first observation
    of its next episode, ``info["final_obs"][i]`` the last one of the finished episode (rows of
    envs that did not finish hold their current obs), and ``info["episode_done"]``,
    ``info["episode_return"]``, ``info["episode_cost"]`` ([N, K]) and ``info["episode_length"]``
    describe the finished episode (valid where ``episode_done``). Reward and cost are those of
    the step that ended the episode. Envs that report success add ``info["is_success"]`` [N]
    (0/1; for a finished episode, its value at the final step).

    Actions are cast to the action space's dtype and clipped to its bounds before stepping, so
    every backend sees identical controls and out-of-range policy samples are harmless.
    Observations are flat float64; ``observation_keys`` gives the layout ``[(key, size), ...]`` for
    envs whose single observation is a Dict (None otherwise).

    Backend contract. ``__init__`` sets ``env_id``, ``single_observation_space`` (flat Box),
    ``single_action_space``, ``cost_names``, ``max_episode_steps`` (None: no limit added here) and
    optionally ``observation_keys``, then calls ``self._setup(num_envs, seed)``. Then:

    * ``_reset_envs(indices, seeds) -> obs [len(indices), obs_dim]``: start a new episode in envs
      ``indices`` (int array). ``seeds[j]`` reseeds env ``indices[j]``; None keeps its RNG going
      (fresh entropy if it was never seeded). Autoresets pass all None.
    * ``_step_envs(actions) -> (obs, reward, cost, terminated, truncated, info)``: advance every
      env one step (actions already cast and clipped), no resets. ``truncated`` holds the
      backend's own truncations (the base adds the ``max_episode_steps`` limit); ``info`` holds
      per-env arrays about this step (e.g. ``"is_success"``, ``"velocity"``) and is returned as is,
      plus the base's keys. Returned arrays must not be modified by the backend afterwards.
    * ``_close()`` (optional): release threads, renderers, single envs.
    """

    num_envs: int
    env_id: str
    single_observation_space: gymnasium.spaces.Box
    single_action_space: gymnasium.spaces.Box
    cost_names: list[str]
    max_episode_steps: int | None
    observation_keys: list[tuple[str, int]] | None = None

    @property
    def num_costs(self) -> int:
        return len(self.cost_names)

    def reset(self, seed: int | Sequence[int] | None = None) -> tuple[np.ndarray, dict]:
        seeds = self._reset_seeds(seed)
        obs = self._reset_envs(np.arange(self.num_envs), seeds)
        self._episode_return = np.zeros(self.num_envs)
        self._episode_cost = np.zeros((self.num_envs, self.num_costs))
        self._episode_length = np.zeros(self.num_envs, dtype=np.int64)
        self._needs_reset = False
        return obs, {}

    def reset_envs(self, indices: Sequence[int], seeds: Sequence[int | None]) -> np.ndarray:
        """Start a new episode now in envs ``indices`` only, env ``indices[j]`` seeded with ``seeds[j]`` (None
        keeps its RNG going); returns their first observations [len(indices), obs_dim]. Group rollouts use it to
        start G envs from one state (the same seed) whenever their group is done."""
        if self._needs_reset:
            raise RuntimeError("call reset() before reset_envs()")
        indices = np.asarray(indices, dtype=np.int64)
        obs = self._reset_envs(indices, list(seeds))
        # Fresh arrays, as in step: earlier infos still hold the old ones.
        self._episode_return, self._episode_cost = self._episode_return.copy(), self._episode_cost.copy()
        self._episode_length = self._episode_length.copy()
        self._episode_return[indices] = 0.0
        self._episode_cost[indices] = 0.0
        self._episode_length[indices] = 0
        return obs

    def step(self, actions):
        actions = self._prepare_actions(actions)
        obs, reward, cost, terminated, truncated, info = self._step_envs(actions)
        if self.max_episode_steps is not None:
            truncated = truncated | (self._episode_length >= self.max_episode_steps - 1)
        done = terminated | truncated
        # Fresh arrays (not in-place updates), so info hands them out without copies.
        self._episode_return = self._episode_return + reward
        self._episode_cost = self._episode_cost + cost
        self._episode_length = self._episode_length + 1
        info["episode_done"] = done
        info["episode_return"] = self._episode_return
        info["episode_cost"] = self._episode_cost
        info["episode_length"] = self._episode_length
        info["final_obs"] = obs
        if done.any():
            ended = np.flatnonzero(done)
            obs = obs.copy()
            obs[ended] = self._reset_envs(ended, [None] * len(ended))
            self._episode_return = np.where(done, 0.0, self._episode_return)
            self._episode_cost = np.where(done[:, None], 0.0, self._episode_cost)
            self._episode_length = np.where(done, 0, self._episode_length)
        return obs, reward, cost, terminated, truncated, info

    def close(self) -> None:
        if not getattr(self, "_closed", True):
            self._closed = True
            self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.env_id!r}, num_envs={self.num_envs})"

    # -- hooks --------------------------------------------------------------------------------------

    def _reset_envs(self, indices: np.ndarray, seeds: list[int | None]) -> np.ndarray:
        raise NotImplementedError

    def _step_envs(self, actions: np.ndarray) -> tuple:
        raise NotImplementedError

    def _close(self) -> None:
        pass

    # -- bookkeeping --------------------------------------------------------------------------------

    def _setup(self, num_envs: int, seed: int | Sequence[int] | None) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = num_envs
        self._check_seed(seed)
        self._default_seed = seed
        self._needs_reset = True
        self._closed = False
        self._action_low = self.single_action_space.low
        self._action_high = self.single_action_space.high
        self._action_dtype = self.single_action_space.dtype
        self._action_shape = (num_envs,) + self.single_action_space.shape
        self._episode_return = np.zeros(num_envs)
        self._episode_cost = np.zeros((num_envs, self.num_costs))
        self._episode_length = np.zeros(num_envs, dtype=np.int64)

    def _check_seed(self, seed) -> None:
        if seed is None or isinstance(seed, (int, np.integer)):
            return
        seeds = list(seed) if isinstance(seed, (Sequence, np.ndarray)) and not isinstance(seed, str) else None
        if seeds is None or not all(isinstance(s, (int, np.integer)) for s in seeds):
            raise ValueError(f"seed must be None, an int or a list of {self.num_envs} ints, got {seed!r}")
        if len(seeds) != self.num_envs:
            raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} envs; pass one per env (or one int)")

    def _reset_seeds(self, seed) -> list[int | None]:
        """Per-env seeds for this reset; the first reset falls back to the construction seed."""
        if seed is None and self._needs_reset:
            seed = self._default_seed
        self._check_seed(seed)
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)):
            return [int(seed) + i for i in range(self.num_envs)]
        return [int(s) for s in seed]

    def _prepare_actions(self, actions) -> np.ndarray:
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions, dtype=self._action_dtype)
        if actions.shape != self._action_shape:
            raise ValueError(f"expected actions of shape {self._action_shape}, got {actions.shape}")
        return np.minimum(np.maximum(actions, self._action_low), self._action_high)  # np.clip, less overhead


class SyncVectorEnv(VectorEnv):
    """Generic backend: a python loop over single envs built by ``env_factory``.

    The factory returns either a gymnasium env (cost in ``info["cost"]``) or any object with
    ``reset(seed=...) -> (obs, info)`` and a 6-tuple ``step``. ``max_episode_steps`` (if not None)
    truncates episodes here, on top of whatever time limit the env applies itself. Dict
    observations (e.g. gymnasium-robotics tasks) are flattened (see ``flat_observation_space``).
    """

    def __init__(self, env_factory: Callable[[], object], num_envs: int = 1, seed: int | Sequence[int] | None = None,
                 env_id: str | None = None, max_episode_steps: int | None = None):
        self.envs = [env_factory() for _ in range(num_envs)]
        first = self.envs[0]
        self.env_id = env_id or _describe(first)
        self._dict_space = first.observation_space if isinstance(first.observation_space,
                                                                 gymnasium.spaces.Dict) else None
        self.single_observation_space, self.observation_keys = flat_observation_space(first.observation_space)
        self.single_action_space = first.action_space
        check_spaces(self.env_id, first.observation_space, first.action_space)
        self.cost_names = cost_names_of(first)
        if max_episode_steps is None:
            spec = getattr(first, "spec", None)
            max_episode_steps = getattr(spec, "max_episode_steps", None)
        self.max_episode_steps = max_episode_steps
        self._setup(num_envs, seed)

    def _flat(self, obs) -> np.ndarray:
        if self._dict_space is not None:
            return gymnasium.spaces.flatten(self._dict_space, obs)
        return obs

    def _reset_envs(self, indices, seeds):
        observations = []
        for i, seed in zip(indices, seeds, strict=True):
            env = self.envs[i]
            kwargs = {} if seed is None else {"seed": seed}
            obs = call_env(self.env_id, "reset", env.reset, **kwargs)[0]
            observations.append(checked_observation(self._flat(obs), self.single_observation_space.shape,
                                                    self.env_id, "reset"))
        return np.stack(observations).astype(np.float64, copy=False)

    def _step_envs(self, actions):
        n = self.num_envs
        obs = np.empty((n,) + self.single_observation_space.shape)
        reward = np.empty(n)
        cost = np.empty((n, self.num_costs))
        terminated = np.empty(n, dtype=bool)
        truncated = np.empty(n, dtype=bool)
        success = None
        for i, env in enumerate(self.envs):
            o, r, c, term, trunc, env_info = split_step(call_env(self.env_id, "step", env.step, actions[i]),
                                                        self.env_id)
            c = checked_cost(c, self.num_costs, self.cost_names, self.env_id)
            o = checked_observation(self._flat(o), self.single_observation_space.shape, self.env_id, "step")
            obs[i], reward[i], cost[i], terminated[i], truncated[i] = o, r, c.reshape(-1), term, trunc
            if "is_success" in env_info:
                if success is None:
                    success = np.zeros(n)
                success[i] = float(env_info["is_success"])
        info = {} if success is None else {"is_success": success}
        return obs, reward, cost, terminated, truncated, info

    def _close(self) -> None:
        for env in self.envs:
            close = getattr(env, "close", None)
            if close is not None:
                close()


def _describe(env) -> str:
    spec = getattr(env, "spec", None)
    if getattr(spec, "id", None):
        return spec.id
    return type(getattr(env, "unwrapped", env)).__name__


def first_non_finite(obs: np.ndarray, reward: np.ndarray, cost: np.ndarray) -> tuple[str, int] | None:
    """(what, env index) of the first NaN or inf in a step's output, or None: one check for every caller (the
    trainer and the evaluation rollout), since a non-finite number silently poisons everything downstream."""
    for name, values in (("observation", obs), ("reward", reward), ("cost", cost)):
        finite = np.isfinite(np.asarray(values, dtype=np.float64).reshape(len(values), -1)).all(axis=1)
        if not finite.all():
            return name, int(np.flatnonzero(~finite)[0])
    return None
