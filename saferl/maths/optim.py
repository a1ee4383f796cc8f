"""Adam and gradient-norm clipping for parameters that carry a member axis first ([K, ...]).

Adam is elementwise, so one Adam over stacked members is K independent Adams, except for two things that
`MemberAdam` keeps per member: the step count behind the bias correction, and whether a member steps at all.
A member whose PPO update stopped early on its KL (or a frozen group, e.g. the actor during a critic warm-up)
stays exactly where it is, moments included, as if it had not taken part in the step.

The optimiser's own state (moments, the gradient and the update) lives in flat [K, P] buffers, one column range
per parameter: a step is then about a dozen whole-buffer operations however many tensors the networks have,
which matters when a minibatch step takes a millisecond. The parameters themselves are ordinary tensors.
The update is torch.optim.Adam's (no weight decay, no amsgrad); the tests check it against torch.optim.Adam.
"""

from __future__ import annotations

import numpy as np
import torch


class MemberAdam:
    """Adam over `groups` of member-leading parameters; group g has learning rate lrs[g]."""

    def __init__(self, groups: list[list[torch.Tensor]], lrs: list[float], betas=(0.9, 0.999), eps: float = 1e-8):
        self.groups = [list(group) for group in groups]
        self.params = [p for group in self.groups for p in group]
        self.members = self.params[0].shape[0]
        self.lrs = [float(lr) for lr in lrs]
        self.beta1, self.beta2 = betas
        self.eps = eps
        sizes = [p[0].numel() for p in self.params]
        width = sum(sizes)
        self.group_columns, start = [], 0
        for group in self.groups:
            group_width = sum(p[0].numel() for p in group)
            self.group_columns.append(slice(start, start + group_width))
            start += group_width
        self.exp_avg = torch.zeros(self.members, width)
        self.exp_avg_sq = torch.zeros(self.members, width)
        self.steps = np.zeros((self.members, len(self.groups)))
        self.grad = torch.zeros(self.members, width)
        self._update = torch.zeros(self.members, width)
        self._lr_row = torch.zeros(1, width)  # each column's learning rate
        for columns, lr in zip(self.group_columns, self.lrs, strict=True):
            self._lr_row[:, columns] = lr
        # Each parameter's columns of the flat buffers, viewed in the parameter's shape (made once, reused).
        offsets = [0]
        for size in sizes:
            offsets.append(offsets[-1] + size)
        self._grad_views = [self.grad[:, a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
        # The same columns in each parameter's shape: a hand-written backward writes its gradients straight here.
        self.grad_of = {id(p): view.view(p.shape) for p, view in zip(self.params, self._grad_views, strict=True)}
        # Per group, its columns of each buffer (views made once): per-member scalars broadcast over them.
        self._group_views = [[buffer[:, columns] for columns in self.group_columns]
                             for buffer in (self.grad, self.exp_avg, self.exp_avg_sq, self._update)]
        self._update_views = [self._update[:, a:b].view(p.shape)
                              for p, a, b in zip(self.params, offsets[:-1], offsets[1:], strict=True)]

    def flatten(self, grads: list[torch.Tensor | None]) -> torch.Tensor:
        """The gradients (in `params` order; None counts as zero) copied into the flat [K, P] buffer."""
        for view, g in zip(self._grad_views, grads, strict=True):
            if g is None:
                view.zero_()
            else:
                view.copy_(g.reshape(self.members, -1))
        return self.grad

    @torch.no_grad()
    def add_l2_gradient(self, groups: list[int], coef: float) -> None:
        """Add the gradient of coef * (sum of squared parameters) of `groups`, 2 coef p, to the flat gradient:
        OmniSafe's critic_norm_coef term of the critics' loss, for a gradient computed without it."""
        for group in groups:
            for p in self.groups[group]:
                self.grad_of[id(p)].add_(p, alpha=2.0 * coef)

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float, per_group: bool = True) -> torch.Tensor:
        """Scale each member's gradient (in the flat buffer) to a norm of at most max_norm, per group or over all
        groups; returns the norms before clipping, [K, G] or [K, 1].

        PPO's groups are its networks: OmniSafe clips actor, reward critic and cost critic each on its own, so a
        critic's large gradient never shrinks the actor's step."""
        if per_group:
            grads = self._group_views[0]
            norms = torch.stack([g.norm(dim=1) for g in grads], dim=1)
            scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
            for g, grad in enumerate(grads):
                grad.mul_(scale[:, g : g + 1])
        else:
            norms = self.grad.norm(dim=1, keepdim=True)
            self.grad.mul_((max_norm / (norms + 1e-6)).clamp(max=1.0))
        return norms

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None) -> None:
        """One Adam step with the gradient in the flat buffer (`flatten`). `active` [K] or [K, G] bool: which
        members (and groups) step; default all."""
        groups = len(self.groups)
        on = np.ones((self.members, groups)) if active is None else active.numpy().astype(np.float64)
        on = np.broadcast_to(on.reshape(self.members, -1), (self.members, groups))
        self.steps += on
        steps = np.maximum(self.steps, 1.0)
        if (on == on[:, :1]).all() and (self.steps == self.steps[:, :1]).all():
            self._step_all_groups(on[:, 0], steps[:, 0])
        else:
            self._step_by_group(on, steps)
        torch._foreach_add_(self.params, self._update_views)

    def _step_all_groups(self, on: np.ndarray, steps: np.ndarray) -> None:
        """The usual case, every group of a member stepping together: whole-buffer operations, with the groups'
        learning rates as one row of per-column factors."""
        table = np.stack([(1.0 - self.beta1) * on, (1.0 - self.beta2) * on, 1.0 / np.sqrt(1.0 - self.beta2**steps),
                          -on / (1.0 - self.beta1**steps)], axis=1)
        moment1_weight, moment2_weight, denominator_scale, step_scale = torch.from_numpy(
            table.astype(np.float32)).unsqueeze(-1).unbind(1)  # each [K, 1]
        grad, update = self.grad, self._update
        self.exp_avg.lerp_(grad, moment1_weight)  # m <- m + (1 - b1)(g - m)
        self.exp_avg_sq.lerp_(grad * grad, moment2_weight)  # v <- v + (1 - b2)(g^2 - v)
        torch.sqrt(self.exp_avg_sq, out=update)
        update.mul_(denominator_scale).add_(self.eps)
        torch.div(self.exp_avg, update, out=update)
        update.mul_(step_scale).mul_(self._lr_row)

    def _step_by_group(self, on: np.ndarray, steps: np.ndarray) -> None:
        """Groups of a member that differ in activity or step count (a frozen actor): the same maths per group."""
        table = np.stack([(1.0 - self.beta1) * on, (1.0 - self.beta2) * on, 1.0 / np.sqrt(1.0 - self.beta2**steps),
                          -np.asarray(self.lrs) * on / (1.0 - self.beta1**steps)])
        moment1_weight, moment2_weight, denominator_scale, step_scale = torch.from_numpy(table.astype(np.float32))
        grads, moments1, moments2, updates = self._group_views
        for g in range(len(self.groups)):
            column = slice(g, g + 1)
            moments1[g].lerp_(grads[g], moment1_weight[:, column])
            moments2[g].lerp_(grads[g] * grads[g], moment2_weight[:, column])
            torch.sqrt(moments2[g], out=updates[g])
            updates[g].mul_(denominator_scale[:, column]).add_(self.eps)
            torch.div(moments1[g], updates[g], out=updates[g])
            updates[g].mul_(step_scale[:, column])

    def set_lr(self, group: int, lr: float) -> None:
        self.lrs[group] = float(lr)
        self._lr_row[:, self.group_columns[group]] = float(lr)

    def reset_state(self) -> None:
        """Forget the moments and step counts, as a freshly built optimiser would have none."""
        self.exp_avg.zero_()
        self.exp_avg_sq.zero_()
        self.steps = np.zeros_like(self.steps)

    def state_dict(self) -> dict:
        return {"exp_avg": self.exp_avg.clone(), "exp_avg_sq": self.exp_avg_sq.clone(), "steps": self.steps.copy(),
                "lrs": list(self.lrs)}

    def load_state_dict(self, state: dict) -> None:
        if tuple(state["exp_avg"].shape) != tuple(self.exp_avg.shape):
            raise ValueError(f"optimiser state of shape {tuple(state['exp_avg'].shape)} does not fit "
                             f"{tuple(self.exp_avg.shape)}")
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.steps = np.asarray(state["steps"], dtype=np.float64).copy()
        for group, lr in enumerate(state["lrs"]):
            self.set_lr(group, lr)
