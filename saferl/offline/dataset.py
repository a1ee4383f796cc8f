"""The offline dataset format: one HDF5 file in the DSRL/OSRL layout, read and written (atomically) here.

Top-level datasets `observations, next_observations, actions, rewards, costs, terminals, timeouts` (one row per
step, episodes split where `terminals | timeouts`), plus, in files we write, `episode_starts` and root attributes:
env id, the demonstrator's observation-normaliser statistics (`obs_mean/obs_var/obs_count`), cost names, source
run, noise. Observations are raw (unnormalised). A plain DSRL file reads as is; `costs` may be [T] (one cost) or
[T, K]. Why this layout and not Minari's: docs/offline.md.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from saferl.errors import SafeRLError
from saferl.files import atomic_write_bytes

FORMAT = "saferl-offline-1"
STEP_KEYS = ("observations", "next_observations", "actions", "rewards", "costs", "terminals", "timeouts")


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
