"""Trust-region building blocks shared by TRPO and CPO: flat parameters, Fisher-vector products,
conjugate gradient and a backtracking line search.

Everything works on flat 1-D vectors so the natural-gradient maths (solve F x = g, step sqrt(2 delta / x'Fx))
stays independent of the network layout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import torch
from torch import nn

ParamsLike = nn.Module | Iterable[torch.Tensor]


def _param_list(module_or_params: ParamsLike) -> list[torch.Tensor]:
    if isinstance(module_or_params, nn.Module):
        return list(module_or_params.parameters())
    return list(module_or_params)


def flat_params(module_or_params: ParamsLike) -> torch.Tensor:
    """All parameters concatenated into one detached 1-D copy (safe to keep as the pre-update point)."""
    return torch.cat([p.detach().reshape(-1) for p in _param_list(module_or_params)])


def set_flat_params(module_or_params: ParamsLike, flat: torch.Tensor) -> None:
    """Write a flat vector back into the parameters in place, in flat_params order."""
    params = _param_list(module_or_params)
    total = sum(p.numel() for p in params)
    if flat.numel() != total:
        raise ValueError(f"flat vector has {flat.numel()} entries, parameters need {total}")
    offset = 0
    with torch.no_grad():
        for p in params:
            p.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()


def flat_grad(
    output: torch.Tensor,
    params: ParamsLike,
    retain_graph: bool = False,
    create_graph: bool = False,
) -> torch.Tensor:
    """d output / d params as one 1-D vector; parameters the output does not depend on get zeros.

    create_graph keeps the graph (needed for double backprop), so it implies retain_graph.
    """
    params = _param_list(params)
    retain_graph = retain_graph or create_graph
    grads = torch.autograd.grad(
        output, params, retain_graph=retain_graph, create_graph=create_graph, allow_unused=True
    )
    return torch.cat(
        [(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params, strict=True)]
    )


def _hessian_vector_product(
    kl_grad: torch.Tensor, params: list[torch.Tensor], vector: torch.Tensor, retain_graph: bool
) -> torch.Tensor:
    grad_dot_vector = (kl_grad * vector.detach()).sum()
    if not grad_dot_vector.requires_grad:  # the KL does not depend on any parameter
        return torch.zeros_like(vector)
    return flat_grad(grad_dot_vector, params, retain_graph=retain_graph)


def fisher_vector_product(
    kl_fn: Callable[[], torch.Tensor], params: ParamsLike, vector: torch.Tensor, damping: float
) -> torch.Tensor:
    """(F + damping I) v without forming F, by Pearlmutter's double backprop through the mean KL.

    kl_fn() must return the mean KL between a detached copy of the policy and the policy at the current
    params: its Hessian there equals the Fisher information, and its gradient is zero but still carries the
    graph we differentiate a second time. Damping keeps CG stable where F is nearly singular.
    """
    params = _param_list(params)
    kl_grad = flat_grad(kl_fn(), params, create_graph=True)
    return _hessian_vector_product(kl_grad, params, vector, retain_graph=False) + damping * vector


def fisher_vector_product_fn(
    kl_fn: Callable[[], torch.Tensor], params: ParamsLike, damping: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> (F + damping I) v reusing one KL forward/backward for all CG iterations (same values as above).

    The first-order graph is kept alive until the returned function is dropped.
    """
    params = _param_list(params)
    kl_grad = flat_grad(kl_fn(), params, create_graph=True)

    def matvec(vector: torch.Tensor) -> torch.Tensor:
        return _hessian_vector_product(kl_grad, params, vector, retain_graph=True) + damping * vector

    return matvec


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    iterations: int = 15,
    residual_tol: float = 1e-10,
) -> torch.Tensor:
    """Approximately solve A x = b for symmetric positive-definite A given only x -> A x.

    Starts from x = 0 and stops after `iterations` matvecs or once the squared residual norm is below
    residual_tol. A handful of iterations suffices for natural-gradient directions.
    """
    x = torch.zeros_like(b)
    residual = b.clone()
    direction = b.clone()
    residual_sq = residual @ residual
    for _ in range(iterations):
        if residual_sq < residual_tol:
            break
        a_direction = matvec(direction)
        step = residual_sq / (direction @ a_direction)
        x += step * direction
        residual -= step * a_direction
        new_residual_sq = residual @ residual
        direction = residual + (new_residual_sq / residual_sq) * direction
        residual_sq = new_residual_sq
    return x


class LineSearchResult(NamedTuple):
    accepted: bool
    step_fraction: float  # decay**k of the accepted try, 0.0 when nothing was accepted
    info: Any  # measure() at the accepted step, or at the last (rejected) try, for logging


def backtracking_line_search(
    params: ParamsLike,
    full_step: torch.Tensor,
    measure: Callable[[], Any],
    accept: Callable[[Any, float], bool],
    max_backtracks: int = 15,
    decay: float = 0.8,
) -> LineSearchResult:
    """Try params_old + decay**k * full_step for k = 0..max_backtracks-1; keep the first try accept() passes.

    measure() is called (under no_grad) with the parameters already moved and returns whatever statistics
    the caller needs; accept(stats, step_fraction) decides. Passing the fraction lets a criterion scale
    linearised predictions with the step. If nothing passes, the old parameters are restored.

    TRPO:  measure -> {"kl", "surrogate"};
           accept = lambda s, f: s["kl"] <= delta and s["surrogate"] > surrogate_old
    CPO:   measure -> {"kl", "surrogate", "cost_change"} (K-vector of cost-surrogate changes);
           accept = lambda s, f: s["kl"] <= delta
               and bool(torch.all(s["cost_change"] <= torch.clamp(-c, min=0)))  # the linearised promise
               and (not feasible or s["surrogate"] >= surrogate_old)  # only recovery may lose reward
           (a tighter promise can scale the predicted change B'x with f).
    """
    params = _param_list(params)
    old_params = flat_params(params)
    info = None
    for k in range(max_backtracks):
        step_fraction = decay**k
        set_flat_params(params, old_params + step_fraction * full_step)
        with torch.no_grad():
            info = measure()
        if accept(info, step_fraction):
            return LineSearchResult(True, step_fraction, info)
    set_flat_params(params, old_params)
    return LineSearchResult(False, 0.0, info)
