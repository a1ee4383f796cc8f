"""The training loop: collect a rollout with the batched env, let the algorithm update, log, checkpoint.

One `Runner` owns the env, policy, buffer, algorithm and run directory. The collection loop does one
batched policy call and one batched env call per step; everything else is array writes.
"""

from __future__ import annotations

import collections
import random
import time
from pathlib import Path

import numpy as np
import torch

from saferl import envs
from saferl.algorithms import ALGORITHMS
from saferl.buffer import RolloutBuffer
from saferl.config import Config, config_from_dict, load_yaml
from saferl.errors import SafeRLError
from saferl.io import load_checkpoint, save_checkpoint, versions, write_json, write_yaml
from saferl.logger import ProgressLogger
from saferl.policies.actor_critic import ActorCritic

CHECKPOINT = "checkpoints/latest.pt"


def make_env(config: Config, seed: int | None, num_envs: int | None = None):
    try:
        return envs.make(
            config.env.id,
            num_envs=num_envs or config.env.num_envs,
            seed=seed,
            max_episode_steps=config.env.max_episode_steps,
        )
    except ValueError as exc:
        raise SafeRLError(str(exc).splitlines()[0]) from None


def make_policy(config: Config, env) -> ActorCritic:
    m = config.model
    return ActorCritic(
        obs_dim=env.single_observation_space.shape[0],
        act_dim=env.single_action_space.shape[0],
        num_costs=env.num_costs,
        actor_hidden=tuple(m.actor_hidden),
        critic_hidden=tuple(m.critic_hidden),
        activation=m.activation,
        init_log_std=m.init_log_std,
        normalize_obs=m.normalize_obs,
        obs_clip=m.obs_clip,
    )


def load_run_config(run_dir: Path) -> Config:
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise SafeRLError(f"{run_dir} is not a run directory (no config.yaml)")
    return config_from_dict(load_yaml(path))


def load_policy(run_dir: Path) -> tuple[Config, ActorCritic, dict]:
    """Policy (with its normaliser) of a finished or interrupted run, ready for `predict`."""
    config = load_run_config(run_dir)
    checkpoint = load_checkpoint(Path(run_dir) / CHECKPOINT)
    env = make_env(config, seed=0, num_envs=1)
    policy = make_policy(config, env)
    env.close()
    try:
        policy.load_state_dict(checkpoint["policy"])
    except (KeyError, RuntimeError) as exc:
        raise SafeRLError(f"checkpoint in {run_dir} does not match its config ({type(exc).__name__})") from None
    policy.eval()
    return config, policy, checkpoint


class Runner:
    def __init__(self, config: Config, run_dir: Path, resume: bool = False):
        self.config, self.run_dir = config, Path(run_dir)
        cfg = config
        torch.set_num_threads(cfg.train.torch_threads)
        self.env = make_env(cfg, seed=cfg.train.seed)
        self.num_envs = self.env.num_envs
        self.num_costs = self.env.num_costs
        self.rollout_length = cfg.train.steps_per_epoch // self.num_envs
        self.steps_per_epoch = self.rollout_length * self.num_envs
        self.total_epochs = max(1, -(-cfg.train.total_steps // self.steps_per_epoch))
        self.seed_everything(cfg.train.seed)
        self.policy = make_policy(cfg, self.env)
        self.algorithm = ALGORITHMS[cfg.train.algo](self.policy, cfg, self.total_epochs)
        obs_dim = self.env.single_observation_space.shape[0]
        act_dim = self.env.single_action_space.shape[0]
        self.buffer = RolloutBuffer(self.rollout_length, self.num_envs, obs_dim, act_dim, self.num_costs)
        self.episodes = collections.deque(maxlen=cfg.train.episode_window)  # (return, costs[K], length)
        self.epoch, self.env_steps, self.total_violations = 0, 0, 0
        if resume:
            self.restore()
        else:
            self.prepare_run_dir()
        self.logger = ProgressLogger(self.run_dir, cfg.train.tensorboard, self.epoch if resume else None)
        reset_seed = cfg.train.seed + 7919 * self.epoch  # a resumed run starts fresh episodes
        self.obs = self.env.reset(seed=reset_seed)

    @staticmethod
    def seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    # -- run directory -------------------------------------------------------------------------
    def prepare_run_dir(self) -> None:
        if (self.run_dir / "config.yaml").exists() or (self.run_dir / CHECKPOINT).exists():
            raise SafeRLError(f"{self.run_dir} already holds a run; pass --resume to continue it or pick "
                              "another --run-dir")
        (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        write_yaml(self.run_dir / "config.yaml", self.config.to_dict())
        write_json(self.run_dir / "meta.json", {"versions": versions(), "seed": self.config.train.seed,
                                                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    def checkpoint_state(self) -> dict:
        return {
            "policy": self.policy.state_dict(),
            "algorithm": self.algorithm.state_dict(),
            "epoch": self.epoch,
            "env_steps": self.env_steps,
            "episodes": list(self.episodes),
            "total_violations": self.total_violations,
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        }

    def save(self) -> None:
        save_checkpoint(self.run_dir / CHECKPOINT, self.checkpoint_state())

    def restore(self) -> None:
        state = load_checkpoint(self.run_dir / CHECKPOINT)
        try:
            self.policy.load_state_dict(state["policy"])
            self.algorithm.load_state_dict(state["algorithm"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise SafeRLError(f"checkpoint in {self.run_dir} does not match this run's config "
                              f"({type(exc).__name__})") from None
        self.epoch, self.env_steps = state["epoch"], state["env_steps"]
        self.total_violations = state.get("total_violations", 0)
        self.episodes.extend(state["episodes"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])

    # -- collection ----------------------------------------------------------------------------
    def collect(self) -> None:
        """Fill the buffer with `rollout_length` batched steps; the normaliser is frozen meanwhile."""
        buf, policy, env = self.buffer, self.policy, self.env
        obs = self.obs
        self.epoch_episodes = []  # episodes finished in this rollout only (the window mixes in older ones)
        stacked = policy.stacked_networks()  # the weights are fixed for the whole rollout
        with torch.inference_mode():
            for t in range(self.rollout_length):
                buf.raw_obs[t] = obs
                normalised = policy.normalise(torch.from_numpy(obs).float())
                action, log_prob, value, cost_value = policy.rollout_step(normalised, stacked=stacked)
                action_np = action.numpy()
                buf.obs[t] = normalised.numpy()
                buf.actions[t] = action_np
                buf.log_probs[t] = log_prob.numpy()
                buf.reward_values[t] = value.numpy()
                buf.cost_values[t] = cost_value.numpy()
                obs, reward, cost, terminated, truncated, info = env.step(action_np)
                buf.rewards[t] = reward
                buf.costs[t] = cost
                buf.terminated[t] = terminated
                buf.truncated[t] = truncated
                if truncated.any():  # bootstrap from the critic's value of the final observation
                    rows = np.flatnonzero(truncated)
                    final = policy.normalise(torch.from_numpy(info["final_obs"][rows]).float())
                    final_value, final_cost_value = policy.values(final)
                    buf.final_reward_values[t, rows] = final_value.numpy()
                    buf.final_cost_values[t, rows] = final_cost_value.numpy()
                done = info["episode_done"]
                if done.any():
                    for i in np.flatnonzero(done):
                        episode = (float(info["episode_return"][i]), info["episode_cost"][i].copy(),
                                   int(info["episode_length"][i]))
                        self.episodes.append(episode)
                        self.epoch_episodes.append(episode)
        self.obs = obs
        self.total_violations += int(buf.costs.sum())

    def rollout_batch(self):
        """GAE over the buffer just collected, bootstrapped from the critics' values of the current obs."""
        cfg = self.config.train
        with torch.no_grad():
            last_value, last_cost_value = self.policy.values(self.policy.normalise(torch.from_numpy(self.obs).float()))
        return self.buffer.compute(
            last_value.numpy(), last_cost_value.numpy(), cfg.gamma, cfg.gae_lambda, cfg.cost_gamma,
            cfg.cost_gae_lambda, cfg.standardize_reward_adv, cfg.center_cost_adv)

    def episode_stats(self) -> tuple[float, np.ndarray, float]:
        if not self.episodes:
            return float("nan"), np.full(self.num_costs, np.nan), float("nan")
        returns, costs, lengths = zip(*self.episodes, strict=True)
        return float(np.mean(returns)), np.mean(np.stack(costs), axis=0), float(np.mean(lengths))

    # -- main loop -----------------------------------------------------------------------------
    def train(self) -> dict:
        cfg = self.config.train
        progress = None
        if cfg.progress_bar:
            from tqdm import tqdm

            progress = tqdm(total=self.total_epochs * self.steps_per_epoch, initial=self.env_steps,
                            unit="step", dynamic_ncols=True, leave=False)
        row = {}
        try:
            while self.epoch < self.total_epochs:
                start = time.perf_counter()
                self.collect()
                collect_seconds = time.perf_counter() - start
                batch = self.rollout_batch()
                ep_return, ep_costs, ep_length = self.episode_stats()
                update_start = time.perf_counter()
                stats = self.algorithm.update(batch, ep_costs, ep_length)
                update_seconds = time.perf_counter() - update_start
                self.policy.normalizer.update(torch.from_numpy(self.buffer.raw_obs))
                self.epoch += 1
                self.env_steps += self.steps_per_epoch
                elapsed = time.perf_counter() - start
                row = self.progress_row(ep_return, ep_costs, ep_length, stats, elapsed, collect_seconds,
                                        update_seconds)
                self.logger.log(row)
                if self.epoch % cfg.checkpoint_every == 0 or self.epoch == self.total_epochs:
                    self.save()
                if progress is not None:
                    progress.update(self.steps_per_epoch)
                    progress.set_postfix(ret=f"{ep_return:.1f}", cost=f"{ep_costs[0]:.1f}", fps=f"{row['fps']:.0f}")
        finally:
            if progress is not None:
                progress.close()
            self.logger.close()
            self.env.close()
        return row

    def progress_row(self, ep_return, ep_costs, ep_length, stats, elapsed, collect_seconds, update_seconds):
        row = {
            "epoch": self.epoch,
            "env_steps": self.env_steps,
            "ep_return": ep_return,
            "ep_cost": float(ep_costs[0]),
            "ep_length": ep_length,
            "lagrange_multiplier": stats.pop("lagrange_multiplier_0", float("nan")),
            "fps": self.steps_per_epoch / elapsed,
            "collect_fps": self.steps_per_epoch / collect_seconds,
            "collect_seconds": collect_seconds,
            "update_seconds": update_seconds,
            "total_violations": self.total_violations,
        }
        if getattr(self, "epoch_episodes", None):  # per-epoch means: a dip shows here undiluted by the window
            row["epoch_ep_return"] = float(np.mean([e[0] for e in self.epoch_episodes]))
            row["epoch_ep_cost"] = float(np.mean([e[1][0] for e in self.epoch_episodes]))
        limit = getattr(getattr(self.algorithm, "lagrange", None), "cost_limit", self.config.lagrange.cost_limit)
        row["cost_limit"] = limit
        if self.num_costs > 1:
            names = getattr(self.env, "cost_names", [f"cost_{k}" for k in range(self.num_costs)])
            for k in range(self.num_costs):
                row[f"ep_{names[k]}"] = float(ep_costs[k])
        row.update(stats)
        return row


def evaluate(run_dir: Path, episodes: int = 10, deterministic: bool = False, seed: int | None = None) -> dict:
    """Roll out the saved policy for `episodes` full episodes; per-env quotas avoid short-episode bias."""
    config, policy, checkpoint = load_policy(run_dir)
    num_envs = max(1, min(episodes, config.env.num_envs))
    env = make_env(config, seed=None, num_envs=num_envs)
    seed = config.train.seed + 100_000 if seed is None else seed
    torch.manual_seed(seed)
    quotas = np.array([(episodes + i) // num_envs for i in range(num_envs)])
    obs = env.reset(seed=seed)
    results = []
    while len(results) < episodes:
        action = policy.act(torch.from_numpy(obs).float(), deterministic=deterministic)[0]
        obs, _, _, _, _, info = env.step(action.numpy())
        for i in np.flatnonzero(info["episode_done"]):
            if quotas[i] > 0:
                quotas[i] -= 1
                results.append({"return": float(info["episode_return"][i]),
                                "cost": [float(c) for c in info["episode_cost"][i]],
                                "length": int(info["episode_length"][i])})
    env.close()
    returns = [r["return"] for r in results]
    costs = [r["cost"][0] for r in results]
    summary = {
        "env_id": config.env.id,
        "algo": config.train.algo,
        "checkpoint_epoch": checkpoint["epoch"],
        "checkpoint_env_steps": checkpoint["env_steps"],
        "deterministic": deterministic,
        "seed": seed,
        "episodes": results,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "mean_cost": float(np.mean(costs)),
        "std_cost": float(np.std(costs)),
        "mean_length": float(np.mean([r["length"] for r in results])),
        "cost_limit": config.lagrange.cost_limit,
    }
    write_json(Path(run_dir) / "eval.json", summary)
    return summary
