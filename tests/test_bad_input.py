"""Bad input ends as one line on stderr with exit status 2 and no traceback, and nothing is silently rounded,
clamped, ignored or overwritten: the training budget, config values and files, seeds and other flags, checkpoints and
run configs that load but are wrong, datasets, and fine-tuning another clone or an owned directory."""

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from conftest import (
    QUICK,
    QUIET,
    TINY_OFFLINE_PIPELINE,
    TINY_TRAIN,
    assert_one_line_error,
    command_on,
    run_cli,
    slow_except,
)

from saferl.cli import main
from saferl.config import build_config
from saferl.envs.toy import TOY_ID
from saferl.errors import SafeRLError
from saferl.files import save_checkpoint
from saferl.offline.dataset import Dataset, read_dataset, write_dataset

TOY = [f"env.id={TOY_ID}", "env.num_envs=4", "train.steps_per_epoch=200", *QUICK]


# -- training budget and rollout shape -----------------------------------------------------------------------------
def test_steps_that_round_up_to_whole_epochs_are_announced(capsys, tmp_path):
    code, out, err = run_cli(capsys, ["train", "--algo", "ppo_lag", "--steps", "300", "--run-dir", tmp_path / "r",
                                      "--set", *TOY])
    assert code == 0, err
    assert "note: --steps 300 rounds up to 2 epochs of 200 steps (400 steps" in out
    assert "final: env_steps=400" in out


def test_training_notes_from_the_config():
    from saferl.training import training_notes

    config = build_config("ppo_lag", sets=["train.total_steps=1000"])
    assert training_notes(config, 1000, 1000)[0].startswith("note: --steps 1000 rounds up to 1 epoch of 20000 steps")
    config = build_config("ppo_lag", sets=["env.num_envs=10000", "train.total_steps=1000000"])
    notes = training_notes(config, None, 1000)
    assert len(notes) == 2 and "rollouts of 2 steps per env" in notes[0] and "each env runs 100 steps" in notes[1]
    assert training_notes(build_config("ppo_lag", sets=["train.total_steps=40000"]), None, 1000) == []


def test_more_envs_than_steps_per_epoch_is_refused():
    with pytest.raises(SafeRLError, match=r"env.num_envs \(400\) exceeds train.steps_per_epoch \(200\)"):
        build_config("ppo_lag", sets=["env.num_envs=400", "train.steps_per_epoch=200"])


def test_a_resume_with_nothing_left_to_train_says_so(capsys, expert):
    code, out, err = run_cli(capsys, ["train", "--algo", "ppo_lag", "--run-dir", expert, "--resume", "--set", *QUIET])
    assert code == 0, err
    assert "note: nothing to train: the run already has 200 steps" in out and "final:" not in out


# -- config values and files ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "assignment, message",
    [
        ("ppo.clip_ratio=5", "ppo.clip_ratio must be in (0, 1)"),
        ("ppo.clip_ratio=1", "ppo.clip_ratio must be in (0, 1)"),
        ("ppo.clip_high=1.5", "ppo.clip_high must be in (0, 1) or null"),
        ("ppo.entropy_coef=-0.01", "ppo.entropy_coef must be >= 0"),
        ("ppo.value_coef=-1", "ppo.value_coef must be >= 0"),
        ("ppo.kl_penalty_target=0", "ppo.kl_penalty_target must be > 0"),
        ("model.init_log_std=50", "model.init_log_std must be in [-20, 2]"),
        ("finetune.min_log_std=-100", "finetune.min_log_std must be in [-20, 2]"),
        ("train.seed=-1", "train.seed must be in [0, 2147483647]"),
        ("train.seed=4294967296", "train.seed must be in [0, 2147483647]"),
        ("env.cost_limit=.inf", "must be a finite number, got inf"),
        ("env.cost_limit=.nan", "config key 'env.cost_limit' must be a finite number"),
        ("ppo.actor_lr=.inf", "config key 'ppo.actor_lr' must be a finite number"),
        ("trpo.target_kl=.inf", "config key 'trpo.target_kl' must be a finite number"),
        ("trpo.target_kl=nan", "config key 'trpo.target_kl' must be a finite number"),
        ("cpo.cost_tolerance=1e999", "config key 'cpo.cost_tolerance' must be a finite number"),
        ("lagrange.pid_kp=-.inf", "config key 'lagrange.pid_kp' must be a finite number"),
        ("ppo.max_grad_norm=.inf", "config key 'ppo.max_grad_norm' must be a finite number"),
    ],
)
def test_out_of_range_and_non_finite_values_are_named(capsys, tmp_path, assignment, message):
    code, _, err = run_cli(capsys, ["train", "--algo", "ppo_lag", "--steps", "200", "--run-dir", tmp_path / "r",
                                    "--set", *TOY, assignment])
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "r").exists()


def test_non_finite_values_in_a_config_file_are_named(tmp_path):
    (tmp_path / "c.yaml").write_text("ppo:\n  clip_ratio: .nan\n")
    with pytest.raises(SafeRLError, match="config key 'ppo.clip_ratio' must be a finite number"):
        build_config("ppo", config_file=str(tmp_path / "c.yaml"))


@pytest.mark.parametrize("content", [b"\xff\xfe\x00binary\x89PNG", None], ids=["binary", "directory"])
def test_a_config_file_that_is_not_text_is_one_line(capsys, tmp_path, content):
    path = tmp_path / "c.yaml"
    path.write_bytes(content) if content is not None else path.mkdir()
    code, _, err = run_cli(capsys, ["train", "--algo", "ppo", "--steps", "200", "--config", path,
                                    "--run-dir", tmp_path / "r"])
    assert_one_line_error(code, err, str(path), "not UTF-8" if content else "is a directory")


def test_a_grid_that_is_not_utf8_is_one_line(capsys, tmp_path):
    (tmp_path / "grid.yaml").write_bytes(b"algos: [ppo]\n\xff\xfe\x00envs: [x]\n")
    code, _, err = run_cli(capsys, ["benchmark", tmp_path / "grid.yaml", "--out", tmp_path / "out"])
    assert_one_line_error(code, err, "grid.yaml is not UTF-8 text")


# -- seeds, members and other flags --------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", ["-1", "99999999999", "2147483648"])
@pytest.mark.parametrize("command", ["train", "eval", "collect", "bc", "finetune", "offline-pipeline"])
def test_seeds_outside_the_seedable_range_are_one_line(capsys, tmp_path, tiny_pipeline, command, seed):
    args = {
        "train": ["train", "--algo", "ppo_lag", "--steps", "200", "--run-dir", tmp_path / "r", "--set", *TOY],
        "eval": ["eval", tiny_pipeline / "expert"],
        "collect": ["collect", tiny_pipeline / "expert", "--episodes", "1", "--out", tmp_path / "d.h5"],
        "bc": ["bc", "--dataset", tiny_pipeline / "demos.h5", "--epochs", "1", "--run-dir", tmp_path / "r"],
        "finetune": ["finetune", tiny_pipeline / "bc", "--algo", "ppo", "--steps", "200", "--run-dir", tmp_path / "r",
                     "--set", *TOY, "finetune.critic_warmup_epochs=0"],
        "offline-pipeline": ["offline-pipeline", "--work-dir", tmp_path / "r", *TINY_OFFLINE_PIPELINE],
    }[command]  # small budgets: should a check go missing, the test fails fast instead of training for hours
    code, _, err = run_cli(capsys, [*args, "--seed", seed])
    assert_one_line_error(code, err, f"--seed must be in [0, 2147483647], got {seed}")
    assert not (tmp_path / "r").exists() and not (tmp_path / "d.h5").exists()


def test_argument_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--algo", "ppo", "--steps", "1e6"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and "invalid int value: '1e6'" in err and "saferl train --help" in err


@pytest.mark.parametrize("flag, value", [("--noise", "nan"), ("--noise", "-0.5"), ("--cost-limit", "inf")])
def test_offline_pipeline_float_flags_are_checked(capsys, tmp_path, flag, value):
    code, _, err = run_cli(capsys, ["offline-pipeline", "--work-dir", tmp_path / "w", *TINY_OFFLINE_PIPELINE, flag,
                                    value])
    assert_one_line_error(code, err, f"{flag} must be a finite number >= 0")
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("flags, message", [
    (["--set", "env.cost_limit=10,10"], "--set env.cost_limit has a repeated limit: 10,10"),
    (["--set", "env.cost_limit=10,10.0000001"], "two members would share the directory seed-0-limit-10"),
    (["--seeds", ""], "--seeds expects at least one value"),
    (["--seeds", ","], "--seeds expects at least one value"),
])
def test_members_that_would_share_a_directory_or_no_seeds_are_refused(capsys, tmp_path, flags, message):
    """Before: two members in one directory (duplicate rows after a resume), or a plain seed-0 run."""
    code, _, err = run_cli(capsys, [*TINY_TRAIN, *flags, "--run-dir", tmp_path / "r"])
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", [["collect", "RUN", "--episodes", "1", "--out", "d.h5"], ["offline-pipeline"]])
def test_unsafe_fraction_without_scripted_is_refused(capsys, tmp_path, command):
    """Before: `collect RUN --unsafe-fraction 0.5` ignored the flag (only the scripted controller has an unsafe
    variant)."""
    args = [str(tmp_path / a) if a in ("RUN", "d.h5") else a for a in command]
    code, _, err = run_cli(capsys, [*args, "--unsafe-fraction", "0.5"])
    assert_one_line_error(code, err, "--unsafe-fraction goes with --scripted")
    assert not (tmp_path / "d.h5").exists()


@pytest.mark.slow
@pytest.mark.parametrize("command", [["train", "--algo", "ppo", "--env", TOY_ID, "--steps", "200"], ["eval", "RUN"]])
def test_an_invalid_mujoco_gl_is_one_line(tmp_path, command):
    """Before: MuJoCo's import raised a RuntimeError traceback in every command, even on the toy task."""
    env = {**os.environ, "MUJOCO_GL": "bogus"}
    args = [str(tmp_path / "r") if a == "RUN" else a for a in command]
    result = subprocess.run([sys.executable, "-m", "saferl", *args, "--run-dir", str(tmp_path / "r")]
                            if command[0] == "train" else [sys.executable, "-m", "saferl", *args],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert result.stderr.startswith("saferl: error: invalid value for environment variable MUJOCO_GL: bogus; "
                                    "MuJoCo accepts egl, osmesa or glfw") and result.stderr.count("\n") == 1


# -- checkpoints and run configs that load but are wrong -----------------------------------------------------------
BROKEN_CHECKPOINTS = {"a list": [1, 2, 3], "no epoch": {"policy": {}, "env_steps": 0},
                      "no policy": {"epoch": 1, "env_steps": 200}}


@pytest.mark.parametrize("state", BROKEN_CHECKPOINTS.values(), ids=BROKEN_CHECKPOINTS.keys())
@pytest.mark.parametrize("command", ["eval", "collect", "resume", "finetune"])
def test_a_checkpoint_of_the_wrong_structure_is_one_line(capsys, tmp_path, expert, bc_run, command, state):
    run_dir = bc_run if command == "finetune" else expert
    save_checkpoint(run_dir / "checkpoints" / "latest.pt", state)
    code, _, err = run_cli(capsys, command_on(run_dir, command, tmp_path))
    assert_one_line_error(code, err, "latest.pt")
    assert not (tmp_path / "d.h5").exists() and not (tmp_path / "ft").exists()


@pytest.mark.parametrize("key, value", [("epoch", "abc"), ("env_steps", "many"), ("epoch", -1)])
def test_a_checkpoint_with_wrong_counters_is_one_line_on_resume(capsys, expert, key, value):
    state = torch.load(expert / "checkpoints" / "latest.pt", weights_only=False)
    state[key] = value
    save_checkpoint(expert / "checkpoints" / "latest.pt", state)
    code, _, err = run_cli(capsys, ["train", "--algo", "ppo_lag", "--run-dir", expert, "--resume", "--set", *QUIET])
    assert_one_line_error(code, err, "latest.pt", key)


RUN_CONFIGS = {"empty": b"", "blank": b"\n\n", "a list": b"- 1\n- 2\n", "binary": b"\x80\x81\xfe\xff"}


@pytest.mark.parametrize("content", RUN_CONFIGS.values(), ids=RUN_CONFIGS.keys())
@pytest.mark.parametrize("command", ["eval", "collect", "resume", "finetune"])
def test_an_empty_or_unreadable_run_config_is_one_line(capsys, tmp_path, expert, bc_run, command, content):
    run_dir = bc_run if command == "finetune" else expert
    (run_dir / "config.yaml").write_bytes(content)
    code, _, err = run_cli(capsys, command_on(run_dir, command, tmp_path))
    assert_one_line_error(code, err, "config.yaml")
    assert not (tmp_path / "d.h5").exists() and not (tmp_path / "ft").exists()


# -- datasets ------------------------------------------------------------------------------------------------------
def small_dataset(episodes=4, length=5) -> Dataset:
    steps = episodes * length
    rng = np.random.default_rng(0)
    timeouts = np.zeros(steps, bool)
    timeouts[length - 1::length] = True
    return Dataset(observations=rng.uniform(-1, 1, (steps, 2)).astype(np.float32),
                   next_observations=rng.uniform(-1, 1, (steps, 2)).astype(np.float32),
                   actions=rng.uniform(-1, 1, (steps, 1)).astype(np.float32), rewards=np.ones(steps, np.float32),
                   costs=np.zeros((steps, 1), np.float32), terminals=np.zeros(steps, bool), timeouts=timeouts,
                   attrs={"env_id": TOY_ID, "obs_mean": np.zeros(2), "obs_var": np.ones(2), "obs_count": 20.0})


@pytest.mark.parametrize("field", ["observations", "next_observations", "actions", "rewards", "costs"])
@pytest.mark.parametrize("bad", slow_except([np.nan, np.inf, -np.inf], {"nan"}, key=str))
def test_bc_refuses_a_dataset_with_non_finite_steps(capsys, tmp_path, field, bad):
    dataset = small_dataset()
    values = getattr(dataset, field)
    values[[3, 7]] = bad  # two rows
    write_dataset(tmp_path / "d.h5", dataset)
    code, _, err = run_cli(capsys, ["bc", "--dataset", tmp_path / "d.h5", "--run-dir", tmp_path / "r"])
    assert_one_line_error(code, err, f"'{field}' holds NaN or inf in 2 of 20 rows")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("key, value, message", [
    ("obs_var", np.array([1.0, np.nan]), "'obs_var' holds NaN or inf in 1 of 2 values"),
    ("obs_mean", np.array([np.inf, 0.0]), "'obs_mean' holds NaN or inf"),
    ("obs_count", np.nan, "'obs_count' holds NaN or inf"),
    ("obs_var", np.array([1.0, -1.0]), "obs_var >= 0"),
    ("obs_mean", np.zeros(3), "observations have 2 entries"),
])
def test_bc_refuses_unusable_normaliser_statistics(capsys, tmp_path, key, value, message):
    dataset = small_dataset()
    dataset.attrs[key] = value
    write_dataset(tmp_path / "d.h5", dataset)
    code, _, err = run_cli(capsys, ["bc", "--dataset", tmp_path / "d.h5", "--run-dir", tmp_path / "r"])
    assert_one_line_error(code, err, message)


def test_a_dataset_with_text_columns_or_bad_flags_is_one_line(tmp_path):
    path = tmp_path / "d.h5"
    write_dataset(path, small_dataset())
    with h5py.File(path, "r+") as handle:
        del handle["terminals"]
        handle["terminals"] = np.full(20, 2.0)
    with pytest.raises(SafeRLError, match="'terminals' must hold only 0/1"):
        read_dataset(path)
    with h5py.File(path, "r+") as handle:
        del handle["rewards"]
        handle["rewards"] = np.array([b"x"] * 20)
    with pytest.raises(SafeRLError, match="'rewards' must be a numeric array"):
        read_dataset(path)


# -- fine-tuning: the run directory's owner and the clone ----------------------------------------------------------
FINETUNE = ["--algo", "ppo", "--steps", "400", "--num-envs", "4", "--set", "train.steps_per_epoch=200",
            "finetune.critic_warmup_epochs=0", *QUIET]


def test_finetune_in_a_directory_in_use_is_refused(capsys, tmp_path, bc_run, holder):
    owner = holder(tmp_path / "ft")
    code, _, err = run_cli(capsys, ["finetune", bc_run, *FINETUNE, "--run-dir", tmp_path / "ft"])
    assert_one_line_error(code, err, f"is in use by process {owner.pid}")


@pytest.mark.slow
def test_finetune_resume_with_another_clone_is_refused(capsys, tmp_path, tiny_pipeline, bc_run):
    """Before: the BC directory given to --resume was ignored for the run's own one."""
    assert run_cli(capsys, ["finetune", tiny_pipeline / "bc", *FINETUNE, "--run-dir", tmp_path / "ft"])[0] == 0
    code, _, err = run_cli(capsys, ["finetune", bc_run, *FINETUNE, "--run-dir", tmp_path / "ft", "--resume"])
    assert_one_line_error(code, err, f"fine-tunes the clone in {(tiny_pipeline / 'bc').resolve()}, not {bc_run}")


def test_finetune_resume_refuses_another_clone(capsys, tmp_path):
    from saferl.errors import SafeRLError
    from saferl.files import write_json
    from saferl.offline.finetune import check_same_clone

    write_json(tmp_path / "ft" / "meta.json", {"finetune": {"bc_run": str((tmp_path / "bc").resolve())}})
    check_same_clone(tmp_path / "ft", tmp_path / "bc")  # the same clone, by another spelling of its path
    check_same_clone(tmp_path / "ft", tmp_path / "ft" / ".." / "bc")
    with pytest.raises(SafeRLError, match="fine-tunes the clone in .*/bc, not .*other"):
        check_same_clone(tmp_path / "ft", tmp_path / "other")
