"""What the test files share: the toy settings, the quiet `--set` lists, the tiny `saferl train` command, running
the CLI in-process, a runner from a config, a tiny expert -> demonstrations -> clone pipeline, and loading a
benchmark script (benchmarks/ is not a package) as a module."""

import importlib.util
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from saferl.cli import main
from saferl.config import build_config
from saferl.envs.toy import TOY_ID
from saferl.launch import new_members, train_single
from saferl.logger import read_progress
from saferl.runner import Runner

# No progress bar and no TensorBoard files: what every run a test starts sets.
QUIET = ["train.progress_bar=false", "train.tensorboard=false"]
# QUIET and a single PPO update epoch: the smallest runs (and what a resume passes again).
QUICK = [*QUIET, "ppo.update_epochs=1"]

# The settings under which the toy task learns in seconds (see envs/toy.py).
TOY_SETS = [
    f"env.id={TOY_ID}",
    "env.num_envs=8",
    "train.total_steps=40000",
    "train.steps_per_epoch=2000",
    "train.episode_window=40",
    *QUIET,
    "ppo.update_epochs=10",
    "ppo.actor_lr=1e-3",
    "env.cost_limit=10",
    "lagrange.multiplier_lr=0.5",
]
# TOY_SETS less its step budget, for commands that give --steps (a --set would override the flag).
TOY_SETS_WITHOUT_STEPS = [s for s in TOY_SETS if not s.startswith("train.total_steps")]

# `saferl train`: two 200-step PPO-Lag epochs on two toy envs; add --run-dir (and more --set values).
TINY_TRAIN = ["train", "--algo", "ppo_lag", "--env", TOY_ID, "--num-envs", "2", "--steps", "400", "--set",
              "train.steps_per_epoch=200", *QUICK]
# `saferl offline-pipeline` at its smallest (a 200-step expert, one demonstration, one BC epoch).
TINY_OFFLINE_PIPELINE = ["--env", TOY_ID, "--expert-steps", "200", "--steps", "200", "--episodes", "1",
                         "--bc-epochs", "1", "--num-envs", "4", "--set", "train.steps_per_epoch=200",
                         "finetune.critic_warmup_epochs=0", *QUIET]
# A benchmark cell's settings for grids of a few hundred steps.
TINY_CELL_SETS = ["train.steps_per_epoch=400", "env.num_envs=4", *QUIET]


def load_script(path, name: str):
    """A script under benchmarks/ as a module, registered under `name` (its dataclasses need sys.modules)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def slow_except(cases, keep, key=None):
    """Parametrize `cases`, all but those whose key (default: the first value) is in `keep` marked slow:
    `make test-fast` runs the representatives in `keep`, `make test` runs every case."""
    def values(case):
        return case if isinstance(case, tuple) else (case,)

    key = key or (lambda case: values(case)[0])
    return [case if key(case) in keep else pytest.param(*values(case), marks=pytest.mark.slow) for case in cases]


@pytest.fixture(autouse=True)
def one_torch_thread():
    torch.set_num_threads(1)


@pytest.fixture
def toy_config():
    def make(algo="ppo_lag", extra=()):
        return build_config(algo, sets=TOY_SETS + list(extra))

    return make


def make_runner(config, run_dir, seeds=None, resume=False):
    """A Runner of one member in run_dir, or of one member per seed in run_dir/seed-<s>."""
    return Runner(new_members(config, seeds, None, run_dir), resume=resume)


def progress_rows(run_dir):
    return read_progress(run_dir / "progress.csv")


def member_generators(members, offset=0):
    """One torch generator per member, seeded offset, offset + 1, ..."""
    return [torch.Generator().manual_seed(offset + k) for k in range(members)]


def command_on(run_dir, command, tmp_path):
    """The argv of a command that reads run_dir: eval, collect, resume or finetune (writing under tmp_path)."""
    return {
        "eval": ["eval", run_dir, "--episodes", "1"],
        "collect": ["collect", run_dir, "--episodes", "1", "--out", tmp_path / "d.h5"],
        "resume": ["train", "--algo", "ppo_lag", "--run-dir", run_dir, "--resume"],
        "finetune": ["finetune", run_dir, "--algo", "ppo", "--run-dir", tmp_path / "ft"],
    }[command]


def run_cli(capsys, args):
    """`saferl ARGS` in this process: (exit status, stdout, stderr)."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    assert err.startswith("saferl") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """A one-epoch PPO-Lag run on the toy task ("expert"), 4 demonstrations of it ("demos.h5") and their
    one-epoch clone ("bc"), built once for the session; tests read it, or break a copy (`expert`, `bc_run`)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pipeline")
    train_single(build_config("ppo_lag", sets=[f"env.id={TOY_ID}", "env.num_envs=4", "train.steps_per_epoch=200",
                                               "train.total_steps=200", *QUICK]), root / "expert")
    assert main(["collect", str(root / "expert"), "--episodes", "4", "--out", str(root / "demos.h5")]) == 0
    assert main(["bc", "--dataset", str(root / "demos.h5"), "--epochs", "1", "--run-dir", str(root / "bc"),
                 "--set", "bc.eval_episodes=0", *QUIET]) == 0
    return root


@pytest.fixture
def expert(tiny_pipeline, tmp_path):
    """A private copy of the tiny pipeline's expert run, free to break."""
    return shutil.copytree(tiny_pipeline / "expert", tmp_path / "expert")


@pytest.fixture
def bc_run(tiny_pipeline, tmp_path):
    """A private copy of the tiny pipeline's clone, free to break."""
    return shutil.copytree(tiny_pipeline / "bc", tmp_path / "bc")


HOLD = textwrap.dedent("""
    import sys, time
    from saferl.ownership import claim
    with claim(sys.argv[1]):
        print("held", flush=True)
        time.sleep(60)
""")


@pytest.fixture
def holder():
    """Start a process that owns a directory until the test ends (or is killed); gives its Popen."""
    processes = []

    def hold(directory):
        process = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "held"
        processes.append(process)
        return process

    yield hold
    for process in processes:
        process.kill()
        process.wait()
