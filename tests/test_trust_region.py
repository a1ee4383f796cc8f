import pytest
import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from saferl.maths.trust_region import (
    backtracking_line_search,
    conjugate_gradient,
    fisher_vector_product,
    fisher_vector_product_fn,
    flat_grad,
    flat_params,
    set_flat_params,
)


class LinearGaussianPolicy(nn.Module):
    """a ~ N(s'w, exp(log_std)^2): small enough for an explicit Fisher matrix."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([0.3, -0.5], dtype=torch.float64))
        self.log_std = nn.Parameter(torch.tensor([-0.2], dtype=torch.float64))

    def forward(self, states):
        return Normal(states @ self.weight, self.log_std.exp())


def mean_kl_to_detached_self(policy, states):
    def kl_fn():
        new = policy(states)
        old = Normal(new.loc.detach(), new.scale.detach())
        return kl_divergence(old, new).mean()

    return kl_fn


@pytest.fixture
def policy_and_states():
    torch.manual_seed(0)
    return LinearGaussianPolicy(), torch.randn(6, 2, dtype=torch.float64)


def test_flat_params_round_trip():
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    flat = flat_params(net)
    assert flat.shape == (sum(p.numel() for p in net.parameters()),)
    new_flat = torch.randn_like(flat)
    set_flat_params(net, new_flat)
    assert torch.equal(flat_params(net), new_flat)
    assert torch.equal(net[2].bias.detach(), new_flat[-2:])
    set_flat_params(list(net.parameters()), flat)
    assert torch.equal(flat_params(net.parameters()), flat)
    with pytest.raises(ValueError):
        set_flat_params(net, flat[:-1])


def test_flat_grad_gives_zeros_for_unused_params():
    used = nn.Parameter(torch.tensor([1.0, 2.0]))
    unused = nn.Parameter(torch.ones(3))
    grad = flat_grad((used**2).sum(), [used, unused])
    assert torch.equal(grad, torch.tensor([2.0, 4.0, 0.0, 0.0, 0.0]))


def test_conjugate_gradient_matches_direct_solve():
    torch.manual_seed(1)
    root = torch.randn(12, 12, dtype=torch.float64)
    spd = root @ root.T + 0.5 * torch.eye(12, dtype=torch.float64)
    b = torch.randn(12, dtype=torch.float64)
    x = conjugate_gradient(lambda v: spd @ v, b, iterations=50, residual_tol=1e-20)
    torch.testing.assert_close(x, torch.linalg.solve(spd, b), rtol=1e-8, atol=1e-8)


def test_fisher_vector_product_matches_analytic_and_autograd_fisher(policy_and_states):
    policy, states = policy_and_states
    damping = 0.1
    variance = policy.log_std.detach().exp() ** 2
    analytic = torch.zeros(3, 3, dtype=torch.float64)
    analytic[:2, :2] = states.T @ states / len(states) / variance  # mean over states of s s' / sigma^2
    analytic[2, 2] = 2.0  # Fisher of a Gaussian w.r.t. its log-std

    theta0 = flat_params(policy)

    def mean_kl_of_flat(theta):
        old = Normal(states @ theta0[:2], theta0[2].exp())
        return kl_divergence(old, Normal(states @ theta[:2], theta[2].exp())).mean()

    hessian = torch.autograd.functional.hessian(mean_kl_of_flat, theta0.clone())
    torch.testing.assert_close(hessian, analytic)

    kl_fn = mean_kl_to_detached_self(policy, states)
    reused = fisher_vector_product_fn(kl_fn, policy, damping)
    for vector in torch.randn(4, 3, dtype=torch.float64):
        expected = analytic @ vector + damping * vector
        torch.testing.assert_close(fisher_vector_product(kl_fn, policy, vector, damping), expected)
        torch.testing.assert_close(reused(vector), expected)


def test_conjugate_gradient_with_fisher_vector_product(policy_and_states):
    policy, states = policy_and_states
    kl_fn = mean_kl_to_detached_self(policy, states)
    gradient = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    fisher = torch.stack(
        [fisher_vector_product(kl_fn, policy, e, 0.0) for e in torch.eye(3, dtype=torch.float64)]
    )
    direction = conjugate_gradient(lambda v: fisher_vector_product(kl_fn, policy, v, 0.01), gradient)
    expected = torch.linalg.solve(fisher + 0.01 * torch.eye(3, dtype=torch.float64), gradient)
    torch.testing.assert_close(direction, expected)


def test_line_search_restores_params_when_nothing_is_accepted():
    net = nn.Linear(2, 2)
    old = flat_params(net)
    calls = []

    def measure():
        calls.append(torch.is_grad_enabled())
        return {"kl": 1.0}

    result = backtracking_line_search(
        net, torch.ones_like(old), measure, lambda stats, f: False, max_backtracks=7
    )
    assert result.accepted is False and result.step_fraction == 0.0 and result.info == {"kl": 1.0}
    assert torch.equal(flat_params(net), old)
    assert calls == [False] * 7  # evaluated under no_grad, once per try


def test_line_search_returns_first_accepted_fraction():
    net = nn.Linear(2, 2)
    old = flat_params(net)
    step = torch.randn_like(old)
    seen_params, seen_fractions = [], []

    def measure():
        seen_params.append(flat_params(net))
        return {"kl": (flat_params(net) - old).norm().item()}

    def accept(stats, fraction):
        seen_fractions.append(fraction)
        return stats["kl"] <= 0.8**3 * step.norm().item() + 1e-6

    accepted, fraction, info = backtracking_line_search(net, step, measure, accept, decay=0.8)
    assert accepted and fraction == pytest.approx(0.8**3)
    assert seen_fractions == pytest.approx([1.0, 0.8, 0.8**2, 0.8**3])
    for k, params in enumerate(seen_params):
        torch.testing.assert_close(params, old + 0.8**k * step)
    torch.testing.assert_close(flat_params(net), old + fraction * step)
    assert info["kl"] == pytest.approx(fraction * step.norm().item(), rel=1e-5)
