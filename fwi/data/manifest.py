"""The training manifest: one polars row per sample, with a train/validation split grouped by file.

Columns: ``family`` (str), ``seismic_path`` (str), ``velocity_path`` (str), ``index`` (int64, sample
index inside the file), ``split`` (``"train"`` or ``"val"``).

Split rules (per family, so every family is represented in both splits where it can be):

* With ``split_by="file"`` (the default) all samples of one file share a split: the cautious choice when
  the samples of a file may be related (one simulation batch), as no near-duplicate can then leak into
  validation.
* A family with ``n >= 2`` files holds out ``round(val_fraction * n)`` files, at least 1 and at most
  ``n - 1`` when ``val_fraction > 0``.
* A family with too few files for that (one file, or so few that one file is more than twice
  ``val_fraction`` of them: Kaggle's ``train_samples`` has 2 files per family, and a file split would hold
  out half of it) is split by sample instead, and one line on stderr says so.
* A family with a single sample goes wholly to train, with a :class:`UserWarning` saying it has no
  validation data.
* Which files are held out is drawn from ``seed`` and the family name only, so the split of a family
  does not change when other families are added, removed or filtered out.

With ``split_by="sample"`` the same rules apply to every family's samples instead of its files (any sample may
go either way). OpenFWI files hold independently drawn samples, so this does not leak.
"""

from __future__ import annotations

import sys
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from fwi.data.layout import Family, discover_families, find_family_dirs

MANIFEST_SCHEMA = {
    "family": pl.String,
    "seismic_path": pl.String,
    "velocity_path": pl.String,
    "index": pl.Int64,
    "split": pl.String,
}
SPLITS = ("train", "val")
SPLIT_UNITS = ("file", "sample")
"""What the validation split draws: whole files (default) or single samples."""


def n_val_files(n_files: int, val_fraction: float) -> int:
    """How many of a family's ``n_files`` files go to validation (see the module docstring)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0.0 or n_files < 2:
        return 0
    return min(max(round(val_fraction * n_files), 1), n_files - 1)


def too_few_files(n_files: int, val_fraction: float) -> bool:
    """Whether a family of ``n_files`` files is split by sample although the split is by file: it has one file,
    or one held-out file would be more than twice ``val_fraction`` of them (2 files at 0.1: 50 % held out)."""
    if val_fraction == 0.0:
        return False
    return n_files < 2 or n_val_files(n_files, val_fraction) / n_files > 2 * val_fraction


def val_file_mask(family: str, n_files: int, val_fraction: float, seed: int) -> np.ndarray:
    """Boolean ``[n_files]``: which of a family's files (or samples, in order) are held out for validation."""
    k = n_val_files(n_files, val_fraction)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(family.encode())])
    mask = np.zeros(n_files, dtype=bool)
    mask[rng.choice(n_files, size=k, replace=False)] = True
    return mask


def manifest_from_families(families: Sequence[Family], *, val_fraction: float = 0.1, seed: int = 0,
                           split_by: str = "file") -> pl.DataFrame:
    """The manifest of already-discovered families (see the module docstring for the split)."""
    if split_by not in SPLIT_UNITS:
        raise ValueError(f"split_by must be one of {SPLIT_UNITS}, got {split_by!r}")
    rows: dict[str, list] = {name: [] for name in MANIFEST_SCHEMA}
    by_sample = []  # families split by sample although split_by is "file"
    for fam in families:
        by_file = split_by == "file" and not too_few_files(fam.n_files, val_fraction)
        if split_by == "file" and not by_file:
            by_sample.append(fam.name)
        units = fam.n_files if by_file else fam.n_samples
        mask = val_file_mask(fam.name, units, val_fraction, seed)
        if val_fraction > 0 and units < 2:
            warnings.warn(f"family {fam.name} has only {units} {'file' if by_file else 'sample'}(s): all its "
                          "samples go to train, it gets no validation data", UserWarning, stacklevel=2)
        if by_file:  # one flag per file, repeated over its samples
            mask = np.repeat(mask, [pair.n_samples for pair in fam.pairs])
        for pair in fam.pairs:
            n = pair.n_samples
            rows["family"] += [fam.name] * n
            rows["seismic_path"] += [str(pair.seismic)] * n
            rows["velocity_path"] += [str(pair.velocity)] * n
            rows["index"] += range(n)
        rows["split"] += ["val" if is_val else "train" for is_val in mask]
    if by_sample:
        print(f"note: {', '.join(by_sample)}: too few files to hold out val_fraction={val_fraction} by file; "
              "their samples are split instead", file=sys.stderr)
    return pl.DataFrame(rows, schema=MANIFEST_SCHEMA)


def build_manifest(
    root: str | Path | Sequence[str | Path],
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    families: Sequence[str] | None = None,
    check_values: bool = False,
    split_by: str = "file",
    train_only: Sequence[str | Path] = (),
) -> pl.DataFrame:
    """Discover and validate the training files under ``root`` and list every sample with its split.

    ``root``: Kaggle root, folder of family folders, or one family folder, or a list of them (their
    samples are pooled; each family's files are split by the usual rules). ``train_only``: more roots whose
    samples all go to train. ``families``: keep only these, wherever they are found (unknown names raise
    :class:`~fwi.errors.DataError` listing the found ones). ``check_values``: also scan all seismic data for
    NaN/Inf (slow). Velocities are always checked for NaN/Inf and range. Deterministic for a given ``seed``.
    """
    n_val_files(2, val_fraction)  # reject a bad fraction before scanning any file
    roots = [root] if isinstance(root, str | Path) else list(root)
    found = discover_families([*roots, *train_only], families=families, check_values=check_values)
    extra = {d for r in train_only for d in find_family_dirs(r)}
    split = manifest_from_families([f for f in found if f.path not in extra], val_fraction=val_fraction, seed=seed,
                                   split_by=split_by)
    return pl.concat([split, manifest_from_families([f for f in found if f.path in extra], val_fraction=0.0)])


def split_summary(manifest: pl.DataFrame) -> pl.DataFrame:
    """Files and samples per family and split: columns family, split, files, samples."""
    return (
        manifest.group_by("family", "split")
        .agg(pl.col("seismic_path").n_unique().alias("files"), pl.len().alias("samples"))
        .sort("family", "split")
    )
