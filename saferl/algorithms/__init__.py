"""The `--algo` names and the classes behind them: an explicit table, no registry magic.

Each entry is called as `factory(policy, config, total_epochs, generators, cost_limits)` and returns an object
that follows `saferl.algorithms.common.Algorithm`.
"""

from functools import partial

from saferl.algorithms.cpo import CPO
from saferl.algorithms.policy_gradient import NPG, PG, TRPO
from saferl.algorithms.ppo import PPO, PPOLag

ALGORITHMS = {
    "ppo": PPO,
    "ppo_lag": PPOLag,
    "pg": PG,
    "npg": NPG,
    "trpo": TRPO,
    "trpo_lag": partial(TRPO, lagrangian=True),
    "cpo": CPO,
}
