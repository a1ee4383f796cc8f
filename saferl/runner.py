"""The training loop: collect a rollout with the batched env, let the algorithm update, log, checkpoint.

One `Runner` trains K members (K = 1 for a plain run) in one process: their envs form one batched env (member
k's envs are rows k*N .. k*N+N-1), their networks carry a leading member axis, and everything that is per run
stays per member (normaliser, optimiser state, multiplier, KL early stop, RNG stream, episode statistics, run
directory). Member k of a K-member run collects exactly what a one-member run with its seed collects.

The collection loop does one batched policy call and one batched env call per step; everything else is array
writes. Non-finite numbers from an env or an update stop the run with one line and the last good checkpoints.
"""

from __future__ import annotations

import collections
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from saferl.algorithms import ALGORITHMS
from saferl.algorithms.common import BehaviourReference
from saferl.buffer import RolloutBatch, RolloutBuffer
from saferl.config import epochs_per_run
from saferl.envs import seeds
from saferl.envs.vector import first_non_finite
from saferl.errors import SafeRLError
from saferl.files import save_checkpoint, versions, write_json, write_yaml
from saferl.groups import GroupRollout, group_batch
from saferl.logger import ProgressLogger
from saferl.members import Member, slice_member, stack_members
from saferl.rundir import (
    CHECKPOINT,
    CHECKPOINT_FORMAT,
    PREVIOUS_CHECKPOINT,
    checkpoint_inventory,
    make_env,
    make_policy,
)


def episode_means(per_member: list[list], num_costs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Means over each member's episodes (return, costs [C], length, success): [K], [K, C], [K], [K]; NaN where a
    member has none."""
    k = len(per_member)
    returns, lengths, success = np.full(k, np.nan), np.full(k, np.nan), np.full(k, np.nan)
    costs = np.full((k, num_costs), np.nan)
    for member, episodes in enumerate(per_member):
        if episodes:
            returns[member] = np.mean([e[0] for e in episodes])
            costs[member] = np.mean(np.stack([e[1] for e in episodes]), axis=0)
            lengths[member] = np.mean([e[2] for e in episodes])
            success[member] = np.mean([e[3] for e in episodes])
    return returns, costs, lengths, success


def update_step(runner: Runner, batch: RolloutBatch, episode_cost: np.ndarray, episode_length: np.ndarray) -> dict:
    """The default learning step of an epoch: the algorithm's update."""
    return runner.algorithm.update(batch, episode_cost, episode_length)


@dataclass(frozen=True)
class PolicyStart:
    """Where a new run's policy starts instead of its random initialisation (fine-tuning: the clone)."""

    state: dict  # a one-member state (`ActorCritic.member_state_dict`): weights, log-std, normaliser statistics
    freeze_normalizer: bool = False  # keep those statistics fixed for the whole run (and its resumptions)
    source: str = "the starting policy"  # what it is, for the error when it does not fit the config's model
    # The KL-to-start term (fine-tuning's anchor to the clone), for algorithms that support one: the reference,
    # its starting coefficient and the per-update decay. A resumed run gets the decayed coefficient back from its
    # checkpoint; the reference itself is always this one.
    reference: BehaviourReference | None = None
    reference_coef: float = 0.0
    reference_decay: float = 1.0


class Runner:
    """Trains `members` (sharing every setting but seed and cost limit) in one epoch loop.

    `learn(runner, batch, episode_cost, episode_length) -> stats` is the epoch's learning step (default: the
    algorithm's update); fine-tuning passes one that fits only the critics during its first `warmup_epochs`, which
    then do not count in the epochs the learning rate anneals over. `start`: every member's policy starts from
    that state (a resumed run from its checkpoint)."""

    def __init__(self, members: list[Member], resume: bool = False, learn: Callable = update_step,
                 start: PolicyStart | None = None, warmup_epochs: int = 0, stop_epoch: int | None = None):
        self.members = members
        self.config = cfg = members[0].config
        self.learn = learn
        torch.set_num_threads(cfg.train.torch_threads)
        random.seed(members[0].seed)  # nothing in training draws from these; seeded for user code
        np.random.seed(members[0].seed)
        torch.manual_seed(members[0].seed)
        self.num_members = k = len(members)
        self.envs_per_member = cfg.env.num_envs
        self.env = make_env(cfg, seed=None, num_envs=k * self.envs_per_member)
        self.num_costs = self.env.num_costs
        self.rollout_length = cfg.train.steps_per_epoch // self.envs_per_member
        self.steps_per_epoch = self.rollout_length * self.envs_per_member  # per member
        # stop_epoch: train only to there (recovery catching a restarted member up); the plan is unchanged.
        self.total_epochs = stop_epoch or epochs_per_run(cfg.train.total_steps, self.steps_per_epoch)
        if cfg.train.schedule_steps is None:  # a new run (or one from before schedules): the plan is its budget
            for member in members:
                member.config.train.schedule_steps = member.config.train.total_steps
        self.schedule_epochs = epochs_per_run(cfg.train.schedule_steps, self.steps_per_epoch)
        self.generators = [torch.Generator().manual_seed(m.seed) for m in members]
        self.policy = make_policy(cfg, self.env, k, self.generators)
        self.cost_limits = np.array([[m.cost_limit] * self.num_costs for m in members], dtype=np.float64)
        # The learning rate anneals over the updates of the run's plan (train.schedule_steps, fixed at creation).
        anneal_epochs = max(1, self.schedule_epochs - warmup_epochs)
        self.algorithm = ALGORITHMS[cfg.train.algo](self.policy, cfg, anneal_epochs, self.generators,
                                                    self.cost_limits)
        if start is not None and start.reference is not None and self.algorithm.supports_behaviour_reference:
            self.algorithm.set_behaviour_reference(start.reference, start.reference_coef, start.reference_decay)
        obs_dim = self.env.single_observation_space.shape[0]
        act_dim = self.env.single_action_space.shape[0]
        self.buffer = RolloutBuffer(self.rollout_length, k, self.envs_per_member, obs_dim, act_dim, self.num_costs)
        # Group rollouts (saferl/groups.py): G envs per group start each episode from one state.
        self.groups = (GroupRollout([m.seed for m in members], self.envs_per_member, cfg.train.group_size,
                                    self.rollout_length) if cfg.train.group_size else None)
        self.batch_stats: dict = {}  # what building the batch reports (group counts), logged with the update's
        # Per member: (return, costs [C], length, success or nan) of the last episodes (as many as the logging
        # window or the constraint's window needs).
        kept = max(cfg.train.episode_window, cfg.train.constraint_window or 0)
        self.episodes = [collections.deque(maxlen=kept) for _ in members]
        self.epoch_episodes: list[list] = [[] for _ in members]
        self.epoch, self.env_steps = 0, 0
        self.total_violations = np.zeros(k, dtype=np.int64)
        resumed = self.restore() if resume else False
        if start is not None:
            if not resumed:  # also a resumed run that died before its first checkpoint
                self.load_start(start)
            if start.freeze_normalizer:
                self.policy.normalizer.frozen = True
        if not resume:
            self.prepare_run_dirs()
        else:  # what --resume changed (--steps, a re-planned schedule) is part of the run from now on
            for member in members:
                write_yaml(member.run_dir / "config.yaml", member.config.to_dict())
                if not (member.run_dir / "meta.json").exists():  # planned, never created: the run died first
                    self.write_meta(member)
        self.loggers = [ProgressLogger(m.run_dir, cfg.train.tensorboard, self.epoch if resume else None)
                        for m in members]
        # A resumed run starts fresh episodes, from the seed block of the epoch it resumes at.
        offset = seeds.block(self.epoch if resumed else 0)
        env_seeds = [s for m in members for s in seeds.env_seeds(m.seed, self.envs_per_member, offset)]
        self.obs, _ = self.env.reset(seed=env_seeds)

    def load_start(self, start: PolicyStart) -> None:
        try:
            for k in range(self.num_members):
                self.policy.load_member_state_dict(k, start.state)
        except (KeyError, RuntimeError):
            raise SafeRLError(f"{start.source} does not fit this config's model") from None

    # -- run directories -----------------------------------------------------------------------------------
    def prepare_run_dirs(self) -> None:
        for member in self.members:
            if (member.run_dir / "config.yaml").exists() or (member.run_dir / CHECKPOINT).exists():
                raise SafeRLError(f"{member.run_dir} already holds a run; pass --resume to continue it or pick "
                                  "another --run-dir")
        for member in self.members:
            (member.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            write_yaml(member.run_dir / "config.yaml", member.config.to_dict())
            self.write_meta(member)

    def write_meta(self, member: Member) -> None:
        write_json(member.run_dir / "meta.json", {
            "versions": versions(), "seed": member.seed, "cost_limit": member.cost_limit,
            "members": [m.run_dir.name for m in self.members] if self.num_members > 1 else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    def member_checkpoint(self, k: int) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "policy": self.policy.member_state_dict(k),
            "algorithm": slice_member(self.algorithm.state_dict(), k),
            "epoch": self.epoch,
            "env_steps": self.env_steps,
            "episodes": list(self.episodes[k]),
            "total_violations": int(self.total_violations[k]),
            "rng": {"generator": self.generators[k].get_state()},
        }

    def save(self) -> None:
        """Each member's checkpoint, the previous one kept: if the process dies between two members' writes,
        `restore` still finds an epoch every member has."""
        for k, member in enumerate(self.members):
            latest, previous = member.run_dir / CHECKPOINT, member.run_dir / PREVIOUS_CHECKPOINT
            if latest.exists():
                latest.replace(previous)
            save_checkpoint(latest, self.member_checkpoint(k))

    def restore(self) -> bool:
        """Load every member at the latest epoch all of them have; False when none has a checkpoint yet (a run
        killed before its first epoch ended starts over from its saved config). A member whose checkpoints are
        all unreadable is an error, never a silent start over (`saferl.recovery` restarts one on request)."""
        available, problems = checkpoint_inventory(self.members)
        if problems:
            raise SafeRLError(next(iter(problems.values())))
        if not any(available):
            return False
        common = min((max(epochs) if epochs else 0) for epochs in available)
        if common == 0:
            return False
        states = []
        for member, epochs in zip(self.members, available, strict=True):
            if common not in epochs:
                raise SafeRLError(f"{member.run_dir} has no checkpoint of epoch {common}, the last epoch every "
                                  "member reached; its checkpoints cannot be resumed together")
            states.append(epochs[common])
        try:
            for k, state in enumerate(states):
                self.policy.load_member_state_dict(k, state["policy"])
                self.generators[k].set_state(state["rng"]["generator"])
                self.episodes[k].extend(state["episodes"])
                self.total_violations[k] = state["total_violations"]
            self.algorithm.load_state_dict(stack_members([state["algorithm"] for state in states]))
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise SafeRLError(f"checkpoint in {self.members[0].run_dir} does not match this run's config "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:80]})") from None
        self.epoch, self.env_steps = states[0]["epoch"], states[0]["env_steps"]
        return True

    # -- collection ----------------------------------------------------------------------------------------
    def collect(self) -> None:
        """Fill the buffer with `rollout_length` batched steps; the weights are fixed meanwhile, and so is the
        normaliser unless `model.normalizer_update` is "step"."""
        buf, policy, env = self.buffer, self.policy, self.env
        k, n = self.num_members, self.envs_per_member
        update_each_step = self.config.model.normalizer_update == "step"
        with_cost = self.algorithm.uses_cost_critic
        obs = self.obs
        if self.groups is not None:
            obs = self.groups.start_epoch(env, self.epoch, obs)
        self.epoch_episodes = [[] for _ in self.members]
        with torch.inference_mode():
            layers = policy.stacked_layers(with_cost)  # one snapshot of the weights for the whole rollout
            for t in range(self.rollout_length):
                raw = obs.reshape(k, n, -1)
                buf.raw_obs[t] = raw
                if update_each_step:
                    policy.normalizer.update(torch.from_numpy(buf.raw_obs[t]))
                x = policy.normalise(torch.from_numpy(buf.raw_obs[t]).float())
                mean, value, cost_value = policy.forward_heads(x, with_cost, layers)
                action, log_prob = policy.sample(mean, self.generators)
                buf.obs[t] = x.numpy()
                buf.actions[t] = action.numpy()
                buf.log_probs[t] = log_prob.numpy()
                buf.reward_values[t] = value.numpy()
                buf.cost_values[t] = cost_value.numpy() if with_cost else 0.0
                obs, reward, cost, terminated, truncated, info = env.step(buf.actions[t].reshape(k * n, -1))
                self.check_env_output(obs, reward, cost, t)
                buf.rewards[t] = reward.reshape(k, n)
                buf.costs[t] = cost.reshape(k, n, -1)
                buf.terminated[t] = terminated.reshape(k, n)
                buf.truncated[t] = truncated.reshape(k, n)
                if truncated.any():  # bootstrap from the critics' values of the final observations
                    final = policy.normalise(torch.from_numpy(info["final_obs"].reshape(k, n, -1)).float())
                    final_value, final_cost_value = policy.values(final)
                    rows = truncated.reshape(k, n)
                    buf.final_reward_values[t][rows] = final_value.numpy()[rows]
                    buf.final_cost_values[t][rows] = final_cost_value.numpy()[rows]
                finished = {int(i): self.episode_record(info, i) for i in np.flatnonzero(info["episode_done"])}
                if self.groups is not None:  # a waiting env's steps and episodes do not count
                    obs, finished = self.groups.after_step(env, t, obs, finished)
                for i, episode in finished.items():
                    self.episodes[i // n].append(episode)
                    self.epoch_episodes[i // n].append(episode)
        self.obs = obs
        costs = buf.costs if self.groups is None else buf.costs * self.groups.valid[..., None]
        self.total_violations += costs.sum(axis=(0, 2, 3)).astype(np.int64)

    @staticmethod
    def episode_record(info: dict, i: int) -> tuple:
        """Env i's finished episode as the statistics keep it: (return, costs, length, success or NaN)."""
        success = info.get("is_success")
        return (float(info["episode_return"][i]), info["episode_cost"][i].copy(), int(info["episode_length"][i]),
                float(success[i]) if success is not None else math.nan)

    def check_env_output(self, obs: np.ndarray, reward: np.ndarray, cost: np.ndarray, t: int) -> None:
        """A NaN or inf from the env would silently poison the normaliser, the critics and the checkpoint."""
        found = first_non_finite(obs, reward, cost)
        if found is not None:
            name, env_index = found
            member = self.members[env_index // self.envs_per_member]
            raise SafeRLError(
                f"env {env_index % self.envs_per_member} of {self.config.env.id} (seed {member.seed}) returned a "
                f"non-finite {name} at step {t} of epoch {self.epoch + 1}; stopped, the last good checkpoint "
                f"(epoch {self.epoch}) is kept in {member.run_dir}")

    def rollout_batch(self) -> RolloutBatch:
        """GAE over the buffer just collected, bootstrapped from the critics' values of the current obs (or, with
        group rollouts, the batch of saferl/groups.py)."""
        cfg = self.config.train
        with torch.no_grad():
            last = self.policy.normalise(torch.from_numpy(self.obs.reshape(self.num_members,
                                                                           self.envs_per_member, -1)).float())
            last_value, last_cost_value = self.policy.values(last)
        if self.groups is not None:
            batch, self.batch_stats = group_batch(self.buffer, self.groups, self.config,
                                                  self.algorithm.uses_cost_critic, last_value.numpy(),
                                                  last_cost_value.numpy())
            return batch
        return self.buffer.compute(last_value.numpy(), last_cost_value.numpy(), cfg.gamma, cfg.gae_lambda,
                                   cfg.cost_gamma, cfg.cost_gae_lambda, cfg.standardize_reward_adv,
                                   cfg.center_cost_adv)

    def episode_stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per member, means over the last `episode_window` episodes (logging): return [K], costs [K, C],
        length [K], success [K]."""
        window = self.config.train.episode_window
        return episode_means([list(episodes)[-window:] for episodes in self.episodes], self.num_costs)

    def constraint_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per member, the J_c [K, C] and mean episode length [K] the multiplier and CPO read
        (`train.constraint_window`): this epoch's finished episodes, or the last N."""
        window, fallback = self.config.train.constraint_window, self.config.train.episode_window
        chosen = []
        for episodes, this_epoch in zip(self.episodes, self.epoch_episodes, strict=True):
            if window is None:
                chosen.append(this_epoch or list(episodes)[-fallback:])
            else:
                chosen.append(list(episodes)[-window:])
        _, costs, lengths, _ = episode_means(chosen, self.num_costs)
        return costs, lengths


    def check_update(self) -> None:
        """The update must leave every member's parameters finite; otherwise stop before saving."""
        for name, tensor in [*self.policy.named_parameters(), *self.policy.named_buffers()]:
            finite = torch.isfinite(tensor.reshape(tensor.shape[0], -1)).all(1) if tensor.ndim else torch.isfinite(
                tensor).reshape(1)
            if not finite.all():
                member = self.members[int(torch.nonzero(~finite)[0])] if finite.numel() == self.num_members else None
                where = f" of the member with seed {member.seed}" if member else ""
                raise SafeRLError(f"the update of epoch {self.epoch + 1} made {name}{where} non-finite (a loss "
                                  f"turned NaN or inf); stopped, the last good checkpoint (epoch {self.epoch}) is kept")

    # -- main loop -----------------------------------------------------------------------------------------
    def train(self) -> list[dict]:
        """Runs the remaining epochs; returns each member's last progress row."""
        cfg = self.config.train
        progress = None
        if cfg.progress_bar:
            from tqdm import tqdm

            progress = tqdm(total=self.total_epochs * self.steps_per_epoch * self.num_members,
                            initial=self.env_steps * self.num_members, unit="step", dynamic_ncols=True, leave=False)
        rows = [{} for _ in self.members]
        try:
            while self.epoch < self.total_epochs:
                start = time.perf_counter()
                self.collect()
                collect_seconds = time.perf_counter() - start
                batch = self.rollout_batch()
                ep_return, ep_costs, ep_length, ep_success = self.episode_stats()
                constraint_costs, constraint_lengths = self.constraint_stats()
                update_start = time.perf_counter()
                stats = {**self.batch_stats, **self.learn(self, batch, constraint_costs, constraint_lengths)}
                update_seconds = time.perf_counter() - update_start
                self.check_update()
                if self.config.model.normalizer_update == "epoch":
                    self.policy.normalizer.update(self.buffer.raw_obs_per_member())
                self.epoch += 1
                self.env_steps += self.steps_per_epoch
                timing = {"elapsed": time.perf_counter() - start, "collect": collect_seconds, "update": update_seconds}
                for k in range(self.num_members):
                    rows[k] = self.progress_row(k, ep_return, ep_costs, ep_length, ep_success, stats, timing)
                    rows[k]["constraint_cost"] = float(constraint_costs[k, 0])
                    self.loggers[k].log(rows[k])
                if self.epoch % cfg.checkpoint_every == 0 or self.epoch == self.total_epochs:
                    self.save()
                if progress is not None:
                    progress.update(self.steps_per_epoch * self.num_members)
                    progress.set_postfix(ret=f"{np.nanmean(ep_return):.1f}", cost=f"{np.nanmean(ep_costs[:, 0]):.1f}",
                                         fps=f"{rows[0]['total_fps']:.0f}")
        finally:
            if progress is not None:
                progress.close()
            for logger in self.loggers:
                logger.close()
            self.env.close()
        return rows

    def progress_row(self, k, ep_return, ep_costs, ep_length, ep_success, stats, timing) -> dict:
        elapsed = timing["elapsed"]
        multiplier = stats.get("lagrange_multiplier_0")
        row = {
            "epoch": self.epoch,
            "env_steps": self.env_steps,
            "ep_return": float(ep_return[k]),
            "ep_cost": float(ep_costs[k, 0]),
            "ep_length": float(ep_length[k]),
            "lagrange_multiplier": float(multiplier[k]) if multiplier is not None else math.nan,
            "fps": self.steps_per_epoch / elapsed,
            "total_fps": self.steps_per_epoch * self.num_members / elapsed,
            "collect_fps": self.steps_per_epoch * self.num_members / timing["collect"],
            "collect_seconds": timing["collect"],
            "update_seconds": timing["update"],
            "total_violations": int(self.total_violations[k]),
            "cost_limit": self.members[k].cost_limit,
        }
        episodes = self.epoch_episodes[k]
        if episodes:  # per-epoch means: a dip shows here undiluted by the window
            row["epoch_ep_return"] = float(np.mean([e[0] for e in episodes]))
            row["epoch_ep_cost"] = float(np.mean([e[1][0] for e in episodes]))
        if np.isfinite(ep_success[k]):
            row["success_rate"] = float(ep_success[k])
        if self.num_costs > 1:
            for c, name in enumerate(self.env.cost_names):
                row[f"ep_{name}"] = float(ep_costs[k, c])
        for key, value in stats.items():
            if key == "lagrange_multiplier_0":
                continue
            row[key] = value[k] if isinstance(value, np.ndarray) else value
            if isinstance(row[key], np.generic):
                row[key] = row[key].item()
        return row
