"""A user's own env through saferl: one that breaks the safe-env contract (spaces, cost, non-finite numbers,
an import that crashes) is named in one line with exit status 2, and one that raises shows the user's traceback
only behind SAFERL_DEBUG=1."""

import os
import subprocess
import sys
import textwrap

import pytest
from conftest import QUIET, TINY_TRAIN, assert_one_line_error, command_on, run_cli, slow_except

from saferl import envs
from saferl.config import build_config
from saferl.envs.toy import TOY_ID
from saferl.envs.vector import cost_names_of, split_step
from saferl.launch import train_single

# -- the safe-env contract -----------------------------------------------------------------------------------------
USER_ENVS = textwrap.dedent('''
    import gymnasium
    import numpy as np

    class Base(gymnasium.Env):
        observation_space = gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float64)
        action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
        cost = 0.0
        report_cost = True
        obs_size = 3
        fails_in = None

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            if self.fails_in == "reset":
                raise KeyError("no such robot")
            return np.zeros(self.obs_size), {}

        def step(self, action):
            self.t += 1
            if self.fails_in == "step":
                raise ZeroDivisionError("division by zero")
            info = {"cost": self.cost} if self.report_cost else {}
            return np.zeros(self.obs_size), 0.0, False, self.t >= 20, info

    ENVS = {
        "Fine": {},
        "NoCost": {"report_cost": False},
        "NanCost": {"cost": float("nan")},
        "InfCost": {"cost": float("inf")},
        "NoneCost": {"cost": None},
        "TextCost": {"cost": "high"},
        "ShapeCost": {"cost": np.zeros(3)},
        "Image": {"observation_space": gymnasium.spaces.Box(0, 255, (8, 8, 3), np.uint8)},
        "DiscreteActions": {"action_space": gymnasium.spaces.Discrete(3)},
        "StringCostNames": {"cost_names": "hazard"},
        "NegativeCost": {"cost": -2.5},
        "WrongShape": {"obs_size": 5},
        "RaisesInReset": {"fails_in": "reset"},
        "RaisesInStep": {"fails_in": "step"},
    }
    for name, attributes in ENVS.items():
        globals()[name] = type(name, (Base,), attributes)
        gymnasium.register(f"Faulty{name}-v0", entry_point=f"faulty_user_envs:{name}")
''')


@pytest.fixture(scope="module")
def user_envs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user_envs")
    (folder / "faulty_user_envs.py").write_text(USER_ENVS)
    (folder / "crashing_user_envs.py").write_text("raise RuntimeError('no licence server')\n")
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop("faulty_user_envs", None)


@pytest.mark.parametrize("name, message", [
    ("NoCost", "FaultyNoCost-v0.step() returned a 5-tuple without info['cost']"),
    ("NanCost", "FaultyNanCost-v0 (seed 0) returned a non-finite cost"),  # the runner's check, with the epoch
    ("InfCost", "FaultyInfCost-v0 (seed 0) returned a non-finite cost"),
    ("NoneCost", "FaultyNoneCost-v0 reported a cost of None"),
    ("TextCost", "FaultyTextCost-v0 reported a cost of 'high'"),
    ("ShapeCost", "FaultyShapeCost-v0 returned a cost of shape (3,) but declares 1 cost(s)"),
    ("Image", "FaultyImage-v0: observations of shape (8, 8, 3) (e.g. images) are not supported"),
    ("DiscreteActions", "FaultyDiscreteActions-v0: a Discrete action space is not supported"),
    ("StringCostNames", "cost_names must be a list of strings, got 'hazard'"),
    ("NegativeCost", "FaultyNegativeCost-v0 reported a cost of -2.5; costs must be >= 0"),  # before: trained on
    ("WrongShape", "FaultyWrongShape-v0.reset() returned an observation of shape (5,) but its observation_space "
                   "has shape (3,)"),  # before: a broadcast traceback
    ("RaisesInReset", "FaultyRaisesInReset-v0.reset() raised KeyError: 'no such robot' (SAFERL_DEBUG=1"),
    ("RaisesInStep", "FaultyRaisesInStep-v0.step() raised ZeroDivisionError: division by zero"),
])
def test_a_user_env_that_breaks_the_contract_is_named_in_one_line(capsys, tmp_path, user_envs, name, message):
    code, _, err = run_cli(capsys, ["train", "--algo", "ppo_lag", "--env", f"faulty_user_envs:Faulty{name}-v0",
                                    "--num-envs", "2", "--steps", "40", "--run-dir", tmp_path / "r",
                                    "--set", "train.steps_per_epoch=40", "ppo.minibatch_size=8", *QUIET])
    assert_one_line_error(code, err, message)


@pytest.mark.parametrize("command", slow_except(["eval", "collect"], {"eval"}))
def test_a_non_finite_cost_during_eval_or_collect_is_one_line(capsys, tmp_path, user_envs, command):
    run = tmp_path / "run"
    config = build_config("ppo_lag", sets=["env.id=faulty_user_envs:FaultyFine-v0", "env.num_envs=2",
                                           "train.steps_per_epoch=40", "train.total_steps=40", "ppo.minibatch_size=8",
                                           *QUIET])
    train_single(config, run)
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text.replace("FaultyFine-v0", "FaultyNanCost-v0"))  # same spaces, NaN costs
    code, _, err = run_cli(capsys, command_on(run, command, tmp_path))
    assert_one_line_error(code, err, "non-finite cost")
    assert not (tmp_path / "d.h5").exists()


def test_a_user_env_module_that_crashes_on_import_is_one_line(capsys, tmp_path, user_envs):
    code, _, err = run_cli(capsys, ["train", "--algo", "ppo", "--env", "crashing_user_envs:Crash-v0", "--steps",
                                    "40", "--run-dir", tmp_path / "r"])
    assert_one_line_error(code, err, "importing 'crashing_user_envs' to register 'Crash-v0' failed: RuntimeError: "
                                     "no licence server")
    assert not (tmp_path / "r").exists()


def test_env_contract_errors_are_value_errors_for_library_users():
    with pytest.raises(ValueError, match="returned 4 values"):
        split_step((0, 0, False, False))

    class Declares:
        num_costs = 0

    with pytest.raises(ValueError, match="num_costs must be an integer >= 1"):
        cost_names_of(Declares())
    with pytest.raises(ValueError, match="Discrete action space"):
        envs.make(lambda: __import__("gymnasium").make("CartPole-v1"), num_envs=1)


# -- the user's traceback behind a debug flag ----------------------------------------------------------------------
RAISING_ENV = textwrap.dedent('''
    import gymnasium
    import numpy as np

    class Raising(gymnasium.Env):
        observation_space = gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float64)
        action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)

        def reset(self, seed=None, options=None):
            return np.zeros(3), {}

        def step(self, action):
            return self.physics_of_my_robot()

        def physics_of_my_robot(self):
            raise ValueError("solver diverged")

    gymnasium.register("Raising-v0", entry_point="raising_user_env:Raising")
''')


@pytest.mark.slow
@pytest.mark.parametrize("debug", [False, True])
def test_a_user_env_that_raises_is_one_line_and_its_traceback_is_behind_saferl_debug(tmp_path, debug):
    (tmp_path / "raising_user_env.py").write_text(RAISING_ENV)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("SAFERL_DEBUG", None)
    if debug:
        env["SAFERL_DEBUG"] = "1"
    argv = [a if a != TOY_ID else "raising_user_env:Raising-v0" for a in TINY_TRAIN]
    result = subprocess.run([sys.executable, "-m", "saferl", *argv, "--run-dir", str(tmp_path / "r")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last == ("saferl: error: Raising-v0.step() raised ValueError: solver diverged (SAFERL_DEBUG=1 shows its "
                    "traceback)"), result.stderr
    if debug:
        assert "Traceback" in result.stderr and "physics_of_my_robot" in result.stderr
    else:
        assert result.stderr.count("\n") == 1, result.stderr
