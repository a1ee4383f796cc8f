"""HalfCheetah's known local optimum: running on its back. For each seed of a finished cell, 2 sampled episodes of
the final policy and the torso's pitch (observation 1, radians; about pi when upside down), so a seed whose return
plateaus can be told apart from one that is merely slower.

    python benchmarks/campaign-1e7/torso_pitch.py CELL_DIR [CELL_DIR ...] > torso-pitch.md
"""
import sys
from pathlib import Path

import numpy as np

from saferl.evaluation import make_eval_env, run_episodes
from saferl.rundir import load_policy

UPSIDE_DOWN = 1.6  # radians: past vertical


def main(cells: list[str]) -> None:
    print("| cell | seed | env steps | sampled returns | costs | mean pitch | steps upside down |")
    print("|---|---|---|---|---|---|---|")
    for cell in map(Path, cells):
        for run in sorted(cell.glob("seed-*")):
            config, policy, checkpoint = load_policy(run)
            env = make_eval_env(config, 2)
            try:
                episodes = run_episodes(policy, env, 2, seed=123, record=True)
            finally:
                env.close()
            pitch = np.concatenate([steps["observations"][:, 1] for steps in episodes.steps])
            print(f"| {cell.parent.name}/{cell.name} | {run.name.removeprefix('seed-')} | {checkpoint['env_steps']} "
                  f"| {', '.join(f'{r:.0f}' for r in episodes.returns)} "
                  f"| {', '.join(f'{c[0]:.0f}' for c in episodes.costs)} "
                  f"| {pitch.mean():.2f} | {np.mean(np.abs(pitch) > UPSIDE_DOWN):.0%} |")


if __name__ == "__main__":
    main(sys.argv[1:])
