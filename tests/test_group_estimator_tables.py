"""Issue 21's Fetch table and group-size sweep: the scripts that make them, and the committed tables against the
files they were made from and against docs/group-estimators.md."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import load_script

HERE = Path(__file__).resolve().parents[1] / "benchmarks" / "group-estimators"
PAGE = (Path(__file__).resolve().parents[1] / "docs" / "group-estimators.md").read_text()
fetch_summary = load_script(HERE / "fetch_summary.py", "group_estimators_fetch_summary")
sweep_summary = load_script(HERE / "sweep_summary.py", "group_estimators_sweep_summary")

PROGRESS = ("epoch,env_steps,ep_return,ep_cost,ep_length,ep_cost_keepout,ep_cost_speed,success_rate,"
            "total_violations,collect_seconds,update_seconds,cost_limit\n"
            "1,16000,-70,4,50,1,3,0.5,100,10,20,5\n"
            "2,32000,-60,2,50,0.5,1.5,{success},150,10,{update},5\n")


def fake_run(root: Path, estimator: str, seed: int, success: float, clone: str = "abc", finished: bool = True):
    run = root / estimator / f"seed-{seed}"
    run.mkdir(parents=True)
    (run / "progress.csv").write_text(PROGRESS.format(success=success, update=20 + seed))
    for name in ("config.yaml", "meta.json"):
        (run / name).write_text("{}\n")
    Path(f"{run}.maxrss-kb.txt").write_text("500000\n600000\n")
    Path(f"{run}.clone-sha256.txt").write_text(clone + "\n")
    modes = ("deterministic", "sampled") if finished else ("deterministic",)
    for mode in modes:
        (run / f"eval-{mode}.json").write_text(json.dumps(
            {"success_rate": success, "mean_return": -50.0, "mean_costs": [0.5, 1.0 + seed]}))
    return run


def fake_clone_evaluation(root: Path, clone: str = "abc"):
    (root / "clone").mkdir(parents=True)
    (root / "clone" / "clone-sha256.txt").write_text(clone + "\n")
    for mode, success in (("deterministic", 0.4), ("sampled", 0.6)):
        (root / "clone" / f"eval-{mode}.json").write_text(json.dumps(
            {"success_rate": success, "mean_return": -80.0, "mean_costs": [0.25, 2.0]}))


def test_fetch_summary_keeps_finished_runs_and_makes_the_table_from_them(tmp_path):
    work, out = tmp_path / "push-ft", tmp_path / "out"
    fake_clone_evaluation(work)
    fake_run(work, "gae", 0, 1.0)
    fake_run(work, "gae", 1, 0.5)
    fake_run(work, "grpo", 0, 0.25, finished=False)  # still evaluating: neither kept nor counted
    fetch_summary.main(work, out)
    kept = sorted(str(p.relative_to(out / "fetch-runs")) for p in (out / "fetch-runs").rglob("*") if p.is_file())
    assert kept == sorted([f"gae/seed-{s}{name}" for s in (0, 1) for name in
                           [f"/{f}" for f in fetch_summary.KEPT_FILES] + [".maxrss-kb.txt", ".clone-sha256.txt"]]
                          + ["clone/clone-sha256.txt", "clone/eval-deterministic.json", "clone/eval-sampled.json"])
    table = json.loads((out / "fetch.json").read_text())
    assert list(table) == ["gae", "clone"]
    assert table["clone"]["sampled_success"] == 0.6 and table["clone"]["deterministic_cost_1"] == 2.0
    assert (out / "fetch.md").read_text().splitlines()[-1] == (
        "| clone (before fine-tuning) | – | – | 0.40 | 0.60 | 0.25 | 2.00 | 0.25 | 2.00 | – | – | – |")
    summary = table["gae"]["summary"]
    assert summary["deterministic_success"] == pytest.approx({"mean": 0.75, "std": 0.25})  # population std
    assert summary["sampled_cost_1"]["mean"] == pytest.approx(1.5)
    assert summary["train_s"]["mean"] == pytest.approx((10 + 20 + 10 + 20 + 10 + 20 + 10 + 21) / 2)
    assert summary["peak_rss_mb"]["mean"] == pytest.approx(600000 / 1024)
    # a later session, its machine gone: the kept runs alone rebuild the same table, and a new run joins them
    first = (out / "fetch.json").read_text()
    fetch_summary.main(out / "fetch-runs", tmp_path / "again")
    assert (tmp_path / "again" / "fetch.json").read_text() == first
    shutil.rmtree(work)
    fake_run(work, "grpo", 0, 0.25)
    fetch_summary.main(work, out)
    assert list(json.loads((out / "fetch.json").read_text())) == ["gae", "grpo", "clone"]


def test_fetch_curves_are_the_seeds_mean_and_range_with_the_limit_and_the_clone(tmp_path):
    fake_clone_evaluation(tmp_path)
    fake_run(tmp_path, "gae", 0, 1.0)
    fake_run(tmp_path, "gae", 1, 0.5)
    fake_run(tmp_path, "grpo", 0, 0.25)
    clone = fetch_summary.eval_columns({mode: json.loads((tmp_path / "clone" / f"eval-{mode}.json").read_text())
                                        for mode in fetch_summary.MODES})
    runs = {"gae": [tmp_path / "gae" / "seed-0", tmp_path / "gae" / "seed-1"], "grpo": [tmp_path / "grpo" / "seed-0"]}
    panels = fetch_summary.curve_panels(runs, clone)
    assert [p["title"].split(" (")[0] for p in panels] == [
        "success", "cost 0, cost_keepout", "cost 1, cost_speed", "cumulative violations"]
    success_gae = panels[0]["series"][0]
    assert success_gae["n"] == 2 and list(success_gae["x"]) == [16000, 32000]
    assert list(success_gae["mean"]) == [0.5, 0.75] and list(success_gae["min"]) == [0.5, 0.5]
    assert list(success_gae["max"]) == [0.5, 1.0]
    assert [s["label"] for s in panels[0]["series"]] == ["gae", "grpo"]
    assert [value for value, _, _ in panels[0]["limits"]] == [0.6]  # the clone's sampled success
    assert [value for value, _, _ in panels[2]["limits"]] == [5.0, 2.0]  # the limit, the clone's sampled cost 1
    assert panels[3]["limits"] == [] and list(panels[3]["series"][1]["mean"]) == [100, 150]
    fetch_summary.main(tmp_path, tmp_path / "out")
    assert (tmp_path / "out" / fetch_summary.FIGURE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fetch_summary_refuses_runs_of_different_clones(tmp_path):
    fake_run(tmp_path / "push-ft", "gae", 0, 1.0, clone="one")
    fake_run(tmp_path / "push-ft", "grpo", 0, 1.0, clone="two")
    with pytest.raises(SystemExit, match="2 different clones"):
        fetch_summary.main(tmp_path / "push-ft", tmp_path / "out")
    fake_run(tmp_path / "again", "gae", 0, 1.0, clone="one")
    fake_clone_evaluation(tmp_path / "again", clone="two")  # the clone's own row must be the runs' clone too
    with pytest.raises(SystemExit, match="2 different clones"):
        fetch_summary.main(tmp_path / "again", tmp_path / "out-again")


def sweep_cell(size: int, steps: int = 1000) -> dict:
    spec_set = ["env.num_envs=16", "train.advantage=grpo", f"train.group_size={size}"]
    stats = {"mean": float(size), "std": 0.5}
    return {"ok": True, "variant": f"g{size}", "env": "SafetyHalfCheetahVelocity-v1", "steps": steps,
            "seeds": [0, 1], "spec": {"algo": "ppo_lag", "env": "SafetyHalfCheetahVelocity-v1", "seeds": [0, 1],
                                      "steps": steps, "set": spec_set},
            "return": stats, "cost": stats, "eval_return": stats, "eval_cost": stats, "train_s": 1.0,
            "steps_per_s": 1.0, "per_seed": [{"curve": {"env_steps": [500, 1000], "ep_return": [0, size],
                                                        "ep_cost": [0, 1]}, "cost_limit": 25}]}


def test_sweep_summary_joins_the_grids_g8_cell_and_refuses_other_differences(tmp_path):
    sweep = {"cells": [sweep_cell(16), sweep_cell(2)]}
    grid = {"cells": [sweep_cell(8), sweep_cell(8, steps=2000)]}  # the second differs in its budget: not joined
    grid["cells"][0]["spec"]["set"].insert(0, "train.group_size=8")
    grid["cells"][0]["spec"]["set"].pop()  # the same settings in another order still match
    (tmp_path / "sweep.json").write_text(json.dumps(sweep))
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    sweep_summary.main(tmp_path / "sweep.json", tmp_path / "grid.json", tmp_path / "out")
    table = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert list(table) == ["2", "8", "16"] and [row["groups"] for row in table.values()] == [8, 2, 1]
    assert (tmp_path / "out" / "sweep-curves-SafetyHalfCheetahVelocity-v1.png").read_bytes()[:4] == b"\x89PNG"
    sweep["cells"].append(sweep_cell(4, steps=2000))
    (tmp_path / "sweep.json").write_text(json.dumps(sweep))
    with pytest.raises(SystemExit, match="more than the group size"):
        sweep_summary.main(tmp_path / "sweep.json", tmp_path / "grid.json", tmp_path / "out")


def measured_section() -> str:
    return PAGE[PAGE.index("## Measured"):PAGE.index("### Commands")]


def test_the_committed_fetch_table_is_the_kept_runs_and_is_on_the_page(tmp_path):
    fetch_summary.main(HERE / "fetch-runs", tmp_path)
    assert json.loads((tmp_path / "fetch.json").read_text()) == json.loads((HERE / "fetch.json").read_text())
    table = (HERE / "fetch.md").read_text()
    assert (tmp_path / "fetch.md").read_text() == table
    for row in table.splitlines()[2:]:
        assert row in measured_section(), row


def test_the_committed_sweep_table_is_the_sweep_and_grid_results_and_is_on_the_page(tmp_path):
    sweep_summary.main(HERE / "sweep-results.json", HERE / "results.json", tmp_path)
    assert json.loads((tmp_path / "sweep.json").read_text()) == json.loads((HERE / "sweep.json").read_text())
    table = (HERE / "sweep.md").read_text()
    assert (tmp_path / "sweep.md").read_text() == table
    assert list(json.loads((HERE / "sweep.json").read_text())) == ["2", "4", "8", "16"]
    for row in table.splitlines()[2:]:
        assert row in measured_section(), row
