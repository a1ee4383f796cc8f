"""The `--algo` names and the classes behind them: an explicit table, no registry magic."""

from saferl.algorithms.ppo import PPO, PPOLag

ALGORITHMS = {
    "ppo": PPO,
    "ppo_lag": PPOLag,
}
