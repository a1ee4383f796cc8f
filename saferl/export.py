"""`saferl export`: a run's deterministic policy as one ONNX or TorchScript file a robot can run without saferl.

The exported model is the whole path from raw sensor values to a motor command: Dict-observation flattening,
the observation normaliser (frozen at its training statistics), the actor's mean and the clip to the action
bounds that saferl's envs apply. It is float32, has no member axis, and matches
`np.clip(policy.predict(obs, deterministic=True), low, high)` to float32 rounding (the tests check 1e-5).

Interfaces (docs/deploy.md shows the control loop):
- ONNX, Box observations: input "obs" [batch, obs_dim] float32 -> output "action" [batch, act_dim].
- ONNX, Dict observations: one input per key, named by the key, in the Dict space's key order, each
  [batch, size] float32 (the key's array flattened) -> "action".
- TorchScript: a tensor [obs_dim] or [N, obs_dim], or for Dict observations a Dict[str, Tensor].
Each file carries a JSON description (env, keys, bounds) as ONNX metadata "saferl" / TorchScript extra file
"saferl.json".
"""

from __future__ import annotations

import difflib
import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from saferl.errors import SafeRLError
from saferl.files import atomic_write_bytes
from saferl.policies.actor_critic import ActorCritic

FORMATS = ("onnx", "torchscript")
ACTIVATION_MODULES = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}
ONNX_OPSET = 20  # onnxruntime 1.19 and 1.32 checked


class DeployedPolicy(nn.Module):
    """Raw observations [N, D] (or [D]) -> deterministic actions [N, A] clipped to the action bounds.

    A copy of member `member`'s actor and normaliser in float32: nothing here changes the run's policy. Uses
    torch's tanh, not the project's 2*sigmoid(2x)-1 speed trick: the same function to float32 rounding, and
    one operator every runtime has."""

    def __init__(self, policy: ActorCritic, action_low, action_high, member: int = 0):
        super().__init__()
        norm = policy.normalizer
        self.normalize = bool(policy.normalize_obs)
        self.obs_clip = float(norm.clip)
        # As the normaliser computes them: 1/std in float64, then float32.
        self.register_buffer("obs_mean", norm.mean[member].detach().to(torch.float32).clone())
        self.register_buffer("obs_inv_std", torch.rsqrt(norm.var[member].detach() + norm.epsilon).to(torch.float32))
        layers: list[nn.Module] = []
        actor_layers = policy.actor.layers()
        for index, (weight, bias) in enumerate(actor_layers):
            linear = nn.Linear(weight.shape[1], weight.shape[2])
            with torch.no_grad():
                linear.weight.copy_(weight[member].T)
                linear.bias.copy_(bias[member, 0])
            layers.append(linear)
            if index < len(actor_layers) - 1:
                layers.append(ACTIVATION_MODULES[policy.actor.activation_name]())
        self.actor = nn.Sequential(*layers)
        self.register_buffer("action_low", torch.as_tensor(np.asarray(action_low), dtype=torch.float32).clone())
        self.register_buffer("action_high", torch.as_tensor(np.asarray(action_high), dtype=torch.float32).clone())
        self.requires_grad_(False)
        self.eval()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs
        if self.normalize:
            x = ((x - self.obs_mean) * self.obs_inv_std).clamp(-self.obs_clip, self.obs_clip)
        return torch.minimum(torch.maximum(self.actor(x), self.action_low), self.action_high)


class DictObservationPolicy(nn.Module):
    """A DeployedPolicy fed a Dict observation: each key's array flattened, concatenated in `keys` order (the
    Dict space's, as gymnasium.spaces.flatten). Single observations ([size] per key) give one action, as
    `ActorCritic.predict` does."""

    def __init__(self, policy: DeployedPolicy, observation_keys: list[tuple[str, int]]):
        super().__init__()
        self.policy = policy
        self.keys = [key for key, _ in observation_keys]
        self.sizes = [size for _, size in observation_keys]

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = [obs[key].reshape(-1, size) for key, size in zip(self.keys, self.sizes)]  # noqa: B905 (TorchScript)
        action = self.policy(torch.cat(parts, dim=-1))
        return action[0] if obs[self.keys[0]].dim() <= 1 else action


def deployable(policy: ActorCritic, action_low, action_high) -> nn.Module:
    """The module an export writes: DeployedPolicy, wrapped for Dict observations when the policy has keys."""
    deployed = DeployedPolicy(policy, action_low, action_high)
    return DictObservationPolicy(deployed, policy.observation_keys) if policy.observation_keys else deployed


def description(policy: ActorCritic, action_low, action_high, extra: dict | None = None) -> str:
    """What a deployment needs to know besides the weights, as JSON inside the file."""
    return json.dumps({
        **(extra or {}),
        "obs_dim": policy.obs_dim,
        "observation_keys": policy.observation_keys,
        "action_low": np.asarray(action_low, dtype=float).tolist(),
        "action_high": np.asarray(action_high, dtype=float).tolist(),
    })


def to_torchscript(policy: ActorCritic, action_low, action_high, extra: dict | None = None) -> bytes:
    """TorchScript (deprecated by torch in favour of torch.export, still loadable from C++ with libtorch)."""
    buffer = io.BytesIO()
    extra_files = {"saferl.json": description(policy, action_low, action_high, extra)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(deployable(policy, action_low, action_high))
        torch.jit.save(scripted, buffer, _extra_files=extra_files)
    return buffer.getvalue()


def to_onnx(policy: ActorCritic, action_low, action_high, extra: dict | None = None) -> bytes:
    """torch.onnx's default (torch.export-based) exporter, with a dynamic batch axis."""
    try:
        import onnx  # noqa: F401  (the exporter needs both; say so before torch fails deep inside)
        import onnxscript  # noqa: F401
    except ImportError:
        raise SafeRLError("ONNX export needs the onnx and onnxscript packages: pip install 'saferl[export]'") from None
    model = deployable(policy, action_low, action_high)
    batch = torch.export.Dim("batch")
    if policy.observation_keys:
        names = [key for key, _ in policy.observation_keys]
        # As a keyword: torch.onnx reads a dict at the end of `args` as keyword arguments.
        kwargs = {"obs": {key: torch.zeros(2, size) for key, size in policy.observation_keys}}
        dynamic_shapes = {"obs": {key: {0: batch} for key in names}}
    else:
        names = ["obs"]
        kwargs = {"obs": torch.zeros(2, policy.obs_dim)}
        dynamic_shapes = {"obs": {0: batch}}
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)  # e.g. "torchvision is not installed" notes, nothing about our model
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (), kwargs=kwargs, input_names=names, output_names=["action"],
                                        dynamic_shapes=dynamic_shapes, opset_version=ONNX_OPSET, dynamo=True,
                                        verbose=False)
    finally:
        onnx_logger.setLevel(level)
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = "saferl", description(policy, action_low, action_high, extra)
    return proto.SerializeToString()


def export_policy(run_dir: Path, format: str, out: Path, force: bool = False) -> dict:
    """Write run_dir's deterministic policy to `out` (atomically); returns what was written."""
    from saferl.rundir import load_policy, make_env

    if format not in FORMATS:
        close = difflib.get_close_matches(str(format), FORMATS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise SafeRLError(f"unknown export format '{format}'{hint}; choose from {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise SafeRLError(f"--out {out} is a directory; give a file name")
    blocking = next((parent for parent in out.parents if parent.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise SafeRLError(f"cannot write {out}: {blocking} is a file, not a folder")
    if out.exists() and not force:
        raise SafeRLError(f"{out} exists; pass --force to overwrite it")
    config, policy, checkpoint = load_policy(Path(run_dir))
    env = make_env(config, seed=0, num_envs=1)
    low, high = env.single_action_space.low, env.single_action_space.high
    env.close()
    extra = {"env_id": config.env.id, "algo": config.train.algo, "env_steps": int(checkpoint["env_steps"])}
    writer = to_onnx if format == "onnx" else to_torchscript
    data = writer(policy, low, high, extra)
    try:
        atomic_write_bytes(out, data)
    except OSError as exc:  # a read-only or special file system; the temporary file's name would only confuse
        raise SafeRLError(f"cannot write {out}: {exc.strerror or exc}") from None
    return {"out": out, "format": format, "bytes": len(data), "env_id": config.env.id,
            "inputs": [key for key, _ in policy.observation_keys] if policy.observation_keys else ["obs"]}
