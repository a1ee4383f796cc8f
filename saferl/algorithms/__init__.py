"""The `--algo` names and the classes behind them: an explicit table, no registry magic.

Each entry is called as `factory(policy, config, anneal_epochs, generators, cost_limits)` and returns an object
that follows `saferl.algorithms.common.Algorithm`; `anneal_epochs` is how many updates PPO's learning rate anneals
over (`ppo.anneal_lr`; the policy-gradient family does not anneal).
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
