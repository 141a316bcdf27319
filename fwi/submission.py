"""The competition's submission format (docs/data.md): one row per (test file, depth row).

Columns ``oid_ypos, x_1, x_3, ..., x_69``: id ``<oid>_y_<row>`` for rows 0..69 and the velocity (m/s) of
the odd x columns. Used by fwi.predict (writing), fwi.score and fwi.submit (reading and checking), and
fwi.synth (writing the solution of a synthetic test set). :func:`check_submission` is the one validator of the
format that fwi.predict (after writing), fwi.score (before scoring) and fwi.submit (before uploading) all run:
for every test file ``<oid>`` exactly the 70 rows ``<oid>_y_0 .. <oid>_y_69`` (in any order) of finite
velocities in m/s. Files are read lazily with polars' streaming engine, so the 4.6M-row real-size files never
sit in RAM as a whole.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from fwi.errors import FwiError
from fwi.physics.acquisition import NX, NZ, VMAX, VMIN

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


FAMILY_COLUMN = "family"
"""Optional solution column naming each row's velocity family."""

ID_PATTERN = r"^(.+)_y_(0|[1-9]\d*)$"
"""Row ids: ``<oid>_y_<row>`` (group 1: the test file's oid, group 2: the depth row)."""

SHOW = 3
"""How many offending ids an error message names."""


class SubmissionError(FwiError):
    """A submission or solution CSV that breaks the format; the message names the file."""


@dataclass(frozen=True)
class SubmissionInfo:
    """What :func:`check_submission` found in a valid file."""

    path: Path
    columns: list[str]
    n_rows: int
    oids: list[str]
    """Test-file ids, sorted."""
    min: float
    """Smallest velocity, m/s."""
    max: float
    """Largest velocity, m/s."""


def _examples(items: Sequence[str]) -> str:
    shown = ", ".join(repr(s) for s in list(items)[:SHOW])
    return shown + (", ..." if len(items) > SHOW else "")


def _check_header(path: Path, extra_columns: Collection[str]) -> list[str]:
    try:
        with open(path, "rb") as f:
            first = f.readline(1 << 16)
    except FileNotFoundError:
        raise SubmissionError(f"submission file not found: {path}") from None
    except IsADirectoryError:
        raise SubmissionError(f"{path}: is a directory, expected a CSV file") from None
    try:
        header = first.decode("utf-8").lstrip("\ufeff").rstrip("\r\n").split(",")
    except UnicodeDecodeError:
        raise SubmissionError(f"{path}: not a UTF-8 text file") from None
    expected = f"exactly {ID_COLUMN},{X_COLUMNS[0]},{X_COLUMNS[1]},...,{X_COLUMNS[-1]}"
    if extra_columns:
        expected += f" (then optionally {', '.join(extra_columns)})"
    if header == [""]:
        raise SubmissionError(f"{path}: empty file; the header must be {expected}")
    for i, (got, want) in enumerate(zip(header, COLUMNS, strict=False)):
        if got != want:
            raise SubmissionError(f"{path}: header column {i + 1} is {got!r}, expected {want!r}; "
                                  f"the header must be {expected}")
    if len(header) < len(COLUMNS):
        raise SubmissionError(f"{path}: header has {len(header)} columns, expected {len(COLUMNS)}; "
                              f"the header must be {expected}")
    extra = header[len(COLUMNS):]
    unknown = [c for c in extra if c not in extra_columns]
    if unknown or len(set(extra)) != len(extra):
        raise SubmissionError(f"{path}: unexpected header columns after {X_COLUMNS[-1]}: "
                              f"{', '.join(extra)}; the header must be {expected}")
    return header


def scan(path: str | Path, columns: Sequence[str] | None = None) -> pl.LazyFrame:
    """Lazy polars frame of a submission-format CSV: ids as strings, velocities as float64."""
    schema = {ID_COLUMN: pl.String, **{c: pl.Float64 for c in X_COLUMNS}}
    if columns is not None and FAMILY_COLUMN in columns:
        schema[FAMILY_COLUMN] = pl.String
    return pl.scan_csv(path, schema_overrides=schema)


def collect_queries(path: Path, *queries: pl.LazyFrame) -> list[pl.DataFrame]:
    try:
        return pl.collect_all(list(queries), engine="streaming")
    except pl.exceptions.PolarsError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SubmissionError(f"{path}: malformed CSV: {first}") from None


def check_submission(
    path: str | Path,
    *,
    extra_columns: Collection[str] = (),
    value_range: tuple[float, float] | None = (VMIN, VMAX),
    expected_oids: Collection[str] | None = None,
    expected_source: str = "the test directory",
) -> SubmissionInfo:
    """Validate a submission-format CSV in full; raise :class:`SubmissionError` (one line) on any problem.

    Checks: the header is exactly :data:`fwi.submission.COLUMNS` (followed only by ``extra_columns``, e.g.
    ``("family",)`` for a solution); every value parses; every id is ``<oid>_y_<row>``; every oid has
    exactly the rows 0..69, once each; no value is missing, NaN or infinite; all values lie within
    ``value_range`` (m/s; None skips this check); and, when ``expected_oids`` is given, the oids are
    exactly those (missing and extra ones are named, ``expected_source`` says where they came from).
    """
    path = Path(path)
    columns = _check_header(path, extra_columns)
    lf = scan(path, columns)
    parsed = lf.select(
        pl.col(ID_COLUMN).str.extract(ID_PATTERN, 1).alias("oid"),
        pl.col(ID_COLUMN).str.extract(ID_PATTERN, 2).cast(pl.Int64, strict=False).alias("y"),
        pl.col(ID_COLUMN),
    )
    totals = lf.select(
        pl.len().alias("rows"),
        pl.sum_horizontal(pl.col(X_COLUMNS).null_count()).alias("missing"),
        pl.sum_horizontal((~pl.col(X_COLUMNS).is_finite()).sum()).alias("nonfinite"),
        pl.min_horizontal(pl.col(X_COLUMNS).min()).alias("min"),
        pl.max_horizontal(pl.col(X_COLUMNS).max()).alias("max"),
        pl.col(ID_COLUMN).null_count().alias("missing_ids"),
    )
    bad_ids = parsed.filter(pl.col("oid").is_null() | pl.col("y").is_null()).select(ID_COLUMN).head(SHOW + 1)
    per_oid = (
        parsed.filter(pl.col("oid").is_not_null() & pl.col("y").is_not_null())
        .group_by("oid")
        .agg(pl.len().alias("n"), pl.col("y").n_unique().alias("unique"), pl.col("y").min().alias("lo"),
             pl.col("y").max().alias("hi"))
    )
    totals_df, bad_ids_df, per_oid_df = collect_queries(path, totals, bad_ids, per_oid)
    t = totals_df.row(0, named=True)
    if t["rows"] == 0:
        raise SubmissionError(f"{path}: no rows after the header")
    if t["missing_ids"]:
        raise SubmissionError(f"{path}: {t['missing_ids']} rows have an empty {ID_COLUMN}")
    if len(bad_ids_df):
        raise SubmissionError(f"{path}: ids must be <oid>_y_<row>, got {_examples(bad_ids_df[ID_COLUMN].to_list())}")
    incomplete = per_oid_df.filter((pl.col("n") != NZ) | (pl.col("unique") != NZ) | (pl.col("lo") != 0)
                                   | (pl.col("hi") != NZ - 1)).sort("oid")
    if len(incomplete):
        first = incomplete.row(0, named=True)
        raise SubmissionError(
            f"{path}: {len(incomplete)} test files lack exactly one row for each of y_0..y_{NZ - 1}, e.g. "
            f"{first['oid']!r} has {first['n']} rows ({first['unique']} distinct, y {first['lo']}..{first['hi']})"
            + (f"; others: {_examples(incomplete['oid'].to_list()[1:])}" if len(incomplete) > 1 else ""))
    if t["missing"] or t["nonfinite"]:
        where = _first_bad_value_row(lf, path)
        raise SubmissionError(f"{path}: {t['missing']} missing and {t['nonfinite']} NaN/Inf "
                              f"values, first in row {where}")
    if value_range is not None and (t["min"] < value_range[0] or t["max"] > value_range[1]):
        raise SubmissionError(f"{path}: velocities outside [{value_range[0]:g}, {value_range[1]:g}] m/s "
                              f"(min {t['min']:g}, max {t['max']:g}); clip the predictions")
    oids = sorted(per_oid_df["oid"].to_list())
    if expected_oids is not None:
        have, want = set(oids), set(expected_oids)
        if have != want:
            missing, extra = sorted(want - have), sorted(have - want)
            parts = []
            if missing:
                parts.append(f"{len(missing)} test files missing ({_examples(missing)})")
            if extra:
                parts.append(f"{len(extra)} unexpected ({_examples(extra)})")
            raise SubmissionError(f"{path}: ids differ from {expected_source}: {'; '.join(parts)}")
    return SubmissionInfo(path, columns, int(t["rows"]), oids, float(t["min"]), float(t["max"]))


def _first_bad_value_row(lf: pl.LazyFrame, path: Path) -> str:
    bad = pl.any_horizontal([~pl.col(c).is_finite().fill_null(False) for c in X_COLUMNS])
    (df,) = collect_queries(path, lf.filter(bad).select(ID_COLUMN).head(1))
    return repr(df[ID_COLUMN][0]) if len(df) else "?"
