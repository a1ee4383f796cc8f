"""Several independent training runs ("members") in one process: who they are and where they write.

`saferl train --seeds 0,1,2 --run-dir D` trains three members that differ only in their seed (and, with
`--set env.cost_limit=10,25,50`, in their cost limit). Each member is a complete, ordinary run directory
`D/seed-<s>/` (or `D/seed-<s>-limit-<c>/` when limits differ), so eval, report, resume and fine-tuning treat it
like a single run; `D/members.json` lists them so `--resume` on D resumes every member.

Checkpoint states cross between a K-member process and its members' directories with one rule: every tensor or
array in a state has the member axis first, everything else (plain numbers, strings) is shared.
`slice_member` cuts member k out; `stack_members` puts K member states back together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from saferl.config import Config, check_seed
from saferl.errors import SafeRLError
from saferl.files import write_json

MEMBERS_FILE = "members.json"


@dataclass
class Member:
    """One training run inside a multi-member process: its directory and its config (which holds its seed and
    cost limit: one place, so the two can never disagree)."""

    run_dir: Path
    config: Config

    @property
    def seed(self) -> int:
        return self.config.train.seed

    @property
    def cost_limit(self) -> float:
        return self.config.env.cost_limit


def plan_members(seeds: list[int], cost_limits: list[float]) -> list[tuple[int, float]]:
    """(seed, limit) per member: one limit for all seeds, one seed for all limits, or one of each per member."""
    if not seeds or not cost_limits:
        raise SafeRLError("give at least one seed and one cost limit")
    if len(set(seeds)) != len(seeds):
        raise SafeRLError(f"--seeds has a repeated seed: {','.join(map(str, seeds))}")
    if len(seeds) == 1 and len(set(cost_limits)) != len(cost_limits):
        raise SafeRLError(f"--set env.cost_limit has a repeated limit: {','.join(f'{c:g}' for c in cost_limits)} "
                          "(two members would share one directory)")
    if len(cost_limits) == 1:
        return [(seed, cost_limits[0]) for seed in seeds]
    if len(seeds) == 1:
        return [(seeds[0], limit) for limit in cost_limits]
    if len(seeds) != len(cost_limits):
        raise SafeRLError(f"{len(seeds)} seeds but {len(cost_limits)} cost limits: give one limit, one seed, "
                          "or one limit per seed")
    return list(zip(seeds, cost_limits, strict=True))


def member_dir_name(seed: int, cost_limit: float | None = None) -> str:
    """A member's directory under its run's root: `seed-<s>`, or `seed-<s>-limit-<c>` when the members' cost
    limits differ (give `cost_limit` then)."""
    return f"seed-{seed}" if cost_limit is None else f"seed-{seed}-limit-{cost_limit:g}"


def parse_int_list(text: str, name: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip() != ""]
    except ValueError:
        raise SafeRLError(f"{name} expects comma-separated integers, e.g. 0,1,2; got '{text}'") from None
    for value in values:
        check_seed(value, f"{name}: a seed")
    if not values:
        raise SafeRLError(f"{name} expects at least one value")
    return values


def write_members_file(root: Path, members: list[Member]) -> None:
    """The run's plan: each member's directory, seed and limit, and the settings they share (`config`, the first
    member's), so that a resume can create a member the run was interrupted before creating."""
    write_json(root / MEMBERS_FILE, {"members": [{"dir": m.run_dir.name, "seed": m.seed, "cost_limit": m.cost_limit}
                                                 for m in members],
                                     "config": members[0].config.to_dict()})


def read_plan_config(root: Path) -> dict | None:
    """The shared settings members.json records (None in files from before plans)."""
    try:
        config = json.loads((Path(root) / MEMBERS_FILE).read_text()).get("config")
    except (OSError, ValueError, AttributeError):
        return None
    return config if isinstance(config, dict) else None


def read_members_file(root: Path) -> list[dict]:
    path = Path(root) / MEMBERS_FILE
    try:
        data = json.loads(path.read_text())
        members = data["members"]
        return [{"dir": str(m["dir"]), "seed": int(m["seed"]), "cost_limit": float(m["cost_limit"])} for m in members]
    except (OSError, ValueError, KeyError, TypeError):
        raise SafeRLError(f"{path} is missing or unreadable; not a multi-seed run directory") from None


# -- member states ---------------------------------------------------------------------------------------------
def slice_member(state, member: int):
    """Member k's part of a state: tensors and arrays keep row k (as a length-1 leading axis)."""
    if isinstance(state, torch.Tensor):
        return state[member : member + 1].clone()
    if isinstance(state, np.ndarray):
        return state[member : member + 1].copy()
    if isinstance(state, dict):
        return {key: slice_member(value, member) for key, value in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(slice_member(value, member) for value in state)
    return state


def stack_members(states: list):
    """The inverse of `slice_member`: K one-member states joined along the member axis."""
    first = states[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(states)
    if isinstance(first, np.ndarray):
        return np.concatenate(states)
    if isinstance(first, dict):
        return {key: stack_members([state[key] for state in states]) for key in first}
    if isinstance(first, list | tuple):
        return type(first)(stack_members(list(values)) for values in zip(*states, strict=True))
    return first
