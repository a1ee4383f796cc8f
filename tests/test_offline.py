"""Offline-to-online: datasets (ours and DSRL's layout), collect -> BC round trip, BC-Safe filtering, and a
fine-tune whose recipe demonstrably keeps the clone's return where the naive start loses it."""

import copy
import json

import h5py
import numpy as np
import pytest
import torch
from conftest import QUIET, TOY_SETS, TOY_SETS_WITHOUT_STEPS, run_cli

from saferl.algorithms.common import BehaviourReference, PPOMinibatch
from saferl.cli import main
from saferl.config import build_config
from saferl.envs.toy import TOY_ID
from saferl.errors import SafeRLError
from saferl.evaluation import evaluate
from saferl.files import load_checkpoint
from saferl.launch import train_single
from saferl.logger import read_progress
from saferl.maths.lagrange import LagrangeMultiplier, PIDLagrangeMultiplier
from saferl.offline.bc import select_episodes, train_bc
from saferl.offline.collect import collect_demonstrations
from saferl.offline.dataset import Dataset, check_matches_env, read_dataset, write_dataset
from saferl.offline.finetune import (
    build_finetune_config,
    finetune,
    initial_multiplier,
    starting_log_std,
)
from saferl.rundir import CHECKPOINT, load_policy
from saferl.runner import Runner

RECIPE_OFF = ["finetune.critic_warmup_epochs=0", "finetune.log_std_rule=fixed", "finetune.init_log_std=0.0",
              "finetune.bc_kl_coef=0", "finetune.warm_start_multiplier=false"]


def bc_config(dataset, extra=()):
    return build_config("bc", sets=[f"env.id={TOY_ID}", f"bc.dataset={dataset}", "bc.epochs=40", *QUIET,
                                    "env.cost_limit=10", *extra])


def toy_dataset(episode_costs, length=5, obs_dim=2, act_dim=1) -> Dataset:
    """Episodes of `length` steps whose summed costs are `episode_costs` (all cost on the last step)."""
    steps = length * len(episode_costs)
    costs = np.zeros((steps, 1), np.float32)
    costs[length - 1::length, 0] = episode_costs
    timeouts = np.zeros(steps, bool)
    timeouts[length - 1::length] = True
    rng = np.random.default_rng(0)
    return Dataset(observations=rng.uniform(-1, 1, (steps, obs_dim)).astype(np.float32),
                   next_observations=rng.uniform(-1, 1, (steps, obs_dim)).astype(np.float32),
                   actions=rng.uniform(-1, 1, (steps, act_dim)).astype(np.float32),
                   rewards=np.ones(steps, np.float32), costs=costs, terminals=np.zeros(steps, bool),
                   timeouts=timeouts, attrs={"env_id": TOY_ID})


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A PPO-Lag demonstrator on the toy task (~10 s), 60 deterministic demonstrations and their clone."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("offline")
    train_single(build_config("ppo_lag", sets=TOY_SETS), root / "expert")
    demos = collect_demonstrations(root / "expert", 60, root / "demos.h5", deterministic=True)
    bc = train_bc(bc_config(root / "demos.h5"), root / "bc")
    return {"root": root, "expert": root / "expert", "dataset": root / "demos.h5", "bc": root / "bc",
            "demos": demos, "bc_summary": bc}


# -- datasets ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_collected_dataset_layout_and_attributes(pipeline):
    dataset = read_dataset(pipeline["dataset"])
    assert len(dataset) == 60 * 50 and dataset.observations.shape == (3000, 2) and dataset.actions.shape == (3000, 1)
    episodes = dataset.episode_slices()
    assert len(episodes) == 60 and all(s.stop - s.start == 50 for s in episodes)
    assert dataset.timeouts.sum() == 60 and not dataset.terminals.any()
    inside = np.ones(3000, bool)
    inside[[s.stop - 1 for s in episodes]] = False  # within an episode, next_obs is the following obs
    np.testing.assert_array_equal(dataset.next_observations[:-1][inside[:-1]], dataset.observations[1:][inside[:-1]])
    _, expert, _ = load_policy(pipeline["expert"])
    np.testing.assert_allclose(dataset.attrs["obs_mean"], expert.normalizer.mean[0].numpy())  # member 0
    assert dataset.attrs["obs_count"] == float(expert.normalizer.count[0])
    assert dataset.attrs["env_id"] == TOY_ID and dataset.attrs["cost_names"] == ["cost_velocity"]
    assert dataset.attrs["source_run"] == str(pipeline["expert"].resolve())
    assert dataset.attrs["policy_mode"] == "deterministic"
    assert np.isclose(dataset.episode_returns().mean(), pipeline["demos"]["mean_return"])


def test_reads_a_plain_dsrl_file(tmp_path):
    """DSRL layout, no attributes: episodes end at terminals | timeouts; a cut-off tail is one more episode."""
    terminals = np.zeros(10, bool)
    timeouts = np.zeros(10, bool)
    terminals[2], timeouts[6] = True, True  # episodes [0, 3), [3, 7), and the fragment [7, 10)
    costs = np.arange(10, dtype=np.float32)  # DSRL stores one cost as [T]
    with h5py.File(tmp_path / "dsrl.hdf5", "w") as handle:
        handle["observations"] = np.zeros((10, 2), np.float32)
        handle["next_observations"] = np.zeros((10, 2), np.float32)
        handle["actions"] = np.zeros((10, 1), np.float32)
        handle["rewards"] = np.ones(10, np.float32)
        handle["costs"] = costs
        handle["terminals"] = terminals.astype(np.float32)  # published files often store 0/1 floats
        handle["timeouts"] = timeouts.astype(np.float32)
    dataset = read_dataset(tmp_path / "dsrl.hdf5")
    assert [(s.start, s.stop) for s in dataset.episode_slices()] == [(0, 3), (3, 7), (7, 10)]
    np.testing.assert_array_equal(dataset.episode_costs()[:, 0], [0 + 1 + 2, 3 + 4 + 5 + 6, 7 + 8 + 9])
    np.testing.assert_array_equal(dataset.episode_returns(), [3, 4, 3])
    assert dataset.costs.shape == (10, 1) and dataset.attrs == {}

    with h5py.File(tmp_path / "broken.hdf5", "w") as handle:
        handle["observations"] = np.zeros((10, 2))
    with pytest.raises(SafeRLError, match="lacks next_observations, actions"):
        read_dataset(tmp_path / "broken.hdf5")


def test_write_read_round_trip_is_exact(tmp_path):
    dataset = toy_dataset([0.0, 3.0, 1.0])
    dataset.attrs.update(obs_mean=np.array([0.5, -0.5]), cost_names=["a"], noise_std=None)
    write_dataset(tmp_path / "d.h5", dataset)
    again = read_dataset(tmp_path / "d.h5")
    for key in ("observations", "actions", "costs", "timeouts"):
        np.testing.assert_array_equal(getattr(again, key), getattr(dataset, key))
    np.testing.assert_array_equal(again.attrs["obs_mean"], [0.5, -0.5])
    assert again.attrs["cost_names"] == ["a"] and "noise_std" not in again.attrs
    assert [p.name for p in tmp_path.iterdir()] == ["d.h5"]  # no temporary file left behind


def test_shape_mismatch_is_one_clear_error(tmp_path):
    with pytest.raises(SafeRLError, match=f"observations of size 3 but {TOY_ID} has 2"):
        check_matches_env(toy_dataset([0.0], obs_dim=3), 2, 1, TOY_ID, tmp_path / "d.h5")
    with pytest.raises(SafeRLError, match=f"actions of size 2 but {TOY_ID} has 1"):
        check_matches_env(toy_dataset([0.0], act_dim=2), 2, 1, TOY_ID, tmp_path / "d.h5")


def test_safe_filter_keeps_only_episodes_within_the_limit(tmp_path):
    dataset = toy_dataset([1.0, 12.0, 10.0, 30.0, 4.0])
    np.testing.assert_array_equal(select_episodes(dataset, "all", 10.0, "d"), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(select_episodes(dataset, "safe", 10.0, "d"), [0, 2, 4])  # <= limit is kept
    with pytest.raises(SafeRLError, match="no episode of d has cost <= 0.5 \\(lowest 1\\)"):
        select_episodes(dataset, "safe", 0.5, "d")
    write_dataset(tmp_path / "d.h5", dataset)
    summary = train_bc(bc_config(tmp_path / "d.h5", ["bc.filter=safe", "bc.epochs=2", "bc.eval_episodes=0"]),
                       tmp_path / "bc")
    assert summary["episodes_total"] == 5 and summary["episodes_kept"] == 3 and summary["kept_mean_cost"] < 10
    assert summary["normalizer"] == "data"  # the file stores no demonstrator statistics


# -- behaviour cloning -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_bc_clone_reaches_the_demonstrators_return(pipeline):
    demo_return, summary = pipeline["demos"]["mean_return"], pipeline["bc_summary"]
    assert abs(summary["eval_return"] - demo_return) <= 0.05 * abs(demo_return) + 0.5, (summary, demo_return)
    assert summary["eval_cost"] <= pipeline["demos"]["mean_cost"] + 1.0
    assert summary["normalizer"] == "dataset" and summary["val_episodes"] == 6
    rows = read_progress(pipeline["bc"] / "progress.csv")
    assert len(rows) == summary["epochs_run"] and {"train_loss", "val_loss", "val_nll"} <= rows[0].keys()
    assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"])
    config, policy, checkpoint = load_policy(pipeline["bc"])  # the Runner's checkpoint format
    assert config.train.algo == "bc" and checkpoint["env_steps"] == 0
    assert json.loads((pipeline["bc"] / "eval.json").read_text())["algo"] == "bc"
    result = evaluate(pipeline["bc"], episodes=4, deterministic=True)
    assert abs(result["mean_return"] - demo_return) <= 0.05 * abs(demo_return) + 0.5


# -- fine-tuning -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_recipe_keeps_the_clones_return_and_its_absence_dips(pipeline):
    """Same budget (10 epochs) from the same clone: with warm-up, small log-std, KL-to-BC and the multiplier
    warm start every epoch stays near the clone's return; a naive start (log-std 0, no warm-up, no KL) is
    pushed over the budget by its own exploration noise and loses return while it backs off."""
    root, bc_return = pipeline["root"], pipeline["bc_summary"]["eval_return"]
    sets = TOY_SETS_WITHOUT_STEPS + ["train.total_steps=20000"]
    finetune(pipeline["bc"], "ppo_lag", root / "on", sets=sets)
    finetune(pipeline["bc"], "ppo_lag", root / "off", sets=sets + RECIPE_OFF)
    on, off = read_progress(root / "on" / "progress.csv"), read_progress(root / "off" / "progress.csv")
    assert [r["phase"] for r in on] == ["warmup"] * 3 + ["finetune"] * 7 and len(off) == 10
    assert on[0]["approx_kl"] == "" and on[3]["approx_kl"] != ""  # warm-up rows kept, with all columns
    on_returns = [float(r["epoch_ep_return"]) for r in on]
    off_returns = [float(r["epoch_ep_return"]) for r in off]
    assert min(on_returns) >= bc_return - 2.0, (bc_return, on_returns)
    assert min(off_returns) <= min(on_returns) - 5.0, (on_returns, off_returns)
    assert int(on[-1]["total_violations"]) < int(off[-1]["total_violations"])  # and it stays safer meanwhile
    assert float(on[3]["bc_kl_coef"]) == 1.0 and float(on[4]["bc_kl_coef"]) == pytest.approx(0.9)
    assert float(on[0]["lagrange_multiplier"]) == 0.0  # the clone is within budget: lambda0 = 0
    meta = json.loads((root / "on" / "meta.json").read_text())["finetune"]
    assert meta["bc_log_std"] == [-5.0] and meta["start_log_std"] == [-3.0]  # deterministic demos: the floor
    _, clone, _ = load_policy(pipeline["bc"])
    _, tuned, _ = load_policy(root / "on")
    torch.testing.assert_close(tuned.normalizer.mean, clone.normalizer.mean)  # frozen normaliser


@pytest.mark.slow
def test_finetune_config_inherits_the_clone_and_rejects_other_algos(pipeline):
    bc = load_policy(pipeline["bc"])[0]
    config = build_finetune_config(bc, "cpo", sets=["finetune.bc_kl_coef=0.5"])
    assert config.env.id == TOY_ID and config.env.cost_limit == 10 and config.train.algo == "cpo"
    assert config.finetune.bc_kl_coef == 0.5 and config.train.total_steps == 1_000_000
    with pytest.raises(SafeRLError, match="finetune supports --algo ppo, ppo_lag, cpo; got 'trpo'"):
        build_finetune_config(bc, "trpo")


def test_starting_log_std_rules():
    bc_log_std = torch.tensor([-0.5, -2.0, -6.0])
    cfg = build_config("ppo").finetune
    torch.testing.assert_close(starting_log_std(bc_log_std, cfg), torch.tensor([-1.0, -2.0, -3.0]))
    cfg.log_std_rule = "fixed"
    torch.testing.assert_close(starting_log_std(bc_log_std, cfg), torch.full((3,), -1.0))
    cfg.log_std_rule = "bc"
    torch.testing.assert_close(starting_log_std(bc_log_std, cfg), bc_log_std)


def test_multiplier_warm_start():
    np.testing.assert_allclose(initial_multiplier([20.0, 5.0], 10.0), [1.0, 0.0])
    np.testing.assert_allclose(initial_multiplier([3.0], 0.0), [3.0])
    np.testing.assert_allclose(initial_multiplier([[20.0], [5.0]], [[10.0], [10.0]]), [[1.0], [0.0]])
    gradient = LagrangeMultiplier(np.array([[10.0], [10.0]]), 0.001, 0.035)
    gradient.reset_to(np.array([[1.5], [0.5]]))
    np.testing.assert_allclose(gradient.value, [[1.5], [0.5]])
    pid = PIDLagrangeMultiplier(np.array([[10.0]]), 0.1, 0.01, 0.05)
    pid.reset_to(np.array([[1.5]]))
    assert pid.value[0, 0] == pytest.approx(1.5)
    assert pid.update([[10.0]])[0, 0] == pytest.approx(1.5)  # at the limit, the integral alone keeps lambda0


@pytest.mark.parametrize("kind", ["gradient", "pid"])
def test_multiplier_reset_to_equals_a_multiplier_initialised_there(kind):
    """After any history, reset_to(v) continues exactly as a fresh multiplier built with init v would."""
    limits = np.array([[10.0, 5.0], [10.0, 5.0]])

    def build(init):
        if kind == "gradient":
            return LagrangeMultiplier(limits, init, 0.035)
        return PIDLagrangeMultiplier(limits, 0.1, 0.01, 0.05, 0.5, init)

    used, fresh = build(0.0), build(0.7)
    for cost in ([[30.0, 1.0], [np.nan, np.nan]], [[25.0, 9.0], [12.0, 2.0]]):
        used.update(cost)
    used.reset_to(np.full((2, 2), 0.7))
    np.testing.assert_allclose(used.value, fresh.value)
    for cost in ([[14.0, 6.0], [8.0, 7.0]], [[16.0, 3.0], [np.nan, np.nan]], [[12.0, 9.0], [30.0, 1.0]]):
        np.testing.assert_allclose(used.update(cost), fresh.update(cost), rtol=1e-6)


def test_runner_starts_every_member_from_the_given_policy_state(tiny_pipeline, tmp_path):
    """Runner(start=...) loads the state into every member of a new run (not into a resumed one), freezes the
    normaliser when asked, and lets the learning rate anneal over the epochs after the warm-up."""
    from saferl.launch import new_members
    from saferl.runner import PolicyStart

    bc_config, clone, _ = load_policy(tiny_pipeline / "bc")
    config = build_finetune_config(bc_config, "ppo_lag", sets=[*TOY_SETS_WITHOUT_STEPS, "train.total_steps=2000",
                                                                "train.steps_per_epoch=400", "ppo.update_epochs=2"])
    start = PolicyStart(clone.member_state_dict(0), freeze_normalizer=True, source="the test clone")
    runner = Runner(new_members(config, [0, 1], None, tmp_path / "new"), start=start, warmup_epochs=2)
    for k in range(2):
        for key, value in runner.policy.member_state_dict(k).items():
            torch.testing.assert_close(value, start.state[key], msg=key)
    assert runner.policy.normalizer.frozen and runner.algorithm.anneal_epochs == 5 - 2
    runner.train()
    resumed = Runner(new_members(config, [0, 1], None, tmp_path / "new"), resume=True, start=start)
    assert not torch.equal(resumed.policy.actor.layers()[0][0][0], clone.actor.layers()[0][0][0])  # its checkpoint
    unfit = copy.deepcopy(config)
    unfit.model.actor_hidden = [7]
    with pytest.raises(SafeRLError, match="^the test clone does not fit this config's model$"):
        Runner(new_members(unfit, None, None, tmp_path / "unfit"), start=start)
    assert not (tmp_path / "unfit" / "config.yaml").exists()


def test_kl_to_bc_term_uses_autograd_and_decays(monkeypatch, toy_config, tmp_path):
    """The hand-written gradient knows nothing of the KL term, so it must be off while the term is on."""
    from saferl.algorithms import ppo as ppo_module
    from saferl.launch import new_members

    config = toy_config("ppo_lag", ["train.steps_per_epoch=400", *QUIET])
    runner = Runner(new_members(config, None, None, tmp_path / "run"))
    algorithm, policy = runner.algorithm, runner.policy
    shifted = copy.deepcopy(policy)
    with torch.no_grad():
        shifted.actor.biases[-1].add_(0.3)
    reference = BehaviourReference(shifted, policy.log_std.detach())
    algorithm.set_behaviour_reference(reference, coef=2.0, decay=0.5)
    runner.collect()
    batch = runner.rollout_batch()
    size = 64  # on one minibatch the loss grows by exactly coef * KL(reference || policy)
    minibatch = PPOMinibatch(batch.obs, batch.actions, batch.log_probs, torch.zeros(1, batch.size, 1),
                             torch.zeros(1, batch.size), batch.reward_returns, batch.cost_returns, batch.reward_values,
                             batch.cost_values).slice(0, size)
    old_log_std = policy.log_std_per_member().detach()
    with torch.no_grad():
        plain = algorithm.loss(minibatch, old_log_std, torch.ones(1), torch.zeros(1))
        penalised = algorithm.loss(minibatch._replace(bc_means=reference.means(minibatch.obs)), old_log_std,
                                   torch.ones(1), torch.tensor([2.0]))
    expected = 2.0 * algorithm.behaviour_kl(batch.obs[:, :size])[0]
    assert float(penalised[0] - plain[0]) == pytest.approx(float(expected), rel=1e-4)

    def forbidden(*_args, **_kwargs):
        raise AssertionError("hand-written gradient used while the KL-to-BC term is on")

    monkeypatch.setattr(ppo_module, "clip_loss_gradients", forbidden)
    stats = algorithm.update(batch, np.array([[0.0]]), np.array([50.0]))
    assert stats["bc_kl_coef"][0] == 2.0 and algorithm.bc_kl_coef[0] == 1.0 and stats["bc_kl"][0] > 0


def critic_weights(run_dir):
    policy = load_checkpoint(run_dir / CHECKPOINT)["policy"]
    return {k: v for k, v in policy.items() if "critic" in k}


def test_finetune_updates_the_critics_after_the_warm_up(bc_run, tmp_path):
    """The bug: the warm-up replaced the parameters' .grad views, so Adam never moved the critics again and
    fine-tunes 1 and 3 epochs past the warm-up ended with identical critic weights."""
    finals = []
    for epochs in (3, 5):  # one warm-up epoch, then 2 or 4 updates
        run = tmp_path / f"ft-{epochs}"
        assert main(["finetune", str(bc_run), "--algo", "ppo_lag", "--steps", str(200 * epochs), "--num-envs", "4",
                     "--run-dir", str(run), "--set", "train.steps_per_epoch=200", "finetune.critic_warmup_epochs=1",
                     "ppo.update_epochs=2", *QUIET]) == 0
        finals.append(critic_weights(run))
    changed = [k for k in finals[0] if not torch.equal(finals[0][k], finals[1][k])]
    assert len(changed) == len(finals[0]), f"critic tensors unchanged by later updates: {set(finals[0]) - set(changed)}"


# -- the command line --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_collect_bc_finetune_eval(capsys, pipeline, tmp_path):
    data = tmp_path / "noisy.h5"
    code, out, err = run_cli(capsys, ["collect", str(pipeline["expert"]), "--episodes", "8", "--out", str(data),
                                      "--noise", "0.1"])
    assert code == 0 and "8 episodes (400 steps)" in out, err
    assert read_dataset(data).attrs["noise_std"] == 0.1
    code, out, err = run_cli(capsys, ["bc", "--dataset", str(data), "--epochs", "3", "--run-dir", str(tmp_path / "bc"),
                                      "--set", *QUIET, "bc.eval_episodes=2"])
    assert code == 0 and "bc: 8/8 episodes (all), 3 epochs" in out and "clone: return" in out, err
    code, out, err = run_cli(capsys, ["finetune", str(tmp_path / "bc"), "--algo", "ppo_lag", "--steps", "4000",
                                      "--run-dir", str(tmp_path / "ft"), "--set", *TOY_SETS_WITHOUT_STEPS,
                                      "finetune.critic_warmup_epochs=1"])
    assert code == 0 and "final: env_steps=4000" in out, err
    assert [r["phase"] for r in read_progress(tmp_path / "ft" / "progress.csv")] == ["warmup", "finetune"]
    code, out, err = run_cli(capsys, ["eval", str(tmp_path / "ft"), "--episodes", "2"])
    assert code == 0 and "ppo_lag" in out, err


@pytest.mark.parametrize(
    "args, message",
    [
        (["collect", "/nonexistent-run", "--episodes", "2", "--out", "{tmp}/d.h5"], "is not a run directory"),
        (["collect", "{expert}", "--episodes", "0", "--out", "{tmp}/d.h5"], "--episodes must be >= 1"),
        (["collect", "{expert}", "--episodes", "2", "--out", "{tmp}/d.h5", "--noise", "-1"], "--noise must be"),
        (["collect", "{expert}", "--episodes", "2", "--out", "{tmp}/d.h5", "--noise", "0.1", "--deterministic"],
         "exclude each other"),
        (["bc", "--dataset", "{tmp}/missing.h5", "--env", TOY_ID], "dataset not found"),
        (["bc", "--dataset", "{tmp}/text.h5", "--env", TOY_ID], "is not an HDF5 file"),
        (["bc", "--dataset", "{dataset}", "--env", "SafetyHalfCheetahVelocity-v1"],
         "has observations of size 2 but SafetyHalfCheetahVelocity-v1 has 17"),
        (["bc", "--dataset", "{dataset}", "--filter", "safest"], "bc.filter must be 'all' or 'safe'"),
        (["bc", "--dataset", "{dataset}", "--epochs", "0"], "--epochs must be >= 1"),
        (["bc", "--dataset", "{dataset}", "--filter", "safe", "--cost-limit", "-1"], "env.cost_limit must be"),
        (["finetune", "{expert}", "--algo", "ppo_lag"], "holds a 'ppo_lag' run, not a 'bc' one"),
        (["finetune", "{bc}", "--algo", "trpo"], "finetune supports --algo ppo, ppo_lag, cpo; got 'trpo'"),
        (["finetune", "{bc}", "--algo", "ppo", "--steps", "2000", "--set", "train.steps_per_epoch=2000"],
         "leaves no epoch after 3 warm-up epochs"),
        (["finetune", "/nonexistent-run", "--algo", "ppo"], "is not a run directory"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(capsys, tiny_pipeline, tmp_path, args, message):
    (tmp_path / "text.h5").write_text("not hdf5")
    paths = {"tmp": tmp_path, "expert": tiny_pipeline / "expert", "dataset": tiny_pipeline / "demos.h5",
             "bc": tiny_pipeline / "bc"}
    args = [a.format(**paths) for a in args] + ["--run-dir", str(tmp_path / "r")] * (args[0] != "collect")
    code, _, err = run_cli(capsys, args)
    assert code == 2 and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_finetune_resumes_with_its_kl_reference_and_decayed_coefficient(capsys, pipeline, tmp_path):
    run_dir = tmp_path / "ft"
    common = ["finetune", str(pipeline["bc"]), "--algo", "ppo_lag", "--run-dir", str(run_dir)]
    sets = ["--set", *TOY_SETS_WITHOUT_STEPS, "finetune.critic_warmup_epochs=1", "finetune.bc_kl_decay=0.5",
            "train.schedule_steps=12000"]  # the plan; 6000 stands for a run killed at epoch 3
    code, _, err = run_cli(capsys, [*common, "--steps", "6000", *sets])
    assert code == 0, err
    code, _, err = run_cli(capsys, [*common, "--steps", "10000", "--resume"])
    assert code == 0, err
    rows = read_progress(run_dir / "progress.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    assert [r["phase"] for r in rows] == ["warmup", "finetune", "finetune", "finetune", "finetune"]
    # the KL-to-BC coefficient keeps halving across the restart: 1, 0.5 before it, 0.25, 0.125 after
    assert [float(r["bc_kl_coef"]) for r in rows[1:]] == [1.0, 0.5, 0.25, 0.125]
    code, _, err = run_cli(capsys, [*common, "--resume", "--steps", "12000"])
    assert code == 0 and len(read_progress(run_dir / "progress.csv")) == 6


@pytest.mark.slow
def test_finetune_a_clone_critic_free_with_grpo_and_the_kl_to_clone(capsys, pipeline, tmp_path):
    """`saferl finetune ... --set train.advantage=grpo`: group rollouts, the KL-to-clone term as the regulariser,
    and no critic trained (the warm-up epoch only measures the clone)."""
    run_dir = tmp_path / "ft"
    code, out, err = run_cli(capsys, ["finetune", str(pipeline["bc"]), "--algo", "ppo_lag", "--steps", "6000",
                                      "--run-dir", str(run_dir), "--set", *TOY_SETS_WITHOUT_STEPS,
                                      "finetune.critic_warmup_epochs=1", "train.advantage=grpo",
                                      "train.group_size=4"])
    assert code == 0 and "final: env_steps=6000" in out, err
    rows = read_progress(run_dir / "progress.csv")
    assert [r["phase"] for r in rows] == ["warmup", "finetune", "finetune"]
    assert all(r.get("value_loss", "") == "" for r in rows)  # no critic fitted, in the warm-up or after
    assert float(rows[1]["bc_kl_coef"]) == 1.0 and float(rows[1]["bc_kl"]) > 0.0  # the term is in the loss
    assert float(rows[2]["bc_kl_coef"]) == pytest.approx(0.9)
    assert all(int(r["group_episodes"]) == 10 for r in rows)
    _, clone, _ = load_policy(pipeline["bc"])
    _, tuned, _ = load_policy(run_dir)
    for before, after in zip(clone.critic_parameters(cost=True), tuned.critic_parameters(cost=True), strict=True):
        torch.testing.assert_close(before, after, rtol=0, atol=0)
    assert not torch.equal(clone.actor_parameters()[0], tuned.actor_parameters()[0])
