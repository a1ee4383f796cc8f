"""Regression tests for the review's correctness findings: fine-tuning trains its critics, PPO clips each network's
gradient on its own, and non-finite numbers stop a run cleanly with the last good checkpoint kept."""

import copy
import sys
import textwrap

import numpy as np
import pytest
import torch

from saferl.buffer import RolloutBatch
from saferl.cli import main
from saferl.config import build_config
from saferl.envs.toy import TOY_ID
from saferl.errors import SafeRLError
from saferl.files import load_checkpoint
from saferl.launch import train_single
from saferl.members import Member
from saferl.policies.actor_critic import ActorCritic
from saferl.rundir import CHECKPOINT
from saferl.runner import Runner

QUICK = ["train.progress_bar=false", "train.tensorboard=false"]


# -- fine-tuning trains its critics (review item 1) ---------------------------------------------------------------
@pytest.fixture(scope="module")
def bc_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bc")
    expert = build_config("ppo_lag", sets=[f"env.id={TOY_ID}", "env.num_envs=4", "train.steps_per_epoch=400",
                                           "train.total_steps=800", *QUICK])
    train_single(expert, root / "expert")
    assert main(["collect", str(root / "expert"), "--episodes", "8", "--out", str(root / "demos.h5")]) == 0
    assert main(["bc", "--dataset", str(root / "demos.h5"), "--epochs", "3", "--run-dir", str(root / "bc"),
                 "--set", "bc.eval_episodes=0", "train.progress_bar=false"]) == 0
    return root / "bc"


def critic_weights(run_dir):
    policy = load_checkpoint(run_dir / CHECKPOINT)["policy"]
    return {k: v for k, v in policy.items() if "critic" in k}


def test_finetune_updates_the_critics_after_the_warm_up(bc_run, tmp_path):
    """The bug: the warm-up replaced the parameters' .grad views, so Adam never moved the critics again and
    fine-tunes 1 and 3 epochs past the warm-up ended with identical critic weights."""
    finals = []
    for epochs in (3, 5):  # one warm-up epoch, then 2 or 4 updates
        run = tmp_path / f"ft-{epochs}"
        assert main(["finetune", str(bc_run), "--algo", "ppo_lag", "--steps", str(400 * epochs), "--num-envs", "4",
                     "--run-dir", str(run), "--set", "train.steps_per_epoch=400", "finetune.critic_warmup_epochs=1",
                     "ppo.update_epochs=2", *QUICK]) == 0
        finals.append(critic_weights(run))
    changed = [k for k in finals[0] if not torch.equal(finals[0][k], finals[1][k])]
    assert len(changed) == len(finals[0]), f"critic tensors unchanged by later updates: {set(finals[0]) - set(changed)}"


# -- per-network gradient clipping (review item 4) -----------------------------------------------------------------
def ppo_after_one_minibatch(return_scale: float, per_network: bool) -> ActorCritic:
    from saferl.algorithms.ppo import PPOLag

    config = build_config("ppo_lag", sets=["ppo.update_epochs=1", "ppo.minibatch_size=32", "ppo.target_kl=null",
                                           "ppo.max_grad_norm=0.5", f"ppo.clip_per_network={per_network}"])
    generators = [torch.Generator().manual_seed(0)]
    policy = ActorCritic(1, 3, 2, 1, generators=[torch.Generator().manual_seed(0)])
    algo = PPOLag(policy, config, 10, generators, np.array([[25.0]]))
    g = torch.Generator().manual_seed(1)

    def r(*shape):
        return torch.randn(1, 32, *shape, generator=g)

    batch = RolloutBatch(obs=r(3), actions=r(2), log_probs=r() - 3.0, reward_advantages=r(), cost_advantages=r(1),
                         reward_returns=r() * return_scale, cost_returns=r(1), reward_values=r(), cost_values=r(1))
    algo.update(batch, np.array([[10.0]]), np.array([100.0]))
    return policy


def test_a_large_critic_gradient_does_not_shrink_the_actor_step():
    """With one global norm, a critic whose returns are 1000x larger scaled every actor step down by its norm."""
    small, large = ppo_after_one_minibatch(1.0, True), ppo_after_one_minibatch(1000.0, True)
    for (name, a), (_, b) in zip(small.actor.named_parameters(), large.actor.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    torch.testing.assert_close(small.log_std, large.log_std, rtol=0, atol=0)
    small_global, large_global = ppo_after_one_minibatch(1.0, False), ppo_after_one_minibatch(1000.0, False)
    assert not torch.equal(small_global.actor.weights[0], large_global.actor.weights[0])


# -- non-finite numbers stop the run (review items 6 and 7) --------------------------------------------------------
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


@pytest.mark.parametrize("field", ["obs", "reward", "cost"])
def test_a_non_finite_env_output_stops_the_run_and_keeps_the_checkpoint(nan_env, tmp_path, capsys, field):
    run = tmp_path / "run"
    args = ["train", "--algo", "ppo_lag", "--env", "nan_env_module:NanEnv-v0", "--num-envs", "2", "--steps", "400",
            "--run-dir", str(run), "--set", "train.steps_per_epoch=100", "ppo.update_epochs=2", *QUICK]
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
                                       "train.total_steps=400", "ppo.update_epochs=1", *QUICK])

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
