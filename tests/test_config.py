"""Config: the defaults, the shipped config files, bad values named in one line, --set parsing, the round trip
through a dict."""

from pathlib import Path

import pytest

from saferl.config import CONFIG_DIR, build_config, config_from_dict, parse_set
from saferl.config_values import coerce
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


@pytest.mark.parametrize(
    "value, annotation, expected",
    [
        (3, float, 3.0),
        ("3e-4", float, 3e-4),  # YAML 1.1 reads 3e-4 as a string
        (2.0, int, 2),
        (None, int | None, None),
        (5, int | None, 5),
        ([1, 2.0], list[int], [1, 2]),
        (True, bool, True),
    ],
)
def test_coerce_accepts_what_yaml_gives(value, annotation, expected):
    result = coerce(value, annotation, "k")
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    "value, annotation, message",
    [
        (True, int, "must be an integer"),
        (2.5, int, "must be an integer"),
        (1, bool, "must be true or false"),
        (float("nan"), float, "must be a finite number"),
        (10**400, float, "must be a finite number"),
        ("abc", float, "must be a number"),
        (3, list[int], "must be a list"),
        (3, str, "must be a string"),
        (None, int, "must be an integer"),
    ],
)
def test_coerce_names_the_key_of_a_bad_value(value, annotation, message):
    with pytest.raises(SafeRLError, match=f"config key 'k' {message}"):
        coerce(value, annotation, "k")
