"""A run directory is owned by one process at a time: `claim(directory)` takes an exclusive lock on
`<directory>/.saferl.lock` for as long as the process trains there.

The lock is `fcntl.flock` on an open file, so the kernel releases it when the process ends in any way (an
exception, Ctrl-C, kill -9): a lock file left behind by a dead owner is stale and the next process takes it
over with a note. The file holds the owner's pid, host and start time, so a second process is refused in
one line that names the owner. Claims are re-entrant within one process (a benchmark cell holds its
directory while the `train` it runs claims it again), and the check that a new run's directory is free
happens under the lock, so two processes can never both find it free.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from saferl.errors import SafeRLError

LOCK_FILE = ".saferl.lock"

_held: dict[Path, list] = {}  # resolved directory -> [open lock file, claims held, whether it made the dir]


def lock_path(directory: Path) -> Path:
    return Path(directory) / LOCK_FILE


def read_owner(path: Path) -> dict:
    """The owner recorded in a lock file ({} when empty or unreadable)."""
    try:
        data = json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe_owner(owner: dict) -> str:
    pid, host, started = owner.get("pid", "?"), owner.get("host"), owner.get("started")
    where = "" if host in (None, socket.gethostname()) else f" on host {host}"
    since = f", started {started}" if started else ""
    return f"process {pid}{where}{since}"


def pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def acquire(directory: Path) -> None:
    """Take the lock of `directory` (created if missing) for this process, or refuse naming the owner."""
    key = Path(directory).resolve()
    if key in _held:
        _held[key][1] += 1
        return
    created = not key.exists()
    key.mkdir(parents=True, exist_ok=True)
    path = lock_path(key)
    while True:
        handle = open(path, "a+")  # noqa: SIM115 - held open for as long as the claim lasts
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise SafeRLError(f"{directory} is in use by {describe_owner(read_owner(path))}; wait for it to end or "
                              "pick another --run-dir") from None
        except BaseException:
            handle.close()
            raise
        if path.exists() and os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
            break
        handle.close()  # the file was removed by an owner that just ended (its empty directory too): again
        key.mkdir(parents=True, exist_ok=True)
    previous = read_owner(path)
    if previous.get("pid") not in (None, os.getpid()):
        here = previous.get("host") == socket.gethostname()
        state = "is no longer running" if here and not pid_alive(previous["pid"]) else "no longer holds it"
        print(f"note: {directory}: the lock of {describe_owner(previous)} is stale (the process {state}); "
              "taking it over", flush=True)
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")
    handle.flush()
    _held[key] = [handle, 1, created]


def release(directory: Path) -> None:
    """Give back one claim; the last one empties the lock file (its owner ended cleanly) and unlocks it. A
    directory the claim created and nothing else filled (the command failed before writing) is removed."""
    key = Path(directory).resolve()
    entry = _held.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] > 0:
        return
    del _held[key]
    handle, _, created = entry
    try:
        if created and [p.name for p in key.iterdir()] == [LOCK_FILE]:
            lock_path(key).unlink()
            key.rmdir()
        else:
            handle.seek(0)
            handle.truncate()
    except OSError:  # a full or read-only disk: the kernel still drops the lock with the file
        pass
    finally:
        handle.close()


@contextmanager
def claim(*directories: Path) -> Iterator[None]:
    """Own every directory in `directories` (in order) until the block ends, however it ends."""
    with ExitStack() as stack:
        for directory in dict.fromkeys(Path(d) for d in directories):
            acquire(directory)
            stack.callback(release, directory)
        yield
