"""Behaviour cloning (`saferl bc`): fit the Gaussian actor (mean network and state-independent log-std) by maximum
likelihood on normalised observations (means by least squares, log-std in closed form), hold out whole episodes
for a validation loss and stop early on it. The result is an ordinary run directory (algo "bc") that `saferl
eval` and `saferl finetune` read.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import numpy as np
import torch

from saferl.config import Config
from saferl.errors import SafeRLError
from saferl.evaluation import evaluate
from saferl.files import save_checkpoint, versions, write_json, write_yaml
from saferl.logger import ProgressLogger
from saferl.maths import gaussian
from saferl.offline.dataset import Dataset, check_matches_env, read_dataset
from saferl.rundir import CHECKPOINT, make_env, make_policy


def select_episodes(dataset: Dataset, filter_name: str, cost_limit: float, path: Path) -> np.ndarray:
    """Indices of the episodes BC learns from: all, or (BC-Safe) those whose cost is within the limit."""
    costs = dataset.episode_costs()
    if filter_name == "all":
        return np.arange(len(costs))
    keep = np.flatnonzero((costs <= cost_limit).all(axis=1))
    if len(keep) == 0:
        raise SafeRLError(f"no episode of {path} has cost <= {cost_limit:g} (lowest {costs.max(axis=1).min():g}); "
                          "raise --cost-limit or use --filter all")
    return keep


def split_episodes(episodes: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Whole episodes go to validation: steps within one episode are too alike to test generalisation."""
    shuffled = np.random.default_rng(seed).permutation(episodes)
    num_val = 0
    if val_fraction > 0 and len(shuffled) >= 2:  # at least one episode on each side
        num_val = min(max(1, round(val_fraction * len(shuffled))), len(shuffled) - 1)
    return np.sort(shuffled[num_val:]), np.sort(shuffled[:num_val])


def set_normalizer(policy, dataset: Dataset, train_obs: np.ndarray, mode: str) -> str:
    """Give the clone its observation scale: the demonstrator's stored statistics or the demos' own."""
    if not policy.normalize_obs:
        return "off"
    stored = all(key in dataset.attrs for key in ("obs_mean", "obs_var", "obs_count"))
    if mode == "dataset" and not stored:
        raise SafeRLError("bc.normalizer is 'dataset' but the dataset stores no normaliser statistics")
    normalizer = policy.normalizer
    if mode == "dataset" or (mode == "auto" and stored):
        mean, var = np.asarray(dataset.attrs["obs_mean"]), np.asarray(dataset.attrs["obs_var"])
        if mean.shape != normalizer.mean.shape[1:] or var.shape != normalizer.var.shape[1:]:
            raise SafeRLError(f"dataset normaliser statistics have shape {mean.shape}, the policy needs "
                              f"{tuple(normalizer.mean.shape[1:])}")
        normalizer.mean.copy_(torch.as_tensor(mean, dtype=torch.float64).unsqueeze(0))
        normalizer.var.copy_(torch.as_tensor(var, dtype=torch.float64).unsqueeze(0))
        normalizer.count.fill_(float(dataset.attrs["obs_count"]))
        return "dataset"
    normalizer.update(torch.from_numpy(train_obs).unsqueeze(0))
    return "data"


LOG_STD_FLOOR = -5.0  # a clone of deterministic demos would otherwise get log-std ~ log(fit error) ~ -7 or less


def clone_means(policy, obs: torch.Tensor) -> torch.Tensor:
    """The one-member policy's action means on normalised states [B, D] -> [B, A]."""
    return policy.actor(obs.unsqueeze(0))[0]


@torch.no_grad()
def fit_log_std(policy, obs: torch.Tensor, actions: torch.Tensor) -> None:
    """Set the state-independent log-std to its maximum-likelihood value given the means: log RMS residual."""
    residual_var = (clone_means(policy, obs) - actions).square().mean(0)
    policy.log_std[0].copy_((0.5 * residual_var.clamp_min(1e-12).log()).clamp_min(LOG_STD_FLOOR))


@torch.no_grad()
def gaussian_nll(policy, obs: torch.Tensor, actions: torch.Tensor) -> float:
    """Mean negative log-likelihood of the demonstrated actions under the clone."""
    if not len(obs):
        return math.nan
    return float(-gaussian.log_prob(clone_means(policy, obs), policy.log_std[0], actions).mean())


@torch.no_grad()
def action_mse(policy, obs: torch.Tensor, actions: torch.Tensor) -> float:
    return float((clone_means(policy, obs) - actions).square().mean()) if len(obs) else math.nan


def prepare_bc_run_dir(run_dir: Path, config: Config, meta: dict) -> None:
    if (run_dir / "config.yaml").exists() or (run_dir / CHECKPOINT).exists():
        raise SafeRLError(f"{run_dir} already holds a run; pick another --run-dir")
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    write_yaml(run_dir / "config.yaml", config.to_dict())
    write_json(run_dir / "meta.json", {"versions": versions(), "seed": config.train.seed,
                                       "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **meta})


def train_bc(config: Config, run_dir: Path) -> dict:
    """Behaviour cloning into a run directory; returns a summary (and the clone's eval when configured)."""
    bc, run_dir, path = config.bc, Path(run_dir), Path(config.bc.dataset)
    torch.set_num_threads(config.train.torch_threads)
    torch.manual_seed(config.train.seed)
    dataset = read_dataset(path)
    env = make_env(config, seed=config.train.seed, num_envs=1)
    obs_dim, act_dim = env.single_observation_space.shape[0], env.single_action_space.shape[0]
    policy = make_policy(config, env)
    env.close()
    check_matches_env(dataset, obs_dim, act_dim, config.env.id, path)
    kept = select_episodes(dataset, bc.filter, config.env.cost_limit, path)
    train_episodes, val_episodes = split_episodes(kept, bc.val_fraction, config.train.seed)
    train_set, val_set = dataset.select(train_episodes), dataset.select(val_episodes)
    normalizer_source = set_normalizer(policy, dataset, train_set.observations, bc.normalizer)
    summary = {
        "dataset": str(path.resolve()), "dataset_env_id": dataset.attrs.get("env_id"), "filter": bc.filter,
        "cost_limit": config.env.cost_limit, "episodes_total": len(dataset.episode_slices()),
        "episodes_kept": len(kept), "train_episodes": len(train_episodes), "val_episodes": len(val_episodes),
        "train_steps": len(train_set), "normalizer": normalizer_source,
        "kept_mean_return": float(dataset.episode_returns()[kept].mean()),
        "kept_mean_cost": float(dataset.episode_costs()[kept, 0].mean()),
    }
    prepare_bc_run_dir(run_dir, config, {"bc": summary})

    def tensors(part: Dataset):
        with torch.no_grad():
            return policy.normalise(torch.from_numpy(part.observations).unsqueeze(0))[0], torch.from_numpy(part.actions)

    train_obs, train_actions = tensors(train_set)
    val_obs, val_actions = tensors(val_set)
    # With a state-independent std the likelihood separates: the means by least squares (exactly the MLE for
    # one action dim; with several, the dims weigh equally), the std in closed form as the RMS residual.
    # Learning log-std by gradient instead lets it chase ever-smaller fit errors on near-deterministic demos.
    optimizer = torch.optim.Adam(policy.actor.parameters(), lr=bc.lr)
    logger = ProgressLogger(run_dir, tensorboard=False)  # BC has no env steps to index TensorBoard by
    best = {"loss": math.inf, "epoch": 0, "policy": copy.deepcopy(policy.state_dict())}
    progress = None
    if config.train.progress_bar:
        from tqdm import tqdm

        progress = tqdm(total=bc.epochs, unit="epoch", dynamic_ncols=True, leave=False, desc="bc")
    epoch = 0
    try:
        for epoch in range(1, bc.epochs + 1):
            start = time.perf_counter()
            permutation = torch.randperm(len(train_obs))
            for first in range(0, len(permutation), bc.batch_size):
                index = permutation[first:first + bc.batch_size]
                loss = (clone_means(policy, train_obs[index]) - train_actions[index]).square().mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            fit_log_std(policy, train_obs, train_actions)
            train_loss = action_mse(policy, train_obs, train_actions)
            val_loss = action_mse(policy, val_obs, val_actions)
            criterion = val_loss if len(val_obs) else train_loss  # a one-episode dataset has no held-out part
            if criterion < best["loss"]:
                best = {"loss": criterion, "epoch": epoch, "policy": copy.deepcopy(policy.state_dict())}
            logger.log({"epoch": epoch, "env_steps": 0, "train_loss": train_loss, "val_loss": val_loss,
                        "train_nll": gaussian_nll(policy, train_obs, train_actions),
                        "val_nll": gaussian_nll(policy, val_obs, val_actions), "best_epoch": best["epoch"],
                        "log_std": float(policy.log_std.detach().mean()), "seconds": time.perf_counter() - start})
            if progress is not None:
                progress.update(1)
                progress.set_postfix(train=f"{train_loss:.2e}", val=f"{val_loss:.2e}")
            if epoch - best["epoch"] >= bc.patience:
                break  # early stop: the held-out error has not improved for `patience` epochs
    finally:
        if progress is not None:
            progress.close()
        logger.close()
    policy.load_state_dict(best["policy"])
    summary.update(epochs_run=epoch, best_epoch=best["epoch"], best_val_loss=best["loss"],
                   log_std=[float(x) for x in policy.log_std.detach()[0]])
    save_checkpoint(run_dir / CHECKPOINT, {"policy": policy.member_state_dict(0), "epoch": epoch, "env_steps": 0,
                                           "bc": summary})
    if bc.eval_episodes > 0:
        result = evaluate(run_dir, bc.eval_episodes, deterministic=True)
        summary.update(eval_return=result["mean_return"], eval_cost=result["mean_cost"],
                       eval_success_rate=result.get("success_rate"))
    return summary
