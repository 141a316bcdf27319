"""The competition metric: mean absolute error in m/s over the submitted cells.

The submission holds the 35 odd x columns (``x_1, x_3, ..., x_69``) of every one of the 70 rows, so the
score is the MAE over ``[..., :, 1::2]`` of each velocity map. :func:`full_mae` over all cells is
reported alongside, never instead. Nothing here clips: clip predictions to [VMIN, VMAX] before scoring,
as the submission writer does.

Inputs are torch tensors or numpy arrays of shape ``[..., 70, 70]`` (typically ``[B, 1, 70, 70]``) in
m/s; sums are taken in float64, results are Python floats.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fwi.physics.acquisition import NX, NZ

Array = torch.Tensor | np.ndarray

SCORED_COLUMNS = slice(1, NX, 2)
"""The x columns the competition scores: 1, 3, ..., 69."""
ALL = "all"
"""Key of the all-families entry in per-family results."""


def _abs_error(pred: Array, true: Array, odd_columns: bool) -> torch.Tensor:
    """float64 ``|pred - true|`` on the scored cells, ``[..., 70, 35]`` (or ``[..., 70, 70]``)."""
    pshape, tshape = tuple(pred.shape), tuple(true.shape)
    if pshape != tshape:
        raise ValueError(f"shape mismatch: pred {pshape} vs true {tshape}")
    if pshape[-2:] != (NZ, NX):
        raise ValueError(f"velocity maps must be [..., {NZ}, {NX}], got pred {pshape} and true {tshape}")
    p = torch.as_tensor(pred)
    t = torch.as_tensor(true, device=p.device)
    err = (p.detach().double() - t.detach().double()).abs()
    return err[..., SCORED_COLUMNS] if odd_columns else err


def competition_mae(pred: Array, true: Array) -> float:
    """MAE in m/s over the odd x columns (1, 3, ..., 69) and all 70 rows: the leaderboard score."""
    return float(_abs_error(pred, true, odd_columns=True).mean())


def full_mae(pred: Array, true: Array) -> float:
    """MAE in m/s over all 70 x 70 cells."""
    return float(_abs_error(pred, true, odd_columns=False).mean())


def per_family_mae(pred: Array, true: Array, families: Sequence[str] | np.ndarray, *,
                   odd_columns: bool = True) -> dict[str, float]:
    """MAE per family plus ``"all"``: ``{family: mae}`` in m/s, families sorted, ``"all"`` last.

    ``pred``/``true``: ``[B, ..., 70, 70]``; ``families``: ``B`` family names. Every sample has the same
    number of cells, so ``"all"`` equals :func:`competition_mae` (or :func:`full_mae`).
    """
    acc = MAEAccumulator(odd_columns=odd_columns)
    acc.update(pred, true, families)
    return acc.compute()


class MAEAccumulator:
    """Streaming per-family MAE for validation loops: sums of |error| and cell counts per family.

    ``update(pred, true, family)`` per batch, ``compute()`` at the end. ``family`` is a sequence of names,
    or integer ids (list, numpy array or tensor, e.g. the ``family_id`` of
    :class:`fwi.data.dataset.SeismicDataset`) mapped through ``family_names`` (``str(id)`` without it),
    or None (counted under ``"all"`` only).
    """

    def __init__(self, family_names: Sequence[str] | None = None, *, odd_columns: bool = True) -> None:
        self.family_names = list(family_names) if family_names is not None else None
        self.odd_columns = odd_columns
        self.reset()

    def reset(self) -> None:
        self.abs_sum: dict[str, float] = {}
        self.count: dict[str, int] = {}

    def _add(self, key: str, abs_sum: float, count: int) -> None:
        self.abs_sum[key] = self.abs_sum.get(key, 0.0) + abs_sum
        self.count[key] = self.count.get(key, 0) + count

    def update(self, pred: Array, true: Array, family: Sequence | np.ndarray | torch.Tensor | None = None,
               ) -> None:
        """Add a batch: ``pred``, ``true`` ``[B, ..., 70, 70]`` in m/s, ``family`` ``B`` names or ids."""
        err = _abs_error(pred, true, self.odd_columns)
        if err.ndim < 3:
            raise ValueError(f"expected a batch [B, ..., {NZ}, {NX}], got {tuple(pred.shape)}")
        per_sample = err.reshape(err.shape[0], -1).sum(dim=1).cpu().numpy()  # float64 [B]
        cells = err[0].numel()
        self._add(ALL, float(per_sample.sum()), cells * len(per_sample))
        if family is None:
            return
        names = self._names(family)
        if len(names) != len(per_sample):
            raise ValueError(f"{len(names)} family labels for a batch of {len(per_sample)} samples")
        for name in set(names):
            sel = np.array([n == name for n in names])
            self._add(name, float(per_sample[sel].sum()), cells * int(sel.sum()))

    def _names(self, family: Sequence | np.ndarray | torch.Tensor) -> list[str]:
        if isinstance(family, torch.Tensor):
            family = family.detach().cpu().numpy()
        items = list(family.tolist() if isinstance(family, np.ndarray) else family)
        if items and not isinstance(items[0], str):
            if self.family_names is None:
                return [str(int(i)) for i in items]
            return [self.family_names[int(i)] for i in items]
        return [str(i) for i in items]

    def compute(self) -> dict[str, float]:
        """``{family: MAE}`` in m/s, families sorted, ``"all"`` last (NaN when nothing was added)."""
        keys = sorted(k for k in self.count if k != ALL) + [ALL]
        return {k: self.abs_sum.get(k, 0.0) / self.count[k] if self.count.get(k) else float("nan")
                for k in keys}
