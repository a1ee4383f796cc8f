"""Fine-tuning a behaviour-cloned actor with safe RL (`saferl finetune`): a Runner whose policy starts as the clone,
with the recipe against the "unlearning dip" (each part a `finetune.*` key; what each removes and why:
docs/offline.md): critic warm-up epochs with the actor frozen, a small starting log-std, a decaying KL-to-clone
term (ppo, ppo_lag), a multiplier warm-started from the clone's measured cost (ppo_lag), a frozen normaliser.
progress.csv's `phase` column says warmup or finetune; `--resume` continues from the checkpoint and rebuilds the KL
reference from the BC run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from saferl.algorithms.common import BehaviourReference
from saferl.buffer import RolloutBatch
from saferl.config import CONFIG_DIR, Config, build_config, epochs_per_run, load_yaml
from saferl.errors import SafeRLError
from saferl.files import write_json
from saferl.members import Member
from saferl.rundir import load_policy
from saferl.runner import PolicyStart, Runner

FINETUNE_ALGOS = ("ppo", "ppo_lag", "cpo")
FINETUNE_DEFAULTS = CONFIG_DIR / "finetune.yaml"


def build_finetune_config(bc_config: Config, algo: str, config_file: str | None = None,
                          sets: list[str] | None = None, extra: dict | None = None) -> Config:
    """Layers, later wins: defaults, configs/finetune.yaml, what the clone fixes (env id, time limit and cost
    limit, model architecture), --config, CLI flags, --set."""
    if algo not in FINETUNE_ALGOS:
        raise SafeRLError(f"finetune supports --algo {', '.join(FINETUNE_ALGOS)}; got '{algo}'")
    inherited = {"env": {"id": bc_config.env.id, "max_episode_steps": bc_config.env.max_episode_steps,
                         "cost_limit": bc_config.env.cost_limit},
                 "model": bc_config.to_dict()["model"]}
    return build_config(algo, config_file, sets, extra, layers=(load_yaml(FINETUNE_DEFAULTS), inherited))


def starting_log_std(bc_log_std: torch.Tensor, cfg) -> torch.Tensor:
    """The log-std fine-tuning starts from, by `finetune.log_std_rule` (docs/offline.md)."""
    if cfg.log_std_rule == "fixed":
        return torch.full_like(bc_log_std, cfg.init_log_std)
    if cfg.log_std_rule == "bc":
        return bc_log_std.clone()
    return bc_log_std.clamp(max=cfg.init_log_std).clamp(min=cfg.min_log_std)


def initial_multiplier(episode_cost: np.ndarray, cost_limit) -> np.ndarray:
    """lambda0 = max(0, (J_c - limit) / limit): the clone's relative excess over the budget."""
    cost_limit = np.asarray(cost_limit, np.float64)
    excess = np.asarray(episode_cost, np.float64) - cost_limit
    return np.maximum(0.0, excess / np.where(cost_limit > 0, cost_limit, 1.0))


class FineTuneLearning:
    """The epoch's learning step of a fine-tune (the runner's `learn` hook): critics only during the warm-up
    epochs, where the clone's measured cost also warm-starts the multiplier; the algorithm's update after."""

    def __init__(self, config: Config):
        self.config = config
        self.warmup_epochs = config.finetune.critic_warmup_epochs

    def __call__(self, runner: Runner, batch: RolloutBatch, episode_cost: np.ndarray,
                 episode_length: np.ndarray) -> dict:
        if runner.epoch >= self.warmup_epochs:
            return {**runner.algorithm.update(batch, episode_cost, episode_length), "phase": "finetune"}
        stats = runner.algorithm.fit_critics(batch)
        warm_start(runner, episode_cost)  # the window holds only the clone's episodes so far
        multiplier = runner.algorithm.multiplier
        if multiplier is not None:
            stats.update({f"lagrange_multiplier_{c}": multiplier.value[:, c] for c in range(runner.num_costs)})
        return {**stats, "phase": "warmup"}


def warm_start(runner: Runner, clone_cost: np.ndarray) -> None:
    multiplier = runner.algorithm.multiplier
    if multiplier is None or not runner.config.finetune.warm_start_multiplier or not np.all(np.isfinite(clone_cost)):
        return
    multiplier.reset_to(initial_multiplier(clone_cost, runner.cost_limits))


def finetune_runner(config: Config, run_dir: Path, bc_run_dir: Path, resume: bool = False) -> Runner:
    """A Runner whose policy starts as the BC clone, with critic warm-up, a small starting log-std, the KL-to-BC
    term and a warm-started multiplier (docs/offline.md)."""
    bc_run_dir = Path(bc_run_dir)
    _, bc_policy, _ = load_bc_run(bc_run_dir)
    cfg = config.finetune
    total_epochs = epochs_per_run(config.train.total_steps, config.train.steps_per_epoch)
    if cfg.critic_warmup_epochs >= total_epochs:
        raise SafeRLError(f"a budget of {config.train.total_steps} steps ({total_epochs} epochs) leaves no epoch "
                          f"after {cfg.critic_warmup_epochs} warm-up epochs; raise --steps")
    member = Member(Path(run_dir), config)
    # The clone with its starting log-std: the policy's start, and the reference of the KL-to-clone term (rebuilt
    # from the BC run, so that a resumed run penalises the same reference; its decayed coefficient comes back
    # with the algorithm's state).
    bc_log_std = bc_policy.log_std.detach().clone()
    start_log_std = starting_log_std(bc_log_std, cfg)
    with torch.no_grad():
        bc_policy.log_std.copy_(start_log_std)
    anchor = BehaviourReference(bc_policy, start_log_std) if cfg.bc_kl_coef > 0 else None
    start = PolicyStart(bc_policy.member_state_dict(0), freeze_normalizer=cfg.freeze_normalizer,
                        source=f"the clone in {bc_run_dir}", reference=anchor, reference_coef=cfg.bc_kl_coef,
                        reference_decay=cfg.bc_kl_decay)
    runner = Runner([member], resume=resume, learn=FineTuneLearning(config), start=start,
                    warmup_epochs=cfg.critic_warmup_epochs)
    if runner.epoch == 0:  # also a resumed run that died before its first checkpoint
        if cfg.critic_warmup_epochs == 0:  # the clone's cost as its `saferl bc` evaluation measured it
            eval_path = bc_run_dir / "eval.json"
            if eval_path.exists():
                warm_start(runner, np.array([[json.loads(eval_path.read_text())["mean_cost"]]]))
        meta_path = member.run_dir / "meta.json"
        meta = json.loads(meta_path.read_text())
        meta["finetune"] = {"bc_run": str(bc_run_dir.resolve()), "bc_log_std": bc_log_std[0].tolist(),
                            "start_log_std": start_log_std[0].tolist()}
        write_json(meta_path, meta)
    return runner


def check_same_clone(run_dir: Path, bc_run_dir: Path) -> None:
    """`finetune --resume` continues from the clone the fine-tune started from (its KL reference), not another."""
    try:
        started_from = json.loads((Path(run_dir) / "meta.json").read_text())["finetune"]["bc_run"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # died before its start was recorded: it restarts from the clone given now
    if Path(started_from).resolve() != Path(bc_run_dir).resolve():
        raise SafeRLError(f"--resume: {run_dir} fine-tunes the clone in {started_from}, not {bc_run_dir}; give "
                          "that BC run (or start a new fine-tune)")


def load_bc_run(run_dir: Path):
    """The clone (config, policy, checkpoint) of a `saferl bc` run; anything else is refused."""
    config, policy, checkpoint = load_policy(Path(run_dir))
    if config.train.algo != "bc":
        raise SafeRLError(f"{run_dir} holds a '{config.train.algo}' run, not a 'bc' one (saferl bc makes one)")
    return config, policy, checkpoint


def finetune(bc_run_dir: Path, algo: str, run_dir: Path, config_file: str | None = None,
             sets: list[str] | None = None, extra: dict | None = None) -> tuple[Runner, dict]:
    """Build the config from the clone's run and train; returns the runner and the last progress row."""
    bc_config, _, _ = load_bc_run(Path(bc_run_dir))
    config = build_finetune_config(bc_config, algo, config_file, sets, extra)
    runner = finetune_runner(config, Path(run_dir), Path(bc_run_dir))
    return runner, runner.train()[0]
