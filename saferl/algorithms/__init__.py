"""The `--algo` names and the classes behind them: an explicit table, no registry magic."""

from saferl.algorithms.cpo import CPO
from saferl.algorithms.policy_gradient import NPG, PG, TRPO, TRPOLag
from saferl.algorithms.ppo import PPO, PPOLag

ALGORITHMS = {
    "ppo": PPO,
    "ppo_lag": PPOLag,
    "pg": PG,
    "npg": NPG,
    "trpo": TRPO,
    "trpo_lag": TRPOLag,
    "cpo": CPO,
}
