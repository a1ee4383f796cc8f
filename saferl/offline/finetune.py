"""Offline-to-online: safe RL that starts from a behaviour-cloned actor instead of a random one.

Starting PPO from a clone naively loses the clone's return in the first epochs (the "unlearning dip"): the
critics are random, so the first advantages are noise; the exploration noise of a fresh log-std makes
rollouts unlike the demonstrations; a Lagrangian multiplier at ~0 lets the first updates buy reward with
cost. Each part of the recipe below removes one cause, and each is a `finetune.*` key:

- critic_warmup_epochs (3): epochs of rollouts of the clone with the actor frozen that only fit the reward
  and cost critics (the `trpo.critic_*` regression: Adam lr 1e-3, 10 passes, minibatch 128), so the first
  policy update sees meaningful advantages. They are env steps and count in the budget and the logs.
- init_log_std (-1.0) with log_std_rule "min": start from min(init_log_std, the clone's learned log-std),
  per action dim, floored at min_log_std (-3.0). The clone's log-std measures how spread the demonstrations
  are; starting wider than it (or than e^-1 ~ 0.37 of the action range) makes early rollouts unlike the
  demos, and the floor keeps a clone of deterministic demos (log-std -> fit error) able to explore.
  "fixed" uses init_log_std as is, "bc" the clone's.
- bc_kl_coef (1.0), bc_kl_decay (0.9): ppo and ppo_lag add coef * mean KL(reference || policy) to the loss,
  the reference being the clone with the starting log-std (so the term is zero at the start); coef is
  multiplied by the decay after each update and dropped below 1e-3 (~65 updates). KL(reference || policy)
  rather than the reverse: it pulls the mean back to the demos but costs little for a policy that widens
  its std, so exploration is not what it punishes. While it is on, PPO uses autograd instead of its
  hand-written gradient (about 2x slower updates on a CPU). cpo gets no such term: its trust region
  already bounds every step.
- warm_start_multiplier (true): for ppo_lag the multiplier starts at lambda0 = max(0, (J_c - limit) /
  limit), J_c the clone's mean episode cost measured in the warm-up rollouts (or its eval.json when there is
  no warm-up): a clone over budget by x% is priced at once (lambda 1 at twice the limit weighs cost like
  reward in (A_r - lambda A_c) / (1 + lambda)), a safe clone keeps lambda 0. A limit of 0 divides by 1.
- freeze_normalizer (true): the clone's actor was fit on one observation scale; letting the running
  statistics drift would change its outputs under a frozen actor.

progress.csv has a `phase` column (warmup / finetune) and the per-epoch `epoch_ep_return/cost`, so the
first rows show the clone itself. `saferl finetune BC_RUN --algo A --run-dir D --resume` continues an
interrupted fine-tune: the checkpoint restores policy, optimiser, multiplier and the decayed KL coefficient,
and the KL reference is rebuilt from the BC run.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from saferl.config import Config, build_config, load_yaml
from saferl.errors import SafeRLError
from saferl.io import write_json
from saferl.maths.lagrange import LagrangeMultiplier, PIDLagrangeMultiplier
from saferl.runner import Runner, load_policy

FINETUNE_ALGOS = ("ppo", "ppo_lag", "cpo")
FINETUNE_DEFAULTS = Path(__file__).resolve().parent.parent / "configs" / "finetune.yaml"


def build_finetune_config(bc_config: Config, algo: str, config_file: str | None = None,
                          sets: list[str] | None = None, extra: dict | None = None) -> Config:
    """Layers, later wins: defaults, configs/<algo>.yaml, configs/finetune.yaml, what the clone fixes
    (env id and time limit, model architecture, cost limit), --config, CLI flags, --set."""
    if algo not in FINETUNE_ALGOS:
        raise SafeRLError(f"finetune supports --algo {', '.join(FINETUNE_ALGOS)}; got '{algo}'")
    inherited = {"env": {"id": bc_config.env.id, "max_episode_steps": bc_config.env.max_episode_steps},
                 "model": bc_config.to_dict()["model"],
                 "lagrange": {"cost_limit": bc_config.lagrange.cost_limit}}
    return build_config(algo, config_file, sets, extra, layers=(load_yaml(FINETUNE_DEFAULTS), inherited))


def starting_log_std(bc_log_std: torch.Tensor, cfg) -> torch.Tensor:
    """The log-std fine-tuning starts from, by `finetune.log_std_rule` (see the module docstring)."""
    if cfg.log_std_rule == "fixed":
        return torch.full_like(bc_log_std, cfg.init_log_std)
    if cfg.log_std_rule == "bc":
        return bc_log_std.clone()
    return bc_log_std.clamp(max=cfg.init_log_std).clamp(min=cfg.min_log_std)


def initial_multiplier(episode_cost: np.ndarray, cost_limit: float) -> np.ndarray:
    """lambda0 = max(0, (J_c - limit) / limit): the clone's relative excess over the budget."""
    excess = np.asarray(episode_cost, np.float64) - cost_limit
    return np.maximum(0.0, excess / (cost_limit if cost_limit > 0 else 1.0))


def set_multiplier(lagrange, values: np.ndarray) -> None:
    """Overwrite a multiplier's value (either kind) as if it had been initialised there."""
    values = np.asarray(values, np.float64)
    if isinstance(lagrange, LagrangeMultiplier):
        lagrange.multiplier.data.copy_(torch.as_tensor(values, dtype=lagrange.multiplier.dtype))
    elif isinstance(lagrange, PIDLagrangeMultiplier):
        lagrange.multiplier = values.copy()
        lagrange.integral = values / lagrange.ki if lagrange.ki > 0 else np.zeros_like(values)
    else:
        raise TypeError(f"no warm start for {type(lagrange).__name__}")


class HeldBackLogger:
    """Holds warm-up rows until the first fine-tune row: ProgressLogger fixes its columns on the first row it
    sees, and warm-up rows lack the algorithm's statistics (approx_kl, bc_kl, ...)."""

    def __init__(self, logger):
        self.logger, self.pending = logger, []

    def log(self, row: dict) -> None:
        if row.get("phase") == "warmup":
            self.pending.append(row)
            return
        self.flush(row.keys())
        self.logger.log(row)

    def flush(self, more_columns=()) -> None:
        if not self.pending:
            return
        columns = set(more_columns).union(*(row.keys() for row in self.pending))
        first = dict.fromkeys(columns)
        first.update(self.pending[0])
        for row in [first, *self.pending[1:]]:
            self.logger.log(row)
        self.pending = []

    def close(self) -> None:
        self.flush()
        self.logger.close()


class FineTuneRunner(Runner):
    """A Runner whose policy starts as a BC clone, with critic warm-up, a small starting log-std, the KL-to-BC
    term and a warm-started multiplier (module docstring)."""

    def __init__(self, config: Config, run_dir: Path, bc_run_dir: Path, resume: bool = False):
        self.bc_run_dir = Path(bc_run_dir)
        bc_config, bc_policy, _ = load_bc_run(self.bc_run_dir)
        warmup = config.finetune.critic_warmup_epochs
        steps_per_epoch = config.train.steps_per_epoch // config.env.num_envs * config.env.num_envs
        total_epochs = max(1, -(-config.train.total_steps // steps_per_epoch))
        if warmup >= total_epochs:
            raise SafeRLError(f"a budget of {config.train.total_steps} steps ({total_epochs} epochs) leaves no "
                              f"epoch after {warmup} warm-up epochs; raise --steps")
        super().__init__(config, run_dir, resume=resume)
        cfg = config.finetune
        # The KL reference is the clone with its starting log-std: rebuilt from the BC run, so that a resumed
        # run penalises the same reference (its decayed coefficient comes back with the algorithm's state).
        reference = copy.deepcopy(bc_policy.actor)
        bc_log_std = reference.log_std.detach().clone()
        reference.log_std.data.copy_(starting_log_std(bc_log_std, cfg))
        if not resume:
            try:
                self.policy.load_state_dict(bc_policy.state_dict())
            except RuntimeError:
                raise SafeRLError(f"the clone in {bc_run_dir} does not fit this config's model") from None
            self.policy.actor.log_std.data.copy_(reference.log_std.detach())
        self.policy.normalizer.frozen = cfg.freeze_normalizer or not self.policy.normalize_obs
        self.algorithm.total_epochs = total_epochs - warmup  # lr annealing spans the updates, not the warm-up
        if cfg.bc_kl_coef > 0 and hasattr(self.algorithm, "set_behaviour_reference"):
            coef = self.algorithm.bc_kl_coef if resume else cfg.bc_kl_coef
            self.algorithm.set_behaviour_reference(reference, coef, cfg.bc_kl_decay)
        self.logger = HeldBackLogger(self.logger)
        self.phase = "warmup" if self.epoch < warmup else "finetune"
        self.initial_multiplier = None
        if resume:
            return
        if warmup == 0:
            self.warm_start_from_eval()
        actor = self.policy.actor
        meta_path = self.run_dir / "meta.json"
        meta = json.loads(meta_path.read_text())
        meta["finetune"] = {"bc_run": str(self.bc_run_dir.resolve()), "bc_log_std": bc_log_std.tolist(),
                            "start_log_std": actor.log_std.detach().tolist()}
        write_json(meta_path, meta)

    # -- multiplier warm start ---------------------------------------------------------------------------
    def warm_start(self, clone_cost: np.ndarray) -> None:
        lagrange = getattr(self.algorithm, "lagrange", None)
        if lagrange is None or not self.config.finetune.warm_start_multiplier or not np.all(np.isfinite(clone_cost)):
            return
        self.initial_multiplier = initial_multiplier(clone_cost, self.config.lagrange.cost_limit)
        set_multiplier(lagrange, self.initial_multiplier)

    def warm_start_from_eval(self) -> None:
        """Without warm-up rollouts, the clone's cost is the one its `saferl bc` evaluation measured."""
        eval_path = self.bc_run_dir / "eval.json"
        if eval_path.exists():
            self.warm_start(np.array([json.loads(eval_path.read_text())["mean_cost"]]))

    # -- critic warm-up ----------------------------------------------------------------------------------
    def warm_up_critics(self) -> None:
        from saferl.algorithms.policy_gradient import fit_critics

        policy = self.policy
        critic_params = list(policy.reward_critic.parameters()) + list(policy.cost_critic.parameters())
        optimizer = torch.optim.Adam(critic_params, lr=self.config.trpo.critic_lr)
        while self.epoch < self.config.finetune.critic_warmup_epochs:  # a resumed run skips finished ones
            start = time.perf_counter()
            self.collect()
            collect_seconds = time.perf_counter() - start
            stats = fit_critics(policy, optimizer, self.rollout_batch(), self.config.trpo, fit_cost=True)
            ep_return, ep_costs, ep_length = self.episode_stats()  # the window holds only the clone's episodes
            self.warm_start(ep_costs)
            lagrange = getattr(self.algorithm, "lagrange", None)
            if lagrange is not None:
                stats.update({f"lagrange_multiplier_{k}": float(v) for k, v in enumerate(lagrange.value)})
            self.epoch += 1
            self.env_steps += self.steps_per_epoch
            elapsed = time.perf_counter() - start
            self.logger.log(self.progress_row(ep_return, ep_costs, ep_length, stats, elapsed, collect_seconds,
                                              elapsed - collect_seconds))
            self.save()

    def train(self) -> dict:
        try:
            self.warm_up_critics()
        except BaseException:
            self.logger.close()
            self.env.close()
            raise
        self.phase = "finetune"
        return super().train()

    def progress_row(self, *args) -> dict:
        row = super().progress_row(*args)
        row["phase"] = self.phase
        return row


def load_bc_run(run_dir: Path):
    """The clone (config, policy, checkpoint) of a `saferl bc` run; anything else is refused."""
    config, policy, checkpoint = load_policy(Path(run_dir))
    if config.train.algo != "bc":
        raise SafeRLError(f"{run_dir} holds a '{config.train.algo}' run, not a 'bc' one (saferl bc makes one)")
    return config, policy, checkpoint


def finetune(bc_run_dir: Path, algo: str, run_dir: Path, config_file: str | None = None,
             sets: list[str] | None = None, extra: dict | None = None) -> tuple[FineTuneRunner, dict]:
    """Build the config from the clone's run and train; returns the runner and the last progress row."""
    bc_config, _, _ = load_bc_run(Path(bc_run_dir))
    config = build_finetune_config(bc_config, algo, config_file, sets, extra)
    runner = FineTuneRunner(config, Path(run_dir), Path(bc_run_dir))
    return runner, runner.train()
