"""Offline data for safe RL: demonstration datasets, collecting them from a run, and behaviour cloning.

Format: one HDF5 file in the DSRL/OSRL layout, the way published offline safe-RL datasets are distributed:
top-level datasets `observations, next_observations, actions, rewards, costs, terminals, timeouts` (one
row per step, episodes split where `terminals | timeouts`), plus, in files we write, `episode_starts` and
root attributes: env id, the demonstrator's observation-normaliser statistics (`obs_mean/obs_var/
obs_count`), cost names, source run, noise. Observations are raw (unnormalised). A plain DSRL file reads
as is; `costs` may be [T] (one cost) or [T, K].

Why not Minari (Farama's offline-RL standard): it was checked here (minari 0.5.4, no network needed for
local datasets). Reading works, but writing needs `minari[create]`, which pulls in jax and jaxlib (~600 MB
next to our torch) just to buffer episodes; a dataset is a folder tree under MINARI_DATASETS_PATH named by
a dataset id rather than one file we can write atomically at `--out`; it expects a gymnasium env spec,
which our batched and toy envs are not; and cost has no field of its own (it would sit in `infos`). The
DSRL layout needs only h5py, keeps cost first-class, and is what OSRL's BC-Safe baseline reads.

Behaviour cloning fits the Gaussian actor (mean network and state-independent log-std) by maximum
likelihood on normalised observations (means by least squares, log-std in closed form: `train_bc`), holds
out whole episodes for a validation loss, and stops early on it; the result is an ordinary run directory
(algo "bc") that `saferl eval` and `saferl finetune` read.
"""

from __future__ import annotations

import copy
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

from saferl.config import Config
from saferl.envs import seeds
from saferl.errors import SafeRLError
from saferl.io import atomic_write_bytes, save_checkpoint, versions, write_json, write_yaml
from saferl.logger import ProgressLogger
from saferl.maths import gaussian
from saferl.rollout import evaluate, evaluation_seed, make_eval_env, run_episodes
from saferl.rundir import CHECKPOINT, load_policy, make_env, make_policy

FORMAT = "saferl-offline-1"
STEP_KEYS = ("observations", "next_observations", "actions", "rewards", "costs", "terminals", "timeouts")


# -- the dataset -------------------------------------------------------------------------------------------
@dataclass
class Dataset:
    """Steps of whole episodes laid end to end, as in a DSRL file; `attrs` carries where they came from."""

    observations: np.ndarray  # [T, obs_dim], raw
    next_observations: np.ndarray  # [T, obs_dim]; at an episode's last step, its final observation
    actions: np.ndarray  # [T, act_dim], as executed (clipped to the action space)
    rewards: np.ndarray  # [T]
    costs: np.ndarray  # [T, K]
    terminals: np.ndarray  # [T] bool: the episode ended in a terminal state
    timeouts: np.ndarray  # [T] bool: the episode was cut by the time limit
    attrs: dict = field(default_factory=dict)

    @classmethod
    def from_steps(cls, steps: dict, attrs: dict) -> Dataset:
        """A dataset from per-step arrays named as STEP_KEYS (any dtypes), in the file's dtypes."""
        return cls(
            observations=steps["observations"].astype(np.float32),
            next_observations=steps["next_observations"].astype(np.float32),
            actions=steps["actions"].astype(np.float32),
            rewards=steps["rewards"].astype(np.float32),
            costs=steps["costs"].astype(np.float32).reshape(len(steps["rewards"]), -1),
            terminals=steps["terminals"].astype(bool),
            timeouts=steps["timeouts"].astype(bool),
            attrs=attrs)

    def __len__(self) -> int:
        return len(self.rewards)

    def episode_slices(self) -> list[slice]:
        """Episodes split after every step where terminals | timeouts; a trailing fragment (a file cut
        mid-episode) counts as one more episode: its steps are still valid demonstrations."""
        ends = np.flatnonzero(self.terminals | self.timeouts) + 1
        starts = np.concatenate([[0], ends[:-1]]) if len(ends) else np.zeros(0, np.int64)
        slices = [slice(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]
        last = int(ends[-1]) if len(ends) else 0
        if last < len(self):
            slices.append(slice(last, len(self)))
        return slices

    def episode_returns(self) -> np.ndarray:
        return np.array([self.rewards[s].sum() for s in self.episode_slices()])

    def episode_costs(self) -> np.ndarray:
        """[E, K]: summed cost of every episode, per constraint."""
        return np.stack([self.costs[s].sum(0) for s in self.episode_slices()]) if len(self) else np.zeros((0, 1))

    def select(self, episodes) -> Dataset:
        """A dataset of the given episodes (indices into `episode_slices()`), in that order."""
        slices = self.episode_slices()
        rows = np.concatenate([np.arange(slices[i].start, slices[i].stop) for i in episodes] or [np.zeros(0, int)])
        return Dataset(*(getattr(self, key)[rows] for key in STEP_KEYS), attrs=dict(self.attrs))


def write_dataset(path: Path, dataset: Dataset) -> None:
    """DSRL layout plus `episode_starts` and our attributes; built in memory, then renamed into place."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        for key in STEP_KEYS:
            handle.create_dataset(key, data=getattr(dataset, key))
        handle.create_dataset("episode_starts", data=np.array([s.start for s in dataset.episode_slices()], np.int64))
        handle.attrs["format"] = FORMAT
        for key, value in dataset.attrs.items():
            if value is not None:
                handle.attrs[key] = value
    atomic_write_bytes(Path(path), buffer.getvalue())


def read_dataset(path: Path) -> Dataset:
    """Our files and plain DSRL/OSRL HDF5 files; anything malformed is a one-line SafeRLError."""
    path = Path(path)
    with open_hdf5(path) as handle:
        missing = [key for key in STEP_KEYS if key not in handle]
        if missing:
            raise SafeRLError(f"dataset {path} lacks {', '.join(missing)} (a DSRL/OSRL file has "
                              f"{', '.join(STEP_KEYS)})")
        arrays = {key: np.asarray(handle[key]) for key in STEP_KEYS}
        episode_starts = np.asarray(handle["episode_starts"]) if "episode_starts" in handle else None
        attrs = {key: _attr_value(value) for key, value in handle.attrs.items()}
    dataset = _checked_dataset(path, arrays, attrs)
    if episode_starts is not None:
        derived = [s.start for s in dataset.episode_slices()]
        if list(episode_starts) != derived:
            raise SafeRLError(f"dataset {path}: episode_starts disagree with terminals/timeouts")
    return dataset


def open_hdf5(path: Path):
    if not Path(path).is_file():
        raise SafeRLError(f"dataset not found: {path}")
    try:
        return h5py.File(path, "r")
    except OSError:
        raise SafeRLError(f"{path} is not an HDF5 file") from None


def _checked_dataset(path: Path, arrays: dict, attrs: dict) -> Dataset:
    for key, array in arrays.items():
        if array.ndim == 0 or array.dtype.kind not in "biuf":
            raise SafeRLError(f"dataset {path}: '{key}' must be a numeric array with one row per step, got "
                              f"{array.dtype} of shape {array.shape}")
    steps = len(arrays["rewards"])
    if steps == 0:
        raise SafeRLError(f"dataset {path} has no steps")
    for key, array in arrays.items():
        if len(array) != steps:
            raise SafeRLError(f"dataset {path}: '{key}' has {len(array)} rows but 'rewards' has {steps}")
    for key in ("observations", "next_observations"):
        if arrays[key].ndim != 2:
            raise SafeRLError(f"dataset {path}: '{key}' must be [steps, obs_dim], got shape {arrays[key].shape}")
    actions = arrays["actions"].reshape(steps, -1) if arrays["actions"].ndim == 1 else arrays["actions"]
    costs = arrays["costs"].reshape(steps, -1) if arrays["costs"].ndim == 1 else arrays["costs"]
    if actions.ndim != 2 or costs.ndim != 2 or arrays["rewards"].ndim != 1:
        raise SafeRLError(f"dataset {path}: actions must be [steps, act_dim], rewards [steps], costs [steps(, K)]")
    for key in ("terminals", "timeouts"):
        if not np.isin(arrays[key], (0, 1)).all():
            raise SafeRLError(f"dataset {path}: '{key}' must hold only 0/1 (false/true)")
    shaped = dict(arrays, actions=actions, costs=costs, terminals=arrays["terminals"].reshape(steps),
                  timeouts=arrays["timeouts"].reshape(steps))
    dataset = Dataset.from_steps(shaped, attrs)
    check_finite_steps(dataset, path)
    check_normalizer_attrs(attrs, dataset.observations.shape[1], path)
    return dataset


def check_finite_steps(dataset: Dataset, path: Path) -> None:
    """A NaN or inf in one row would turn every BC loss (and any normaliser fit on it) into NaN."""
    for key in ("observations", "next_observations", "actions", "rewards", "costs"):
        array = getattr(dataset, key)  # after the float32 cast, which also turns values beyond 3e38 into inf
        bad = int((~np.isfinite(array.reshape(len(array), -1))).any(axis=1).sum())
        if bad:
            raise SafeRLError(f"dataset {path}: '{key}' holds NaN or inf in {bad} of {len(array)} rows")


def check_normalizer_attrs(attrs: dict, obs_dim: int, path: Path) -> None:
    """Stored observation statistics (optional; used only when all three are there, see `set_normalizer`) must
    be usable: finite, var >= 0, count > 0, one entry per observation dimension."""
    stats = {key: attrs[key] for key in ("obs_mean", "obs_var", "obs_count") if key in attrs}
    if len(stats) < 3:
        return
    try:
        mean, var, count = (np.asarray(stats[key], dtype=np.float64) for key in ("obs_mean", "obs_var", "obs_count"))
    except (TypeError, ValueError):
        raise SafeRLError(f"dataset {path}: normaliser statistics must be numbers") from None
    for key, value in (("obs_mean", mean), ("obs_var", var), ("obs_count", count)):
        bad = int((~np.isfinite(value)).sum())
        if bad:
            raise SafeRLError(f"dataset {path}: normaliser statistic '{key}' holds NaN or inf in {bad} of "
                              f"{value.size} values")
    if mean.shape != (obs_dim,) or var.shape != (obs_dim,) or count.size != 1:
        raise SafeRLError(f"dataset {path}: normaliser statistics have shapes {mean.shape}, {var.shape}, "
                          f"{count.shape}; observations have {obs_dim} entries")
    if (var < 0).any() or count.item() <= 0:
        raise SafeRLError(f"dataset {path}: normaliser statistics need obs_var >= 0 and obs_count > 0")


def _attr_value(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind in "OSU":
        return [v.decode() if isinstance(v, bytes) else str(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def dataset_env_id(path: Path) -> str | None:
    """The env id a dataset names (our `env_id` attribute, DSRL's `env_name` if present), or None."""
    with open_hdf5(Path(path)) as handle:
        attrs = {key: _attr_value(value) for key, value in handle.attrs.items()}
    return attrs.get("env_id") or attrs.get("env_name")


def check_matches_env(dataset: Dataset, obs_dim: int, act_dim: int, env_id: str, path: Path) -> None:
    """A dataset for another task would train a policy on meaningless inputs: refuse it up front."""
    if dataset.observations.shape[1] != obs_dim:
        raise SafeRLError(f"dataset {path} has observations of size {dataset.observations.shape[1]} but {env_id} "
                          f"has {obs_dim}")
    if dataset.actions.shape[1] != act_dim:
        raise SafeRLError(f"dataset {path} has actions of size {dataset.actions.shape[1]} but {env_id} "
                          f"has {act_dim}")


# -- collecting demonstrations -----------------------------------------------------------------------------
RUN_FILES = ("config.yaml", "meta.json", "progress.csv", "eval.json", "members.json")


def check_dataset_out(out: Path, run_dir: Path | None, overwrite: bool = False) -> None:
    """Where a dataset may be written: never over the source run's own files (its config, checkpoints, logs),
    even with `overwrite`; over any other existing file only with `overwrite` (`--force`). `run_dir` is None
    for a scripted demonstrator, which has no run."""
    target = Path(out).resolve()
    if run_dir is not None:
        run = Path(run_dir).resolve()
        checkpoints = run / "checkpoints"
        if target == checkpoints or checkpoints in target.parents or target in {run / name for name in RUN_FILES}:
            raise SafeRLError(f"--out {out} would overwrite a file of the run {run_dir}; write the dataset "
                              f"elsewhere (e.g. {Path(run_dir) / 'demos.h5'})")
    if target.is_dir():
        raise SafeRLError(f"--out {out} is a directory; give a file name, e.g. {Path(out) / 'demos.h5'}")
    if target.exists() and not overwrite:
        raise SafeRLError(f"--out {out} already exists; pass --force to overwrite it")


def collect_demonstrations(run_dir: Path, episodes: int, out: Path, noise_std: float | None = None,
                           deterministic: bool = False, seed: int | None = None) -> dict:
    """Roll out a run's policy for `episodes` whole episodes and write them as a dataset.

    Actions: the policy's mean plus N(0, noise_std^2) when `noise_std` is given (imperfect demonstrations),
    the mean alone when `deterministic`, else the policy's own Gaussian. Per-env episode quotas, as in
    `evaluate`, keep short episodes from being over-represented.
    """
    if episodes < 1:
        raise SafeRLError(f"--episodes must be >= 1, got {episodes}")
    if noise_std is not None and (noise_std < 0 or not math.isfinite(noise_std)):
        raise SafeRLError(f"--noise must be a finite std >= 0, got {noise_std}")
    check_dataset_out(Path(out), Path(run_dir), overwrite=True)  # the run's own files are never a target
    config, policy, _ = load_policy(Path(run_dir))
    seed = evaluation_seed(config.train.seed, seeds.DEMONSTRATION_OFFSET) if seed is None else seed
    env = make_eval_env(config, episodes)
    try:
        result = run_episodes(policy, env, episodes, deterministic, seed, noise_std=noise_std, record=True)
        cost_names = list(getattr(env, "cost_names", ["cost"]))
    finally:
        env.close()
    columns = {key: np.concatenate([steps[key] for steps in result.steps]) for key in STEP_KEYS}
    normalizer = policy.normalizer
    dataset = Dataset.from_steps(
        columns,
        attrs={
            "env_id": config.env.id,
            "cost_names": cost_names,
            "source_run": str(Path(run_dir).resolve()),
            "source_algo": config.train.algo,
            "policy_mode": "noise" if noise_std is not None else ("deterministic" if deterministic else "stochastic"),
            "noise_std": float(noise_std) if noise_std is not None else None,
            "seed": seed,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "saferl_version": versions()["saferl"],
            **({"obs_mean": normalizer.mean[0].numpy(), "obs_var": normalizer.var[0].numpy(),
                "obs_count": float(normalizer.count[0])} if policy.normalize_obs else {}),
        },
    )
    write_dataset(Path(out), dataset)
    returns, costs = dataset.episode_returns(), dataset.episode_costs()[:, 0]
    return {"out": str(out), "episodes": len(result), "steps": len(dataset), "mean_return": float(returns.mean()),
            "mean_cost": float(costs.mean()), "cost_limit": config.env.cost_limit}


# -- behaviour cloning -------------------------------------------------------------------------------------
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
