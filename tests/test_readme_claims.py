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


def table_fields(row: str) -> list[str]:
    return [field.strip() for field in row.strip("|").split("|")]


def printed_numbers(cell: dict) -> list[str]:
    """A benchmark cell's return, cost and eval as results.md prints them (two decimals)."""
    return [f"{cell['return']['mean']:.2f} ± {cell['return']['std']:.2f}",
            f"{cell['cost']['mean']:.2f} ± {cell['cost']['std']:.2f}",
            f"{cell['eval_return']['mean']:.2f} / {cell['eval_cost']['mean']:.2f}"]


def test_the_learning_table_prints_what_the_campaign_results_say():
    """Each finished cell of the 1e7 campaign has its README row, with the numbers of results.json (two decimals,
    as results.md prints them), and at the grid's whole budget."""
    results = json.loads((ROOT / "benchmarks" / "campaign-1e7" / "results.json").read_text())
    assert results["cells"], "the campaign has finished cells"
    for cell in results["cells"]:
        row = next(line for line in README.splitlines()
                   if line.startswith(f"| {cell['env']} | {ALGO_NAMES[cell['algo']]} |"))
        fields = table_fields(row)
        assert fields[3:6] == printed_numbers(cell), row
        assert fields[2] == f"{cell['steps'] / 1e7:g}e7", row


def test_the_group_estimators_page_prints_what_the_grid_results_say():
    """Each finished cell of the group-estimators grid has its row in docs/group-estimators.md, with the return,
    cost and eval numbers of results.json as results.md prints them, and the seconds per epoch and peak memory of
    footprint.md (copied by hand)."""
    page = (ROOT / "docs" / "group-estimators.md").read_text()
    page = page[page.index("## Measured"):page.index("### Commands")]  # (the footprint table below repeats the keys)
    results = json.loads((ROOT / "benchmarks" / "group-estimators" / "results.json").read_text())
    footprint = {tuple(fields[:2]): fields for line in
                 (ROOT / "benchmarks" / "group-estimators" / "footprint.md").read_text().splitlines()
                 if line.startswith("| Safety") for fields in [table_fields(line)]}
    assert results["cells"], "the grid has finished cells"
    for cell in results["cells"]:
        estimator = cell["variant"].replace("-", "_")
        rows = [line for line in page.splitlines() if line.startswith(f"| {cell['env']} | {estimator} |")]
        assert len(rows) == 1, f"{cell['env']} {estimator}: {len(rows)} rows"
        fields = table_fields(rows[0])
        assert fields[2:5] == printed_numbers(cell), rows[0]
        measured = footprint[cell["env"], estimator]
        assert fields[5:7] == [measured[2], f"{measured[6]} MB"], rows[0]


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
