"""Ray for `saferl benchmark`: `--address` sends the token a token-auth cluster needs, and the processes of a local
Ray go with the benchmark even after kill -9 (saferl.ray_watchdog)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from saferl import benchmark
from saferl.ray_watchdog import descendants, process_table


@pytest.mark.parametrize("token, preset, expected", [
    (True, None, "token"),       # ~/.ray/auth_token exists (any local ray.init writes it): as `ray start` decides
    (False, None, None),         # no token anywhere: left to Ray
    (True, "disabled", "disabled"),  # the user's own choice stands
])
def test_address_uses_token_auth_when_a_token_exists(tmp_path, monkeypatch, token, preset, expected):
    """Before: with ~/.ray/auth_token, `--address` to a `ray start` cluster failed after ~26 s ("Failed to
    connect"): the driver sends the token only with RAY_AUTH_MODE=token."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    if preset:
        monkeypatch.setenv("RAY_AUTH_MODE", preset)
    if token:
        (tmp_path / ".ray").mkdir()
        (tmp_path / ".ray" / "auth_token").write_text("0" * 32)
    monkeypatch.delitem(sys.modules, "ray", raising=False)  # as before `import ray` (its config is read then)
    benchmark.use_token_auth_when_available()
    assert os.environ.get("RAY_AUTH_MODE") == expected


DRIVER = textwrap.dedent("""
    import subprocess, sys, time
    # stand-ins for Ray's processes: a child (raylet) that starts its own child (an agent)
    child = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
                              "time.sleep(120)"])
    time.sleep(1.0)
    from saferl.ray_watchdog import watch
    keep = watch()
    print("ready", flush=True)
    time.sleep(120)
""")


@pytest.mark.slow
def test_what_a_killed_driver_started_goes_with_it():
    """Before: after kill -9 of the benchmark, Ray's two agents stayed alive (measured: DashboardAgent and
    RuntimeEnvAgent, re-parented to init)."""
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True)
    try:
        assert driver.stdout.readline().strip() == "ready"
        time.sleep(2.5)  # the watchdog has noted the tree
        tree = descendants(driver.pid, process_table())
        watched = {pid: start for pid, start in tree.items() if "ray_watchdog" not in cmdline(pid)}
        assert len(watched) == 2
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and alive(watched):
            time.sleep(0.2)
        assert not alive(watched)
    finally:
        driver.kill()
        for pid in alive(watched) if "watched" in locals() else []:
            os.kill(pid, signal.SIGKILL)


def cmdline(pid) -> str:
    try:
        with open(f"/proc/{pid}/cmdline") as handle:
            return handle.read()
    except OSError:
        return ""


def alive(processes: dict) -> list:
    table = process_table()
    return [pid for pid, start in processes.items() if pid in table and table[pid][1] == start]


NICENESS_DRIVER = textwrap.dedent("""
    from saferl import benchmark
    ray, started = benchmark.start_ray(None, 1)

    @ray.remote
    def niceness():
        import os
        return os.nice(0)

    print("worker niceness", ray.get(niceness.remote()), flush=True)
    ray.shutdown()
""")


@pytest.mark.slow
def test_local_ray_workers_run_at_the_drivers_priority():
    """Before: Ray's default put every cell at nice 15, so on a shared machine a benchmark yielded to everything
    else (measured: half its steps/s while tests ran beside it)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_worker_niceness"}
    out = subprocess.run([sys.executable, "-c", NICENESS_DRIVER], capture_output=True, text=True, env=env,
                         timeout=180)
    assert f"worker niceness {os.nice(0)}" in out.stdout, out.stdout + out.stderr
