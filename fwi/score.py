"""``python -m fwi.score``: the competition metric of a submission CSV against a solution CSV.

Both files are checked by :func:`fwi.submission.check_submission`. A solution has the submission's columns plus,
optionally, ``family`` (fwi.synth writes one for synthetic test sets), which gives the per-family scores.

Score: mean absolute error in m/s over every submitted cell (35 odd x columns x 70 rows per test file).
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

from fwi.cli import config_parser, main_guard, resolve_config
from fwi.metrics import ALL
from fwi.submission import (
    FAMILY_COLUMN,
    ID_COLUMN,
    X_COLUMNS,
    SubmissionError,
    check_submission,
    collect_queries,
    scan,
)


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
    (sums,) = collect_queries(submission, query)
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
