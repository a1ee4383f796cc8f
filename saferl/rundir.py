"""A run directory, read back: its checkpoint files and format, its config, the env and policy it describes.

Everything that opens a finished or interrupted run (evaluation, export, reports, offline pipelines, resume) comes
here rather than to the training loop (saferl/runner.py), which writes what this module reads.
"""

from __future__ import annotations

from pathlib import Path

import torch

from saferl import envs
from saferl.config import Config, config_from_dict, load_yaml
from saferl.errors import SafeRLError
from saferl.files import load_checkpoint
from saferl.logger import read_progress
from saferl.members import Member
from saferl.policies.actor_critic import ActorCritic

CHECKPOINT = "checkpoints/latest.pt"
PREVIOUS_CHECKPOINT = "checkpoints/previous.pt"  # the one before: lets members of one run agree on an epoch
CHECKPOINT_FORMAT = 2


def make_env(config: Config, seed, num_envs: int | None = None):
    try:
        return envs.make(config.env.id, num_envs=num_envs or config.env.num_envs, seed=seed,
                         max_episode_steps=config.env.max_episode_steps)
    except ValueError as exc:
        raise SafeRLError(str(exc).splitlines()[0]) from None


def make_policy(config: Config, env, members: int = 1, generators: list[torch.Generator] | None = None):
    m = config.model
    return ActorCritic(
        members=members,
        obs_dim=env.single_observation_space.shape[0],
        act_dim=env.single_action_space.shape[0],
        num_costs=env.num_costs,
        actor_hidden=tuple(m.actor_hidden),
        critic_hidden=tuple(m.critic_hidden),
        activation=m.activation,
        init_log_std=m.init_log_std,
        normalize_obs=m.normalize_obs,
        obs_clip=m.obs_clip,
        observation_keys=env.observation_keys,
        generators=generators,
        init=m.init,
    )


def load_run_config(run_dir: Path) -> Config:
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise SafeRLError(f"{run_dir} is not a run directory (no config.yaml)")
    data = load_yaml(path)
    if not isinstance(data, dict) or not data:
        raise SafeRLError(f"{path} is empty or not a mapping; not a usable run directory")
    return config_from_dict(data)


def check_checkpoint(state, path: Path, keys=("policy", "epoch", "env_steps")) -> dict:
    if not isinstance(state, dict):
        raise SafeRLError(f"checkpoint {path} holds a {type(state).__name__}, not a saferl checkpoint")
    missing = [key for key in keys if key not in state]
    if missing:
        raise SafeRLError(f"checkpoint {path} lacks '{missing[0]}'; not a saferl checkpoint")
    for counter in ("epoch", "env_steps"):
        value = state[counter]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SafeRLError(f"checkpoint {path} has {counter}={value!r}; a saferl checkpoint counts with an integer "
                              ">= 0")
    return state


def load_policy(run_dir: Path) -> tuple[Config, ActorCritic, dict]:
    """Policy (one member, with its normaliser) of a finished or interrupted run, ready for `predict`."""
    config = load_run_config(run_dir)
    path = Path(run_dir) / CHECKPOINT
    checkpoint = check_checkpoint(load_checkpoint(path), path)
    env = make_env(config, seed=0, num_envs=1)
    policy = make_policy(config, env)
    env.close()
    try:
        policy.load_member_state_dict(0, checkpoint["policy"])
    except (KeyError, RuntimeError, TypeError, AttributeError) as exc:
        raise SafeRLError(f"checkpoint in {run_dir} does not match its config ({type(exc).__name__})") from None
    policy.eval()
    return config, policy, checkpoint


def member_checkpoints(run_dir: Path) -> tuple[dict[int, dict], dict[Path, str]]:
    """({epoch: state} of a member's readable latest and previous checkpoints, {path: why} of the unreadable)."""
    found, unreadable = {}, {}
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        path = Path(run_dir) / name
        if not path.exists():
            continue
        try:
            state = check_checkpoint(load_checkpoint(path), path, ("policy", "algorithm", "epoch", "env_steps",
                                                                   "episodes", "rng"))
        except SafeRLError as exc:
            unreadable[path] = str(exc)
            continue
        found[int(state["epoch"])] = state
    return found, unreadable


def checkpoint_inventory(members: list[Member]) -> tuple[list[dict[int, dict]], dict[int, str]]:
    """Each member's readable checkpoints ({epoch: state}), and a one-line problem for each member (by index)
    that has none although it must have had one: its files are unreadable, another member has saved twice (a
    kill between two members' writes leaves at most one save of difference), or its progress.csv logs more
    epochs than come before the first checkpoint."""
    found = [member_checkpoints(member.run_dir) for member in members]
    saved_twice = [max(states) for states, _ in found if len(states) > 1]
    problems = {}
    for k, (member, (states, unreadable)) in enumerate(zip(members, found, strict=True)):
        if states:
            continue
        if unreadable:
            reasons = "; ".join(why.replace(f"checkpoint {path}", path.relative_to(member.run_dir).as_posix())
                                for path, why in unreadable.items())
        elif saved_twice:
            reasons = f"it has no checkpoint, while another member has reached epoch {max(saved_twice)}"
        elif (logged := logged_epochs(member.run_dir)) > member.config.train.checkpoint_every:
            reasons = f"it has no checkpoint, but its progress.csv logs {logged} epochs"  # a kill comes earlier
        else:
            continue
        problems[k] = (f"{member.run_dir}: cannot resume: {reasons}; nothing was changed: put a readable checkpoint "
                       "back, or pass --restart-unreadable to retrain this member alone from epoch 0")
    return [states for states, _ in found], problems


def logged_epochs(run_dir: Path) -> int:
    path = Path(run_dir) / "progress.csv"
    return len(read_progress(path, notes=[])) if path.is_file() else 0
