"""Config validation and the Lagrange multiplier's update and projection."""

from pathlib import Path

import numpy as np
import pytest
import torch

from saferl.config import CONFIG_DIR, build_config, config_from_dict, parse_set
from saferl.errors import SafeRLError
from saferl.maths.lagrange import LagrangeMultiplier, project_nonnegative


def test_defaults_follow_omnisafe():
    config = build_config("ppo_lag")
    assert config.ppo.update_epochs == 40 and config.ppo.minibatch_size == 64
    assert config.ppo.clip_ratio == 0.2 and config.ppo.target_kl == 0.02
    assert config.env.cost_limit == 25.0 and config.lagrange.multiplier_lr == 0.035
    assert config.train.steps_per_epoch == 20000 and config.model.actor_hidden == [64, 64]


@pytest.mark.parametrize("path", sorted(Path(CONFIG_DIR).glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_file_is_valid(path):
    build_config("ppo_lag", config_file=str(path))


@pytest.mark.parametrize(
    "sets, message",
    [
        (["ppo.clip_ratoi=0.1"], "unknown config key 'ppo.clip_ratoi' (did you mean 'clip_ratio'?)"),
        (["nosection.x=1"], "unknown config key 'nosection'"),
        (["train.total_steps=-5"], "train.total_steps must be >= 1"),
        (["lagrange.cost_limit=-1"], "env.cost_limit must be a finite number >= 0"),
        (["train.total_steps=abc"], "config key 'train.total_steps' must be an integer"),
        (["ppo.anneal_lr=3"], "config key 'ppo.anneal_lr' must be true or false"),
        (["env.num_envs=7"], "must be a multiple of env.num_envs"),
    ],
)
def test_bad_config_values_are_named(sets, message):
    with pytest.raises(SafeRLError, match=None) as info:
        build_config("ppo_lag", sets=sets)
    assert message in str(info.value)


def test_set_parses_scientific_notation_and_null():
    config = build_config("ppo", sets=["ppo.actor_lr=1e-3", "ppo.target_kl=null"])
    assert config.ppo.actor_lr == 1e-3 and config.ppo.target_kl is None
    with pytest.raises(SafeRLError):
        parse_set(["novalue"])


def test_config_round_trips_through_dict():
    config = build_config("ppo_lag", sets=["train.seed=3"])
    assert config_from_dict(config.to_dict()) == config


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
