"""The last bad inputs of issue 18 (items 7, 9, 12, 14, 15): each one line on stderr and exit status 2, nothing
silently ignored, no traceback (the user env's own behind SAFERL_DEBUG=1)."""

import errno
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import TINY_TRAIN, assert_one_line_error, run_cli

from saferl import logger
from saferl.envs.toy import TOY_ID
from saferl.logger import read_progress


# -- item 7 --------------------------------------------------------------------------------------------------------
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


# -- item 9 --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["collect", "RUN", "--episodes", "1", "--out", "d.h5"], ["bench-offline"]])
def test_unsafe_fraction_without_scripted_is_refused(capsys, tmp_path, command):
    """Before: `collect RUN --unsafe-fraction 0.5` ignored the flag (only the scripted controller has an unsafe
    variant)."""
    args = [str(tmp_path / a) if a in ("RUN", "d.h5") else a for a in command]
    code, _, err = run_cli(capsys, [*args, "--unsafe-fraction", "0.5"])
    assert_one_line_error(code, err, "--unsafe-fraction goes with --scripted")
    assert not (tmp_path / "d.h5").exists()


def test_finetune_resume_refuses_another_clone(capsys, tmp_path):
    from saferl.errors import SafeRLError
    from saferl.files import write_json
    from saferl.offline.finetune import check_same_clone

    write_json(tmp_path / "ft" / "meta.json", {"finetune": {"bc_run": str((tmp_path / "bc").resolve())}})
    check_same_clone(tmp_path / "ft", tmp_path / "bc")  # the same clone, by another spelling of its path
    check_same_clone(tmp_path / "ft", tmp_path / "ft" / ".." / "bc")
    with pytest.raises(SafeRLError, match="fine-tunes the clone in .*/bc, not .*other"):
        check_same_clone(tmp_path / "ft", tmp_path / "other")


# -- item 12: the user's traceback behind a debug flag -------------------------------------------------------------
RAISING_ENV = textwrap.dedent('''
    import gymnasium
    import numpy as np

    class Raising(gymnasium.Env):
        observation_space = gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float64)
        action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)

        def reset(self, seed=None, options=None):
            return np.zeros(3), {}

        def step(self, action):
            return self.physics_of_my_robot()

        def physics_of_my_robot(self):
            raise ValueError("solver diverged")

    gymnasium.register("Raising-v0", entry_point="raising_user_env:Raising")
''')


@pytest.mark.parametrize("debug", [False, True])
def test_a_user_env_that_raises_is_one_line_and_its_traceback_is_behind_saferl_debug(tmp_path, debug):
    (tmp_path / "raising_user_env.py").write_text(RAISING_ENV)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("SAFERL_DEBUG", None)
    if debug:
        env["SAFERL_DEBUG"] = "1"
    argv = [a if a != TOY_ID else "raising_user_env:Raising-v0" for a in TINY_TRAIN]
    result = subprocess.run([sys.executable, "-m", "saferl", *argv, "--run-dir", str(tmp_path / "r")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last == ("saferl: error: Raising-v0.step() raised ValueError: solver diverged (SAFERL_DEBUG=1 shows its "
                    "traceback)"), result.stderr
    if debug:
        assert "Traceback" in result.stderr and "physics_of_my_robot" in result.stderr
    else:
        assert result.stderr.count("\n") == 1, result.stderr


# -- item 14: a full disk ------------------------------------------------------------------------------------------
def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


class RowsFillTheDisk:
    """`open` for logger.py whose files take the header but no row (rows start with their epoch number)."""

    def __init__(self, path, mode):
        self.handle = open(path, mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()

    def write(self, text):
        if text[:1].isdigit():
            no_space()
        return self.handle.write(text)


def test_a_full_disk_while_logging_names_progress_csv(capsys, tmp_path, monkeypatch):
    """Before: the error named no file (a write error carries none)."""
    monkeypatch.setattr(logger, "open", RowsFillTheDisk, raising=False)
    code, _, err = run_cli(capsys, [*TINY_TRAIN, "--run-dir", tmp_path / "r"])
    assert_one_line_error(code, err, f"No space left on device: {tmp_path / 'r' / 'progress.csv'}")


def test_a_full_disk_while_checkpointing_names_the_checkpoint(capsys, tmp_path, monkeypatch):
    from saferl import files

    def fsync(fd):
        if ".latest.pt." in os.readlink(f"/proc/self/fd/{fd}"):  # the checkpoint's temporary file
            no_space()

    monkeypatch.setattr(files.os, "fsync", fsync)
    code, _, err = run_cli(capsys, [*TINY_TRAIN, "--run-dir", tmp_path / "r"])
    assert_one_line_error(code, err, f"No space left on device: {tmp_path / 'r' / 'checkpoints' / 'latest.pt'}")
    assert [p.name for p in (tmp_path / "r" / "checkpoints").iterdir()] == []  # no temporary left behind


FULL_TENSORBOARD = textwrap.dedent('''
    import errno, sys
    from tensorboard.summary.writer import record_writer
    calls = [0]
    original = record_writer.RecordWriter.write

    def write(self, data):
        calls[0] += 1
        if calls[0] > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, data)

    record_writer.RecordWriter.write = write
    from saferl.cli import main
    sys.exit(main(sys.argv[1:]))
''')


def test_a_full_disk_under_tensorboard_is_one_line_without_the_threads_traceback(tmp_path):
    """Before: TensorBoard's writer thread printed its traceback before the error, which named no file."""
    argv = [a for a in TINY_TRAIN if a != "train.tensorboard=false"]
    result = subprocess.run([sys.executable, "-c", FULL_TENSORBOARD, *argv, "--run-dir", str(tmp_path / "r")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr == f"saferl: error: No space left on device: {tmp_path / 'r' / 'tensorboard'}\n"
    assert read_progress(tmp_path / "r" / "progress.csv")  # the rows before the disk filled are there


# -- item 15 -------------------------------------------------------------------------------------------------------
def test_a_grid_that_is_not_utf8_is_one_line(capsys, tmp_path):
    (tmp_path / "grid.yaml").write_bytes(b"algos: [ppo]\n\xff\xfe\x00envs: [x]\n")
    code, _, err = run_cli(capsys, ["benchmark", tmp_path / "grid.yaml", "--out", tmp_path / "out"])
    assert_one_line_error(code, err, "grid.yaml is not UTF-8 text")


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
