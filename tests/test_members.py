"""Several seeds in one process: a member learns exactly like a one-member run of its seed, keeps its own state,
and writes an ordinary run directory that eval, report, resume and fine-tuning read unchanged."""

import copy
import csv

import numpy as np
import pytest
import torch
from conftest import QUIET

from saferl.cli import main
from saferl.config import build_config
from saferl.envs.toy import TOY_ID
from saferl.launch import check_resume_flags, resumed_members
from saferl.members import Member, plan_members, slice_member, stack_members
from saferl.rundir import CHECKPOINT, PREVIOUS_CHECKPOINT, load_policy
from saferl.runner import Runner

SMALL = ["env.num_envs=4", "train.steps_per_epoch=400", *QUIET, "ppo.update_epochs=4", "trpo.critic_epochs=2",
         "cpo.critic_epochs=2"]


def members_for(config, seeds, root, limits=None):
    limits = limits or [config.env.cost_limit] * len(seeds)
    out = []
    for seed, limit in zip(seeds, limits, strict=True):
        member_config = copy.deepcopy(config)
        member_config.train.seed, member_config.env.cost_limit = seed, limit
        out.append(Member(root / f"seed-{seed}-{limit:g}", member_config))
    return out


def one_epoch(runner):
    runner.collect()
    batch = runner.rollout_batch()
    _, costs, lengths, _ = runner.episode_stats()
    return runner.learn(runner, batch, costs, lengths)


@pytest.mark.parametrize("algo, env_id", [("ppo_lag", TOY_ID),
                                          pytest.param("cpo", TOY_ID, marks=pytest.mark.slow),
                                          pytest.param("trpo_lag", TOY_ID, marks=pytest.mark.slow),
                                          pytest.param("ppo_lag", "SafetyHalfCheetahVelocity-v1",
                                                       marks=pytest.mark.slow)])
def test_member_equals_a_single_run_of_its_seed(tmp_path, algo, env_id):
    config = build_config(algo, sets=SMALL + [f"env.id={env_id}"])
    single = Runner(members_for(config, [1], tmp_path / "single"))
    multi = Runner(members_for(config, [0, 1, 2], tmp_path / "multi"))
    for runner in (single, multi):
        runner.collect()
    for name in ("raw_obs", "obs", "actions", "log_probs", "rewards", "costs", "reward_values", "cost_values"):
        np.testing.assert_array_equal(getattr(single.buffer, name)[:, 0], getattr(multi.buffer, name)[:, 1],
                                      err_msg=f"first rollout differs in {name}")
    for runner in (single, multi):
        batch = runner.rollout_batch()
        _, costs, lengths, _ = runner.episode_stats()
        runner.learn(runner, batch, costs, lengths)
    one, other = single.policy.member_state_dict(0), multi.policy.member_state_dict(1)
    for key, value in one.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(value, other[key], rtol=0, atol=1e-5, msg=f"{key} after the first update")


@pytest.mark.slow
def test_members_with_different_cost_limits_keep_their_own_multipliers(tmp_path):
    config = build_config("ppo_lag", sets=SMALL + [f"env.id={TOY_ID}"])
    seeds, limits = [0, 0, 0], [0.0, 25.0, 1000.0]
    multi = Runner(members_for(config, seeds, tmp_path / "multi", limits))
    singles = [Runner(members_for(config, [0], tmp_path / f"single-{limit:g}", [limit])) for limit in limits]
    for _ in range(3):
        multi_stats = one_epoch(multi)
        single_stats = [one_epoch(single) for single in singles]
    lambdas = multi_stats["lagrange_multiplier_0"]
    assert lambdas[0] > lambdas[2]  # the zero budget is priced, the huge one is not
    for k, stats in enumerate(single_stats):
        np.testing.assert_allclose(lambdas[k], stats["lagrange_multiplier_0"][0], rtol=0, atol=1e-6)
        assert multi.cost_limits[k, 0] == limits[k]


def test_plan_members():
    assert plan_members([0, 1], [25.0]) == [(0, 25.0), (1, 25.0)]
    assert plan_members([3], [10.0, 25.0]) == [(3, 10.0), (3, 25.0)]
    assert plan_members([0, 1], [10.0, 25.0]) == [(0, 10.0), (1, 25.0)]
    with pytest.raises(Exception, match="2 seeds but 3 cost limits"):
        plan_members([0, 1], [1.0, 2.0, 3.0])


def test_slice_and_stack_are_inverse():
    state = {"a": torch.arange(6.0).reshape(3, 2), "b": [np.arange(3), torch.ones(3, 1)], "epoch": 7,
             "lrs": [1e-3, 2e-3]}
    parts = [slice_member(state, k) for k in range(3)]
    assert parts[2]["a"].tolist() == [[4.0, 5.0]] and parts[1]["epoch"] == 7
    joined = stack_members(parts)
    assert torch.equal(joined["a"], state["a"]) and np.array_equal(joined["b"][0], state["b"][0])
    assert joined["lrs"] == [1e-3, 2e-3]


def progress_epochs(path):
    with open(path) as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def train_cli(*args):
    return main(["train", "--algo", "ppo_lag", "--env", TOY_ID, "--num-envs", "4", "--set",
                 "train.steps_per_epoch=400", *QUIET, "ppo.update_epochs=2", *args])


@pytest.mark.slow
def test_member_directories_work_with_eval_report_and_resume(tmp_path, capsys):
    root = tmp_path / "multi"
    # planned for 1600 steps (the schedule's horizon), trained to 800 first
    assert train_cli("--seeds", "3,4", "--steps", "800", "--run-dir", str(root),
                     "--set", "train.schedule_steps=1600") == 0
    assert sorted(p.name for p in root.iterdir()) == [".saferl.lock", "members.json", "seed-3", "seed-4"]
    config, policy, checkpoint = load_policy(root / "seed-4")
    assert config.train.seed == 4 and checkpoint["epoch"] == 2 and policy.members == 1
    assert main(["eval", str(root / "seed-3"), "--episodes", "2"]) == 0
    assert main(["report", str(root / "seed-3"), str(root / "seed-4"), "--out", str(tmp_path / "report"),
                 "--eval-episodes", "0"]) == 0
    assert (tmp_path / "report" / "report.html").exists()
    # Resume the whole multi-seed run further (the algorithm read from the run): every member continues, no epoch
    # repeated or skipped.
    assert main(["train", "--run-dir", str(root), "--resume", "--steps", "1600"]) == 0
    for seed in (3, 4):
        assert progress_epochs(root / f"seed-{seed}" / "progress.csv") == [1, 2, 3, 4]
    capsys.readouterr()
    assert train_cli("--resume", "--run-dir", str(root), "--env", "SafetyAntVelocity-v1") == 2
    assert "conflicts" in capsys.readouterr().err
    assert main(["train", "--algo", "cpo", "--run-dir", str(root), "--resume"]) == 2
    assert "holds a 'ppo_lag' run, not 'cpo'" in capsys.readouterr().err
    # What a resumed run may change is applied to every member and said, not silently dropped.
    members = resumed_members(root, None, None)
    notes = check_resume_flags(members, None, None, None, None, None, ["train.progress_bar=true"])
    assert notes == ["note: --resume with train.progress_bar=True (was False)"]
    assert all(member.config.train.progress_bar for member in members)


def test_cost_limit_list_gives_one_member_per_budget(tmp_path):
    root = tmp_path / "budgets"
    assert train_cli("--seed", "0", "--steps", "400", "--run-dir", str(root), "--set", "env.cost_limit=5,50") == 0
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert names == ["seed-0-limit-5", "seed-0-limit-50"]
    assert load_policy(root / "seed-0-limit-5")[0].env.cost_limit == 5.0


@pytest.mark.slow
def test_resume_finds_the_epoch_every_member_reached(tmp_path):
    """A process killed between two members' checkpoint writes leaves them one epoch apart; resuming goes back to
    the epoch both have (each member keeps its previous checkpoint for this)."""
    root = tmp_path / "multi"
    assert train_cli("--seeds", "0,1", "--steps", "1200", "--run-dir", str(root),
                     "--set", "train.schedule_steps=1600") == 0
    lagging = root / "seed-1" / "checkpoints"
    (lagging / PREVIOUS_CHECKPOINT.split("/")[1]).replace(lagging / CHECKPOINT.split("/")[1])  # seed-1 at epoch 2
    assert main(["train", "--algo", "ppo_lag", "--run-dir", str(root), "--resume", "--steps", "1600"]) == 0
    for seed in (0, 1):
        assert progress_epochs(root / f"seed-{seed}" / "progress.csv") == [1, 2, 3, 4]


@pytest.mark.slow
def test_run_killed_before_its_first_checkpoint_resumes_from_scratch(tmp_path):
    run = tmp_path / "run"
    assert train_cli("--seed", "0", "--steps", "400", "--run-dir", str(run),
                     "--set", "train.schedule_steps=800") == 0
    (run / CHECKPOINT).unlink()
    (run / "progress.csv").unlink()
    assert train_cli("--resume", "--run-dir", str(run), "--steps", "800") == 0
    assert progress_epochs(run / "progress.csv") == [1, 2]
