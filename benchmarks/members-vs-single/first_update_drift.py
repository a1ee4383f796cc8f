"""How far a member drifts from the single run of its seed after one update at the default settings.

    .venv/bin/python benchmarks/members-vs-single/first_update_drift.py ALGO ENV_ID

The first rollout is identical (tests/test_members.py); the update then rounds differently in the batched matmuls.
"""

import sys
import tempfile
from pathlib import Path

import torch

from saferl.config import build_config
from saferl.launch import new_members
from saferl.runner import Runner


def first_update(runner):
    runner.collect()
    batch = runner.rollout_batch()
    _, costs, lengths, _ = runner.episode_stats()
    runner.learn(runner, batch, costs, lengths)


def main(algo: str, env_id: str) -> None:
    config = build_config(algo, sets=[f"env.id={env_id}"])
    root = Path(tempfile.mkdtemp())
    single = Runner(new_members(config, [1], None, root / "single"))
    multi = Runner(new_members(config, [0, 1, 2], None, root / "multi"))
    for runner in (single, multi):
        first_update(runner)
    one, other = single.policy.member_state_dict(0), multi.policy.member_state_dict(1)
    gap = max((value - other[key]).abs().max().item() for key, value in one.items()
              if isinstance(value, torch.Tensor) and value.is_floating_point())
    print(f"{algo} {env_id} defaults: max |parameter difference| after the first update = {gap:.2e}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
