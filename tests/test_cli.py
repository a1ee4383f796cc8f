"""The command line: one-line errors for bad input, run directories, eval, and kill-then-resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import TOY_SETS_WITHOUT_STEPS, run_cli

from saferl.logger import read_progress

# --steps is given per test; --set would override it (flags come before --set in precedence)
TRAIN = ["train", "--algo", "ppo_lag", "--set", *TOY_SETS_WITHOUT_STEPS]


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--env", "SafetyHalfCheetahVelocity-v1"], "--algo is required; choose from ppo, "),
        (["train", "--algo", "ppo_lagg"], "unknown algorithm 'ppo_lagg' (did you mean 'ppo_lag'?)"),
        (["train", "--algo", "ppo", "--env", "SafetyHalfCheetahVelocty-v1", "--steps", "10"],
         "SafetyHalfCheetahVelocity-v1"),
        (["train", "--algo", "ppo", "--steps", "-5"], "--steps must be >= 1"),
        (["train", "--algo", "ppo", "--set", "ppo.clip_ratoi=0.1"], "unknown config key 'ppo.clip_ratoi'"),
        (["train", "--algo", "ppo", "--set", "train.total_steps=many"], "must be an integer"),
        (["train", "--algo", "ppo_lag", "--set", "lagrange.cost_limit=-1"], "env.cost_limit must be a finite number"),
        (["train", "--algo", "ppo", "--config", "/nonexistent.yaml"], "config file not found"),
        (["eval", "/nonexistent-run"], "is not a run directory"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, args, message):
    code, _, err = run_cli(capsys, args + (["--run-dir", str(tmp_path / "r")] if args[0] == "train" else []))
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.slow
def test_train_eval_and_refuse_to_overwrite(capsys, tmp_path):
    run_dir = tmp_path / "run"
    code, out, _ = run_cli(capsys, TRAIN + ["--steps", "4000", "--run-dir", str(run_dir)])
    assert code == 0 and f"run directory: {run_dir}" in out and "final:" in out
    for name in ("config.yaml", "meta.json", "progress.csv", "checkpoints/latest.pt"):
        assert (run_dir / name).exists(), name
    rows = read_progress(run_dir / "progress.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for column in ("epoch", "env_steps", "ep_return", "ep_cost", "ep_length", "lagrange_multiplier",
                   "approx_kl", "clip_fraction", "entropy", "fps"):
        assert column in rows[0]
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["seed"] == 0 and "torch" in meta["versions"]

    code, _, err = run_cli(capsys, TRAIN + ["--steps", "4000", "--run-dir", str(run_dir)])
    assert code == 2 and "already holds a run" in err

    code, out, _ = run_cli(capsys, ["eval", str(run_dir), "--episodes", "5", "--deterministic"])
    assert code == 0
    result = json.loads((run_dir / "eval.json").read_text())
    assert len(result["episodes"]) == 5 and all(e["length"] == 50 for e in result["episodes"])
    assert result["deterministic"] is True

    (run_dir / "checkpoints" / "latest.pt").write_bytes(b"not a checkpoint")
    code, _, err = run_cli(capsys, ["eval", str(run_dir)])
    assert code == 2 and "corrupt" in err and err.count("\n") == 1
    (run_dir / "checkpoints" / "latest.pt").unlink()
    code, _, err = run_cli(capsys, ["eval", str(run_dir)])
    assert code == 2 and "no checkpoint" in err


@pytest.mark.slow
def test_kill_then_resume_continues_the_run(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "saferl", *TRAIN, "--steps", "40000", "--run-dir", str(run_dir)]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill -9 once at least two epochs are checkpointed
        if (run_dir / "progress.csv").exists() and len(read_progress(run_dir / "progress.csv")) >= 2:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = len(read_progress(run_dir / "progress.csv"))
    assert 2 <= killed_at < 20

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    rows = read_progress(run_dir / "progress.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(1, 21))  # no epoch lost or repeated
    assert int(rows[-1]["env_steps"]) == 40000


def test_unwritable_run_dir_is_a_one_line_error(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(capsys, TRAIN + ["--steps", "2000", "--run-dir", str(blocker / "run")])
    assert code == 2 and err.startswith("saferl: error:") and err.count("\n") == 1


@pytest.mark.parametrize("old, new", [("bench", "throughput"), ("bench-offline", "offline-pipeline")])
def test_renamed_verbs_still_work_under_their_old_names_with_a_note(capsys, old, new):
    code, _, err = run_cli(capsys, [new, "--env", "NoSuchEnv-v0"])
    assert code == 2 and err.startswith("saferl: error:") and err.count("\n") == 1
    code, _, err_old = run_cli(capsys, [old, "--env", "NoSuchEnv-v0"])
    note, error = err_old.splitlines()
    assert code == 2 and error + "\n" == err
    assert note == f"saferl: note: `saferl {old}` is now `saferl {new}`; the old name still works in this release"
