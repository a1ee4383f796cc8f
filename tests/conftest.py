import subprocess
import sys
import textwrap

import pytest
import torch

from saferl.cli import main
from saferl.config import build_config
from saferl.envs.toy import TOY_ID

# The settings under which the toy task learns in seconds (see envs/toy.py).
TOY_SETS = [
    f"env.id={TOY_ID}",
    "env.num_envs=8",
    "train.total_steps=40000",
    "train.steps_per_epoch=2000",
    "train.episode_window=40",
    "train.progress_bar=false",
    "train.tensorboard=false",
    "ppo.update_epochs=10",
    "ppo.actor_lr=1e-3",
    "env.cost_limit=10",
    "lagrange.multiplier_lr=0.5",
]


@pytest.fixture(autouse=True)
def one_torch_thread():
    torch.set_num_threads(1)


@pytest.fixture
def toy_config():
    def make(algo="ppo_lag", extra=()):
        return build_config(algo, sets=TOY_SETS + list(extra))

    return make


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
