"""The Lagrange multipliers (saferl/maths/lagrange.py): the gradient-ascent one rises over the limit, falls to
zero under it and never goes negative (its Adam step and the projection against closed forms); the PID one against
hand-worked controller outputs, member by member; and the config choosing between them."""

import numpy as np
import pytest
import torch

from saferl.algorithms.common import make_multiplier
from saferl.config import build_config
from saferl.maths.lagrange import LagrangeMultiplier, PIDLagrangeMultiplier, project_nonnegative


# -- the gradient-ascent multiplier --------------------------------------------------------------------------------
def test_multiplier_rises_over_the_limit_and_falls_under_it():
    lag = LagrangeMultiplier(np.full((1, 2), 25.0), init=0.001, lr=0.035)  # one member, two costs
    values = [lag.update([[40.0, 10.0]])[0] for _ in range(10)]
    assert values[-1][0] > values[0][0] > 0.001  # over the limit: rises
    assert values[-1][1] == 0.0  # under the limit: projected at zero, never negative
    for _ in range(200):
        value = lag.update([[0.0, 0.0]])
        assert np.all(value >= 0.0)
    assert np.all(lag.value == 0.0)


def test_multiplier_ignores_missing_cost():
    lag = LagrangeMultiplier(np.full((1, 1), 25.0), init=0.5, lr=0.1)
    assert lag.update([[float("nan")]])[0, 0] == pytest.approx(0.5)


def test_projection_is_the_euclidean_projection_on_the_nonnegative_orthant():
    param = torch.nn.Parameter(torch.tensor([-1.5, 0.0, 2.0]))
    project_nonnegative(param)
    assert param.tolist() == [0.0, 0.0, 2.0]


def test_multiplier_adam_step_matches_closed_form_first_step():
    # Adam's first step has size lr in the direction of the ascent gradient (cost - limit).
    lag = LagrangeMultiplier(np.full((1, 1), 25.0), init=1.0, lr=0.1)
    assert lag.update([[30.0]])[0, 0] == pytest.approx(1.1, abs=1e-6)
    assert lag.update([[0.0]])[0, 0] < 1.1


# -- the PID multiplier --------------------------------------------------------------------------------------------
def test_pid_multiplier_rises_on_sustained_violation_and_stays_nonnegative():
    pid = PIDLagrangeMultiplier(np.array([[10.0, 10.0]]), kp=0.1, ki=0.01, kd=0.0)
    values = [pid.update([[15.0, 5.0]]) for _ in range(20)]
    first = [v[0, 0] for v in values]
    assert all(b > a for a, b in zip(first, first[1:], strict=False))  # the integral keeps pushing it up
    assert first[-1] == pytest.approx(0.1 * 5 + 0.01 * 5 * 20)
    assert all(v[0, 1] == 0.0 for v in values)  # safe constraint: held at zero, never negative
    for _ in range(100):  # long safe stretch: the projected integral does not wind up below zero
        assert np.all(pid.update([[0.0, 0.0]]) >= 0.0)
    assert pid.integral.min() == 0.0
    assert pid.update([[11.0, 0.0]])[0, 0] == pytest.approx(0.1 * 1 + 0.01 * 1)  # reacts at once, no debt to repay
    assert pid.update([[float("nan"), 0.0]])[0, 0] == pytest.approx(0.11)  # no episode finished: unchanged


def test_pid_multiplier_reacts_to_a_rising_cost_before_the_limit():
    limit = np.array([[10.0]])
    derivative_only = PIDLagrangeMultiplier(limit, kp=0.0, ki=0.0, kd=1.0, cost_smoothing=0.0)
    assert derivative_only.update([[2.0]])[0, 0] == 0.0
    assert derivative_only.update([[6.0]])[0, 0] == pytest.approx(4.0)  # rising, still under the limit
    assert derivative_only.update([[3.0]])[0, 0] == 0.0  # falling: only increases push
    with_d = PIDLagrangeMultiplier(limit, kp=0.1, ki=0.01, kd=0.05)
    without_d = PIDLagrangeMultiplier(limit, kp=0.1, ki=0.01, kd=0.0)
    for cost in (2.0, 8.0, 9.8):  # approaching the limit fast
        with_d.update([[cost]]), without_d.update([[cost]])
    assert with_d.value[0, 0] > without_d.value[0, 0]


def test_pid_members_are_independent_controllers():
    """Member k of a K-member controller (own limit, own costs, NaN while it has no episode) is a one-member one."""
    limits = np.array([[10.0], [25.0]])
    both = PIDLagrangeMultiplier(limits, kp=0.1, ki=0.01, kd=0.05)
    singles = [PIDLagrangeMultiplier(limits[k : k + 1], kp=0.1, ki=0.01, kd=0.05) for k in range(2)]
    for costs in ([[15.0], [np.nan]], [[30.0], [40.0]], [[np.nan], [20.0]], [[8.0], [60.0]]):
        got = both.update(costs)
        for k, single in enumerate(singles):
            if np.isfinite(costs[k][0]):
                single.update([costs[k]])
            np.testing.assert_array_equal(got[k], single.value[0])
    assert got[0, 0] != got[1, 0]


def test_make_multiplier_follows_the_config_and_pid_state_round_trips():
    limits = np.full((1, 2), 25.0)
    assert isinstance(make_multiplier(build_config("trpo_lag"), limits[:, :1]), LagrangeMultiplier)
    config = build_config("trpo_lag", sets=["lagrange.method=pid", "lagrange.multiplier_init=0.5"])
    pid = make_multiplier(config, limits)
    assert isinstance(pid, PIDLagrangeMultiplier) and pid.value.tolist() == [[0.5, 0.5]]
    pid.update([[30.0, 20.0]])
    clone = make_multiplier(config, limits)
    clone.load_state_dict(pid.state_dict())
    assert np.array_equal(clone.update([[26.0, 0.0]]), pid.update([[26.0, 0.0]]))
