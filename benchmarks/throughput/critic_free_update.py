"""PPO-Lag's update with and without the critics: the time a critic-free estimator (train.advantage=rloo/grpo)
saves by stepping the actor alone. Synthetic batch of PointGoal1's shapes (obs 60, action 2), 3 members, 16,000
steps per member, 3 update epochs of minibatches of 64, no KL early stop; the two kinds alternate, min and median
of the repeats. Run from the repository root: python benchmarks/throughput/critic_free_update.py [REPEATS]
"""

import sys
import time

import numpy as np
import torch

from saferl.algorithms.ppo import PPOLag
from saferl.buffer import RolloutBatch
from saferl.config import Config
from saferl.policies.actor_critic import ActorCritic

MEMBERS, STEPS, OBS_DIM, ACT_DIM, EPOCHS = 3, 16_000, 60, 2, 3


def make_algorithm(critic_free: bool) -> PPOLag:
    generators = [torch.Generator().manual_seed(k) for k in range(MEMBERS)]
    config = Config()
    config.ppo.update_epochs, config.ppo.target_kl = EPOCHS, None
    if critic_free:
        config.train.advantage, config.train.group_size = "grpo", 8
    policy = ActorCritic(MEMBERS, OBS_DIM, ACT_DIM, 1, generators=generators)
    return PPOLag(policy, config, 10, generators, np.full((MEMBERS, 1), 25.0))


def main(repeats: int) -> None:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(MEMBERS, STEPS, *shape, generator=g)

    batch = RolloutBatch(r(OBS_DIM), r(ACT_DIM), r() - 3.0, r(), r(1), r(), r(1), r(), r(1))
    seconds = {False: [], True: []}
    for _ in range(repeats):
        for critic_free in (False, True):
            algorithm = make_algorithm(critic_free)
            start = time.perf_counter()
            algorithm.update(batch, np.full((MEMBERS, 1), 30.0), np.full(MEMBERS, 1000.0))
            seconds[critic_free].append(time.perf_counter() - start)
    minibatch_steps = EPOCHS * STEPS // 64
    for critic_free, times in seconds.items():
        per_step = sorted(t / minibatch_steps * 1e3 for t in times)
        print(f"{'actor alone (critic-free)' if critic_free else 'actor and critics (GAE)':26s} "
              f"min {per_step[0]:.2f} ms, median {per_step[len(per_step) // 2]:.2f} ms per minibatch step "
              f"({repeats} repeats)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
