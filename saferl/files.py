"""Atomic file writes, checkpoints and run-directory metadata: nothing half-written survives a crash."""

from __future__ import annotations

import io
import json
import os
import platform
import re
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from saferl.errors import SafeRLError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target.

    The file gets the mode a plain `open(path, "w")` would give it (an existing file's, else 0666 less the
    umask), and temporaries a killed writer left behind for the same target are removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
    try:
        with os.fdopen(fd, "wb") as handle:
            if path.exists():
                os.fchmod(handle.fileno(), stat.S_IMODE(path.stat().st_mode))
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk: the error names the file it was writing (a write has no name of its own)
        tmp.unlink(missing_ok=True)
        if exc.filename:
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(path: Path) -> None:
    """Delete `.<name>.<random>.tmp` files of `path` (ours and the older mkstemp ones): the random part has no
    dot, so the temporaries of another target such as `<name>.csv` never match."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[A-Za-z0-9_]+\.tmp")
    try:
        candidates = [entry for entry in os.scandir(path.parent) if pattern.fullmatch(entry.name)]
    except OSError:
        return
    for entry in candidates:
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
        except OSError:  # another process removed it first, or the folder is read-only: not ours to fix
            pass


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_yaml(path: Path, data) -> None:
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


def save_checkpoint(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise SafeRLError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file: say so in one line
        raise SafeRLError(f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__})") from None


def versions() -> dict:
    """Everything needed to say which software produced a run."""
    import gymnasium
    import mujoco
    import numpy

    import saferl

    info = {
        "saferl": saferl.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "mujoco": mujoco.__version__,
        "gymnasium": gymnasium.__version__,
        "platform": platform.platform(),
        "argv": sys.argv,
    }
    info["git_commit"] = source_commit(Path(saferl.__file__).resolve().parent)
    return info


def source_commit(package_dir: Path) -> str | None:
    """The commit of the git checkout saferl is imported from, or None: only when the folder holding the package
    is itself a work tree's top, so an installed copy inside some other repository (say, a project whose
    virtual environment holds saferl) does not record that repository's commit."""
    source = package_dir.parent

    def git(*args) -> str:
        return subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True,
                              timeout=5).stdout.strip()

    try:
        top = git("rev-parse", "--show-toplevel")
        if not top or Path(top).resolve() != source.resolve():
            return None
        return git("rev-parse", "HEAD") or None
    except (OSError, subprocess.SubprocessError):
        return None
