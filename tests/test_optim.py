"""MemberAdam against torch.optim.Adam, member masks, per-member step counts, per-group clipping."""

import numpy as np
import pytest
import torch

from saferl.maths.optim import MemberAdam


def make_params(members, seed=0):
    generator = torch.Generator().manual_seed(seed)
    shapes = [(members, 3, 4), (members, 1, 4), (members, 2)]  # a layer, its bias, a log-std
    return [torch.randn(shape, generator=generator) for shape in shapes]


def random_grads(params, generator):
    return [torch.randn(p.shape, generator=generator) for p in params]


def test_equals_torch_adam_per_member():
    members, lrs = 3, [3e-4, 1e-3]
    params = make_params(members)
    groups = [params[:2], params[2:]]
    adam = MemberAdam(groups, lrs)
    # The oracle: one torch Adam per member and group, on copies of that member's slices.
    copies = [[[p[k].clone().requires_grad_(True) for p in group] for group in groups] for k in range(members)]
    oracles = [[torch.optim.Adam(copies[k][g], lr=lrs[g]) for g in range(2)] for k in range(members)]
    generator = torch.Generator().manual_seed(1)
    for _ in range(25):
        grads = random_grads(params, generator)
        adam.flatten(grads)
        adam.step()
        for k in range(members):
            for g, group_grads in enumerate([grads[:2], grads[2:]]):
                for copy, grad in zip(copies[k][g], group_grads, strict=True):
                    copy.grad = grad[k].clone()
                oracles[k][g].step()
    for k in range(members):
        for g, group in enumerate(groups):
            for p, copy in zip(group, copies[k][g], strict=True):
                torch.testing.assert_close(p[k], copy.detach(), rtol=1e-5, atol=1e-6)


def test_inactive_member_is_left_exactly_as_it_was():
    params = make_params(2)
    adam = MemberAdam([params], [1e-2])
    generator = torch.Generator().manual_seed(2)
    adam.flatten(random_grads(params, generator))
    adam.step()
    before = [p[1].clone() for p in params]
    moments = adam.exp_avg[1].clone(), adam.exp_avg_sq[1].clone()
    for _ in range(5):
        adam.flatten(random_grads(params, generator))
        adam.step(torch.tensor([True, False]))
    for p, old in zip(params, before, strict=True):
        assert torch.equal(p[1], old)
    assert torch.equal(adam.exp_avg[1], moments[0]) and torch.equal(adam.exp_avg_sq[1], moments[1])
    assert adam.steps[:, 0].tolist() == [6.0, 1.0]  # bias correction follows each member's own count


def test_masked_member_continues_like_a_member_that_never_paused():
    """A member that sat out some steps then resumes behaves like a one-member Adam given only its own steps."""
    params, single = make_params(2), make_params(1)
    for p, s in zip(params, single, strict=True):
        s.copy_(p[:1])
    adam, oracle = MemberAdam([params], [1e-2]), MemberAdam([single], [1e-2])
    generator = torch.Generator().manual_seed(3)
    for step in range(12):
        grads = random_grads(params, generator)
        member0_steps = step % 3 != 1  # member 0 pauses every third step
        adam.flatten(grads)
        adam.step(torch.tensor([member0_steps, True]))
        if member0_steps:
            oracle.flatten([g[:1] for g in grads])
            oracle.step()
    for p, s in zip(params, single, strict=True):
        torch.testing.assert_close(p[:1], s, rtol=0, atol=0)


def test_frozen_group_does_not_move():
    params = make_params(2)
    adam = MemberAdam([params[:2], params[2:]], [1e-2, 1e-2])
    frozen = params[2].clone()
    adam.flatten(random_grads(params, torch.Generator().manual_seed(4)))
    adam.step(torch.tensor([[True, False], [True, False]]))
    assert torch.equal(params[2], frozen)
    assert adam.steps.tolist() == [[1.0, 0.0], [1.0, 0.0]]


@pytest.mark.parametrize("per_group", [True, False])
def test_clipping_is_per_member_and_per_group(per_group):
    params = make_params(3)
    adam = MemberAdam([params[:2], params[2:]], [1e-3, 1e-3])
    grads = random_grads(params, torch.Generator().manual_seed(5))
    grads[0][1] *= 100.0  # member 1's first group is huge
    adam.flatten(grads)
    norms = adam.clip_grad_norm_(1.0, per_group=per_group)
    flat = adam.grad
    for k in range(3):
        group_norms = [torch.cat([g[k].reshape(-1) for g in grads[:2]]).norm(),
                       torch.cat([g[k].reshape(-1) for g in grads[2:]]).norm()]
        if per_group:
            np.testing.assert_allclose(norms[k].numpy(), [float(n) for n in group_norms], rtol=1e-5)
            for (a, b), norm in zip([(0, 16), (16, 18)], group_norms, strict=True):
                expected = min(1.0, 1.0 / float(norm))
                np.testing.assert_allclose(flat[k, a:b].norm().item(), float(norm) * expected, rtol=1e-4)
        else:
            total = float(torch.stack(group_norms).norm())
            np.testing.assert_allclose(flat[k].norm().item(), min(total, 1.0), rtol=1e-4)
    if per_group:  # member 1's small second group keeps its size: the big first group does not shrink it
        np.testing.assert_allclose(flat[1, 16:18].norm().item(), min(1.0, float(grads[2][1].norm())), rtol=1e-4)


def test_state_round_trip():
    params = make_params(2)
    adam = MemberAdam([params], [1e-3])
    adam.flatten(random_grads(params, torch.Generator().manual_seed(6)))
    adam.step()
    other = MemberAdam([make_params(2, seed=9)], [5.0])
    other.load_state_dict(adam.state_dict())
    assert torch.equal(other.exp_avg, adam.exp_avg) and other.lrs == adam.lrs
    np.testing.assert_array_equal(other.steps, adam.steps)
    with pytest.raises(ValueError, match="does not fit"):
        MemberAdam([make_params(3)], [1e-3]).load_state_dict(adam.state_dict())
