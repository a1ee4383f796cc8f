"""Manual vs autograd gradient of PPO-Lag's default loss: time of one whole minibatch step (gradient, per-network
clip, MemberAdam step) at HalfCheetah's shapes (obs 17, act 6, one cost, 64x64 networks, minibatch 64) for
K = 1, 4, 8 members; the six cases interleaved, 5 repeats of 1,000 steps each, median and min reported.

Usage: python manual_vs_autograd.py OUT.json   (torch at its default number of threads)
"""

import json
import statistics
import sys
import time

import numpy as np
import torch

from saferl.algorithms.common import PPOMinibatch
from saferl.algorithms.ppo import PPOLag
from saferl.algorithms.ppo_gradient import clip_loss_gradients
from saferl.config import Config
from saferl.policies.actor_critic import ActorCritic


def minibatch_step(members: int, manual: bool):
    generators = [torch.Generator().manual_seed(k) for k in range(members)]
    config = Config()
    config.ppo.manual_gradients = manual
    policy = ActorCritic(members, 17, 6, 1, generators=generators)
    algo = PPOLag(policy, config, 10, generators, np.full((members, 1), 25.0))
    noise = torch.Generator().manual_seed(1)

    def sample(*shape):
        return torch.randn(members, 64, *shape, generator=noise)

    minibatch = PPOMinibatch(obs=sample(17), actions=sample(6), old_log_probs=sample() - 2.5, old_means=sample(6),
                             advantages=sample(), reward_returns=sample(), cost_returns=sample(1), old_values=sample(),
                             old_cost_values=sample(1))
    old_log_std = policy.log_std_per_member().detach()
    kl_beta, bc_kl_coef, active = torch.ones(members), torch.zeros(members), torch.ones(members, dtype=torch.bool)
    optimizer = algo.optimizer

    def step():
        if manual:
            clip_loss_gradients(policy, minibatch, 0.2, 0.2, 0.5, 0.0, True, optimizer.grad_of)
        else:
            loss = algo.loss(minibatch, old_log_std, kl_beta, bc_kl_coef)
            optimizer.flatten(torch.autograd.grad(loss.sum(), algo.params))
        optimizer.clip_grad_norm_(40.0, per_group=True)
        optimizer.step(active)

    return step


def main(out: str) -> None:
    steps = {(k, manual): minibatch_step(k, manual) for k in (1, 4, 8) for manual in (True, False)}
    times = {case: [] for case in steps}
    for step in steps.values():
        for _ in range(200):
            step()
    for _ in range(5):
        for case, step in steps.items():
            start = time.perf_counter()
            for _ in range(1000):
                step()
            times[case].append(time.perf_counter() - start)  # seconds per 1,000 steps = ms per step
    results = {}
    for (k, manual), runs in times.items():
        name = f"K={k} {'manual' if manual else 'autograd'}"
        median = statistics.median(runs)
        results[name] = {"ms_per_step": runs, "min": min(runs), "median": median, "median_per_member": median / k}
        print(f"{name:>14}: median {median:.3f} ms/step (min {min(runs):.3f}), {median / k:.3f} ms per member")
    with open(out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
