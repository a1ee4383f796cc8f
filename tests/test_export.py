"""saferl export: the exported file (ONNX via onnxruntime, TorchScript) gives saferl's own deterministic action,
clipped to the action bounds, within 1e-5; Dict observations; docs/deploy.md's code runs; bad input is one line."""

import io
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import QUIET

from saferl import envs
from saferl.cli import main
from saferl.config import build_config
from saferl.envs.toy import TOY_ID
from saferl.errors import SafeRLError
from saferl.export import export_policy, to_onnx, to_torchscript
from saferl.launch import train_single
from saferl.policies.actor_critic import ActorCritic
from saferl.rundir import load_policy

TOLERANCE = 1e-5
DEPLOY_DOC = Path(__file__).resolve().parents[1] / "docs" / "deploy.md"
KEYS = [("position", 3), ("goal", 2), ("velocity", 2)]  # not sorted: the model must follow the policy's order
LOW, HIGH = np.array([-1.0, -0.5, -2.0], np.float32), np.array([1.0, 0.5, 2.0], np.float32)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("export") / "run"
    config = build_config("ppo", sets=[f"env.id={TOY_ID}", "env.num_envs=2", "train.steps_per_epoch=200",
                                       "train.total_steps=400", *QUIET])
    train_single(config, run_dir)
    return run_dir


@pytest.fixture(scope="module")
def run_onnx(tiny_run):
    """The tiny run exported through the command line (the one ONNX export of the run: ~2 s)."""
    out = tiny_run.parent / "policy.onnx"
    assert main(["export", str(tiny_run), "--format", "onnx", "--out", str(out)]) == 0
    return out


def toy_observations(count=1000, seed=0):
    """The toy's own range (phase in [0, 1], noise in +-0.05) and far outside it, where the normaliser clips."""
    rng = np.random.default_rng(seed)
    inside = np.stack([rng.uniform(0, 1, count // 2), rng.uniform(-0.05, 0.05, count // 2)], axis=1)
    return np.concatenate([inside, rng.normal(0, 2, (count - count // 2, 2))])


def reference_actions(policy, obs, low, high):
    return np.clip(policy.predict(obs, deterministic=True), low, high)


def onnx_session(data_or_path):
    return ort.InferenceSession(data_or_path if isinstance(data_or_path, bytes) else str(data_or_path),
                                providers=["CPUExecutionProvider"])


def torchscript_actions(data: bytes, obs) -> np.ndarray:
    model = torch.jit.load(io.BytesIO(data))
    if isinstance(obs, dict):
        return model({key: torch.as_tensor(value, dtype=torch.float32) for key, value in obs.items()}).numpy()
    return model(torch.as_tensor(obs, dtype=torch.float32)).numpy()


def onnx_actions(session, obs) -> np.ndarray:
    feeds = obs if isinstance(obs, dict) else {"obs": obs}
    return session.run(["action"], {key: np.asarray(v, np.float32) for key, v in feeds.items()})[0]


# -- a run directory --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_run_exports_match_saferl(tiny_run, run_onnx, tmp_path):
    _, policy, _ = load_policy(tiny_run)
    obs = toy_observations()
    expected = reference_actions(policy, obs, -1.0, 1.0)  # the toy's action space is [-1, 1]
    session = onnx_session(run_onnx)
    assert [i.name for i in session.get_inputs()] == ["obs"] and session.get_inputs()[0].shape == ["batch", 2]
    assert np.abs(onnx_actions(session, obs) - expected).max() < TOLERANCE
    meta = json.loads(session.get_modelmeta().custom_metadata_map["saferl"])
    assert meta["env_id"] == TOY_ID and meta["action_low"] == [-1.0] and meta["observation_keys"] is None

    out = tmp_path / "policy.pt"
    result = export_policy(tiny_run, "torchscript", out)
    assert result["bytes"] == out.stat().st_size and sorted(p.name for p in tmp_path.iterdir()) == ["policy.pt"]
    data = out.read_bytes()
    assert np.abs(torchscript_actions(data, obs) - expected).max() < TOLERANCE
    assert np.abs(torchscript_actions(data, obs[0]) - expected[0]).max() < TOLERANCE  # one observation, [D]


# -- a policy whose normaliser and action clip both bite, Box and Dict observations ---------------------------
@pytest.fixture(scope="module", params=[None, KEYS], ids=["box", "dict"])
def sharp_policy(request):
    """Random statistics and a large output layer: about half the actions leave the bounds, and observations
    far from the mean hit the normaliser's clip, so both are exercised."""
    generator = torch.Generator().manual_seed(1)
    policy = ActorCritic(1, 7, 3, observation_keys=request.param, generators=[generator])
    with torch.no_grad():
        policy.normalizer.mean.copy_(torch.randn(1, 7, generator=generator, dtype=torch.float64))
        policy.normalizer.var.copy_(torch.rand(1, 7, generator=generator, dtype=torch.float64) * 0.1 + 0.01)
        policy.actor.weights[-1].mul_(300.0)
    return policy.eval()


def sharp_observations(policy, count=1000):
    flat = np.random.default_rng(2).normal(0, 1, (count, policy.obs_dim))
    if policy.observation_keys is None:
        return flat
    starts = np.cumsum([0] + [size for _, size in policy.observation_keys])[:-1]
    return {key: flat[:, start : start + size]
            for (key, size), start in zip(policy.observation_keys, starts, strict=True)}


@pytest.fixture(scope="module")
def sharp_onnx(sharp_policy):
    return to_onnx(sharp_policy, LOW, HIGH)


@pytest.mark.slow
def test_onnx_matches_saferl(sharp_policy, sharp_onnx):
    obs = sharp_observations(sharp_policy)
    expected = reference_actions(sharp_policy, obs, LOW, HIGH)
    clipped = (expected == LOW) | (expected == HIGH)
    assert 0.2 < clipped.mean() < 0.8
    session = onnx_session(sharp_onnx)
    names = [key for key, _ in sharp_policy.observation_keys] if sharp_policy.observation_keys else ["obs"]
    assert [i.name for i in session.get_inputs()] == names
    assert all(i.type == "tensor(float)" for i in session.get_inputs())
    assert np.abs(onnx_actions(session, obs) - expected).max() < TOLERANCE


def test_torchscript_matches_saferl(sharp_policy):
    obs = sharp_observations(sharp_policy)
    expected = reference_actions(sharp_policy, obs, LOW, HIGH)
    data = to_torchscript(sharp_policy, LOW, HIGH)
    assert np.abs(torchscript_actions(data, obs) - expected).max() < TOLERANCE
    one = {key: value[3] for key, value in obs.items()} if isinstance(obs, dict) else obs[3]
    assert np.abs(torchscript_actions(data, one) - expected[3]).max() < TOLERANCE


def test_normaliser_clip_is_exercised(sharp_policy):
    flat = sharp_policy.flatten_observation(sharp_observations(sharp_policy))
    norm = sharp_policy.normalizer
    scaled = (flat - norm.mean[0].numpy()) / np.sqrt(norm.var[0].numpy() + norm.epsilon)
    assert 0.01 < (np.abs(scaled) > norm.clip).mean() < 0.5


@pytest.mark.slow
def test_onnx_without_exporter_packages_is_one_line(sharp_policy, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import fails as if not installed
    with pytest.raises(SafeRLError, match=r"pip install 'saferl\[export\]'"):
        to_onnx(sharp_policy, LOW, HIGH)


# -- docs/deploy.md ---------------------------------------------------------------------------------------------
def deploy_code_blocks():
    return re.findall(r"```python\n(.*?)```", DEPLOY_DOC.read_text(), flags=re.S)


@pytest.mark.slow
def test_deploy_doc_control_loop_runs(tiny_run, run_onnx, tmp_path, monkeypatch):
    loop, feeds_block, metadata_block = deploy_code_blocks()
    assert len(loop.strip().splitlines()) <= 12 and "torch" not in loop and "saferl" not in loop
    shutil.copy(run_onnx, tmp_path / "policy.onnx")
    monkeypatch.chdir(tmp_path)
    env = envs.make(TOY_ID, num_envs=1, seed=3)
    seen, sent = [], []
    current = env.reset(seed=3)[0][0]

    def read_observation():
        seen.append(current)
        return current

    def apply_action(action):
        nonlocal current
        sent.append(np.array(action))
        current = env.step(np.asarray(action, np.float32)[None])[0][0]
        seen.append(current)
        return current

    namespace = {"read_observation": read_observation, "apply_action": apply_action}
    exec(compile(loop, str(DEPLOY_DOC), "exec"), namespace)
    assert len(sent) == 1000
    _, policy, _ = load_policy(tiny_run)
    expected = reference_actions(policy, np.array(seen[:-1]), -1.0, 1.0)
    assert np.abs(np.array(sent) - expected).max() < TOLERANCE

    exec(compile(metadata_block, str(DEPLOY_DOC), "exec"), namespace)
    assert namespace["meta"]["env_id"] == TOY_ID


@pytest.mark.slow
def test_deploy_doc_dict_feeds(tmp_path):
    _, feeds_block, _ = deploy_code_blocks()
    policy = ActorCritic(1, 7, 3, observation_keys=KEYS).eval()
    namespace = {"np": np, "session": onnx_session(to_onnx(policy, LOW, HIGH))}
    exec(compile(feeds_block, str(DEPLOY_DOC), "exec"), namespace)
    obs = {key: value[0] for key, value in sharp_observations(policy).items()}  # one observation, as a robot reads it
    action = namespace["session"].run(["action"], namespace["feeds"](obs))[0][0]
    assert np.abs(action - reference_actions(policy, obs, LOW, HIGH)).max() < TOLERANCE


# -- the command line -------------------------------------------------------------------------------------------
def test_cli_refuses_to_overwrite_without_force(capsys, tiny_run, tmp_path):
    out = tmp_path / "policy.pt"
    out.write_bytes(b"an older export")
    assert main(["export", str(tiny_run), "--format", "torchscript", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "exists; pass --force" in err and err.count("\n") == 1
    assert out.read_bytes() == b"an older export"
    assert main(["export", str(tiny_run), "--format", "torchscript", "--out", str(out), "--force"]) == 0
    assert "torchscript:" in capsys.readouterr().out
    torch.jit.load(str(out))


@pytest.mark.parametrize("case, message", [
    ("not_a_run", "is not a run directory"),
    ("format", "unknown export format 'onxx' (did you mean 'onnx'?)"),
    ("parent_is_file", "is a file, not a folder"),
    ("out_is_folder", "is a directory"),
    pytest.param("unwritable", "cannot write /proc/saferl-policy.pt",
                 marks=pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc")),
])
def test_cli_bad_input_is_one_line_and_exit_2(capsys, tiny_run, tmp_path, case, message):
    (tmp_path / "file").write_text("x")
    run_dir, fmt, out = tiny_run, "torchscript", tmp_path / "policy.pt"
    if case == "not_a_run":
        run_dir = tmp_path
    elif case == "format":
        fmt = "onxx"
    elif case == "parent_is_file":
        out = tmp_path / "file" / "policy.pt"
    elif case == "out_is_folder":
        out = tmp_path
    elif case == "unwritable":  # not writable even for root
        out = Path("/proc/saferl-policy.pt")
    assert main(["export", str(run_dir), "--format", fmt, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "policy.pt").exists()
