"""The one thread policy of every batched MuJoCo backend (velocity, navigation, Fetch).

``mj_step`` releases the GIL, so N ``MjData`` sharing one model are stepped by the calling thread
plus ``num_threads - 1`` persistent helpers; the default is ``min(available cores, num_envs)``.

Why it is built this way (measured on the project's 2-core VM, HalfCheetah, 16 envs):

* Dynamic sharing: every thread pulls the next env index from one shared iterator, so the
  caller steps whatever the helpers have not taken yet. Waking a sleeping helper takes 20-35 us;
  with a fixed split that latency (and any imbalance) is added to every step.
* The caller never waits for a helper that has not started: it waits only until every env index
  has been stepped. On a loaded machine a helper may not get a core for milliseconds; it then
  finds nothing left to do, and the caller has lost nothing. So extra threads are cheap even
  when the cores are busy with other work.
* Helpers are woken with bare ``threading.Lock`` hand-offs (``ThreadPoolExecutor`` and
  ``threading.Event`` cost more per call).
* Each env is stepped by exactly one thread per call and envs share nothing mutable, so results
  never depend on the thread count.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_num_threads(num_envs: int, num_threads: int | None = None) -> int:
    """``num_threads`` if given, else ``min(available cores, num_envs)``; never more threads than envs."""
    if num_threads is None:
        num_threads = available_cpus()
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    return max(1, min(num_threads, num_envs))


class _Job:
    """One ``for_each`` call: the shared index iterator and the count of envs stepped so far."""

    def __init__(self, work: Callable[[Iterator[int]], None], num_envs: int):
        self.work = work
        self.pending = iter(range(num_envs))
        self.num_envs = num_envs
        self.stepped = 0
        self.error: BaseException | None = None
        self.count_lock = threading.Lock()
        self.finished = threading.Lock()  # released by the helper that steps the last env
        self.finished.acquire()

    def take_share(self, is_helper: bool) -> bool:
        """Step envs until none is left; True when this thread stepped the batch's last env."""
        count = 0

        def counted():
            nonlocal count
            for i in self.pending:
                yield i
                count += 1

        try:
            self.work(counted())
        except BaseException as error:  # re-raised by the caller
            self.error = error
            if is_helper:
                with self.count_lock:
                    if self.finished.locked():  # a second failing helper must not release twice
                        self.finished.release()
            return True
        with self.count_lock:
            self.stepped += count
            last = count > 0 and self.stepped == self.num_envs
        if last and is_helper:
            self.finished.release()
        return last


class _Helper:
    """A persistent thread that joins the team's current job whenever it is woken."""

    def __init__(self, team: ThreadTeam):
        self._team = team
        self._go = threading.Lock()
        self._go.acquire()
        self._woken = False
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="saferl-mujoco-step", daemon=True)
        self._thread.start()

    def _loop(self):
        while True:
            self._go.acquire()
            self._woken = False
            if self._stop:
                return
            job = self._team._job
            if job is not None:
                job.take_share(is_helper=True)

    def wake(self):
        if not self._woken:  # at most one pending wake-up (a Lock cannot be released twice)
            self._woken = True
            self._go.release()

    def stop(self):
        self._stop = True
        self.wake()
        self._thread.join(timeout=5.0)  # bounded: never hang interpreter shutdown


class ThreadTeam:
    """The calling thread plus ``num_threads - 1`` helpers, sharing a batch of envs."""

    def __init__(self, num_threads: int):
        self.num_threads = max(num_threads, 1)
        self._job: _Job | None = None
        self._helpers = [_Helper(self) for _ in range(self.num_threads - 1)]

    def for_each(self, work: Callable[[Iterator[int]], None], num_envs: int,
                 then: Callable[[], None] | None = None) -> None:
        """Run ``work(pending)`` on every thread, where ``pending`` is one shared iterator over env indices.

        ``work`` loops ``for i in pending`` and so steps whichever envs no other thread took. The
        caller runs ``then`` after its share, while helpers finish theirs, and returns once every
        env has been stepped.
        """
        if not self._helpers:
            work(iter(range(num_envs)))
            if then is not None:
                then()
            return
        self._job = job = _Job(work, num_envs)
        for helper in self._helpers:
            helper.wake()
        last = job.take_share(is_helper=False)
        try:
            if then is not None:
                then()
        finally:
            if not last and job.error is None:
                job.finished.acquire()
            self._job = None
        if job.error is not None:
            raise job.error

    def close(self) -> None:
        helpers, self._helpers = self._helpers, []
        for helper in helpers:
            helper.stop()
