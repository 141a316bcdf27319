"""``python -m fwi.submit S.csv -m MESSAGE``: validate a submission CSV in full, then upload it to Kaggle.

First the file must pass :func:`fwi.submission.check_submission` (header, 70 rows y_0..y_69 per test file,
finite values in [1500, 4500] m/s, ids equal to the test folder's when ``--test-dir`` is given) and hold the
full test set's 4,607,260 rows unless ``--allow-partial``; ``--dry-run`` stops there. Then the ``kaggle``
package must be installed in this Python environment and credentials must exist (see
:func:`find_credentials`), and the upload is ``python -m kaggle competitions submit -c COMPETITION -f FILE -m
MESSAGE`` with this interpreter (so it works from a venv that is not activated; no shell).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from fwi.cli import config_parser, main_guard, resolve_config
from fwi.data.layout import list_test_files
from fwi.errors import FwiError
from fwi.physics.acquisition import NZ
from fwi.submission import check_submission

COMPETITION = "waveform-inversion"
"""Kaggle slug of the competition."""
N_TEST_FILES = 65_818
"""Test files in the competition's test set."""
FULL_ROWS = N_TEST_FILES * NZ
"""Rows of a complete submission: 4,607,260."""


def find_credentials() -> str | None:
    """Where the Kaggle CLI would find credentials, or None.

    Accepted, as the CLI does: ``KAGGLE_USERNAME`` + ``KAGGLE_KEY``; ``KAGGLE_API_TOKEN``; ``kaggle.json``
    in ``$KAGGLE_CONFIG_DIR`` (else ``~/.kaggle``, else ``$XDG_CONFIG_HOME/kaggle`` on Linux); an API token
    file ``~/.kaggle/access_token``.
    """
    env = os.environ
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY"
    if env.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    home = Path(os.path.expanduser("~"))
    if env.get("KAGGLE_CONFIG_DIR"):
        dirs = [Path(env["KAGGLE_CONFIG_DIR"])]
    else:
        dirs = [home / ".kaggle", Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"]
    for d in dirs:
        if (d / "kaggle.json").is_file():
            return str(d / "kaggle.json")
    for name in ("access_token", "access_token.txt"):
        if (home / ".kaggle" / name).is_file():
            return str(home / ".kaggle" / name)
    return None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]
    return lines[-1] if lines else "(no output)"


def kaggle_installed() -> bool:
    """Whether the ``kaggle`` package is importable here (looked up, not imported: importing it authenticates)."""
    return importlib.util.find_spec("kaggle") is not None


def submit(csv: str | Path, message: str, *, competition: str = COMPETITION, test_dir: str | Path | None = None,
           allow_partial: bool = False, dry_run: bool = False) -> None:
    """Validate ``csv`` and upload it with ``message``; raise :class:`FwiError` (one line) on any problem.

    ``dry_run``: validate and print the upload command, upload nothing (no kaggle package or credentials
    needed). The Kaggle CLI's output is passed through to this process's stdout/stderr as it runs.
    """
    csv = Path(csv)
    if not message.strip():
        raise FwiError("empty submission message (-m MESSAGE)")
    expected = None
    if test_dir is not None:
        expected = [oid for oid, _ in list_test_files(test_dir)]
    info = check_submission(csv, expected_oids=expected, expected_source=str(test_dir))
    if not allow_partial and info.n_rows != FULL_ROWS:
        raise FwiError(f"{csv}: {info.n_rows:,} rows ({len(info.oids):,} test files), but the full test set needs "
                       f"{FULL_ROWS:,} ({N_TEST_FILES:,} x {NZ}); pass --allow-partial to upload it anyway")
    cmd = [sys.executable, "-m", "kaggle", "competitions", "submit", "-c", competition, "-f", str(csv), "-m", message]
    print(f"{csv}: valid, {info.n_rows:,} rows ({len(info.oids):,} test files), velocities "
          f"{info.min:.1f}..{info.max:.1f} m/s", file=sys.stderr)
    if dry_run:
        print(f"dry run, nothing uploaded; would run: {shlex.join(['python', *cmd[1:]])}")
        return
    if not kaggle_installed():
        raise FwiError(f"the kaggle package is not installed for {sys.executable}: pip install kaggle (or use "
                       "--dry-run to validate only)")
    if find_credentials() is None:
        raise FwiError("no Kaggle credentials: put kaggle.json (from kaggle.com > Settings > API) in ~/.kaggle/ "
                       "or $KAGGLE_CONFIG_DIR, or set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN)")
    print(f"uploading to {competition}", file=sys.stderr)
    try:
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    except OSError as exc:
        raise FwiError(f"could not run {shlex.join(cmd[:3])}: {exc}") from None
    # Pass stderr through as it comes (upload progress) while keeping it for the error message.
    chunks: list[str] = []
    assert proc.stderr is not None
    while data := proc.stderr.read1(4096):
        text = data.decode("utf-8", errors="replace")
        chunks.append(text)
        sys.stderr.write(text)
        sys.stderr.flush()
    if proc.wait() != 0:
        raise FwiError(f"kaggle competitions submit failed (exit {proc.returncode}): {_last_line(''.join(chunks))}")


_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


@main_guard
def main(argv: list[str] | None = None) -> int:
    parser = config_parser("python -m fwi.submit",
                           "Validate a submission CSV and upload it: kaggle competitions submit -c COMPETITION "
                           "-f CSV -m MESSAGE.")
    parser.usage = ("python -m fwi.submit CSV -m MESSAGE [--competition SLUG] [--test-dir DIR] [--allow-partial] "
                    "[--dry-run] [--config FILE] [section.key=value ...]")
    parser.add_argument("-m", "--message", required=True, help="submission description shown on Kaggle")
    parser.add_argument("--competition", default=COMPETITION, metavar="SLUG", help=f"default {COMPETITION}")
    parser.add_argument("--test-dir", type=Path, metavar="DIR",
                        help="check the ids equal this folder's <oid>.npy files (data.test_dir)")
    parser.add_argument("--allow-partial", action="store_true",
                        help=f"accept fewer rows than the full test set's {FULL_ROWS:,}")
    parser.add_argument("--dry-run", action="store_true", help="validate and show the upload command; upload nothing")
    args = parser.parse_intermixed_args(argv)
    # The CSV shares the positional slot with the overrides: it is the one positional not shaped key=value.
    files = [a for a in args.overrides if not _OVERRIDE.match(a)]
    if len(files) != 1:
        parser.error("give exactly one submission CSV" + (f", got {', '.join(files)}" if files else ""))
    args.overrides = [a for a in args.overrides if _OVERRIDE.match(a)]
    cfg = resolve_config(args, {"data.test_dir": args.test_dir} if args.test_dir is not None else None)
    submit(files[0], args.message, competition=args.competition, test_dir=cfg.data.test_dir,
           allow_partial=args.allow_partial, dry_run=args.dry_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
