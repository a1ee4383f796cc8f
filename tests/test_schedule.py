"""A run's learning-rate schedule is planned once, when the run is created (`train.schedule_steps`): `--resume
--steps N` trains further without re-planning it, or is refused, or re-plans only when asked."""

import pytest
from conftest import QUICK, progress_rows, run_cli

from saferl.config import load_yaml
from saferl.envs.toy import TOY_ID

TOY = ["--env", TOY_ID, "--num-envs", "2", "--set", "train.steps_per_epoch=200", *QUICK]
ACTOR_LR = 3e-4


def actor_lrs(run_dir):
    return [float(row["actor_lr"]) for row in progress_rows(run_dir)]


def test_the_schedule_planned_at_creation_survives_resume_with_more_steps(capsys, tmp_path):
    """Planned for 4 epochs, trained 2, resumed to 4: the actor's lr falls 1 - e/4 as in one uninterrupted run
    (before, each resume re-planned the horizon to its own --steps: a saw-tooth)."""
    run_dir = tmp_path / "r"
    code, _, err = run_cli(capsys, ["train", "--algo", "ppo_lag", "--steps", 400, "--run-dir", run_dir, *TOY,
                       "train.schedule_steps=800"])
    assert code == 0, err
    code, out, err = run_cli(capsys, ["train", "--run-dir", run_dir, "--resume", "--steps", 800])
    assert code == 0, err
    assert actor_lrs(run_dir) == pytest.approx([ACTOR_LR * (1 - e / 4) for e in range(4)])
    saved = load_yaml(run_dir / "config.yaml")["train"]
    assert saved["total_steps"] == 800 and saved["schedule_steps"] == 800  # --steps is part of the run now


def test_the_schedule_of_a_new_run_is_its_budget_and_is_written_down(capsys, tmp_path):
    code, _, err = run_cli(capsys, ["train", "--algo", "ppo_lag", "--steps", 400, "--run-dir", tmp_path / "r", *TOY])
    assert code == 0, err
    assert load_yaml(tmp_path / "r" / "config.yaml")["train"]["schedule_steps"] == 400
    assert actor_lrs(tmp_path / "r") == pytest.approx([ACTOR_LR, ACTOR_LR / 2])


@pytest.mark.slow
def test_training_beyond_the_plan_is_refused_unless_the_schedule_is_replanned(capsys, tmp_path):
    run_dir = tmp_path / "r"
    assert run_cli(capsys, ["train", "--algo", "ppo_lag", "--steps", 400, "--run-dir", run_dir, *TOY])[0] == 0
    code, _, err = run_cli(capsys, ["train", "--run-dir", run_dir, "--resume", "--steps", 800])
    assert code == 2 and "planned for 400 steps" in err and "--replan-schedule" in err and err.count("\n") == 1
    assert len(progress_rows(run_dir)) == 2  # nothing trained, nothing rewritten
    assert load_yaml(run_dir / "config.yaml")["train"]["total_steps"] == 400
    code, out, err = run_cli(capsys, ["train", "--run-dir", run_dir, "--resume", "--steps", 800, "--replan-schedule"])
    assert code == 0, err
    assert "re-planned" in out
    # re-planned from epoch 2 over 4 epochs: the lr jumps back up to 1 - 2/4 of its start
    assert actor_lrs(run_dir) == pytest.approx([ACTOR_LR, ACTOR_LR / 2, ACTOR_LR / 2, ACTOR_LR / 4])
    assert load_yaml(run_dir / "config.yaml")["train"]["schedule_steps"] == 800


@pytest.mark.slow
def test_an_algorithm_without_a_schedule_trains_on_with_a_note(capsys, tmp_path):
    run_dir = tmp_path / "r"
    assert run_cli(capsys, ["train", "--algo", "cpo", "--steps", 400, "--run-dir", run_dir, *TOY])[0] == 0
    code, out, err = run_cli(capsys, ["train", "--run-dir", run_dir, "--resume", "--steps", 800])
    assert code == 0, err
    assert "cpo has no learning-rate schedule to keep" in out
    assert len(progress_rows(run_dir)) == 4


def test_replan_schedule_without_resume_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, ["train", "--algo", "ppo_lag", "--replan-schedule", "--run-dir", tmp_path / "r",
                                    *TOY])
    assert code == 2 and "--replan-schedule goes with --resume" in err and err.count("\n") == 1
