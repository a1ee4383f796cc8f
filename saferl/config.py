"""Typed run configuration: dataclasses with defaults, loaded from YAML and `--set key=value`.

Defaults follow OmniSafe's on-policy configs (the settings behind most published safe-RL numbers); the reasons
behind the others are in docs/configuration.md. Unknown keys, wrong types and out-of-range values raise
`SafeRLError` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from saferl.config_values import coerce
from saferl.errors import SafeRLError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
MAX_SEED = 2**31 - 1  # numpy's legacy seeding takes < 2**32, and the runner adds env and epoch offsets to a seed
LOG_STD_RANGE = (-20.0, 2.0)  # std ~2e-9 (log-probs stay finite) to ~7 times an action range of [-1, 1]
GROUP_ESTIMATORS = ("rloo", "rloo_step", "grpo")  # critic-free: saferl/maths/group_advantages.py
ADVANTAGES = ("gae",) + GROUP_ESTIMATORS


@dataclass
class EnvConfig:
    id: str = "SafetyHalfCheetahVelocity-v1"
    num_envs: int = 20  # x 1,000 steps: an epoch of 20 whole episodes, as OmniSafe's
    max_episode_steps: int | None = None  # None: the task's own limit (1000 for velocity tasks)
    cost_limit: float = 25.0  # the budget on the expected episode cost, per constraint: part of the task

    def validate(self):
        _check(self.num_envs >= 1, "env.num_envs must be >= 1")
        _check(self.max_episode_steps is None or self.max_episode_steps >= 1, "env.max_episode_steps must be >= 1")
        _check(math.isfinite(self.cost_limit) and self.cost_limit >= 0, "env.cost_limit must be a finite number >= 0")


@dataclass
class TrainConfig:
    algo: str = "ppo_lag"
    seed: int = 0
    total_steps: int = 10_000_000  # OmniSafe's benchmark budget
    schedule_steps: int | None = None  # the lr schedule's horizon, fixed at creation (null: total_steps then)
    steps_per_epoch: int = 20_000  # rollout size, summed over envs
    gamma: float = 0.99
    gae_lambda: float = 0.95
    cost_gamma: float = 0.99
    cost_gae_lambda: float = 0.95
    standardize_reward_adv: bool = True
    center_cost_adv: bool = True  # cost advantages are centred, not scaled (OmniSafe's choice)
    torch_threads: int = 1  # minibatches of 64 gain nothing from intra-op threads; the envs use the cores
    checkpoint_every: int = 1  # epochs
    episode_window: int = 100  # recent episodes averaged for logging (ep_return, ep_cost)
    # The episodes whose mean cost J_c the constraint reads: null, this epoch's (the last episode_window when
    # none finished); N, the last N episodes.
    constraint_window: int | None = None
    progress_bar: bool = True
    tensorboard: bool = True
    group_size: int = 0  # G envs start each episode from one state, in lock-step; 0: off (docs/group-estimators.md)
    advantage: str = "gae"  # "gae" (the critics'), or critic-free "rloo", "rloo_step", "grpo" (need group_size)
    grpo_std: bool = True  # GRPO divides by the group's std; false is Dr. GRPO
    group_gamma: float = 1.0  # discount of the group estimators' returns (1: the episode's total, as GRPO's)
    drop_flat_groups: bool = False  # DAPO's dynamic sampling: drop groups whose returns (and costs) do not differ
    flat_group_threshold: float = 1e-6  # a group is flat when max - min of each of its returns is <= this
    group_averaging: str = "step"  # "step": every step weighs the same (DAPO's token level); "episode": every episode

    @property
    def critic_free(self) -> bool:
        """Whether the advantages come from the group estimators, so no critic is trained."""
        return self.advantage in GROUP_ESTIMATORS

    def validate(self):
        check_seed(self.seed, "train.seed")
        _check(self.total_steps >= 1, "train.total_steps must be >= 1")
        _check(self.steps_per_epoch >= 1, "train.steps_per_epoch must be >= 1")
        for name in ("gamma", "gae_lambda", "cost_gamma", "cost_gae_lambda"):
            _check(0.0 <= getattr(self, name) <= 1.0, f"train.{name} must be in [0, 1]")
        _check(self.torch_threads >= 1, "train.torch_threads must be >= 1")
        _check(self.checkpoint_every >= 1, "train.checkpoint_every must be >= 1")
        _check(self.episode_window >= 1, "train.episode_window must be >= 1")
        _check(self.schedule_steps is None or self.schedule_steps >= 1, "train.schedule_steps must be >= 1 or null")
        _check(self.constraint_window is None or self.constraint_window >= 1,
               "train.constraint_window must be >= 1 or null")
        _check(self.advantage in ADVANTAGES, f"train.advantage must be one of {', '.join(ADVANTAGES)}")
        _check(self.group_size == 0 or self.group_size >= 2, "train.group_size must be 0 (off) or >= 2")
        _check(not self.critic_free or self.group_size >= 2,
               f"train.advantage={self.advantage} needs group rollouts: set train.group_size (e.g. 8)")
        _check(0.0 <= self.group_gamma <= 1.0, "train.group_gamma must be in [0, 1]")
        _check(self.flat_group_threshold >= 0, "train.flat_group_threshold must be >= 0")
        _check(self.group_averaging in ("step", "episode"), "train.group_averaging must be 'step' or 'episode'")


@dataclass
class ModelConfig:
    actor_hidden: list[int] = field(default_factory=lambda: [64, 64])
    critic_hidden: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"
    init_log_std: float = 0.0
    normalize_obs: bool = True
    obs_clip: float = 5.0  # OmniSafe's, as the next two (docs/safety.md says why); CleanRL and SB3 clip at 10
    normalizer_update: str = "step"  # before every env step; "epoch": frozen while collecting (CleanRL, SB3)
    init: str = "kaiming_uniform"  # torch's nn.Linear default; "orthogonal" (CleanRL, SB3: gain sqrt 2, head 0.01)

    def validate(self):
        _check(self.activation in ("tanh", "relu", "elu"), "model.activation must be one of tanh, relu, elu")
        _check(self.normalizer_update in ("epoch", "step"), "model.normalizer_update must be 'epoch' or 'step'")
        _check(self.init in ("orthogonal", "kaiming_uniform"), "model.init must be 'orthogonal' or 'kaiming_uniform'")
        _check(all(w >= 1 for w in self.actor_hidden + self.critic_hidden), "model hidden widths must be >= 1")
        _check(self.obs_clip > 0, "model.obs_clip must be > 0")
        _check_log_std(self.init_log_std, "model.init_log_std")


@dataclass
class PPOConfig:
    update_epochs: int = 40
    minibatch_size: int = 64
    clip_ratio: float = 0.2
    target_kl: float | None = 0.02  # early stop when the epoch's mean KL exceeds it; None disables
    kl_estimate: str = "exact"  # the early stop's KL: the Gaussians' (OmniSafe); "k3", mean((r - 1) - log r)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    anneal_lr: bool = True  # actor lr decays linearly to 0 over the run
    max_grad_norm: float | None = 40.0
    clip_per_network: bool = True  # clip actor, reward critic and cost critic each on its own (OmniSafe)
    manual_gradients: bool = True  # the clip loss's gradient by hand (saferl/algorithms/ppo_gradient.py)
    compile: bool = False  # torch.compile the minibatch loss
    entropy_coef: float = 0.0
    value_coef: float = 1.0
    critic_l2: float = 0.001  # + critic_l2 x (sum of the critics' squared weights) in their loss (OmniSafe)
    objective: str = "clip"  # "clip" (PPO-Clip) or "kl_penalty" (PPO-KL, adaptive beta)
    clip_low: float | None = None  # decoupled lower bound epsilon_low; None: clip_ratio
    clip_high: float | None = None  # decoupled upper bound epsilon_high; None: clip_ratio
    kl_penalty_target: float = 0.01
    kl_penalty_init_beta: float = 1.0
    clip_value_loss: bool = False
    value_clip: float = 0.2

    def validate(self):
        _check(self.update_epochs >= 1, "ppo.update_epochs must be >= 1")
        _check(self.minibatch_size >= 1, "ppo.minibatch_size must be >= 1")
        _check(0.0 < self.clip_ratio < 1.0, f"ppo.clip_ratio must be in (0, 1), got {self.clip_ratio}")
        _check(self.target_kl is None or self.target_kl > 0, "ppo.target_kl must be > 0 or null")
        _check(self.actor_lr > 0 and self.critic_lr > 0, "ppo learning rates must be > 0")
        _check(self.max_grad_norm is None or self.max_grad_norm > 0, "ppo.max_grad_norm must be > 0 or null")
        _check(self.objective in ("clip", "kl_penalty"), "ppo.objective must be clip or kl_penalty")
        for name in ("clip_low", "clip_high"):
            value = getattr(self, name)
            _check(value is None or 0.0 < value < 1.0, f"ppo.{name} must be in (0, 1) or null, got {value}")
        _check(self.entropy_coef >= 0, "ppo.entropy_coef must be >= 0")
        _check(self.value_coef >= 0, "ppo.value_coef must be >= 0")
        _check(self.critic_l2 >= 0, "ppo.critic_l2 must be >= 0")
        _check(self.kl_estimate in ("k3", "exact"), "ppo.kl_estimate must be 'k3' or 'exact'")
        _check(self.kl_penalty_target > 0, "ppo.kl_penalty_target must be > 0")
        _check(self.kl_penalty_init_beta >= 0, "ppo.kl_penalty_init_beta must be >= 0")
        _check(self.value_clip > 0, "ppo.value_clip must be > 0")


@dataclass
class LagrangeConfig:
    multiplier_init: float = 0.001
    multiplier_lr: float = 0.035
    method: str = "gradient"  # "gradient" (projected Adam ascent) or "pid" (Stooke et al. 2020)
    # PID gains act on the error J_c - limit in episode-cost units (see saferl/maths/lagrange.py for the reasoning).
    pid_kp: float = 0.1
    pid_ki: float = 0.01
    pid_kd: float = 0.05
    pid_cost_smoothing: float = 0.5  # EMA weight on the previous smoothed cost, for the derivative term

    def validate(self):
        _check(self.multiplier_init >= 0, "lagrange.multiplier_init must be >= 0")
        _check(self.multiplier_lr > 0, "lagrange.multiplier_lr must be > 0")
        _check(self.method in ("gradient", "pid"), "lagrange.method must be 'gradient' or 'pid'")
        _check(min(self.pid_kp, self.pid_ki, self.pid_kd) >= 0, "lagrange.pid_kp/ki/kd must be >= 0")
        _check(0.0 <= self.pid_cost_smoothing < 1.0, "lagrange.pid_cost_smoothing must be in [0, 1)")


@dataclass
class PGConfig:
    """Plain policy gradient (`--algo pg`) and its critics' regression."""

    lr: float = 0.1  # theta += lr * preprocess(grad of the surrogate), one step per epoch
    grad_preprocess: str = "norm"  # "norm": rescale to max_grad_norm if longer; "clip": per component; "none"
    max_grad_norm: float = 1.0  # L_max of norm scaling
    clip_value: float = 0.05  # bound on each gradient component for "clip"
    critic_lr: float = 1e-3
    critic_epochs: int = 10
    critic_minibatch_size: int = 128
    critic_l2: float = 0.001  # + critic_l2 x (sum of the critics' squared weights) (OmniSafe)
    critic_max_grad_norm: float | None = 40.0  # each critic's gradient clipped to this norm (OmniSafe)

    def validate(self):
        _check(self.lr > 0, "pg.lr must be > 0")
        _check(self.grad_preprocess in ("norm", "clip", "none"), "pg.grad_preprocess must be norm, clip or none")
        _check(self.max_grad_norm > 0 and self.clip_value > 0, "pg.max_grad_norm and pg.clip_value must be > 0")
        _check_critic_fit(self, "pg")


@dataclass
class TrustRegionConfig:
    """The natural-gradient step and the critics' regression: `npg`, `trpo` (also trpo_lag's) and `cpo`'s base."""

    target_kl: float = 0.01  # delta: the bound on the mean KL(old || new) of one update
    kl: str = "per_dim"  # what the bound measures: "per_dim" (OmniSafe 0.5.0) or "joint" (the TRPO paper's)
    cg_iters: int = 15
    cg_damping: float = 0.1  # F + damping I: keeps CG stable where the Fisher is nearly singular
    backtrack_coef: float = 0.8  # the line search tries step fractions backtrack_coef**k (not npg)
    max_backtracks: int = 15
    critic_lr: float = 1e-3
    critic_epochs: int = 10
    critic_minibatch_size: int = 128
    critic_l2: float = 0.001  # + critic_l2 x (sum of the critics' squared weights) (OmniSafe)
    critic_max_grad_norm: float | None = 40.0  # each critic's gradient clipped to this norm (OmniSafe)

    def validate(self, section: str = "trpo"):
        _check(self.target_kl > 0, f"{section}.target_kl must be > 0")
        _check(self.kl in ("per_dim", "joint"), f"{section}.kl must be 'per_dim' or 'joint'")
        _check(self.cg_iters >= 1 and self.max_backtracks >= 1,
               f"{section}.cg_iters and {section}.max_backtracks must be >= 1")
        _check(self.cg_damping >= 0, f"{section}.cg_damping must be >= 0")
        _check(0.0 < self.backtrack_coef < 1.0, f"{section}.backtrack_coef must be in (0, 1)")
        _check_critic_fit(self, section)


@dataclass
class CPOConfig(TrustRegionConfig):
    """CPO: the trust-region settings plus its line search's cost slack."""

    cost_tolerance: float = 0.05  # line-search slack, a fraction of one full step's change of each cost surrogate
    cost_scale: str = "mixed"  # c's units: "mixed", "episode" or "per_step" (cpo.py's constraint_gap says which)
    margin_lr: float = 0.02  # learned margin m += margin_lr (J_c - limit), m >= 0, read as J_c + m; 0: off

    def validate(self, section: str = "cpo"):
        super().validate(section)
        _check(self.cost_tolerance >= 0, "cpo.cost_tolerance must be >= 0")
        _check(self.cost_scale in ("episode", "per_step", "mixed"), "cpo.cost_scale must be episode, per_step or mixed")
        _check(self.margin_lr >= 0, "cpo.margin_lr must be >= 0")


def _check_critic_fit(section_config, section: str) -> None:
    _check(section_config.critic_lr > 0, f"{section}.critic_lr must be > 0")
    _check(section_config.critic_epochs >= 1 and section_config.critic_minibatch_size >= 1,
           f"{section}.critic_epochs and {section}.critic_minibatch_size must be >= 1")
    _check(section_config.critic_l2 >= 0, f"{section}.critic_l2 must be >= 0")
    _check(section_config.critic_max_grad_norm is None or section_config.critic_max_grad_norm > 0,
           f"{section}.critic_max_grad_norm must be > 0 or null")


@dataclass
class BCConfig:
    """Behaviour cloning (`saferl bc`): maximum likelihood of the demonstrated actions (saferl/offline/bc.py)."""

    dataset: str = ""  # the HDF5 file; recorded here so config.yaml says what the clone was trained on
    filter: str = "all"  # "all", or "safe": only episodes with cost <= env.cost_limit (OSRL's BC-Safe)
    epochs: int = 200  # upper bound: early stopping on the validation loss usually ends sooner
    batch_size: int = 256
    lr: float = 1e-3
    val_fraction: float = 0.1  # share of episodes held out (whole episodes: steps of one episode correlate)
    patience: int = 10  # epochs without a better validation loss before stopping (best weights are kept)
    normalizer: str = "auto"  # "dataset": the demonstrator's stored stats, "data": fit on the demos, "auto"
    eval_episodes: int = 10  # deterministic rollouts of the clone afterwards (eval.json); 0 skips them

    def validate(self):
        _check(self.filter in ("all", "safe"), "bc.filter must be 'all' or 'safe'")
        _check(self.epochs >= 1 and self.batch_size >= 1, "bc.epochs and bc.batch_size must be >= 1")
        _check(self.lr > 0, "bc.lr must be > 0")
        _check(0.0 <= self.val_fraction < 1.0, "bc.val_fraction must be in [0, 1)")
        _check(self.patience >= 1, "bc.patience must be >= 1")
        _check(self.normalizer in ("auto", "dataset", "data"), "bc.normalizer must be auto, dataset or data")
        _check(self.eval_episodes >= 0, "bc.eval_episodes must be >= 0")


@dataclass
class FineTuneConfig:
    """Starting RL from a BC clone (`saferl finetune`); docs/offline.md gives each default's reason."""

    critic_warmup_epochs: int = 3  # rollouts of the frozen clone that only fit the critics (count in the budget)
    init_log_std: float = -1.0  # starting log-std, combined with the clone's by log_std_rule
    log_std_rule: str = "min"  # "min": min(init_log_std, BC's), floored at min_log_std; "fixed"; "bc"
    min_log_std: float = -3.0  # floor of the "min" rule: a clone of deterministic demos would barely explore
    bc_kl_coef: float = 1.0  # weight of KL(clone || policy) in the PPO loss (ppo, ppo_lag); 0 disables it
    bc_kl_decay: float = 0.9  # the weight is multiplied by this after every update
    warm_start_multiplier: bool = True  # lambda0 = max(0, (J_c(clone) - limit) / limit) instead of multiplier_init
    freeze_normalizer: bool = True  # keep the clone's observation statistics: the actor was fit on that scale

    def validate(self):
        _check(self.critic_warmup_epochs >= 0, "finetune.critic_warmup_epochs must be >= 0")
        _check(self.log_std_rule in ("min", "fixed", "bc"), "finetune.log_std_rule must be min, fixed or bc")
        _check(self.bc_kl_coef >= 0, "finetune.bc_kl_coef must be >= 0")
        _check(0.0 <= self.bc_kl_decay <= 1.0, "finetune.bc_kl_decay must be in [0, 1]")
        _check_log_std(self.init_log_std, "finetune.init_log_std")
        _check_log_std(self.min_log_std, "finetune.min_log_std")


@dataclass
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    lagrange: LagrangeConfig = field(default_factory=LagrangeConfig)
    pg: PGConfig = field(default_factory=PGConfig)
    npg: TrustRegionConfig = field(default_factory=TrustRegionConfig)
    trpo: TrustRegionConfig = field(default_factory=TrustRegionConfig)
    cpo: CPOConfig = field(default_factory=CPOConfig)
    bc: BCConfig = field(default_factory=BCConfig)
    finetune: FineTuneConfig = field(default_factory=FineTuneConfig)

    def validate(self) -> Config:
        for section in dataclasses.fields(self):
            value = getattr(self, section.name)
            value.validate(section.name) if isinstance(value, TrustRegionConfig) else value.validate()
        env, train = self.env, self.train
        _check(env.num_envs <= train.steps_per_epoch, f"env.num_envs ({env.num_envs}) exceeds train.steps_per_epoch "
               f"({train.steps_per_epoch}): every env needs at least one step per rollout")
        _check(train.steps_per_epoch % env.num_envs == 0, f"train.steps_per_epoch ({train.steps_per_epoch}) must be a "
               f"multiple of env.num_envs ({env.num_envs})")
        _check(train.group_size == 0 or env.num_envs % train.group_size == 0,
               f"env.num_envs ({env.num_envs}) must be a multiple of train.group_size ({train.group_size})")
        _check(self.ppo.minibatch_size <= train.steps_per_epoch, "ppo.minibatch_size must be <= train.steps_per_epoch")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def check_seed(seed: int, name: str) -> None:
    """The one seed range: numpy's legacy seeding takes < 2**32, and the runner adds offsets to a seed."""
    _check(0 <= seed <= MAX_SEED, f"{name} must be in [0, {MAX_SEED}], got {seed}")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SafeRLError(message)


def _check_log_std(value: float, key: str) -> None:
    low, high = LOG_STD_RANGE
    _check(low <= value <= high, f"{key} must be in [{low:g}, {high:g}], got {value}")


def _unknown_key(key: str, known: list[str]) -> SafeRLError:
    close = difflib.get_close_matches(key.split(".")[-1], known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return SafeRLError(f"unknown config key '{key}'{hint}")


# Keys that moved, old -> new; still accepted so older config files and commands keep working.
MOVED_KEYS = {("lagrange", "cost_limit"): ("env", "cost_limit")}


def _move_keys(overrides: dict) -> dict:
    overrides = {k: dict(v) if isinstance(v, dict) else v for k, v in overrides.items()}
    for (old_section, old_key), (new_section, new_key) in MOVED_KEYS.items():
        section = overrides.get(old_section)
        if isinstance(section, dict) and old_key in section:
            value = section.pop(old_key)
            if not section:
                overrides.pop(old_section)
            target = overrides.setdefault(new_section, {})
            if isinstance(target, dict):
                target.setdefault(new_key, value)
    return overrides


def merge(config: Config, overrides: dict, prefix: str = "") -> Config:
    """Apply a nested dict of overrides onto `config` in place, checking every key and type."""
    if not isinstance(overrides, dict):
        raise SafeRLError(f"config section '{prefix.rstrip('.') or 'root'}' must be a mapping, got {overrides!r}")
    if not prefix:
        overrides = _move_keys(overrides)
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
            setattr(config, key, coerce(value, hints[key], full))
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
    """A YAML file's content ({} when empty); a missing, unreadable or malformed file is a one-line error."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SafeRLError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise SafeRLError(f"config file {path} is a directory, not a YAML file") from None
    except UnicodeDecodeError:
        raise SafeRLError(f"config file {path} is not UTF-8 text (a binary file?)") from None
    except OSError as exc:
        raise SafeRLError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise SafeRLError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return data or {}


def build_config(algo: str, config_file: str | None = None, sets: list[str] | None = None,
                 extra: dict | None = None, layers: tuple[dict, ...] = ()) -> Config:
    """The dataclasses' defaults, then `layers` (e.g. what a fine-tune inherits), then the user's file, then CLI
    flags, then --set."""
    config = Config()
    for layer in layers:
        merge(config, layer)
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


def epochs_per_run(steps: int, steps_per_epoch: int) -> int:
    """Epochs a budget of `steps` (per member) trains: whole epochs, the last may overshoot, at least one."""
    return max(1, -(-steps // steps_per_epoch))
