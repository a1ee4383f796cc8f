"""Typed run configuration: dataclasses with defaults, loaded from YAML and `--set key=value`.

Defaults follow OmniSafe's on-policy configs (the settings behind most published safe-RL numbers).
Unknown keys, wrong types and out-of-range values raise `SafeRLError` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from saferl.errors import SafeRLError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass
class EnvConfig:
    id: str = "SafetyHalfCheetahVelocity-v1"
    num_envs: int = 8
    max_episode_steps: int | None = None  # None: the task's own limit (1000 for velocity tasks)

    def validate(self):
        _check(self.num_envs >= 1, "env.num_envs must be >= 1")
        _check(self.max_episode_steps is None or self.max_episode_steps >= 1, "env.max_episode_steps must be >= 1")


@dataclass
class TrainConfig:
    algo: str = "ppo_lag"
    seed: int = 0
    total_steps: int = 1_000_000
    steps_per_epoch: int = 20_000  # rollout size, summed over envs
    gamma: float = 0.99
    gae_lambda: float = 0.95
    cost_gamma: float = 0.99
    cost_gae_lambda: float = 0.95
    standardize_reward_adv: bool = True
    center_cost_adv: bool = True  # cost advantages are centred, not scaled (OmniSafe's choice)
    torch_threads: int = 1  # minibatches of 64 gain nothing from intra-op threads; the envs use the cores
    checkpoint_every: int = 1  # epochs
    episode_window: int = 100  # recent episodes averaged for logging and the multiplier
    progress_bar: bool = True
    tensorboard: bool = True

    def validate(self):
        _check(self.total_steps >= 1, "train.total_steps must be >= 1")
        _check(self.steps_per_epoch >= 1, "train.steps_per_epoch must be >= 1")
        for name in ("gamma", "gae_lambda", "cost_gamma", "cost_gae_lambda"):
            _check(0.0 <= getattr(self, name) <= 1.0, f"train.{name} must be in [0, 1]")
        _check(self.torch_threads >= 1, "train.torch_threads must be >= 1")
        _check(self.checkpoint_every >= 1, "train.checkpoint_every must be >= 1")
        _check(self.episode_window >= 1, "train.episode_window must be >= 1")


@dataclass
class ModelConfig:
    actor_hidden: list[int] = field(default_factory=lambda: [64, 64])
    critic_hidden: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"
    init_log_std: float = 0.0
    normalize_obs: bool = True
    obs_clip: float = 10.0

    def validate(self):
        _check(self.activation in ("tanh", "relu", "elu"), "model.activation must be one of tanh, relu, elu")
        _check(all(w >= 1 for w in self.actor_hidden + self.critic_hidden), "model hidden widths must be >= 1")
        _check(self.obs_clip > 0, "model.obs_clip must be > 0")


@dataclass
class PPOConfig:
    update_epochs: int = 40
    minibatch_size: int = 64
    clip_ratio: float = 0.2
    target_kl: float | None = 0.02  # early stop when the epoch's mean KL exceeds it; None disables
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    anneal_lr: bool = True  # actor lr decays linearly to 0 over the run
    max_grad_norm: float | None = 40.0
    entropy_coef: float = 0.0
    value_coef: float = 1.0
    compile: bool = False  # torch.compile the minibatch loss (first epoch pays the compile time)

    def validate(self):
        _check(self.update_epochs >= 1, "ppo.update_epochs must be >= 1")
        _check(self.minibatch_size >= 1, "ppo.minibatch_size must be >= 1")
        _check(self.clip_ratio > 0, "ppo.clip_ratio must be > 0")
        _check(self.target_kl is None or self.target_kl > 0, "ppo.target_kl must be > 0 or null")
        _check(self.actor_lr > 0 and self.critic_lr > 0, "ppo learning rates must be > 0")
        _check(self.max_grad_norm is None or self.max_grad_norm > 0, "ppo.max_grad_norm must be > 0 or null")


@dataclass
class LagrangeConfig:
    cost_limit: float = 25.0  # budget on the expected episode cost, per constraint
    multiplier_init: float = 0.001
    multiplier_lr: float = 0.035

    def validate(self):
        _check(self.cost_limit >= 0, "lagrange.cost_limit must be >= 0")
        _check(self.multiplier_init >= 0, "lagrange.multiplier_init must be >= 0")
        _check(self.multiplier_lr > 0, "lagrange.multiplier_lr must be > 0")


@dataclass
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    lagrange: LagrangeConfig = field(default_factory=LagrangeConfig)

    def validate(self) -> Config:
        for section in dataclasses.fields(self):
            getattr(self, section.name).validate()
        _check(
            self.train.steps_per_epoch % self.env.num_envs == 0,
            f"train.steps_per_epoch ({self.train.steps_per_epoch}) must be a multiple of env.num_envs "
            f"({self.env.num_envs})",
        )
        _check(
            self.ppo.minibatch_size <= self.train.steps_per_epoch,
            "ppo.minibatch_size must be <= train.steps_per_epoch",
        )
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SafeRLError(message)


def _coerce(value, annotation, key: str):
    """Check `value` against a field annotation; ints and numeric strings are accepted for floats."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except SafeRLError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise SafeRLError(f"config key '{key}' must be a list, got {value!r}")
        return [_coerce(v, item_type, key) for v in value]
    if annotation is bool:
        if not isinstance(value, bool):
            raise SafeRLError(f"config key '{key}' must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise SafeRLError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SafeRLError(f"config key '{key}' must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise SafeRLError(f"config key '{key}' must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {annotation} for {key}")


def _unknown_key(key: str, known: list[str]) -> SafeRLError:
    close = difflib.get_close_matches(key.split(".")[-1], known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return SafeRLError(f"unknown config key '{key}'{hint}")


def merge(config: Config, overrides: dict, prefix: str = "") -> Config:
    """Apply a nested dict of overrides onto `config` in place, checking every key and type."""
    if not isinstance(overrides, dict):
        raise SafeRLError(f"config section '{prefix or 'root'}' must be a mapping")
    hints = typing.get_type_hints(type(config))
    names = [f.name for f in dataclasses.fields(config)]
    for key, value in overrides.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise _unknown_key(full, names)
        current = getattr(config, key)
        if dataclasses.is_dataclass(current):
            merge(current, value, prefix=f"{full}.")
        else:
            setattr(config, key, _coerce(value, hints[key], full))
    return config


def parse_set(assignments: list[str]) -> dict:
    """Turn `["ppo.clip_ratio=0.1", ...]` into a nested dict; values are parsed as YAML scalars."""
    nested: dict = {}
    for item in assignments:
        if "=" not in item:
            raise SafeRLError(f"--set expects key=value, got '{item}'")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) != 2:
            raise SafeRLError(f"--set key must be section.name (e.g. ppo.clip_ratio), got '{key}'")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        nested.setdefault(parts[0], {})[parts[1]] = value
    return nested


def load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise SafeRLError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise SafeRLError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return data or {}


def algo_defaults_file(algo: str) -> Path:
    return CONFIG_DIR / f"{algo}.yaml"


def build_config(algo: str, config_file: str | None = None, sets: list[str] | None = None,
                 extra: dict | None = None) -> Config:
    """Defaults, then configs/<algo>.yaml, then the user's file, then CLI flags, then --set."""
    config = Config()
    defaults = algo_defaults_file(algo)
    if defaults.exists():
        merge(config, load_yaml(defaults))
    if config_file:
        merge(config, load_yaml(Path(config_file)))
    if extra:
        merge(config, extra)
    if sets:
        merge(config, parse_set(sets))
    config.train.algo = algo
    return config.validate()


def config_from_dict(data: dict) -> Config:
    return merge(Config(), data).validate()
