"""`saferl.training`: train and fine-tune as library calls (what `saferl train`, `saferl finetune` and a benchmark
cell share): the lines a run announces, the rows it returns, its errors as `SafeRLError` and a Ctrl-C as
`Interrupted`; and the one definition of a few helpers (seed range, member directory, progress cells, mean/std)."""

import ast
import math
import re
import shutil
import statistics
from pathlib import Path

import pytest
from conftest import QUICK

from saferl import training
from saferl.config import build_config, check_seed
from saferl.envs.toy import TOY_ID
from saferl.errors import SafeRLError
from saferl.launch import check_resume_flags, resumed_members
from saferl.logger import progress_number, read_progress
from saferl.members import member_dir_name
from saferl.report.stats import mean_std
from saferl.runner import Runner

TWO_ENVS = ["train.steps_per_epoch=200", "env.num_envs=2", *QUICK]


def request(path, **fields):
    return training.TrainRequest(**{"algo": "ppo_lag", "env": TOY_ID, "steps": 400, "run_dir": path,
                                    "sets": TWO_ENVS, **fields})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A two-epoch PPO-Lag run trained by the library call, with the lines it announced."""
    run_dir = tmp_path_factory.mktemp("training") / "run"
    lines: list[str] = []
    trained = training.train(request(run_dir), say=lines.append)
    return run_dir, trained, lines


def test_train_returns_the_last_rows_and_announces_its_directory(run):
    run_dir, trained, lines = run
    assert lines[0] == f"run directory: {run_dir}"
    assert trained.run_dir == run_dir and trained.env_steps == 400
    last = read_progress(run_dir / "progress.csv")[-1]
    assert trained.rows[0]["env_steps"] == int(last["env_steps"]) == 400
    summary = training.train_summary(trained)
    assert summary[0] == f"run directory: {run_dir}" and summary[1].startswith("final: env_steps=400 return=")
    assert "(limit 25)" in summary[1] and "episode cost" in summary[2]


def test_a_resume_with_nothing_left_says_so_in_its_summary(run, tmp_path):
    run_dir, _, _ = run
    lines: list[str] = []
    copy = shutil.copytree(run_dir, tmp_path / "copy")
    trained = training.train(request(copy, algo=None, resume=True, steps=None), say=lines.append)
    assert trained.rows == [{}]
    assert training.train_summary(trained)[-1].startswith("note: nothing to train: the run already has 400 steps")


def test_a_ctrl_c_arrives_as_interrupted_naming_the_checkpoint_to_resume_from(tmp_path, monkeypatch):
    original = Runner.save

    def interrupt_after_one(runner):
        original(runner)
        raise KeyboardInterrupt

    monkeypatch.setattr(Runner, "save", interrupt_after_one)
    with pytest.raises(training.Interrupted) as stop:
        training.train(request(tmp_path / "run"), say=lambda line: None)
    assert isinstance(stop.value, KeyboardInterrupt)  # still a Ctrl-C for whoever does not catch it
    assert (stop.value.epoch, stop.value.run_dir, stop.value.algo) == (1, tmp_path / "run", "ppo_lag")
    assert [row["epoch"] for row in read_progress(tmp_path / "run" / "progress.csv")] == ["1"]


@pytest.mark.parametrize("fields, message", [
    ({"restart_unreadable": True}, "--restart-unreadable goes with --resume"),
    ({"replan_schedule": True}, "--replan-schedule goes with --resume"),
    ({"resume": True, "run_dir": None}, "--resume needs --run-dir"),
    ({"seed": 1, "seeds": [1, 2]}, "give --seed or --seeds, not both"),
    ({"algo": None}, "--algo is required"),
    ({"algo": "ppo_lagg"}, "unknown algorithm 'ppo_lagg' (did you mean 'ppo_lag'?)"),
])
def test_a_request_that_cannot_run_is_a_saferl_error_before_any_work(tmp_path, fields, message):
    with pytest.raises(SafeRLError, match=re.escape(message)):
        training.train(request(tmp_path / "run", **fields), say=lambda line: None)
    assert not (tmp_path / "run").exists()


def test_a_resume_reads_the_config_file_then_set_as_a_new_run_does(run, tmp_path):
    """Before: the resume check merged --config and --set as dicts, where the file's env.cost_limit beat a
    --set lagrange.cost_limit (the legacy key), so flags that make a 25-limit run were refused on its resume."""
    run_dir, _, _ = run
    (tmp_path / "c.yaml").write_text("{env: {cost_limit: 10}}")
    sets = ["lagrange.cost_limit=25"]
    assert build_config("ppo_lag", str(tmp_path / "c.yaml"), sets).env.cost_limit == 25.0  # a new run: 25
    members = resumed_members(run_dir, None, None)
    assert check_resume_flags(members, None, None, None, None, str(tmp_path / "c.yaml"), sets) == []
    with pytest.raises(SafeRLError, match="the run's cost limit is 25; 10 conflicts"):
        check_resume_flags(members, None, None, None, None, str(tmp_path / "c.yaml"), [])


def test_nothing_in_the_library_imports_the_cli():
    """The CLI sits on top: a module that imported it (the benchmark did, to call `main`) makes a cycle."""
    package = Path(training.__file__).parent
    importers = []
    for path in package.rglob("*.py"):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)) if re.search(r"\bcli\b", text) else ():
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) else
                     [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            if any(name == "saferl.cli" for name in names) or (
                    isinstance(node, ast.ImportFrom) and node.module == "saferl" and
                    any(alias.name == "cli" for alias in node.names)):
                importers.append(path.relative_to(package).as_posix())
    assert importers == ["__main__.py"]


# -- one definition each ---------------------------------------------------------------------------------------
def test_seed_range():
    check_seed(0, "--seed")
    check_seed(2**31 - 1, "--seed")
    for seed in (-1, 2**31):
        with pytest.raises(SafeRLError, match=rf"^--seed must be in \[0, 2147483647\], got {seed}$"):
            check_seed(seed, "--seed")


def test_member_directory_names():
    assert member_dir_name(3) == "seed-3"
    assert member_dir_name(3, 12.5) == "seed-3-limit-12.5" and member_dir_name(0, 10.0) == "seed-0-limit-10"


def test_progress_cells():
    assert progress_number("1.5") == 1.5 and progress_number("20000") == 20000.0
    assert math.isnan(progress_number("")) and math.isnan(progress_number("warmup"))  # an empty cell, `phase`
    assert progress_number(None, 0.0) == 0.0 and progress_number("", -1.0) == -1.0


def test_mean_std_against_the_statistics_module():
    values = [3.0, None, 1.0, float("nan"), 4.0, float("inf"), 1.5]
    finite = [3.0, 1.0, 4.0, 1.5]
    result = mean_std(values)
    assert result["mean"] == pytest.approx(statistics.fmean(finite))
    assert result["std"] == pytest.approx(statistics.pstdev(finite))
    assert all(math.isnan(v) for v in mean_std([None, float("nan")]).values())
