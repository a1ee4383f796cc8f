"""What saferl writes: atomically (the umask kept, no temporary left behind, stale ones of that target only
removed), never over files it does not own (collect's --out, a benchmark's JSON), and a full disk is one line that
names the file."""

import errno
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import TINY_OFFLINE_PIPELINE, TINY_TRAIN, assert_one_line_error, run_cli

from saferl import logger
from saferl.envs.toy import TOY_ID
from saferl.files import atomic_write_text, save_checkpoint
from saferl.logger import read_progress
from saferl.offline.dataset import read_dataset


# -- collect and the benchmarks never destroy what is at --out -----------------------------------------------------
def test_collect_refuses_an_existing_out_unless_forced(capsys, expert, tmp_path):
    out = tmp_path / "demos.h5"
    out.write_bytes(b"precious")
    args = ["collect", expert, "--episodes", "1", "--out", out]
    code, _, err = run_cli(capsys, args)
    assert_one_line_error(code, err, "already exists; pass --force")
    assert out.read_bytes() == b"precious"
    code, _, err = run_cli(capsys, [*args, "--force"])
    assert code == 0, err
    assert len(read_dataset(out)) == 50
    code, _, err = run_cli(capsys, ["collect", expert, "--episodes", "1", "--out", tmp_path])
    assert_one_line_error(code, err, "is a directory")


@pytest.mark.parametrize("target", ["config.yaml", "checkpoints/latest.pt", "checkpoints/new.h5", "meta.json",
                                    "progress.csv"])
def test_collect_never_writes_over_the_source_runs_files(capsys, expert, target):
    out = expert / target
    before = out.read_bytes() if out.exists() else None
    code, _, err = run_cli(capsys, ["collect", expert, "--episodes", "1", "--out", out, "--force"])
    assert_one_line_error(code, err, "would overwrite a file of the run")
    assert (out.read_bytes() if out.exists() else None) == before
    # the same file reached through another spelling of the path
    code, _, err = run_cli(capsys, ["collect", expert, "--episodes", "1", "--force",
                                    "--out", expert / "checkpoints" / ".." / target])
    assert_one_line_error(code, err, "would overwrite a file of the run")


@pytest.mark.parametrize("command", ["throughput", "offline-pipeline"])
def test_a_benchmark_never_writes_its_json_over_other_files(capsys, expert, command, tmp_path):
    checkpoint = expert / "checkpoints" / "latest.pt"
    before = checkpoint.read_bytes()
    args = ([command, "--env", TOY_ID] if command == "throughput"
            else [command, "--work-dir", tmp_path / "w", *TINY_OFFLINE_PIPELINE])
    for out in (checkpoint, tmp_path):
        code, _, err = run_cli(capsys, [*args, "--out", out])
        assert_one_line_error(code, err, "is not a JSON result file")
    assert checkpoint.read_bytes() == before and not (tmp_path / "w").exists()


# -- atomic writes and run metadata --------------------------------------------------------------------------------
@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_atomic_writes_respect_the_umask_and_keep_an_existing_mode(tmp_path, umask_022):
    atomic_write_text(tmp_path / "new.json", "{}")
    assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o644
    os.chmod(tmp_path / "new.json", 0o640)
    atomic_write_text(tmp_path / "new.json", "[]")
    assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o640


def test_atomic_writes_remove_stale_temporaries_of_their_target_only(tmp_path):
    for name in (".latest.pt.k2j4h5xa.tmp", ".latest.pt.0123456789abcdef.tmp", ".latest.pt.csv.abcd1234.tmp",
                 "latest.pt.notes"):
        (tmp_path / name).write_text("left behind")
    save_checkpoint(tmp_path / "latest.pt", {"epoch": 1})
    assert sorted(os.listdir(tmp_path)) == [".latest.pt.csv.abcd1234.tmp", "latest.pt", "latest.pt.notes"]


def test_a_failed_atomic_write_leaves_no_temporary(tmp_path, monkeypatch):
    def no_rename(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "x.json", "{}")
    assert os.listdir(tmp_path) == []


def git(cwd, *args):
    return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_meta_records_a_commit_only_for_a_checkout_of_saferl_itself(tmp_path):
    from saferl.files import source_commit

    outer = tmp_path / "project"  # someone's repository whose virtual environment holds an installed saferl
    package = outer / ".venv" / "lib" / "site-packages" / "saferl"
    package.mkdir(parents=True)
    git(outer, "init", "-q")
    git(outer, "commit", "-q", "--allow-empty", "-m", "x")
    assert source_commit(package) is None
    checkout = tmp_path / "saferl-src"  # a clone of saferl: the package sits at the work tree's top
    (checkout / "saferl").mkdir(parents=True)
    git(checkout, "init", "-q")
    git(checkout, "commit", "-q", "--allow-empty", "-m", "x")
    assert source_commit(checkout / "saferl") == git(checkout, "rev-parse", "HEAD")
    assert source_commit(tmp_path / "elsewhere" / "saferl") is None


def test_checkpoint_tensors_survive_the_new_atomic_write(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"w": torch.arange(3)})
    assert torch.equal(torch.load(tmp_path / "c.pt")["w"], torch.arange(3))


# -- a full disk ---------------------------------------------------------------------------------------------------
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


@pytest.mark.slow
def test_a_full_disk_under_tensorboard_is_one_line_without_the_threads_traceback(tmp_path):
    """Before: TensorBoard's writer thread printed its traceback before the error, which named no file."""
    argv = [a for a in TINY_TRAIN if a != "train.tensorboard=false"]
    result = subprocess.run([sys.executable, "-c", FULL_TENSORBOARD, *argv, "--run-dir", str(tmp_path / "r")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr == f"saferl: error: No space left on device: {tmp_path / 'r' / 'tensorboard'}\n"
    assert read_progress(tmp_path / "r" / "progress.csv")  # the rows before the disk filled are there


def test_a_resumed_run_renames_a_column_an_older_saferl_wrote_instead_of_adding_a_second(tmp_path):
    """A trust-region run from before round 3 logged its exact KL as approx_kl; resumed, it goes on as kl, the
    earlier rows' values under the new name. A run that still writes approx_kl (PPO) keeps it."""
    (tmp_path / "progress.csv").write_text("epoch,env_steps,approx_kl,fps\n1,100,0.01,50\n2,200,0.02,51\n")
    resumed = logger.ProgressLogger(tmp_path, tensorboard=False, resume_epoch=1)
    resumed.log({"epoch": 2, "env_steps": 200, "kl": 0.03, "fps": 52.0})
    assert (tmp_path / "progress.csv").read_text() == "epoch,env_steps,kl,fps\n1,100,0.01,50\n2,200,0.03,52\n"
    ppo = tmp_path / "ppo"
    ppo.mkdir()
    (ppo / "progress.csv").write_text("epoch,env_steps,approx_kl\n1,100,0.01\n")
    logger.ProgressLogger(ppo, tensorboard=False, resume_epoch=1).log({"epoch": 2, "env_steps": 200, "approx_kl": 0.5})
    assert (ppo / "progress.csv").read_text() == "epoch,env_steps,approx_kl\n1,100,0.01\n2,200,0.5\n"
