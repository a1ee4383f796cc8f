"""Ray started by `saferl benchmark` goes with the benchmark, however the benchmark ends.

`ray.shutdown()` stops a local Ray when the driver exits normally, but after `kill -9` of the driver Ray's
agents (DashboardAgent, RuntimeEnvAgent) outlive it. Right after `ray.init`, `watch()` starts this module as a
small process in its own session, naming the driver's children (the processes Ray just started): every second
it notes them and their descendants (agents, workers), and when the pipe from the driver closes (the driver
ended, in any way) it kills the ones still alive after a grace period, checking each one's start time so that a
reused pid is never touched.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

POLL_S = 1.0
GRACE_S = 5.0  # after a normal exit Ray stops itself; what is left after this long is killed


def process_table() -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, start time)} of every process (Linux /proc; empty elsewhere)."""
    table = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), fields[19])  # ppid, starttime (fields 4 and 22 of stat)
    return table


def descendants(root: int, table: dict[int, tuple[int, str]]) -> dict[int, str]:
    """{pid: start time} of every process below `root`."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found[pid] = table[pid][1]
        todo.extend(children.get(pid, []))
    return found


def main(argv: list[str]) -> int:
    """argv: pid:starttime of each process to watch (with its descendants)."""
    roots = dict((int(pid), start) for pid, start in (item.split(":") for item in argv))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C for the benchmark is not for us
    known = dict(roots)
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], POLL_S)
        if ready and not os.read(sys.stdin.fileno(), 1):
            break  # the driver is gone
        table = process_table()
        for root in [pid for pid, start in roots.items() if table.get(pid, (0, None))[1] == start]:
            known.update(descendants(root, table))
    deadline = time.monotonic() + GRACE_S
    while True:
        table = process_table()
        alive = [pid for pid, start in known.items() if pid in table and table[pid][1] == start]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return 0


def watch() -> subprocess.Popen:
    """Start the watchdog of this process's children (call it right after starting Ray); keep the returned object
    for as long as this process lives."""
    table = process_table()
    children = [f"{pid}:{start}" for pid, (parent, start) in table.items() if parent == os.getpid()]
    return subprocess.Popen([sys.executable, "-m", "saferl.ray_watchdog", *children], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
