"""A run directory is owned by one process: a second train, resume, fine-tune or benchmark cell on it is refused in
one line naming the owner; the lock goes with its owner however it ends, and a stale one is taken over with a note."""

import fcntl
import os
import shutil
import subprocess
import sys
import time

import pytest
from conftest import QUICK, TINY_TRAIN, assert_one_line_error, run_cli

from saferl import benchmark, ownership
from saferl.benchmark_grid import Grid
from saferl.cli import main
from saferl.envs.toy import TOY_ID
from saferl.logger import read_progress
from saferl.runner import Runner


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The issue's 2-epoch toy run."""
    run_dir = tmp_path_factory.mktemp("own") / "base"
    assert main([*TINY_TRAIN, "--run-dir", str(run_dir)]) == 0
    return run_dir


def commands(run_dir):
    return {
        "train": [*TINY_TRAIN, "--run-dir", run_dir],
        "resume": ["train", "--run-dir", run_dir, "--resume", "--set", *QUICK],
        "multi": [*TINY_TRAIN, "--seeds", "0,1", "--run-dir", run_dir],
    }


@pytest.mark.parametrize("command", ["train", "resume", "multi"])
def test_a_second_process_on_a_run_directory_is_refused_naming_the_owner(capsys, tmp_path, base, holder, command):
    run_dir = shutil.copytree(base, tmp_path / "run") if command == "resume" else tmp_path / "run"
    before = (run_dir / "progress.csv").read_text() if command == "resume" else None
    pid = holder(run_dir).pid
    code, _, err = run_cli(capsys, commands(run_dir)[command])
    assert_one_line_error(code, err, f"{run_dir} is in use by process {pid}", "started")
    if command == "resume":
        assert (run_dir / "progress.csv").read_text() == before
    else:
        assert not (run_dir / "config.yaml").exists() and not (run_dir / "members.json").exists()


@pytest.mark.slow
def test_a_member_of_a_multi_seed_run_is_owned_with_its_root(capsys, tmp_path, holder):
    """Training the root claims every member too: a resume of one member by hand is refused meanwhile."""
    root = tmp_path / "m"
    assert run_cli(capsys, [*TINY_TRAIN, "--seeds", "0,1", "--run-dir", root])[0] == 0
    owner = holder(root)
    code, _, err = run_cli(capsys, ["train", "--run-dir", root, "--resume", "--set", *QUICK])
    assert_one_line_error(code, err, f"in use by process {owner.pid}")
    owner.kill()
    owner.wait()
    with ownership.claim(root / "seed-1"):  # and the other way round: a member in use stops the root
        code = subprocess.run([sys.executable, "-m", "saferl", "train", "--run-dir", str(root), "--resume", "--set",
                               *QUICK], capture_output=True, text=True)
    assert code.returncode == 2 and f"{root / 'seed-1'} is in use by process {os.getpid()}" in code.stderr


def test_a_benchmark_cell_in_use_fails_in_one_line(tmp_path, holder):
    spec = benchmark.cell_spec(Grid(["ppo_lag"], [TOY_ID], [0], 400, ["train.steps_per_epoch=200", *QUICK]),
                               "ppo_lag", TOY_ID, tmp_path / "out")
    pid = holder(spec["dir"]).pid
    result = benchmark.run_cell(spec)
    assert not result["ok"] and f"in use by process {pid}" in result["error"] and "\n" not in result["error"]


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_note(capsys, tmp_path, base):
    run_dir = shutil.copytree(base, tmp_path / "run")
    dead = subprocess.run([sys.executable, "-c", "import os, sys; from saferl.ownership import acquire; "
                           "acquire(sys.argv[1]); print(os.getpid()); os._exit(0)", str(run_dir)],
                          capture_output=True, text=True, check=True)
    code, out, err = run_cli(capsys, ["train", "--run-dir", run_dir, "--resume", "--steps", "600", "--set", *QUICK,
                                      "--replan-schedule"])
    assert code == 0, err
    assert f"the lock of process {dead.stdout.strip()}" in out and "is stale (the process is no longer running)" in out
    assert [r["epoch"] for r in read_progress(run_dir / "progress.csv")] == ["1", "2", "3"]


def lock_is_free(directory) -> bool:
    with open(directory / ownership.LOCK_FILE) as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return True


@pytest.mark.parametrize("ending", ["interrupt", "error"])
def test_the_lock_goes_with_its_owner_on_ctrl_c_and_errors(capsys, tmp_path, monkeypatch, ending):
    def stop(runner):
        raise KeyboardInterrupt if ending == "interrupt" else ownership.SafeRLError("the env broke")

    monkeypatch.setattr(Runner, "train", stop)
    code, _, err = run_cli(capsys, [*TINY_TRAIN, "--run-dir", tmp_path / "run"])
    assert code == (130 if ending == "interrupt" else 2), err
    assert lock_is_free(tmp_path / "run") and ownership._held == {}
    assert (tmp_path / "run" / ownership.LOCK_FILE).read_text() == ""  # ended cleanly: no owner recorded


def test_claims_are_reentrant_within_one_process(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    with ownership.claim(tmp_path / "a"), ownership.claim(tmp_path / "a", tmp_path / "a" / "b"):
        assert not lock_is_free(tmp_path / "a")
    assert lock_is_free(tmp_path / "a") and lock_is_free(tmp_path / "a" / "b")


@pytest.mark.slow
def test_two_fresh_trains_started_together_on_one_directory(tmp_path):
    """Before, both passed the 'already holds a run' check (1 in 4 tries) and interleaved their rows."""
    run_dir = tmp_path / "run"
    processes = [subprocess.Popen([sys.executable, "-m", "saferl", *TINY_TRAIN, "--seed", str(seed), "--run-dir",
                                   str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for seed in (0, 1)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
    assert sorted(code for code, _ in results) == [0, 2], results
    refusal = next(err for code, err in results if code == 2)
    assert "is in use by process" in refusal or "already holds a run" in refusal, refusal
    rows = read_progress(run_dir / "progress.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]


def test_a_lock_file_names_its_owner_while_held(tmp_path):
    with ownership.claim(tmp_path):
        owner = ownership.read_owner(tmp_path / ownership.LOCK_FILE)
        assert owner["pid"] == os.getpid() and owner["host"] and time.strptime(owner["started"][:19],
                                                                               "%Y-%m-%dT%H:%M:%S")


def test_a_directory_the_claim_made_goes_when_nothing_was_written(tmp_path):
    with ownership.claim(tmp_path / "new" / "run"):
        assert (tmp_path / "new" / "run" / ownership.LOCK_FILE).exists()
    assert not (tmp_path / "new" / "run").exists()
