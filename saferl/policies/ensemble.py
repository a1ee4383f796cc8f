"""K independent MLPs evaluated as one batched network: the member axis that lets one process train many seeds.

A layer holds weights [K, in, out] and biases [K, 1, out]; inputs are [K, B, in]; one `torch.baddbmm` computes
the layer for every member. On a CPU with PPO's minibatches of 64, a step's time is mostly per-operation
overhead, so K members cost far less than K times one member.

Networks whose hidden layers have the same shape (actor, reward critic and cost critic by default) can also be
evaluated together: `stack_layers` concatenates their layers along the member axis (outputs zero-padded to the
widest), turning three networks of K members into one of 3K. It is differentiable, so PPO's loss runs the three
networks in three matmuls and two activations instead of nine and six.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh(x) = 2 sigmoid(2x) - 1: the same function, but torch's CPU tanh kernel (and its backward) is several
    times slower than sigmoid's on AVX-512 machines, where it was a third of an update."""
    return torch.sigmoid(2.0 * x) * 2.0 - 1.0


ACTIVATIONS = {"tanh": tanh, "relu": torch.relu, "elu": nn.functional.elu}
# d activation / d input, in terms of the activation's output y (what a hand-written backward has at hand).
DERIVATIVES = {
    "tanh": lambda y: 1.0 - y * y,
    "relu": lambda y: (y > 0).to(y.dtype),
    "elu": lambda y: torch.where(y > 0, 1.0, y + 1.0),  # alpha = 1: elu(x) = exp(x) - 1 below 0
}

Layers = list[tuple[torch.Tensor, torch.Tensor]]


def mlp_forward(layers: Layers, x: torch.Tensor, activation) -> torch.Tensor:
    """x [M, B, in] through `layers` of weights [M, in, out] and biases [M, 1, out]; no activation on the output."""
    last = len(layers) - 1
    for index, (weight, bias) in enumerate(layers):
        x = torch.baddbmm(bias, x, weight)
        if index < last:
            x = activation(x)
    return x


class EnsembleMLP(nn.Module):
    """K MLPs. init "orthogonal": orthogonal weights (gain sqrt(2) hidden, `out_gain` output) and zero biases, as
    PPO codebases do; "kaiming_uniform": weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) in every layer,
    torch's nn.Linear default (OmniSafe's choice; `out_gain` unused).

    Member k is initialised from `generators[k]` alone, so member k of a K-member run starts exactly like a
    one-member run with the same generator seed."""

    def __init__(self, members: int, in_dim: int, hidden: tuple[int, ...], out_dim: int, activation: str,
                 out_gain: float, generators: list[torch.Generator] | None = None, init: str = "orthogonal"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unsupported activation {activation!r}; choose from {', '.join(ACTIVATIONS)}")
        self.members, self.activation_name = members, activation
        self.activation = ACTIVATIONS[activation]
        widths = [in_dim, *hidden, out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
            self.weights.append(nn.Parameter(torch.empty(members, fan_in, fan_out)))
            self.biases.append(nn.Parameter(torch.zeros(members, 1, fan_out)))
        self._layers = list(zip(self.weights, self.biases, strict=True))  # plain list: ParameterList lookups are slow
        generators = generators or [None] * members
        with torch.no_grad():
            for index, (weight, bias) in enumerate(self._layers):
                gain = out_gain if index == len(self.weights) - 1 else math.sqrt(2)
                bound = 1.0 / math.sqrt(weight.shape[1])  # weights are [K, fan_in, fan_out]
                for member, generator in enumerate(generators):
                    if init == "orthogonal":
                        nn.init.orthogonal_(weight[member], gain=gain, generator=generator)
                    elif init == "kaiming_uniform":
                        weight[member].uniform_(-bound, bound, generator=generator)
                        bias[member].uniform_(-bound, bound, generator=generator)
                    else:
                        raise ValueError(f"unsupported init {init!r}; choose orthogonal or kaiming_uniform")

    def layers(self) -> Layers:
        return self._layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [K, B, in] -> [K, B, out]."""
        return mlp_forward(self._layers, x, self.activation)

    def hidden_shape(self) -> list[tuple[int, int]]:
        return [tuple(w.shape[1:]) for w in self.weights][:-1]


def can_stack(nets: list[EnsembleMLP]) -> bool:
    """True when the networks differ at most in their output width (and share the activation)."""
    first = nets[0]
    return all(net.hidden_shape() == first.hidden_shape() and net.activation_name == first.activation_name
               and net.weights[-1].shape[1] == first.weights[-1].shape[1] for net in nets)


def stack_layers(nets: list[EnsembleMLP]) -> Layers:
    """The layers of several same-shaped ensembles concatenated along the member axis (net-major: all members of
    the first network, then the second...), the output layer zero-padded to the widest network."""
    layers = [net.layers() for net in nets]
    depth_count = len(layers[0])
    width = max(net_layers[-1][0].shape[2] for net_layers in layers)
    stacked = []
    for depth in range(depth_count):
        weights = [net_layers[depth][0] for net_layers in layers]
        biases = [net_layers[depth][1] for net_layers in layers]
        if depth == depth_count - 1:
            weights = [nn.functional.pad(w, (0, width - w.shape[2])) for w in weights]
            biases = [nn.functional.pad(b, (0, width - b.shape[2])) for b in biases]
        stacked.append((torch.cat(weights), torch.cat(biases)))
    return stacked
