"""A wheel install is the checkout: build the wheel, install it into a fresh directory, and run the whole chain
(train, collect, bc, finetune, report) from outside the repository."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import QUIET

ROOT = Path(__file__).resolve().parents[1]
TOY = "SafetyToyVelocity-v0"
SMALL = ["--set", "train.steps_per_epoch=400", *QUIET, "ppo.update_epochs=2"]


@pytest.mark.slow
def test_wheel_installs_one_package_with_its_configs_and_runs_outside_the_repository(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = wheels.glob("saferl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"saferl"}, f"the wheel installs {sorted(top_level)}"
    assert "saferl/configs/finetune.yaml" in names and "saferl/configs/quickstart.yaml" in names

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}

    def saferl(*args):
        done = subprocess.run([sys.executable, "-m", "saferl", *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    where = subprocess.run([sys.executable, "-c", "import saferl; print(saferl.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(target)), f"imported {where}, not the installed wheel"
    saferl("train", "--algo", "ppo_lag", "--env", TOY, "--num-envs", "4", "--steps", "800", "--run-dir", "expert",
           *SMALL)
    saferl("collect", "expert", "--episodes", "6", "--out", "demos.h5")
    saferl("bc", "--dataset", "demos.h5", "--epochs", "2", "--run-dir", "bc", "--set", "bc.eval_episodes=2",
           "train.progress_bar=false")
    out = saferl("finetune", "bc", "--algo", "ppo_lag", "--steps", "1600", "--num-envs", "4", "--run-dir", "ft",
                 *SMALL, "finetune.critic_warmup_epochs=1")
    assert "final:" in out
    saferl("report", "ft", "--eval-episodes", "2")
    assert (work / "ft" / "report.html").exists()
