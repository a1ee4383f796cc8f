"""How far a member drifts from the single run of its seed after one update at the default settings.

    .venv/bin/python benchmarks/members-vs-single/first_update_drift.py ALGO ENV_ID

The first rollout is identical (tests/test_members.py); the update then rounds differently in the batched matmuls.
"""

import copy
import sys
import tempfile
from pathlib import Path

import torch

from saferl.config import build_config
from saferl.members import Member
from saferl.runner import Runner


def members_for(config, seeds, root):
    out = []
    for seed in seeds:
        member_config = copy.deepcopy(config)
        member_config.train.seed = seed
        out.append(Member(root / f"seed-{seed}", member_config))
    return out


def first_update(runner):
    runner.collect()
    batch = runner.rollout_batch()
    _, costs, lengths, _ = runner.episode_stats()
    runner.learn(runner, batch, costs, lengths)


def main(algo: str, env_id: str) -> None:
    config = build_config(algo, sets=[f"env.id={env_id}"])
    root = Path(tempfile.mkdtemp())
    single = Runner(members_for(config, [1], root / "single"))
    multi = Runner(members_for(config, [0, 1, 2], root / "multi"))
    for runner in (single, multi):
        first_update(runner)
    one, other = single.policy.member_state_dict(0), multi.policy.member_state_dict(1)
    gap = max((value - other[key]).abs().max().item() for key, value in one.items()
              if isinstance(value, torch.Tensor) and value.is_floating_point())
    print(f"{algo} {env_id} defaults: max |parameter difference| after the first update = {gap:.2e}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
