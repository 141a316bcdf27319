"""L-BFGS on one parameter vector that keeps its best iterate and can stop at a deadline.

``torch.optim.LBFGS`` with a strong-Wolfe line search does the work; this wrapper counts evaluations, keeps
the parameters with the lowest value seen (a line search may end on a worse point than one it tried) and
stops at a wall-clock deadline by ending the optimiser's loop from inside its closure.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Minimum:
    """What :func:`minimize` found."""

    x: Tensor
    """Best parameters ``[P]`` (detached)."""
    value: float
    """Objective at ``x``."""
    evaluations: int
    """Objective + gradient evaluations spent."""
    timed_out: bool
    """Whether the deadline stopped the run."""


class _Stop(Exception):
    """Raised inside the closure to leave ``LBFGS.step`` (its own evaluation cap can be overrun by a line
    search; ours cannot)."""


def minimize(
    objective: Callable[[Tensor], Tensor],
    x0: Tensor,
    *,
    max_evals: int,
    deadline: float | None = None,
) -> Minimum:
    """Minimise ``objective(x) -> scalar`` from ``x0`` ``[P]`` with at most ``max_evals`` gradient evaluations.

    The objective is rescaled by its value at ``x0`` (so the optimiser's tolerances and first step do not
    depend on the misfit's units). ``deadline``: a ``time.monotonic()`` instant after which no new
    evaluation starts. Returns the best point evaluated, ``x0`` included.
    """
    x = x0.detach().clone().requires_grad_(True)
    best = Minimum(x0.detach().clone(), math.inf, 0, False)
    if max_evals < 1:
        return best
    scale: list[float] = []
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=max_evals, max_eval=max_evals, history_size=max_evals,
                            tolerance_grad=1e-12, tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        if best.evaluations >= max_evals:
            raise _Stop
        if best.evaluations and deadline is not None and time.monotonic() > deadline:
            best.timed_out = True
            raise _Stop
        opt.zero_grad(set_to_none=True)
        value = objective(x)
        v = float(value.detach())
        if not scale:
            scale.append(v if v > 0 else 1.0)
        best.evaluations += 1
        if v < best.value:
            best.value, best.x = v, x.detach().clone()
        loss = value / scale[0]
        loss.backward()
        return loss

    try:
        opt.step(closure)
    except _Stop:
        pass
    return best
