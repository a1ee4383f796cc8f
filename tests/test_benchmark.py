"""`saferl benchmark`: grid checks, a tiny grid on local Ray, skipping finished cells and resuming interrupted ones."""

import json
import pathlib
import re
import socket
import sys

import pytest
import yaml
from conftest import TINY_CELL_SETS

from saferl import benchmark, benchmark_grid, benchmark_results
from saferl.benchmark_grid import Grid
from saferl.benchmark_results import OMNISAFE_TABLE2, results_markdown
from saferl.cli import main
from saferl.envs.toy import TOY_ID
from saferl.logger import read_progress

GRID = {"algos": ["ppo_lag", "cpo"], "envs": [TOY_ID], "seeds": [0, 1], "steps": 800, "set": TINY_CELL_SETS}


SHIPPED_GRIDS = sorted(path for path in (pathlib.Path(__file__).parents[1] / "benchmarks").rglob("*.yaml")
                       if "algos" in (yaml.safe_load(path.read_text()) or {}))


@pytest.mark.parametrize("path", SHIPPED_GRIDS, ids=lambda p: str(p.relative_to(p.parents[2])))
def test_every_shipped_grid_loads_down_to_each_cells_config(path):
    """A grid under benchmarks/ that fails to load would stop a benchmark queue at its stage."""
    grid = benchmark_grid.load_grid(path)
    assert grid.cells()


def write_grid(tmp_path, text_or_data) -> str:
    path = tmp_path / "grid.yaml"
    path.write_text(text_or_data if isinstance(text_or_data, str) else yaml.safe_dump(text_or_data))
    return str(path)


@pytest.mark.parametrize("grid, message", [
    (None, "grid file not found"),
    ("algos: [ppo\nenvs: x", "is not valid YAML"),
    ("- ppo", "must hold a mapping"),
    ({k: v for k, v in GRID.items() if k != "seeds"}, "missing key 'seeds'"),
    ({**GRID, "step": 5}, "unknown key 'step'"),
    ({**GRID, "algos": ["ppo_lagg"]}, "unknown algorithm 'ppo_lagg' (did you mean 'ppo_lag'?)"),
    ({**GRID, "envs": ["SafetyHalfCheetahVelocty-v1"]}, "SafetyHalfCheetahVelocity-v1"),
    ({**GRID, "steps": 0}, "'steps' must be an integer >= 1"),
    ({**GRID, "steps": "many"}, "'steps' must be an integer >= 1"),
    ({**GRID, "seeds": [0, 0]}, "'seeds' must list at least one entry, none twice"),
    ({**GRID, "set": ["train.total_steps=5"]}, "set entry 'train.total_steps=5'"),
    ({**GRID, "set": ["ppo.clip_ratoi=0.1"]}, "unknown config key 'ppo.clip_ratoi'"),
])
def test_bad_grid_is_one_line_and_exit_2(capsys, tmp_path, grid, message):
    path = str(tmp_path / "missing.yaml") if grid is None else write_grid(tmp_path, grid)
    assert main(["benchmark", path, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_without_ray_is_one_line_and_exit_2(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(["benchmark", write_grid(tmp_path, GRID), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Ray is not installed" in err and err.count("\n") == 1


@pytest.mark.slow
def test_unreachable_cluster_and_bad_flags_are_one_line_and_exit_2(capsys, tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    grid = write_grid(tmp_path, GRID)
    for flags, message in ((["--address", f"127.0.0.1:{port}"], f"cannot connect to Ray at 127.0.0.1:{port}"),
                           (["--max-parallel", "0"], "--max-parallel must be >= 1")):
        assert main(["benchmark", grid, "--out", str(tmp_path / "out"), *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_omnisafe_table_and_markdown():
    assert set(OMNISAFE_TABLE2) >= {"SafetyHalfCheetahVelocity-v1", "SafetyCarGoal1-v0"} and len(OMNISAFE_TABLE2) == 8
    assert all(set(row) == {"ppo_lag", "trpo_lag", "cpo", "ppo"} for row in OMNISAFE_TABLE2.values())
    assert OMNISAFE_TABLE2["SafetyHopperVelocity-v1"]["cpo"] == (1714, 13.4)
    cell = {"ok": True, "env": "SafetyHopperVelocity-v1", "algo": "cpo", "steps": 1000, "seeds": [0, 1],
            "return": {"mean": 10.0, "std": 1.0}, "cost": {"mean": 2.0, "std": 0.5},
            "eval_return": {"mean": 11.0, "std": 0.0}, "eval_cost": {"mean": 3.0, "std": 0.0}, "wall_s": 12.0,
            "train_s": 6.0, "steps_per_s": 166.7, "variant": "episode",
            "per_seed": [{"stays_under_limit_from": 400}, {"stays_under_limit_from": None}],
            "omnisafe": benchmark_results.omnisafe_entry("SafetyHopperVelocity-v1", "cpo")}
    row = results_markdown(Grid(["cpo"], ["SafetyHopperVelocity-v1"], [0, 1], 1000, []), [cell]).splitlines()[-1]
    assert row == ("| SafetyHopperVelocity-v1 | cpo-episode | 1000 | 2 | 10.00 ± 1.00 | 2.00 ± 0.50 | 0.4k, – | 11.00 "
                   "| 3.00 | 6 | 12 | 167 | 1714.0 | 13.4 |")


def test_stays_under_from_is_where_the_cost_last_came_under_the_limit():
    curve = {"env_steps": [1, 2, 3, 4, 5], "ep_cost": [30.0, 20.0, 26.0, 25.0, 10.0]}
    assert benchmark.stays_under_from(curve, 25.0) == 4
    assert benchmark.stays_under_from({**curve, "ep_cost": [1.0, 1.0, 1.0, 1.0, 30.0]}, 25.0) is None


def test_variants_make_one_cell_each_for_the_algorithms_they_name(tmp_path):
    data = {**GRID, "variants": [{"name": "episode", "set": ["cpo.cost_scale=episode"], "algos": ["cpo"]},
                                 {"name": "per-step", "set": ["cpo.cost_scale=per_step"], "algos": ["cpo"]},
                                 {"name": "window100", "set": ["train.constraint_window=100"]}]}
    grid = benchmark_grid.load_grid(write_grid(tmp_path, data))
    cells = [(algo, variant.name) for _, algo, variant in grid.cells()]
    assert cells == [("ppo_lag", "window100"), ("cpo", "episode"), ("cpo", "per-step"), ("cpo", "window100")]
    spec = benchmark.cell_spec(grid, "cpo", TOY_ID, tmp_path, grid.variants[1])
    assert spec["dir"].endswith("cpo-per-step") and spec["set"][-1] == "cpo.cost_scale=per_step"
    for bad, message in (([{"name": "a b"}], "'name'"), ([{"name": "x", "set": ["train.seed=3"]}], "grid's own"),
                         ([{"name": "x", "algos": ["trpo"]}], "'algos'"), ([{"name": "x"}, {"name": "x"}], "same"),
                         ([{"name": "x", "set": ["cpo.cost_scal=episode"]}], "cpo.cost_scal")):
        with pytest.raises(benchmark.SafeRLError, match=message):
            benchmark_grid.load_grid(write_grid(tmp_path, {**GRID, "variants": bad}))


@pytest.mark.slow
def test_cell_without_ray_one_seed_resumes_and_changed_settings_fail(tmp_path):
    """`run_cell` is a plain function (Ray only ships it): a one-seed cell (no members.json) resumes from its
    member directory; a cell whose grid changed a setting fails with the one-line reason, the files intact."""
    out = tmp_path / "out"
    short = benchmark.cell_spec(Grid(["cpo"], [TOY_ID], [3], 400, TINY_CELL_SETS), "cpo", TOY_ID, out)
    assert benchmark.run_cell(short)["action"] == "trained"
    longer = benchmark.run_cell({**short, "steps": 800})  # CPO has no schedule to keep: a longer grid trains on
    assert longer["ok"] and longer["action"] == "resumed" and longer["resumed_at_steps"] == 400
    assert [s["env_steps"] for s in longer["per_seed"]] == [800]
    assert json.loads((out / TOY_ID / "cpo" / "cell.json").read_text())["steps"] == 800
    changed = benchmark.run_cell({**short, "steps": 1200, "set": [*TINY_CELL_SETS, "cpo.target_kl=0.02"]})
    assert not changed["ok"] and "cpo.target_kl" in changed["error"] and "\n" not in changed["error"]
    assert read_progress(out / TOY_ID / "cpo" / "seed-3" / "progress.csv")[-1]["env_steps"] == "800"


@pytest.mark.slow
def test_a_longer_grid_never_replans_a_cells_learning_rate_schedule(tmp_path):
    """PPO-Lag anneals over the plan it was created with: a grid that asks for more steps fails the cell in one
    line (a new --out, or a by-hand --replan-schedule, is the way on), its progress untouched."""
    out = tmp_path / "out"
    short = benchmark.cell_spec(Grid(["ppo_lag"], [TOY_ID], [3], 400, TINY_CELL_SETS), "ppo_lag", TOY_ID, out)
    assert benchmark.run_cell(short)["action"] == "trained"
    longer = benchmark.run_cell({**short, "steps": 800})
    assert not longer["ok"] and "planned for 400 steps" in longer["error"] and "\n" not in longer["error"]
    assert read_progress(out / TOY_ID / "ppo_lag" / "seed-3" / "progress.csv")[-1]["env_steps"] == "400"
    log = (out / TOY_ID / "ppo_lag" / "train.log").read_text().splitlines()  # both calls, the error last
    assert [line.split(" ppo_lag on ")[0].split()[-1] for line in log if line.startswith("--- ")] == ["train", "resume"]
    assert "final: env_steps=400" in "\n".join(log) and log[-1] == f"saferl: error: {longer['error']}"


@pytest.mark.slow
def test_grid_on_local_ray_skips_finished_cells_and_resumes_interrupted_ones(capsys, tmp_path, monkeypatch):
    grid, out = write_grid(tmp_path, GRID), tmp_path / "out"
    # An interrupted cell: ppo_lag trained its first epoch (of two) in the cell's directory, then stopped.
    ppo_lag_dir = out / TOY_ID / "ppo_lag"
    assert main(["train", "--algo", "ppo_lag", "--env", TOY_ID, "--seeds", "0,1", "--steps", "400",
                 "--run-dir", str(ppo_lag_dir), "--set", *TINY_CELL_SETS, "train.schedule_steps=800"]) == 0
    first_row = read_progress(ppo_lag_dir / "seed-0" / "progress.csv")[0]
    capsys.readouterr()

    assert main(["benchmark", grid, "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("[") for line in lines) == 2  # one progress line per finished cell
    results = json.loads((out / "results.json").read_text())
    cells = {cell["algo"]: cell for cell in results["cells"]}
    assert [c["algo"] for c in results["cells"]] == ["ppo_lag", "cpo"]
    assert cells["ppo_lag"]["action"] == "resumed" and cells["ppo_lag"]["resumed_at_steps"] == 400
    assert cells["cpo"]["action"] == "trained"
    for cell in cells.values():
        assert cell["ok"] and cell["steps"] == 800 and cell["seeds"] == [0, 1]
        assert [s["seed"] for s in cell["per_seed"]] == [0, 1]
        for seed in cell["per_seed"]:
            last = read_progress(out / TOY_ID / cell["algo"] / f"seed-{seed['seed']}" / "progress.csv")[-1]
            assert seed["env_steps"] == 800 and seed["return"] == pytest.approx(float(last["ep_return"]))
            assert seed["cost"] == pytest.approx(float(last["ep_cost"]))
            evaluation = json.loads((out / TOY_ID / cell["algo"] / f"seed-{seed['seed']}" / "eval.json").read_text())
            assert evaluation["deterministic"] and len(evaluation["episodes"]) == 10
            assert seed["eval_return"] == pytest.approx(evaluation["mean_return"])
        returns = [s["return"] for s in cell["per_seed"]]
        assert cell["return"]["mean"] == pytest.approx(sum(returns) / 2)
        assert cell["return"]["std"] == pytest.approx(abs(returns[0] - returns[1]) / 2)
        assert cell["wall_s"] > 0 and cell["steps_per_s"] > 0 and cell["omnisafe"] is None
    # The resumed cell kept its first epoch and trained only the second.
    rows = read_progress(ppo_lag_dir / "seed-0" / "progress.csv")
    assert [r["env_steps"] for r in rows] == ["400", "800"] and rows[0] == first_row
    page = (out / "report.html").read_text()
    assert "OmniSafe&#x27;s Table 2 side by side" in page and page.count("ppo_lag s0") >= 1
    assert "| SafetyToyVelocity-v0 | cpo | 800 | 2 |" in (out / "results.md").read_text()

    # Again: every cell is finished, so nothing trains and Ray is not even started.
    def no_ray(*args):
        raise AssertionError("Ray started for a finished grid")

    monkeypatch.setattr(benchmark, "start_ray", no_ray)
    assert main(["benchmark", grid, "--out", str(out)]) == 0
    out_lines = capsys.readouterr().out.splitlines()
    assert sum(line.endswith("[skipped]") for line in out_lines) == 2
    again = json.loads((out / "results.json").read_text())
    assert [c["action"] for c in again["cells"]] == ["skipped", "skipped"]
    assert again["cells"][0]["return"] == cells["ppo_lag"]["return"]


def write_progress(run_dir: pathlib.Path, rows: list[tuple[int, float]]) -> None:
    """A member's progress.csv with (env steps, fps) epochs (return and cost made up)."""
    run_dir.mkdir(parents=True)
    lines = [f"{epoch + 1},{steps},1.0,30.0,25.0,{fps}\n" for epoch, (steps, fps) in enumerate(rows)]
    (run_dir / "progress.csv").write_text("epoch,env_steps,ep_return,ep_cost,cost_limit,fps\n" + "".join(lines))


def test_time_to_go_is_at_the_median_rate_of_the_recent_epochs(tmp_path):
    """An epoch slowed by a paused machine is an outlier, not the rate; the first epochs, before PPO's KL early
    stop shortens the update, are not the rate either."""
    write_progress(tmp_path / "m", [(100, 10.0), (200, 100.0), (300, 100.0), (400, 1.0), (500, 50.0)])
    assert benchmark.training_seconds(tmp_path / "m") == pytest.approx(10.0 + 1.0 + 1.0 + 100.0 + 2.0)
    # The last four epochs' rates 100, 100, 1 and 50 steps/s: their median is 75.
    assert benchmark.seconds_to_go(tmp_path / "m", 1500, recent=4) == pytest.approx(20.0)
    assert benchmark.seconds_to_go(tmp_path / "m", 1000, recent=2) == pytest.approx(1000 / 25.5)  # rates 1, 50
    assert benchmark.seconds_to_go(tmp_path / "m", 0) == 0.0
    assert benchmark.seconds_to_go(tmp_path / "nothing", 1000) is None
    assert benchmark.training_seconds(tmp_path / "nothing") == 0.0


def test_a_cell_in_progress_has_its_furthest_behind_seeds_steps_to_go_at_the_furthest_seeds_rate(tmp_path):
    """The seeds train together in one process: the cell is done when its last seed is, and the seed with the
    most epochs measures the rate best (a seed that has written no row yet counts as 0 steps)."""
    grid = Grid(["ppo_lag"], [TOY_ID], [0, 1, 2], 1000, [], None)
    spec = benchmark.cell_spec(grid, "ppo_lag", TOY_ID, tmp_path)
    root = pathlib.Path(spec["dir"])
    write_progress(root / "seed-0", [(100, 40.0), (200, 40.0)])
    write_progress(root / "seed-1", [(100, 10.0), (200, 20.0), (300, 20.0)])
    cell = benchmark.partial_cell(spec)
    assert [s["env_steps"] for s in cell["per_seed"]] == [200, 300, 0]
    assert cell["train_s_left"] == pytest.approx(1000 / 20.0)  # seed 2's 1000 steps at seed 1's median rate
    assert f"| {TOY_ID} | ppo_lag | 200, 300, 0 of 1000, 50 s to go | 3 |" in results_markdown(grid, [cell])


@pytest.mark.parametrize(("seconds", "shown"), [(None, ""), (0.0, ", trained, not yet evaluated"),
                                                (12.4, ", 12 s to go"), (59.6, ", 1 min to go"),
                                                (3599.0, ", 1.0 h to go"), (5 * 3600.0, ", 5.0 h to go")])
def test_time_to_go_reads_in_the_largest_unit_it_fills(seconds, shown):
    assert benchmark_results._time_left({"train_s_left": seconds}) == shown


@pytest.mark.slow
def test_status_shows_finished_cells_and_the_steps_started_ones_reached_training_nothing(capsys, tmp_path,
                                                                                        monkeypatch):
    """`--status` is a long campaign's partial table: a finished cell as in results.md, a started one at its
    steps so far (no evaluation), one not started listed; no Ray, no training, no results.json written."""
    data = {**GRID, "algos": ["ppo_lag", "cpo", "trpo_lag"]}
    grid, out = write_grid(tmp_path, data), tmp_path / "out"
    loaded = benchmark_grid.load_grid(grid)
    assert benchmark.run_cell(benchmark.cell_spec(loaded, "cpo", TOY_ID, out))["ok"]
    assert main(["train", "--algo", "ppo_lag", "--env", TOY_ID, "--seeds", "0,1", "--steps", "400",
                 "--run-dir", str(out / TOY_ID / "ppo_lag"), "--set", *TINY_CELL_SETS, "train.schedule_steps=800"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(benchmark, "start_ray", lambda *a: pytest.fail("--status started Ray"))
    monkeypatch.setattr(benchmark, "train_cell", lambda *a: pytest.fail("--status trained"))

    assert main(["benchmark", grid, "--out", str(out), "--status"]) == 0
    assert "1 of 3 cells finished, 1 in progress, 1 not started" in capsys.readouterr().out
    status = json.loads((out / "status.json").read_text())
    assert status["run"]["not_started"] == [f"{TOY_ID} trpo_lag"] and not (out / "results.json").exists()
    partial, finished = status["cells"]
    assert partial["algo"] == "ppo_lag" and partial["partial"]
    assert [s["env_steps"] for s in partial["per_seed"]] == [400, 400]
    last = read_progress(out / TOY_ID / "ppo_lag" / "seed-1" / "progress.csv")[-1]
    assert partial["per_seed"][1]["cost"] == pytest.approx(float(last["ep_cost"]))
    assert partial["per_seed"][1]["curve"]["env_steps"] == [400]
    assert finished["algo"] == "cpo" and not finished.get("partial") and finished["eval_return"]["mean"] is not None
    table = (out / "status.md").read_text()
    # The time to go: a seed's 400 steps left at its recent epochs' median rate (the seeds train together).
    [(_, fps)] = benchmark.epoch_rates(out / TOY_ID / "ppo_lag" / "seed-0")
    assert partial["train_s_left"] == pytest.approx(400 / fps)
    assert re.search(rf"\| {TOY_ID} \| ppo_lag \| 400 of 800, [0-9.]+ (s|min|h) to go \| 2 \|", table)
    assert f"| {TOY_ID} | cpo | 800 | 2 |" in table
    assert (out / f"status-curves-{TOY_ID}.png").stat().st_size > 0
