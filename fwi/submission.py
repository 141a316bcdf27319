"""The competition's submission format (DESIGN.md §1): one row per (test file, depth row).

Columns ``oid_ypos, x_1, x_3, ..., x_69``: id ``<oid>_y_<row>`` for rows 0..69 and the velocity (m/s) of
the odd x columns. Used by fwi.predict (writing), fwi.score and fwi.submit (reading and checking), and
fwi.synth (writing the solution of a synthetic test set).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from fwi.physics.acquisition import NX, NZ

ID_COLUMN = "oid_ypos"
X_COLUMNS = [f"x_{x}" for x in range(1, NX, 2)]
"""The 35 submitted columns, x = 1, 3, ..., 69."""
COLUMNS = [ID_COLUMN, *X_COLUMNS]


def rows_frame(oids: Sequence[str], velocity: np.ndarray) -> pl.DataFrame:
    """Submission rows for test files ``oids`` with velocity maps ``[N, 70, 70]`` or ``[N, 1, 70, 70]`` (m/s)."""
    v = np.asarray(velocity, dtype=np.float32).reshape(len(oids), NZ, NX)[:, :, 1::2]  # [N, 70, 35]
    ids = [f"{oid}_y_{y}" for oid in oids for y in range(NZ)]
    values = v.reshape(-1, len(X_COLUMNS))
    return pl.DataFrame({ID_COLUMN: ids, **{c: values[:, i] for i, c in enumerate(X_COLUMNS)}})
