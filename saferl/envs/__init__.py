"""Environments for saferl: Safety-Gymnasium velocity tasks and a vectorised env API.

Importing ``envs`` registers the velocity tasks with gymnasium (``Safety{HalfCheetah,Hopper,
Walker2d,Ant,Humanoid,Swimmer}Velocity-v1`` and ``-v0``, plus the two-cost
``SafetyHalfCheetahVelocityEffort-v1``), the navigation suite (``saferl.envs.navigation``) and the
Fetch manipulation tasks (``SafetyFetch{Reach,Push,PickAndPlace}[Dense]-v0``, ``saferl.envs.fetch``),
so ``gymnasium.make(id)`` works and reports ``info["cost"]``. ``make_safe_env(id)`` gives one env
with Safety-Gymnasium's 6-tuple ``step``.

``make(id, num_envs, seed)`` returns a ``VectorEnv`` (see ``envs.vector.VectorEnv`` for the
exact contract): velocity, navigation and Fetch ids get their batched MuJoCo backends, anything
else the generic ``SyncVectorEnv``; ``backend="sync"`` forces the generic one.

Plugging in your own env: register it with gymnasium (cost in ``info["cost"]``) and pass its id,
or pass a zero-argument factory. Declare ``cost_names`` on the env when it has several costs::

    class MyEnv(gymnasium.Env):
        cost_names = ["hazard", "speed"]  # omit for a single cost
        ...
        def step(self, action):
            ...
            return obs, reward, terminated, truncated, {"cost": np.array([hazard, too_fast])}

    vec = envs.make(lambda: gymnasium.wrappers.TimeLimit(MyEnv(), 500), num_envs=8, seed=0)

A factory may also return any object with ``reset(seed=None) -> (obs, info)``, an
``observation_space``/``action_space`` and a 6-tuple ``step`` (e.g. a Safety-Gymnasium env).
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from collections.abc import Callable

import gymnasium

from saferl.envs.batched import BatchedVelocityEnv, physics_ceiling
from saferl.envs.fetch import FETCH_IDS, make_fetch_vec
from saferl.envs.navigation import NAVIGATION_IDS, NavigationVectorEnv
from saferl.envs.toy import NOISY_TOY_BACKGROUND_COST, NOISY_TOY_ID, NOISY_TOY_NOISE_DIMS, TOY_ID, ToyVelocityVecEnv
from saferl.envs.vector import SafetyGymnasiumStep, SyncVectorEnv, VectorEnv, flatten_observation
from saferl.envs.velocity import EFFORT_THRESHOLD, VELOCITY_ENV_IDS, VELOCITY_TASKS, register_velocity_envs
from saferl.errors import SafeRLError

register_velocity_envs()

__all__ = [
    "EFFORT_THRESHOLD",
    "FETCH_IDS",
    "VELOCITY_ENV_IDS",
    "BatchedVelocityEnv",
    "SyncVectorEnv",
    "VectorEnv",
    "flatten_observation",
    "make",
    "make_safe_env",
    "physics_ceiling",
    "require_env",
]

BACKENDS = ("auto", "batched", "sync")


def make(env_id_or_factory: str | Callable[[], object], num_envs: int = 1, seed: int | list[int] | None = None, *,
         backend: str = "auto", max_episode_steps: int | None = None, num_threads: int | None = None,
         **kwargs) -> VectorEnv:
    """N copies of an env behind the ``VectorEnv`` API.

    ``env_id_or_factory``: one of our ids, any gymnasium id whose env reports ``info["cost"]``,
    or a zero-argument factory. ``seed``: the first reset's seed (env i gets ``seed + i``, or
    ``seed[i]`` for a list; None: fresh entropy). ``max_episode_steps`` overrides the time limit.
    ``num_threads`` (batched backends): threads stepping the physics, default ``min(cores, N)``
    (``saferl.envs.threads``).
    Other ``kwargs`` go to the env constructor (only for ids).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if callable(env_id_or_factory):
        if kwargs:
            raise TypeError(f"env kwargs {sorted(kwargs)} cannot be passed to a factory; bind them in it")
        return SyncVectorEnv(env_id_or_factory, num_envs, seed, max_episode_steps=max_episode_steps)
    if env_id_or_factory == TOY_ID:  # natively vectorised numpy task for fast learning tests
        return ToyVelocityVecEnv(num_envs, seed, max_episode_steps)
    if env_id_or_factory == NOISY_TOY_ID:
        return ToyVelocityVecEnv(num_envs, seed, max_episode_steps, NOISY_TOY_NOISE_DIMS, NOISY_TOY_BACKGROUND_COST)
    env_id = _registered_id(env_id_or_factory)
    if env_id in NAVIGATION_IDS and backend != "sync" and not kwargs:  # natively batched
        return NavigationVectorEnv(env_id, num_envs, seed, max_episode_steps=max_episode_steps,
                                   num_threads=num_threads)
    if env_id in FETCH_IDS and backend != "sync" and "render_mode" not in kwargs:  # natively batched
        return make_fetch_vec(env_id, num_envs, seed, max_episode_steps=max_episode_steps,
                              num_threads=num_threads, **kwargs)
    batched_ok = env_id in VELOCITY_TASKS and "render_mode" not in kwargs
    if backend == "batched" and not batched_ok:
        raise ValueError(f"no batched backend for {env_id!r} with these arguments; use backend='sync'")
    if backend != "sync" and batched_ok:
        return BatchedVelocityEnv(env_id, num_envs, seed, max_episode_steps=max_episode_steps,
                                  num_threads=num_threads, **kwargs)

    def factory():
        return _gymnasium_make(env_id, max_episode_steps=max_episode_steps, **kwargs)

    return SyncVectorEnv(factory, num_envs, seed, env_id=env_id, max_episode_steps=max_episode_steps)


def make_safe_env(env_id: str, **kwargs) -> SafetyGymnasiumStep:
    """One env whose ``step`` returns ``(obs, reward, cost, terminated, truncated, info)``."""
    return SafetyGymnasiumStep(_gymnasium_make(_registered_id(env_id), **kwargs))


def require_env(env_id: str) -> None:
    """Build one copy of `env_id` and close it: an id that does not exist (or an env that fails to build) is a
    one-line `SafeRLError` before any long work starts."""
    try:
        make(env_id, num_envs=1).close()
    except ValueError as exc:
        raise SafeRLError(str(exc)) from None


def _gymnasium_make(env_id: str, **kwargs) -> gymnasium.Env:
    # SyncVectorEnv checks spaces, observation shapes and costs itself and says what is wrong in one line;
    # gymnasium's passive checker would add its own warnings first.
    kwargs.setdefault("disable_env_checker", True)
    with warnings.catch_warnings():
        # Our -v0 ids are a distinct benchmark variant, not an outdated version of -v1.
        if env_id in VELOCITY_TASKS:
            warnings.filterwarnings("ignore", message=".*is out of date.*")
        return gymnasium.make(env_id, **kwargs)


def _registered_id(env_id: str) -> str:
    """The registered id that `env_id` names, else ValueError: a known id, or "module:EnvId" (gymnasium's
    convention: importing the module registers the id)."""
    if ":" in env_id:
        module, env_id = env_id.split(":", 1)
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"cannot import {module!r} to register {env_id!r}: {exc}") from None
        except Exception as exc:  # the user's module itself failed: say where and why in one line
            detail = str(exc).splitlines()[0] if str(exc) else ""
            raise ValueError(f"importing {module!r} to register {env_id!r} failed: {type(exc).__name__}"
                             f"{': ' + detail if detail else ''}") from None
    if env_id in VELOCITY_TASKS or env_id in gymnasium.registry:
        return env_id
    known = list(VELOCITY_ENV_IDS) + [i for i in gymnasium.registry if i not in VELOCITY_TASKS]
    close = difflib.get_close_matches(env_id, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown env id {env_id!r}{hint}")
