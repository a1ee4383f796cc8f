"""Non-finite numbers stop a run cleanly: an env that returns NaN or inf in its observation, reward or cost,
or an update that makes a parameter NaN, ends the run with one line naming the epoch, and the last good checkpoint
is kept (the run resumes from it)."""

import copy
import sys
import textwrap

import pytest
import torch
from conftest import QUIET, slow_except

from saferl.cli import main
from saferl.config import build_config
from saferl.envs.toy import TOY_ID
from saferl.errors import SafeRLError
from saferl.files import load_checkpoint
from saferl.members import Member
from saferl.rundir import CHECKPOINT
from saferl.runner import Runner

NAN_ENV = textwrap.dedent('''
    import gymnasium, numpy as np
    POISON = {"field": None, "at": 10**9}

    class NanEnv(gymnasium.Env):
        observation_space = gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float64)
        action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
        steps = 0

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            return self.np_random.uniform(-1, 1, 3), {}

        def step(self, action):
            NanEnv.steps += 1
            self.t += 1
            obs, reward, cost = self.np_random.uniform(-1, 1, 3), float(action[0]), float(action[0] > 0.5)
            if NanEnv.steps == POISON["at"]:
                if POISON["field"] == "obs":
                    obs[1] = np.nan
                elif POISON["field"] == "reward":
                    reward = np.inf
                else:
                    cost = np.nan
            return obs, reward, False, self.t >= 20, {"cost": cost}

    gymnasium.register("NanEnv-v0", entry_point=NanEnv)
''')


@pytest.fixture
def nan_env(tmp_path, monkeypatch):
    (tmp_path / "nan_env_module.py").write_text(NAN_ENV)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("nan_env_module", None)
    import nan_env_module

    yield nan_env_module
    sys.modules.pop("nan_env_module", None)


@pytest.mark.parametrize("field", slow_except(["obs", "reward", "cost"], {"obs"}))
def test_a_non_finite_env_output_stops_the_run_and_keeps_the_checkpoint(nan_env, tmp_path, capsys, field):
    run = tmp_path / "run"
    args = ["train", "--algo", "ppo_lag", "--env", "nan_env_module:NanEnv-v0", "--num-envs", "2", "--steps", "400",
            "--run-dir", str(run), "--set", "train.steps_per_epoch=100", "ppo.update_epochs=2", *QUIET]
    nan_env.POISON.update(field=field, at=250)  # in the third epoch (two envs, 100 steps per epoch)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "non-finite" in err and "epoch 3" in err, err
    state = load_checkpoint(run / CHECKPOINT)
    assert state["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in state["policy"].values() if isinstance(v, torch.Tensor))
    nan_env.POISON.update(at=10**9)
    assert main(["train", "--algo", "ppo_lag", "--run-dir", str(run), "--resume"]) == 0
    assert load_checkpoint(run / CHECKPOINT)["epoch"] == 4


def test_a_non_finite_update_stops_before_saving(tmp_path):
    config = build_config("ppo", sets=[f"env.id={TOY_ID}", "env.num_envs=2", "train.steps_per_epoch=100",
                                       "train.total_steps=400", "ppo.update_epochs=1", *QUIET])

    def poisoning_update(runner, batch, costs, lengths):
        stats = runner.algorithm.update(batch, costs, lengths)
        if runner.epoch == 2:
            with torch.no_grad():
                runner.policy.reward_critic.weights[1][0, 0, 0] = float("nan")
        return stats

    member = Member(tmp_path / "run", copy.deepcopy(config))  # seed 0, cost limit 25: the defaults
    runner = Runner([member], learn=poisoning_update)
    with pytest.raises(SafeRLError, match="update of epoch 3 made reward_critic.weights.1 of the member with seed 0"):
        runner.train()
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["epoch"] == 2
