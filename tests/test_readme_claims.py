"""The README's numbers and claims against what the code and the committed results say."""

import json
import re
from pathlib import Path

import numpy as np

from saferl.envs.fetch.layout import OBJECT_HALF, sample_layout, segment_hits_rect

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
G0 = np.array([1.342, 0.749, 0.535])  # the gripper's start (layout.py)
OBJECT_Z = 0.4249
ALGO_NAMES = {"ppo_lag": "PPO-Lag", "cpo": "CPO"}


def test_car_rows_print_what_their_results_json_says():
    """Every number of the Car rows, rounded to one decimal like the other rows (5.548 printed as 5.6 before)."""
    cells = json.loads((ROOT / "benchmarks" / "car-1e6" / "results.json").read_text())["cells"]
    for cell in cells:
        row = next(line for line in README.splitlines()
                   if line.startswith(f"| {cell['env']} | {ALGO_NAMES[cell['algo']]} |"))
        fields = [field.strip() for field in row.strip("|").split("|")]
        expected = [f"{cell['return']['mean']:.1f} ± {cell['return']['std']:.1f}",
                    f"{cell['cost']['mean']:.1f} ± {cell['cost']['std']:.1f}",
                    f"{cell['eval_return']['mean']:.1f} / {cell['eval_cost']['mean']:.1f}"]
        assert fields[3:6] == expected, row


def test_the_keepout_claim_is_limited_to_where_the_straight_path_crosses():
    """The straight path crosses the box for goals on the table, but a raised PickAndPlace goal can carry the object
    over it: the README may not say it always crosses."""
    rng = np.random.default_rng(0)
    raised, missed = 0, 0
    for _ in range(400):
        layout = sample_layout(rng, "PickAndPlace", G0, OBJECT_Z)
        if layout.goal[2] == OBJECT_Z:
            continue
        raised += 1
        start, centre = np.r_[layout.object_xy, OBJECT_Z], layout.box[:3]
        missed += not segment_hits_rect(start - centre, layout.goal - centre, layout.box[3:] + OBJECT_HALF)
    assert raised > 100 and missed > 0  # the exception is real...
    sentence = re.search(r"keep-out box on\s+the table between the start and the goal \((.*?)\)", README, re.S)
    claim = " ".join(sentence.group(1).split())
    assert "always crosses" not in claim and "goal on the table" in claim  # ...so the README names it
