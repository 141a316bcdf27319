"""``python -m fwi.score``: the competition metric of a submission CSV against a solution CSV.

Also home of :func:`check_submission`, the one validator of the submission format (DESIGN.md §1) that
fwi.predict (after writing), fwi.score (before scoring) and fwi.submit (before uploading) all run.

A submission has the header ``oid_ypos,x_1,x_3,...,x_69`` and, for every test file ``<oid>``, exactly the
70 rows ``<oid>_y_0 .. <oid>_y_69`` (in any order) of finite velocities in m/s. A solution has the same
columns plus, optionally, ``family`` (fwi.synth writes one for synthetic test sets), which gives the
per-family scores. Files are read lazily with polars' streaming engine, so the 4.6M-row real-size files
never sit in RAM as a whole.

Score: mean absolute error in m/s over every submitted cell (35 odd x columns x 70 rows per test file).
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from fwi.cli import config_parser, main_guard, resolve_config
from fwi.errors import FwiError
from fwi.metrics import ALL
from fwi.physics.acquisition import NZ, VMAX, VMIN
from fwi.submission import COLUMNS, ID_COLUMN, X_COLUMNS

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


def _collect(path: Path, *queries: pl.LazyFrame) -> list[pl.DataFrame]:
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
    totals_df, bad_ids_df, per_oid_df = _collect(path, totals, bad_ids, per_oid)
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
    (df,) = _collect(path, lf.filter(bad).select(ID_COLUMN).head(1))
    return repr(df[ID_COLUMN][0]) if len(df) else "?"


def score(submission: str | Path, solution: str | Path) -> dict[str, float]:
    """Competition MAE (m/s) of ``submission`` against ``solution``: ``{family: mae, ..., "all": mae}``.

    Both files are validated with :func:`check_submission` (the submission's values need not be in range;
    they must be finite) and must hold exactly the same ids. Per-family entries (sorted) appear when the
    solution has a ``family`` column; ``"all"`` (last) averages every submitted cell.
    """
    submission, solution = Path(submission), Path(solution)
    sol = check_submission(solution, extra_columns=(FAMILY_COLUMN,), value_range=None)
    check_submission(submission, value_range=None, expected_oids=sol.oids, expected_source=str(solution))
    truth = scan(solution, sol.columns).rename({c: f"{c}_true" for c in X_COLUMNS})
    joined = scan(submission).join(truth, on=ID_COLUMN, how="inner")
    abs_sum = pl.sum_horizontal([(pl.col(c) - pl.col(f"{c}_true")).abs() for c in X_COLUMNS])
    has_family = FAMILY_COLUMN in sol.columns
    query = joined.with_columns(abs_sum.alias("abs_sum"))
    sums_rows = (pl.col("abs_sum").sum(), pl.len().alias("rows"))
    query = query.group_by(FAMILY_COLUMN).agg(*sums_rows) if has_family else query.select(*sums_rows)
    (sums,) = _collect(submission, query)
    if int(sums["rows"].sum()) != sol.n_rows:  # cannot happen after the id checks; guards the join
        raise SubmissionError(f"{submission}: only {int(sums['rows'].sum())} of {sol.n_rows} rows matched "
                              f"{solution}")
    out: dict[str, float] = {}
    if has_family:
        for row in sums.sort(FAMILY_COLUMN, nulls_last=True).iter_rows(named=True):
            out[str(row[FAMILY_COLUMN])] = row["abs_sum"] / (row["rows"] * len(X_COLUMNS))
    out[ALL] = float(sums["abs_sum"].sum()) / (sol.n_rows * len(X_COLUMNS))
    return out


def format_scores(scores: dict[str, float]) -> str:
    """A small table of :func:`score`'s result, one ``name  mae`` line each."""
    width = max(len(k) for k in scores)
    return "\n".join(f"{k:<{width}}  {v:10.3f}" for k, v in scores.items())


@main_guard
def main(argv: list[str] | None = None) -> int:
    parser = config_parser("python -m fwi.score",
                           "Competition MAE (m/s) of a submission CSV against a solution CSV, per family when "
                           "the solution has a 'family' column.")
    parser.add_argument("--submission", type=Path, required=True, metavar="CSV", help="submission to score")
    parser.add_argument("--solution", type=Path, required=True, metavar="CSV",
                        help="true velocities in submission format (+ optional 'family' column)")
    args = parser.parse_intermixed_args(argv)
    resolve_config(args)  # shared --config/--print-config/overrides handling; nothing here is configurable
    scores = score(args.submission, args.solution)
    print(f"MAE (m/s) of {args.submission} against {args.solution}:")
    print(format_scores(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
