"""Config: the defaults, the shipped config files, bad values named in one line, --set parsing, the round trip
through a dict."""

from pathlib import Path

import pytest

from saferl.config import CONFIG_DIR, build_config, config_from_dict, parse_set
from saferl.errors import SafeRLError


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
