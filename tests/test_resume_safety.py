"""Resume never discards good work: unreadable checkpoints stop it in one line (or restart that member alone on
request), a run killed while creating its members resumes, settings it was started with cannot change, and `--steps`
given to a resume is part of the run from then on."""

import json
import shutil

import pytest
import yaml
from conftest import QUICK, TINY_TRAIN, assert_one_line_error, run_cli

from saferl.cli import main
from saferl.logger import read_progress
from saferl.members import MEMBERS_FILE
from saferl.runner import Runner

# The schedule is planned for 800 steps so that the resumes below (to 600 or 800 steps) may extend the run.
TRAIN = [*TINY_TRAIN, "train.schedule_steps=800"]
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The issue's runs: "base" (one seed) and "mbase" (seeds 0,1,2), two epochs each."""
    root = tmp_path_factory.mktemp("resume")
    assert main([*TRAIN, "--run-dir", str(root / "base")]) == 0
    assert main([*TRAIN, "--seeds", "0,1,2", "--run-dir", str(root / "mbase")]) == 0
    return root


@pytest.fixture
def base(made, tmp_path):
    return shutil.copytree(made / "base", tmp_path / "base")


@pytest.fixture
def mbase(made, tmp_path):
    return shutil.copytree(made / "mbase", tmp_path / "mbase")


def snapshot(run_dir):
    """Every file's bytes under run_dir (but the lock file)."""
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name != ".saferl.lock"}


def empty_checkpoints(run_dir):
    for name in ("latest.pt", "previous.pt"):
        (run_dir / "checkpoints" / name).write_bytes(b"")


def epochs_of(path):
    return [int(r["epoch"]) for r in read_progress(path)]


def epochs(run_dir):
    return epochs_of(run_dir / "progress.csv")


RESUME = ["--resume", "--steps", "600", "--set", *QUICK]


# -- unreadable checkpoints ----------------------------------------------------------------------------------------
def test_one_members_unreadable_checkpoints_stop_the_resume_and_nothing_changes(capsys, mbase):
    """Before: every member retrained from epoch 0, exit 0, the healthy members' work overwritten."""
    empty_checkpoints(mbase / "seed-1")
    before = snapshot(mbase)
    code, _, err = run_cli(capsys, ["train", "--run-dir", mbase, *RESUME])
    assert_one_line_error(code, err, f"{mbase / 'seed-1'}: cannot resume", "checkpoints/latest.pt",
                          "checkpoints/previous.pt", "--restart-unreadable")
    assert snapshot(mbase) == before


@pytest.mark.parametrize("damage", ["emptied", "deleted"])
def test_a_plain_runs_unreadable_checkpoints_stop_the_resume(capsys, base, damage):
    """Before: trained from epoch 0 without a word and rewrote the old rows."""
    if damage == "emptied":
        empty_checkpoints(base)
    else:
        shutil.rmtree(base / "checkpoints")
    before = snapshot(base)
    code, _, err = run_cli(capsys, ["train", "--run-dir", base, *RESUME])
    fragments = ["latest.pt", "previous.pt"] if damage == "emptied" else ["no checkpoint, but its progress.csv "
                                                                           "logs 2 epochs"]
    assert_one_line_error(code, err, f"{base}: cannot resume", *fragments)
    assert snapshot(base) == before


def test_a_member_whose_checkpoints_are_gone_stops_the_resume(capsys, mbase):
    """Deleted (not emptied) checkpoints, while the others saved twice: damage, not a run killed early."""
    shutil.rmtree(mbase / "seed-2" / "checkpoints")
    code, _, err = run_cli(capsys, ["train", "--run-dir", mbase, *RESUME])
    assert_one_line_error(code, err, "seed-2: cannot resume: it has no checkpoint, while another member has reached "
                                     "epoch 2")


@pytest.mark.slow
def test_restart_unreadable_retrains_that_member_alone_to_the_others_epoch(capsys, made, mbase):
    empty_checkpoints(mbase / "seed-1")
    healthy = {seed: read_progress(mbase / f"seed-{seed}" / "progress.csv") for seed in (0, 2)}
    code, out, err = run_cli(capsys, ["train", "--run-dir", mbase, *RESUME, "--restart-unreadable"])
    assert code == 0, err
    assert (f"note: --restart-unreadable: {mbase / 'seed-1'} restarts from epoch 0" in out
            and "trains alone to epoch 2, where the other members are" in out)
    for seed in SEEDS:
        assert epochs(mbase / f"seed-{seed}") == [1, 2, 3]
    for seed, rows in healthy.items():  # the healthy members' rows were kept, not retrained
        assert read_progress(mbase / f"seed-{seed}" / "progress.csv")[:2] == rows
    # The member alone collects what it collected beside the others: its retrained epochs are the same numbers.
    original = read_progress(made / "mbase" / "seed-1" / "progress.csv")
    retrained = read_progress(mbase / "seed-1" / "progress.csv")[:2]
    assert [r["ep_return"] for r in retrained] == [r["ep_return"] for r in original]
    assert (mbase / "seed-1" / "checkpoints" / "latest.pt.unreadable").exists()


def test_restart_unreadable_restarts_a_plain_run_with_a_note(capsys, base):
    empty_checkpoints(base)
    code, out, err = run_cli(capsys, ["train", "--run-dir", base, *RESUME, "--restart-unreadable"])
    assert code == 0, err
    assert "restarts from epoch 0 (its progress rows are replaced" in out and epochs(base) == [1, 2, 3]
    assert epochs_of(base / "progress.csv.unreadable") == [1, 2]  # the old rows are kept aside, not lost


def test_restart_unreadable_without_resume_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, [*TRAIN, "--run-dir", tmp_path / "r", "--restart-unreadable"])
    assert_one_line_error(code, err, "--restart-unreadable goes with --resume")


# -- a run killed while creating its members -----------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("plan", ["with settings", "older, without"])
def test_a_run_killed_while_creating_its_members_resumes(capsys, tmp_path, monkeypatch, plan):
    """Before: neither resumable (seed-N is not a run directory) nor restartable (already holds a multi-seed run)."""
    root = tmp_path / "m"
    made = []

    def die_on_the_second(runner, member):
        if made:
            raise KeyboardInterrupt  # killed while creating seed-1's directory
        made.append(member)
        original(runner, member)

    original = Runner.write_meta
    monkeypatch.setattr(Runner, "write_meta", die_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        main([*TRAIN, "--seeds", "0,1,2", "--run-dir", str(root)])
    monkeypatch.undo()
    assert not (root / "seed-2").exists() and (root / MEMBERS_FILE).exists()
    if plan != "with settings":
        data = json.loads((root / MEMBERS_FILE).read_text())
        (root / MEMBERS_FILE).write_text(json.dumps({"members": data["members"]}))
    code, _, err = run_cli(capsys, [*TRAIN, "--seeds", "0,1,2", "--run-dir", root])
    assert_one_line_error(code, err, "already holds a multi-seed run; pass --resume")
    code, out, err = run_cli(capsys, ["train", "--run-dir", root, "--resume", "--set", *QUICK])
    assert code == 0, err
    for seed in SEEDS:
        assert epochs(root / f"seed-{seed}") == [1, 2]
        saved = yaml.safe_load((root / f"seed-{seed}" / "config.yaml").read_text())
        assert saved["train"]["seed"] == seed and saved["train"]["steps_per_epoch"] == 200
        assert json.loads((root / f"seed-{seed}" / "meta.json").read_text())["seed"] == seed


# -- settings a resume may not change ------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, message", [
    (["--set", "env.cost_limit=5"], "the run's cost limit is 25; 5 conflicts"),
    (["--set", "lagrange.cost_limit=5"], "the run's cost limit is 25; 5 conflicts"),
    (["--config", "{env: {cost_limit: 5}}"], "the run's cost limit is 25; 5 conflicts"),
    (["--config", "{train: {seed: 7}}"], "the run's seed is 0; seed 7 conflicts"),
    (["--set", "train.seed=7"], "the run's seed is 0; seed 7 conflicts"),
])
def test_a_resume_that_would_change_a_seed_or_cost_limit_is_refused(capsys, tmp_path, base, flags, message):
    """Before: exit 0 and nothing changed (the --seed flag and other keys were already refused)."""
    if flags[0] == "--config":
        (tmp_path / "c.yaml").write_text(flags[1])
        flags = ["--config", tmp_path / "c.yaml"]
    before = snapshot(base)
    code, _, err = run_cli(capsys, ["train", "--run-dir", base, "--resume", "--steps", "600", *flags])
    assert_one_line_error(code, err, message)
    assert snapshot(base) == before


def test_a_multi_seed_resume_refuses_one_limit_for_all(capsys, mbase):
    code, _, err = run_cli(capsys, ["train", "--run-dir", mbase, "--resume", "--set", "env.cost_limit=10"])
    assert_one_line_error(code, err, "cost limit is 25; 10 conflicts")


def test_a_resume_that_repeats_the_runs_seed_and_limit_is_fine(capsys, tmp_path, base):
    (tmp_path / "c.yaml").write_text("{train: {seed: 0}, env: {cost_limit: 25}}")
    code, _, err = run_cli(capsys, ["train", "--run-dir", base, "--resume", "--steps", "600", "--config",
                                    tmp_path / "c.yaml", "--set", "lagrange.cost_limit=25", *QUICK])
    assert code == 0, err


# -- --steps with --resume is saved --------------------------------------------------------------------------------
def test_resume_steps_survive_an_interrupt_of_the_resumed_run(capsys, base, monkeypatch):
    """Resumed to 800 steps and interrupted after one more epoch, the printed 'resume with:' command (no --steps)
    trains on to 800 instead of saying there is nothing to train."""
    saves = []
    original = Runner.save

    def interrupt_after_one(runner):
        original(runner)
        saves.append(runner.epoch)
        raise KeyboardInterrupt

    monkeypatch.setattr(Runner, "save", interrupt_after_one)
    code, _, err = run_cli(capsys, ["train", "--run-dir", base, "--resume", "--steps", "800", "--set", *QUICK])
    assert code == 130 and saves == [3]
    resume_with = err.strip().split("resume with: ")[1].split()
    monkeypatch.undo()
    code, out, err = run_cli(capsys, [*resume_with[1:], "--set", *QUICK])
    assert code == 0, err
    assert "final: env_steps=800" in out and "nothing to train" not in out and epochs(base) == [1, 2, 3, 4]


# -- a progress.csv whose epochs cannot be read --------------------------------------------------------------------
@pytest.mark.parametrize("damage, message", [
    (lambda text: text.replace("\n2,", "\ntwo,", 1), "a row has epoch 'two', not an integer"),
    (lambda text: text.replace("epoch,", "Epoch,", 1), "has no 'epoch' column"),
])
def test_a_resume_on_a_progress_file_with_unreadable_epochs_is_one_line(capsys, base, damage, message):
    path = base / "progress.csv"
    path.write_text(damage(path.read_text()))
    before = path.read_text()
    code, _, err = run_cli(capsys, ["train", "--run-dir", base, *RESUME])
    assert_one_line_error(code, err, "progress.csv", message)
    assert path.read_text() == before


def test_a_resume_notes_rows_missing_behind_its_checkpoint(capsys, base):
    path = base / "progress.csv"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))  # the header and epoch 1
    code, out, err = run_cli(capsys, ["train", "--run-dir", base, *RESUME])
    assert code == 0, err
    assert "ends at epoch 1 but the run resumes at epoch 2: the rows of epochs 2..2 are missing" in out
