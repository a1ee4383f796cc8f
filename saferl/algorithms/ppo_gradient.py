"""The gradient of PPO's default loss (clip objective, plain value regression), written out by hand for all
members at once: the fast path of `PPO.update`, tested equal to autograd of `PPO.loss`, which stays the one
definition of the loss (and is what every other variant uses).

Why it exists: with minibatches of 64 and 64x64 networks a step is mostly per-operation overhead, and autograd's
graph of the loss (about 60 forward operations, as many backward, each with its bookkeeping) costs more than the
arithmetic. This backward takes about 25 operations for all members. The time of a whole minibatch step either
way: benchmarks/throughput/manual-vs-autograd.txt (made by manual_vs_autograd.py next to it).
"""

from __future__ import annotations

import torch

from saferl.algorithms.common import PPOMinibatch
from saferl.maths.gaussian import LOG_SQRT_2PI
from saferl.policies.actor_critic import ActorCritic
from saferl.policies.ensemble import DERIVATIVES


@torch.no_grad()
def clip_loss_gradients(policy: ActorCritic, minibatch: PPOMinibatch, clip_low: float, clip_high: float,
                        value_coef: float, entropy_coef: float, with_cost: bool, grad_of: dict,
                        with_critics: bool = True) -> None:
    """Write d(sum over members of PPO.loss)/d(parameter) into grad_of[id(parameter)] (views into the optimiser's
    flat gradient), for the clip objective without value clipping or a KL-to-clone term. with_critics=False (a
    critic-free estimator): the actor's part alone, as if the loss had no value term."""
    mb = minibatch
    obs, actions, old_log_probs, advantages = mb.obs, mb.actions, mb.old_log_probs, mb.advantages
    reward_returns, cost_returns = mb.reward_returns, mb.cost_returns
    if with_critics:
        networks = policy.networks(with_cost)
        layers = policy.stacked_layers(with_cost)
        if layers is None:
            raise ValueError("the hand-written gradient needs actor and critics of the same hidden sizes")
    else:
        networks, layers = [policy.actor], policy.actor.layers()
    members, size = obs.shape[0], obs.shape[1]
    count = len(networks)
    activation, derivative = policy.actor.activation, DERIVATIVES[policy.actor.activation_name]

    # Forward through the stacked networks, keeping each layer's input.
    inputs, x = [], obs.repeat(count, 1, 1) if count > 1 else obs
    for index, (weight, bias) in enumerate(layers):
        inputs.append(x)
        x = torch.baddbmm(bias, x, weight)
        if index < len(layers) - 1:
            x = activation(x)
    out = x.view(count, members, size, -1)
    act_dim = policy.act_dim
    mean = out[0, :, :, :act_dim]

    # d loss / d outputs. Policy: loss = -mean(min(r A, clip(r) A)); the gradient flows where the unclipped
    # term is the smaller one, and d r / d log_prob = r. log_prob = sum(-z^2/2 - log_std) - c, z = (a - mu)/std.
    log_std = policy.log_std.unsqueeze(1)
    inv_std = torch.exp(-log_std)
    z = (actions - mean) * inv_std
    log_prob = (-0.5 * z * z - log_std).sum(-1) - LOG_SQRT_2PI * act_dim
    ratio = torch.exp(log_prob - old_log_probs)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * advantages
    grad_log_prob = ((-advantages / size) * (unclipped <= clipped) * ratio).unsqueeze(-1)  # [K, B, 1]
    grad_out = torch.zeros_like(out)
    grad_out[0, :, :, :act_dim] = grad_log_prob * z * inv_std  # d log_prob / d mu = z / std
    if with_critics:  # value loss: mean squared error
        grad_out[1, :, :, 0] = (out[1, :, :, 0] - reward_returns) * (2.0 * value_coef / size)
    if with_critics and with_cost:
        num_costs = cost_returns.shape[-1]
        residual = out[2, :, :, :num_costs] - cost_returns
        grad_out[2, :, :, :num_costs] = residual * (2.0 * value_coef / residual[0].numel())
    # d log_prob / d log_std = z^2 - 1; the entropy term -coef * sum(0.5 + c + log_std) adds -coef.
    grad_of[id(policy.log_std)].copy_((grad_log_prob * (z * z - 1.0)).sum(1) - entropy_coef)

    # Backward through the stacked layers, then each network's part into its own parameters' gradients.
    grad = grad_out.view(count * members, size, -1)
    for index in range(len(layers) - 1, -1, -1):
        weight_grad = torch.bmm(inputs[index].transpose(1, 2), grad)
        bias_grad = grad.sum(1, keepdim=True)
        for n, network in enumerate(networks):
            weight, bias = network.layers()[index]
            rows = slice(n * members, (n + 1) * members)
            grad_of[id(weight)].copy_(weight_grad[rows, :, : weight.shape[2]])
            grad_of[id(bias)].copy_(bias_grad[rows, :, : bias.shape[2]])
        if index > 0:
            grad = torch.bmm(grad, layers[index][0].transpose(1, 2)) * derivative(inputs[index])
