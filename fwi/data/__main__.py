"""``python -m fwi.data --root DIR [--check-values]``: validate a competition data folder and summarise it.

Prints, per family: files, samples, the train/validation split (from ``data.val_fraction`` and
``data.split_seed``), dtypes, velocity min/max (m/s, every velocity is read) and the seismic |max|
(from the first few samples of each file, or all of them with ``--check-values``, which also scans every
seismic value for NaN/Inf). Exits 0 when the data is valid; otherwise prints ``error: <message naming
the file>`` and exits 1.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import polars as pl
from tqdm import tqdm

from fwi.cli import config_parser, main_guard, resolve_config
from fwi.data.layout import (
    Family,
    check_velocity_values,
    discover_families,
    list_test_files,
    load_test_file,
    read_npy_header,
    scan_values,
)
from fwi.data.manifest import manifest_from_families
from fwi.errors import ConfigError

SAMPLED = 4
"""Leading samples per seismic file scanned for |max| without ``--check-values``."""


def _dtypes(dtypes: set) -> str:
    return "+".join(sorted(str(d.newbyteorder("=")) for d in dtypes))


def summarise_families(found: list[Family], *, check_values: bool, val_fraction: float, seed: int,
                       split_by: str = "file") -> list[str]:
    """Table lines, one per family plus a header and a total; scans values as it goes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest = manifest_from_families(found, val_fraction=val_fraction, seed=seed, split_by=split_by)
    val_counts = dict(manifest.group_by("family").agg((pl.col("split") == "val").sum()).iter_rows())
    head = (f"{'family':<16}{'files':>6}{'samples':>9}{'train':>8}{'val':>7}  {'dtype seis/vel':<17}"
            f"{'vel min':>9}{'vel max':>9}{'seis |max|':>12}")
    lines = [head, "-" * len(head)]
    pairs = [p for fam in found for p in fam.pairs]
    bar = tqdm(total=len(pairs), desc="scanning files", unit="file", disable=None, file=sys.stderr)
    for fam in found:
        vmin, vmax, smax = float("inf"), float("-inf"), 0.0
        for p in fam.pairs:
            v = check_velocity_values(p.velocity)
            s = scan_values(p.seismic, max_samples=None if check_values else SAMPLED)
            vmin, vmax, smax = min(vmin, v.min), max(vmax, v.max), max(smax, s.absmax)
            bar.update()
        n_val = val_counts.get(fam.name, 0)
        dtypes = f"{_dtypes({p.seismic_dtype for p in fam.pairs})}/{_dtypes({p.velocity_dtype for p in fam.pairs})}"
        lines.append(f"{fam.name:<16}{fam.n_files:>6}{fam.n_samples:>9}{fam.n_samples - n_val:>8}{n_val:>7}  "
                     f"{dtypes:<17}{vmin:>9.1f}{vmax:>9.1f}{smax:>12.4g}")
    bar.close()
    for w in caught:  # after the scans, so invalid data yields exactly one line on stderr
        print(f"warning: {w.message}", file=sys.stderr)
    n_files = sum(f.n_files for f in found)
    n_samples = sum(f.n_samples for f in found)
    n_val = int((manifest["split"] == "val").sum())
    lines.append("-" * len(head))
    lines.append(f"{'total':<16}{n_files:>6}{n_samples:>9}{n_samples - n_val:>8}{n_val:>7}")
    return lines


def summarise_test(test_dir: Path, *, check_values: bool) -> str:
    """One line about the test folder: file count; checks every header, and every value if asked."""
    files = list_test_files(test_dir)
    for _, path in tqdm(files, desc="checking test files", unit="file", disable=None, file=sys.stderr):
        if check_values:
            load_test_file(path)
        else:
            read_npy_header(path)
    if not check_values:
        load_test_file(files[0][1])
    what = "all values checked" if check_values else "headers checked, first file loaded"
    return f"test: {len(files)} files in {test_dir} ({what})"


@main_guard
def main(argv: list[str] | None = None) -> int:
    parser = config_parser("python -m fwi.data", "Validate a competition data folder and print a summary.")
    parser.add_argument("--root", help="training root (overrides data.root): Kaggle root, folder of "
                        "family folders, or one family folder")
    parser.add_argument("--check-values", action="store_true",
                        help="scan every seismic value for NaN/Inf and compute the exact |max| (reads all data)")
    args = parser.parse_intermixed_args(argv)
    cfg = resolve_config(args, extra_overrides={"data.root": args.root} if args.root else {})
    root = cfg.data.root
    if root is None:
        raise ConfigError("no data root: pass --root DIR or set data.root")
    found = discover_families(root, families=cfg.data.families, check_velocities=False)
    if args.check_values:
        seismic = "every value checked (finite), |max| from every sample"
    else:
        seismic = f"headers checked, |max| from the first {SAMPLED} samples of each file (--check-values: all)"
    print(f"data root: {root}")
    print(f"velocities: every value checked (finite, in [VMIN, VMAX]); seismic: {seismic}")
    print(f"split: val_fraction={cfg.data.val_fraction}, split_seed={cfg.data.split_seed}, "
          f"split_by={cfg.data.split_by}")
    for line in summarise_families(found, check_values=args.check_values, val_fraction=cfg.data.val_fraction,
                                   seed=cfg.data.split_seed, split_by=cfg.data.split_by):
        print(line)
    test_dir = cfg.data.test_dir
    if test_dir is None and (Path(root) / "test").is_dir():
        test_dir = Path(root) / "test"
    if test_dir is not None:
        print(summarise_test(test_dir, check_values=args.check_values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
