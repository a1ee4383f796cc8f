"""A benchmark cell trusts nothing it finds on disk: runs trained with other settings, rows lost behind a checkpoint
and unreadable checkpoints are failed cells with one line, never "ok" or "resumed"; results show the steps each seed
really trained."""

import json
import shutil

import pytest
from conftest import TINY_CELL_SETS

from saferl import benchmark, benchmark_results
from saferl.benchmark_grid import Grid
from saferl.benchmark_results import results_markdown
from saferl.envs.toy import TOY_ID
from saferl.logger import read_progress

TINY_SETS = [*TINY_CELL_SETS, "cpo.cg_iters=5"]


def spec_for(out, steps=400, sets=TINY_SETS, seeds=(0, 1)):
    return benchmark.cell_spec(Grid(["cpo"], [TOY_ID], list(seeds), steps, list(sets)), "cpo", TOY_ID, out)


@pytest.fixture(scope="module")
def trained_cell(tmp_path_factory):
    """A two-seed CPO cell trained to one epoch (400 steps per seed)."""
    out = tmp_path_factory.mktemp("cells") / "out"
    result = benchmark.run_cell(spec_for(out))
    assert result["ok"] and result["action"] == "trained", result
    return out


@pytest.fixture
def out(trained_cell, tmp_path):
    return shutil.copytree(trained_cell, tmp_path / "out")



def test_a_cells_log_holds_what_its_training_announced(trained_cell):
    """The library's lines, written to the cell's train.log by the benchmark (no CLI, no captured stdout)."""
    log = (cell_dir(trained_cell) / "train.log").read_text().splitlines()
    assert log[0].startswith("--- ") and log[0].endswith(f"train cpo on {TOY_ID}: seeds 0,1, 400 steps, set "
                                                          f"{' '.join(TINY_SETS)} train.progress_bar=false")
    assert log[1] == f"run directory: {cell_dir(trained_cell)} (2 members)"
    assert [line.split(" return=")[0] for line in log if line.startswith("final:")] == [
        "final: seed 0: env_steps=400", "final: seed 1: env_steps=400"]

def cell_dir(out):
    return out / TOY_ID / "cpo"


def test_a_cell_trained_with_other_settings_is_refused_not_relabelled(out):
    """Before: the grid's new `set` relabelled the old runs ("evaluated", ok) with settings they never had."""
    before = (cell_dir(out) / "cell.json").read_text()
    result = benchmark.run_cell(spec_for(out, sets=[*TINY_SETS, "cpo.target_kl=0.02"]))
    assert not result["ok"] and "\n" not in result["error"]
    assert "holds runs trained with other settings than the grid's (the run has cpo.target_kl=0.01" in result["error"]
    assert (cell_dir(out) / "cell.json").read_text() == before


def test_a_cell_whose_seeds_differ_from_the_grids_is_refused(out):
    result = benchmark.run_cell(spec_for(out, seeds=(0, 1, 2)))
    assert not result["ok"] and "--seeds conflicts" in result["error"]


@pytest.mark.parametrize("rerun", [1, 2])
def test_rows_lost_behind_a_checkpoint_are_a_failed_cell_on_every_run(out, rerun):
    """Before: reported ok with the older numbers, and "resumed" again on every rerun."""
    path = cell_dir(out) / "seed-1" / "progress.csv"
    path.write_text(path.read_text().splitlines(keepends=True)[0])  # the header only: epoch 1's row is lost
    for _ in range(rerun):
        result = benchmark.run_cell(spec_for(out))
        assert not result["ok"] and f"{path} ends at epoch 0 but the checkpoint is at epoch 1" in result["error"]
    assert benchmark.stored_cell(spec_for(out)) is None


def test_a_cell_with_one_unreadable_member_fails_and_keeps_the_others(out):
    """Before: every member retrained from epoch 0 and the cell was reported "resumed"."""
    for name in ("latest.pt", "previous.pt"):
        path = cell_dir(out) / "seed-1" / "checkpoints" / name
        if path.exists():
            path.write_bytes(b"")
    kept = read_progress(cell_dir(out) / "seed-0" / "progress.csv")
    result = benchmark.run_cell(spec_for(out, steps=800))
    assert not result["ok"] and "seed-1: cannot resume" in result["error"], result
    assert read_progress(cell_dir(out) / "seed-0" / "progress.csv") == kept


@pytest.mark.slow
def test_results_show_the_steps_each_seed_trained(out):
    """Before: the grid's `steps` (300) where each seed trained a whole epoch (400)."""
    spec = spec_for(out, steps=300)
    shutil.rmtree(cell_dir(out))
    result = benchmark.run_cell(spec)
    assert result["ok"] and [s["env_steps"] for s in result["per_seed"]] == [400, 400]
    grid = Grid(["cpo"], [TOY_ID], [0, 1], 300, TINY_SETS)
    row = results_markdown(grid, [result]).splitlines()[-1]
    assert row.startswith(f"| {TOY_ID} | cpo | 400 | 2 |"), row
    assert "400 steps x 2 seeds" in benchmark_results.progress_line(1, 1, result)
    assert json.loads((cell_dir(out) / "cell.json").read_text())["steps"] == 300  # what the grid asked, kept


def test_trained_steps_lists_seeds_that_differ():
    cell = {"steps": 400, "per_seed": [{"env_steps": 20000}, {"env_steps": 19600}]}
    assert benchmark_results.trained_steps(cell) == "20000, 19600"
    assert benchmark_results.trained_steps({**cell, "per_seed": [{"env_steps": 20000}] * 2}) == "20000"
