"""The group-size sweep of issue 21: GRPO PPO-Lag on HalfCheetah at G = 2, 4, 8, 16, one table and one figure.

    python benchmarks/group-estimators/sweep_summary.py SWEEP_RESULTS_JSON GRID_RESULTS_JSON OUT_DIR

G = 2, 4 and 16 come from sweep.yaml's results.json; G = 8 is grid.yaml's HalfCheetah grpo cell (the same resolved
config and seeds, so it is not trained twice). The script checks that the cells differ in the group size alone,
then writes OUT_DIR/sweep.{json,md} and OUT_DIR/sweep-curves-<task>.png. Run it with saferl's Python.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from saferl.report.figures import benchmark_curves_figure
from saferl.report.render import pm

KEPT = ("env", "steps", "seeds", "return", "cost", "eval_return", "eval_cost", "train_s", "steps_per_s")


def set_value(cell: dict, key: str) -> int:
    values = [int(item.split("=")[1]) for item in cell["spec"]["set"] if item.startswith(f"{key}=")]
    if len(values) != 1:
        sys.exit(f"error: cell {cell['variant']} sets {key} {len(values)} times")
    return values[0]


def group_size(cell: dict) -> int:
    return set_value(cell, "train.group_size")


def setting(cell: dict) -> tuple:
    """Everything that defines a cell but its group size."""
    spec = cell["spec"]
    rest = sorted(item for item in spec["set"] if not item.startswith("train.group_size="))
    return spec["algo"], spec["env"], tuple(spec["seeds"]), spec["steps"], tuple(rest)


def sweep_cells(sweep: dict, grid: dict) -> list[dict]:
    cells = [c for c in sweep["cells"] if c.get("ok")]
    settings = {setting(c) for c in cells}
    if len(settings) != 1:
        sys.exit(f"error: the sweep's cells differ in more than the group size: {sorted(settings)}")
    (same,) = settings
    cells += [c for c in grid["cells"] if c.get("ok") and "train.advantage=grpo" in c["spec"]["set"]
              and setting(c) == same]
    return sorted(cells, key=group_size)


def main(sweep_path: Path, grid_path: Path, out_dir: Path) -> None:
    cells = sweep_cells(json.loads(sweep_path.read_text()), json.loads(grid_path.read_text()))
    table = {str(group_size(c)): {key: c[key] for key in KEPT}
             | {"groups": set_value(c, "env.num_envs") // group_size(c)} for c in cells}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sweep.json").write_text(json.dumps(table, indent=1))
    lines = ["| G | groups per member per epoch | return | cost | eval return / cost |", "|---|---|---|---|---|"]
    for size, row in table.items():
        lines.append(f"| {size} | {row['groups']} | {pm(row['return']['mean'], row['return']['std'])} | "
                     f"{pm(row['cost']['mean'], row['cost']['std'])} | "
                     f"{row['eval_return']['mean']:.2f} / {row['eval_cost']['mean']:.2f} |")
    (out_dir / "sweep.md").write_text("\n".join(lines) + "\n")
    env_id = cells[0]["env"]
    png = benchmark_curves_figure(env_id, [(f"G = {group_size(c)}", c) for c in cells])
    (out_dir / f"sweep-curves-{env_id}.png").write_bytes(png)
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
