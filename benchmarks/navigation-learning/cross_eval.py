"""The same saved policy on saferl's navigation task and on Safety-Gymnasium's (issue 17, item 5): rules the task
in or out as the reason a learned policy scores differently.

Two steps, because the two tasks cannot share a Python environment (Safety-Gymnasium pins gymnasium 0.28.1 and
MuJoCo 2.3.3):

    .venv/bin/python benchmarks/navigation-learning/cross_eval.py export RUN_DIR policy.npz
    .venv/bin/python benchmarks/navigation-learning/cross_eval.py evaluate policy.npz --backend saferl --out a.json
    REF/bin/python   benchmarks/navigation-learning/cross_eval.py evaluate policy.npz --backend safety-gymnasium \
        --out b.json
    python3 benchmarks/navigation-learning/cross_eval.py compare a.json b.json

`evaluate` needs only numpy and the backend's package: the policy (observation normaliser, actor MLP, log-std) is
evaluated by the numpy function below on both sides, so any difference comes from the task.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np


def export(run_dir: str, out: str) -> None:
    from pathlib import Path

    from saferl.rundir import load_policy

    config, policy, _ = load_policy(Path(run_dir))
    arrays = {"obs_mean": policy.normalizer.mean[0].numpy(), "obs_var": policy.normalizer.var[0].numpy(),
              "log_std": policy.log_std[0].detach().numpy()}
    for i, (weight, bias) in enumerate(policy.actor.layers()):
        arrays[f"w{i}"], arrays[f"b{i}"] = weight[0].detach().numpy(), bias[0, 0].detach().numpy()
    meta = {"env_id": config.env.id, "activation": config.model.activation, "obs_clip": policy.normalizer.clip,
            "normalize_obs": policy.normalize_obs, "layers": len(policy.actor.layers()), "run_dir": str(run_dir)}
    np.savez(out, meta=json.dumps(meta), **arrays)
    probe = np.random.default_rng(0).normal(size=(16, policy.obs_dim)) * 3.0
    gap = np.abs(NumpyPolicy(out).mean_action(probe) - policy.predict(probe, deterministic=True)).max()
    if gap > 1e-4:
        raise SystemExit(f"the numpy policy differs from saferl's by {gap:.2e}; not exported faithfully")
    print(f"wrote {out} ({meta['env_id']}, {meta['layers']} layers; numpy and saferl agree to {gap:.1e})")


ACTIVATIONS = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0),
               "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))}


class NumpyPolicy:
    def __init__(self, path: str):
        data = np.load(path)
        self.meta = json.loads(str(data["meta"]))
        self.arrays = {key: data[key].astype(np.float64) for key in data.files if key != "meta"}

    def mean_action(self, obs: np.ndarray) -> np.ndarray:
        a = self.arrays
        x = np.asarray(obs, dtype=np.float64)
        if self.meta["normalize_obs"]:
            x = np.clip((x - a["obs_mean"]) / np.sqrt(a["obs_var"] + 1e-8), -self.meta["obs_clip"],
                        self.meta["obs_clip"])
        for i in range(self.meta["layers"]):
            x = x @ a[f"w{i}"] + a[f"b{i}"]
            if i < self.meta["layers"] - 1:
                x = ACTIVATIONS[self.meta["activation"]](x)
        return x

    def act(self, obs: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        mean = self.mean_action(obs)
        if rng is None:
            return mean
        return mean + rng.standard_normal(mean.shape) * np.exp(self.arrays["log_std"])


def run_episode(backend: str, env, policy: NumpyPolicy, seed: int, rng) -> tuple[float, float]:
    if backend == "saferl":
        obs, _ = env.reset(seed=[seed])
        ret = cost = 0.0
        while True:
            action = np.clip(policy.act(obs[0], rng), -1.0, 1.0)
            obs, reward, step_cost, terminated, truncated, info = env.step(action[None])
            ret, cost = ret + float(reward[0]), cost + float(np.sum(step_cost[0]))
            if terminated[0] or truncated[0]:
                return ret, cost
    obs, _ = env.reset(seed=seed)
    ret = cost = 0.0
    while True:
        action = np.clip(policy.act(obs, rng), env.action_space.low, env.action_space.high)
        obs, reward, step_cost, terminated, truncated, _ = env.step(action)
        ret, cost = ret + float(reward), cost + float(step_cost)
        if terminated or truncated:
            return ret, cost


def evaluate(path: str, backend: str, episodes: int, seed: int, stochastic: bool, out: str) -> None:
    policy = NumpyPolicy(path)
    env_id = policy.meta["env_id"]
    if backend == "saferl":
        from saferl import envs

        env = envs.make(env_id, num_envs=1, seed=seed)
    else:
        import safety_gymnasium

        env = safety_gymnasium.make(env_id)
    rng = np.random.default_rng(seed) if stochastic else None
    results = [run_episode(backend, env, policy, seed + i, rng) for i in range(episodes)]
    returns, costs = np.array(results).T
    summary = {"backend": backend, "env_id": env_id, "episodes": episodes, "seed": seed, "stochastic": stochastic,
               "returns": returns.tolist(), "costs": costs.tolist(),
               "return_mean": float(returns.mean()), "return_sem": float(returns.std(ddof=1) / math.sqrt(episodes)),
               "cost_mean": float(costs.mean()), "cost_sem": float(costs.std(ddof=1) / math.sqrt(episodes))}
    with open(out, "w") as f:
        json.dump(summary, f, indent=1)
    print(f"{backend}: return {summary['return_mean']:.2f} +- {summary['return_sem']:.2f}, cost "
          f"{summary['cost_mean']:.2f} +- {summary['cost_sem']:.2f} over {episodes} episodes")


def compare(a_path: str, b_path: str) -> None:
    a, b = (json.load(open(p)) for p in (a_path, b_path))
    for key in ("return", "cost"):
        diff = a[f"{key}_mean"] - b[f"{key}_mean"]
        z = diff / max(math.hypot(a[f"{key}_sem"], b[f"{key}_sem"]), 1e-12)
        print(f"{key}: {a['backend']} {a[f'{key}_mean']:.2f} vs {b['backend']} {b[f'{key}_mean']:.2f}, "
              f"difference {diff:+.2f}, z = {z:+.2f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export")
    e.add_argument("run_dir")
    e.add_argument("out")
    v = sub.add_parser("evaluate")
    v.add_argument("policy")
    v.add_argument("--backend", choices=["saferl", "safety-gymnasium"], required=True)
    v.add_argument("--episodes", type=int, default=50)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--stochastic", action="store_true")
    v.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    args = parser.parse_args(argv)
    if args.command == "export":
        export(args.run_dir, args.out)
    elif args.command == "evaluate":
        evaluate(args.policy, args.backend, args.episodes, args.seed, args.stochastic, args.out)
    else:
        compare(args.a, args.b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
