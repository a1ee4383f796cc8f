"""Actor and critics: Gaussian actor with state-independent log-std, reward critic, cost critic.

The observation normaliser is a submodule of `ActorCritic`, so `state_dict()` carries it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from saferl.policies.normalizer import RunningNormalizer

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, activation: str, out_gain: float) -> nn.Sequential:
    """MLP with orthogonal init (gain sqrt(2) hidden, `out_gain` output) and zero biases, as in PPO codebases."""
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden:
        linear = nn.Linear(last, width)
        nn.init.orthogonal_(linear.weight, gain=math.sqrt(2))
        nn.init.zeros_(linear.bias)
        layers += [linear, ACTIVATIONS[activation]()]
        last = width
    head = nn.Linear(last, out_dim)
    nn.init.orthogonal_(head.weight, gain=out_gain)
    nn.init.zeros_(head.bias)
    layers.append(head)
    return nn.Sequential(*layers)


LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


# Hand-written forward/backward for the MLPs above, used by PPO's minibatch loop: on a CPU with
# minibatches of 64, autograd's per-op bookkeeping costs more than the arithmetic, and these two
# functions do the same maths in half the time (tests/test_ppo.py checks them against autograd).
def activation_derivative(activation: nn.Module, output: torch.Tensor) -> torch.Tensor:
    """d(activation)/d(input), written in terms of the activation's output."""
    if isinstance(activation, nn.Tanh):
        return 1.0 - output * output
    if isinstance(activation, nn.ReLU):
        return (output > 0).to(output.dtype)
    if isinstance(activation, nn.ELU) and activation.alpha == 1.0:
        return torch.where(output > 0, 1.0, output + 1.0)
    raise ValueError(f"no hand-written derivative for {activation}")


FUNCTIONAL = {nn.Tanh: torch.tanh, nn.ReLU: torch.relu, nn.ELU: torch.nn.functional.elu}


@torch.no_grad()
def mlp_forward(net: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """Forward pass that keeps every layer's output (the input first) for `mlp_backward`.

    Calls the ops directly rather than the modules: nn.Module.__call__ costs more than a 64x64 matmul."""
    outputs = [x]
    for layer in net:
        if isinstance(layer, nn.Linear):
            x = torch.addmm(layer.bias, x, layer.weight.t())
        else:
            x = FUNCTIONAL[type(layer)](x)
        outputs.append(x)
    return outputs


def mlp_output(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """`net(x)` without module-call overhead, for the per-step inference of the collection loop."""
    for layer in net:
        x = torch.addmm(layer.bias, x, layer.weight.t()) if isinstance(layer, nn.Linear) else FUNCTIONAL[type(layer)](x)
    return x


@torch.no_grad()
def mlp_backward(net: nn.Sequential, outputs: list[torch.Tensor], grad_output: torch.Tensor) -> None:
    """Write dL/dparam into each parameter's `.grad` (overwriting it in place) given dL/d(net output)."""
    grad = grad_output
    for index in range(len(net) - 1, -1, -1):
        layer = net[index]
        if isinstance(layer, nn.Linear):
            if layer.weight.grad is None:
                layer.weight.grad, layer.bias.grad = torch.empty_like(layer.weight), torch.empty_like(layer.bias)
            torch.mm(grad.t(), outputs[index], out=layer.weight.grad)
            torch.sum(grad, 0, out=layer.bias.grad)
            if index > 0:
                grad = torch.mm(grad, layer.weight)
        else:
            grad = grad * activation_derivative(layer, outputs[index + 1])


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Log-density of a diagonal Gaussian, summed over action dims; written out to skip Normal's overhead."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - LOG_SQRT_2PI).sum(-1)


def gaussian_kl(mean_p, log_std_p, mean_q, log_std_q) -> torch.Tensor:
    """KL(p || q) of diagonal Gaussians, summed over action dims."""
    var_ratio = torch.exp(2 * (log_std_p - log_std_q))
    mean_term = (mean_p - mean_q).square() * torch.exp(-2 * log_std_q)
    return 0.5 * (var_ratio + mean_term - 1.0 - 2 * (log_std_p - log_std_q)).sum(-1)


class GaussianActor(nn.Module):
    """Diagonal Gaussian policy; log-std is a free parameter, independent of the state (as in OmniSafe/SB3)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden=(64, 64), activation="tanh", init_log_std=0.0):
        super().__init__()
        self.mean_net = mlp(obs_dim, hidden, act_dim, activation, out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))

    def forward(self, normalised_obs: torch.Tensor) -> torch.Tensor:
        return self.mean_net(normalised_obs)

    def log_prob(self, mean: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return gaussian_log_prob(mean, self.log_std, actions)

    def entropy(self) -> torch.Tensor:
        """Entropy of the Gaussian: the same for every state because the std is state-independent."""
        return (0.5 + LOG_SQRT_2PI + self.log_std).sum()

    def sample(self, mean: torch.Tensor) -> torch.Tensor:
        return mean + torch.randn_like(mean) * self.log_std.exp()


class Critic(nn.Module):
    """Value function with `num_heads` outputs (one per cost for the cost critic)."""

    def __init__(self, obs_dim: int, num_heads: int = 1, hidden=(64, 64), activation="tanh"):
        super().__init__()
        self.net = mlp(obs_dim, hidden, num_heads, activation, out_gain=1.0)

    def forward(self, normalised_obs: torch.Tensor) -> torch.Tensor:
        return self.net(normalised_obs)


def same_shape(nets: list[nn.Sequential]) -> bool:
    """True when the MLPs differ only in their output layer (then they can run as one stacked network)."""
    hidden = [[(type(m), getattr(m, "out_features", None)) for m in net][:-1] for net in nets]
    return all(h == hidden[0] for h in hidden) and len(nets[0]) >= 3


class StackedNetworks:
    """Actor mean, reward critic and cost critic evaluated together: the first layers concatenated into one
    matmul, the later ones as batched matmuls over the three networks, outputs zero-padded to one width.

    Three small MLPs per env step cost 9 matmuls and 6 activations, each paying CPU dispatch overhead; this
    pays 3 and 2. A snapshot of the weights, taken once per rollout."""

    def __init__(self, nets: list[nn.Sequential], out_dims: tuple[int, ...]):
        linears = [[m for m in net if isinstance(m, nn.Linear)] for net in nets]
        self.activation = FUNCTIONAL[type(nets[0][1])]
        self.out_dims = out_dims
        with torch.no_grad():
            self.first_weight = torch.cat([layers[0].weight for layers in linears]).t().contiguous()
            self.first_bias = torch.cat([layers[0].bias for layers in linears])
            self.weights, self.biases = [], []
            for depth in range(1, len(linears[0])):
                width = max(layers[depth].out_features for layers in linears)
                weight = torch.zeros(len(nets), linears[0][depth].in_features, width)
                bias = torch.zeros(len(nets), 1, width)
                for i, layers in enumerate(linears):
                    weight[i, :, : layers[depth].out_features] = layers[depth].weight.t()
                    bias[i, 0, : layers[depth].out_features] = layers[depth].bias
                self.weights.append(weight)
                self.biases.append(bias)

    def __call__(self, x: torch.Tensor):
        hidden = self.activation(torch.addmm(self.first_bias, x, self.first_weight))
        x = hidden.view(x.shape[0], len(self.out_dims), -1).transpose(0, 1)
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(bias, x, weight)
            if index < len(self.weights) - 1:
                x = self.activation(x)
        act_dim, _, num_costs = self.out_dims
        return x[0, :, :act_dim], x[1, :, 0], x[2, :, :num_costs]


class SeparateNetworks:
    """The same call as `StackedNetworks` for MLPs whose hidden sizes differ: one network after the other."""

    def __init__(self, nets: list[nn.Sequential]):
        self.nets = nets

    def __call__(self, x: torch.Tensor):
        actor, reward_critic, cost_critic = self.nets
        return mlp_output(actor, x), mlp_output(reward_critic, x).squeeze(-1), mlp_output(cost_critic, x)


class ActorCritic(nn.Module):
    """Everything a run needs to act and to evaluate states, saved as one module."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        num_costs: int = 1,
        actor_hidden=(64, 64),
        critic_hidden=(64, 64),
        activation: str = "tanh",
        init_log_std: float = 0.0,
        normalize_obs: bool = True,
        obs_clip: float = 10.0,
    ):
        super().__init__()
        self.obs_dim, self.act_dim, self.num_costs = obs_dim, act_dim, num_costs
        self.normalizer = RunningNormalizer(obs_dim, clip=obs_clip)
        self.normalizer.frozen = not normalize_obs
        self.normalize_obs = normalize_obs
        self.actor = GaussianActor(obs_dim, act_dim, actor_hidden, activation, init_log_std)
        self.reward_critic = Critic(obs_dim, 1, critic_hidden, activation)
        self.cost_critic = Critic(obs_dim, num_costs, critic_hidden, activation)

    def normalise(self, obs: torch.Tensor) -> torch.Tensor:
        return self.normalizer(obs) if self.normalize_obs else obs

    @torch.inference_mode()
    def step(self, normalised_obs: torch.Tensor, deterministic: bool = False):
        """One batched call per env step: action, its log-prob, reward value [N], cost values [N, K]."""
        return self.rollout_step(normalised_obs, deterministic)

    def rollout_step(self, normalised_obs: torch.Tensor, deterministic: bool = False,
                     stacked: StackedNetworks | SeparateNetworks | None = None):
        """`step` for the collection loop, which runs under one `torch.inference_mode()` and passes the
        rollout's `stacked_networks()` snapshot (the weights do not change during a rollout). The log-prob
        comes from the sampled noise (z = noise); tests check it against `GaussianActor.log_prob`."""
        if stacked is None:
            stacked = self.stacked_networks()
        mean, reward_value, cost_values = stacked(normalised_obs)
        if deterministic:
            return mean, stacked.log_prob_offset.expand(mean.shape[0]), reward_value, cost_values
        noise = torch.randn_like(mean)
        action = torch.addcmul(mean, noise, stacked.std)
        log_prob = noise.square().sum(-1).mul_(-0.5).add_(stacked.log_prob_offset)  # sum(-z^2/2 - log_std) - c
        return action, log_prob, reward_value, cost_values

    def stacked_networks(self) -> StackedNetworks | SeparateNetworks:
        """A snapshot of the policy for one rollout: the three MLPs stacked into one network when their
        hidden sizes agree (else run one by one), plus the actor's std and log-prob constant."""
        nets = [self.actor.mean_net, self.reward_critic.net, self.cost_critic.net]
        snapshot = (StackedNetworks(nets, (self.act_dim, 1, self.num_costs)) if same_shape(nets)
                    else SeparateNetworks(nets))
        with torch.no_grad():
            log_std = self.actor.log_std.detach()
            snapshot.std = log_std.exp()
            snapshot.log_prob_offset = (-log_std - LOG_SQRT_2PI).sum()
        return snapshot

    @torch.inference_mode()
    def act(self, obs: torch.Tensor, deterministic: bool = False):
        """`step` on raw observations (the normaliser is applied here, not updated)."""
        return self.step(self.normalise(obs), deterministic)

    @torch.inference_mode()
    def values(self, normalised_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reward value [N] and cost values [N, K] of already-normalised observations."""
        return self.reward_critic(normalised_obs).squeeze(-1), self.cost_critic(normalised_obs)

    @torch.inference_mode()
    def predict(self, obs, deterministic: bool = True):
        """Numpy in, numpy out: the call a deployment or evaluation script makes."""
        obs_t = torch.as_tensor(obs, dtype=torch.float32)
        single = obs_t.ndim == 1
        if single:
            obs_t = obs_t.unsqueeze(0)
        action = self.act(obs_t, deterministic=deterministic)[0].numpy()
        return action[0] if single else action
