"""The first run (`make run`): its config, and the one line it prints about the constraint."""

from saferl.config import CONFIG_DIR, build_config
from saferl.report.stats import constraint_story


def test_quickstart_config_is_a_short_constrained_run():
    config = build_config("ppo_lag", str(CONFIG_DIR / "quickstart.yaml"))
    assert config.env.id == "SafetyPointCircle1-v0" and config.lagrange.method == "pid"
    assert config.train.total_steps <= 300_000


def test_constraint_story():
    story = constraint_story([10_000, 20_000, 30_000], [0.0, 1.5, 3.0], [10.0, 60.0, 20.0], 25)
    assert story == ("safety at work: episode cost peaked at 60.0 (limit 25) at 20,000 steps and ended at 20.0; "
                     "return went from 0.00 to 3.00")
    assert constraint_story([1, 2], [0, 1], [1.0, 2.0], 25).startswith("the constraint never bound")
    assert constraint_story([1, 2], [0, 1], [30.0, 40.0], 25).startswith("still over the limit")
    assert constraint_story([1], [float("nan")], [float("nan")], 25).startswith("no episode finished")
