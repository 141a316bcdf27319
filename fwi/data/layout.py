"""Find, pair and validate the competition's .npy files without reading them into RAM.

Training data comes in two namings (docs/data.md), mixed freely across families:

* ``<family>/data/dataN.npy`` with ``<family>/model/modelN.npy`` (FlatVel, CurveVel, Style), and
* ``<family>/seisK.npy`` with ``<family>/velK.npy``, e.g. ``seis2_1_0`` with ``vel2_1_0`` (the Fault families).

Files are paired by the *name* after the prefix (``1``, ``2_1_0``), never by sort order. The family name is
the folder name. Seismic files are ``(N, 5, 1000, 70)``, velocity files ``(N, 1, 70, 70)`` in m/s, both
float32 or float16. Every check reads the .npy header only, so a 667 MiB file costs a few hundred bytes;
the optional value scans go through a memory map in bounded chunks.

The test set is a flat folder of ``<oid>.npy`` files, each ``(5, 1000, 70)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fwi.errors import DataError
from fwi.physics.acquisition import SEISMIC_SHAPE, VELOCITY_SHAPE, VMAX, VMIN

ACCEPTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
"""Sample dtypes a data file may hold (any byte order)."""

TRAIN_SUBDIR = "train_samples"
"""Folder of family folders inside the Kaggle competition root."""

SCAN_CHUNK = 16
"""Samples read at a time by the value scans (16 seismic float32 samples = 22 MiB)."""

# (seismic glob, velocity glob, seismic prefix, velocity prefix), relative to a family folder.
_NAMINGS = (
    ("data/data*.npy", "model/model*.npy", "data", "model"),
    ("seis*.npy", "vel*.npy", "seis", "vel"),
)


@dataclass(frozen=True)
class NpyHeader:
    """What the header of a .npy file says, checked against the file size."""

    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int
    """Bytes before the array data."""


@dataclass(frozen=True)
class FilePair:
    """One seismic file and its velocity file, validated (same sample count, right shapes and dtypes)."""

    family: str
    key: str
    """The shared name part: ``"1"`` for data1/model1, ``"2_1_0"`` for seis2_1_0/vel2_1_0."""
    seismic: Path
    velocity: Path
    n_samples: int
    seismic_dtype: np.dtype
    velocity_dtype: np.dtype


@dataclass(frozen=True)
class Family:
    """A family folder and its file pairs in natural name order (data2 before data10)."""

    name: str
    path: Path
    pairs: tuple[FilePair, ...]

    @property
    def n_files(self) -> int:
        """Number of seismic/velocity file pairs."""
        return len(self.pairs)

    @property
    def n_samples(self) -> int:
        """Number of samples over all pairs."""
        return sum(p.n_samples for p in self.pairs)


@dataclass(frozen=True)
class ValueStats:
    """Value range of (part of) a data file, in its units (m/s for velocities)."""

    min: float
    max: float
    absmax: float
    n_scanned: int
    """Samples scanned (the leading ones of the file)."""


# --------------------------------------------------------------------------------------------- headers


def read_npy_header(path: str | Path) -> NpyHeader:
    """Parse the header of the .npy file at ``path`` and check the file holds all the data it announces.

    Raises :class:`DataError` naming the file when it is missing, not a .npy, or truncated / padded
    (file size differs from header + shape x itemsize). Reads only the header.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
                else:  # 2.0 (and 3.0, whose header differs only in its text encoding)
                    shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
            except Exception as exc:  # numpy raises ValueError, SyntaxError, TokenError, ...
                raise DataError(f"{path}: not a valid .npy file ({exc})") from None
            offset = f.tell()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a .npy file") from None
    if dtype.hasobject:
        raise DataError(f"{path}: holds Python objects, expected float32 or float16")
    expected = offset + math.prod(shape) * dtype.itemsize
    if size < expected:
        raise DataError(f"{path}: truncated or corrupt .npy: header announces {shape} {dtype} "
                        f"({expected} bytes) but the file has {size} bytes")
    if size > expected:
        raise DataError(f"{path}: corrupt .npy: {size - expected} bytes after the {shape} {dtype} array")
    return NpyHeader(path, tuple(shape), dtype, fortran_order, offset)


def check_header(path: str | Path, sample_shape: tuple[int, ...], what: str) -> NpyHeader:
    """:func:`read_npy_header` plus: shape ``(N, *sample_shape)`` with N >= 1, dtype float32/float16."""
    header = read_npy_header(path)
    ok_shape = len(header.shape) == 1 + len(sample_shape) and header.shape[1:] == tuple(sample_shape)
    if not ok_shape:
        expected = "(N, " + ", ".join(map(str, sample_shape)) + ")"
        raise DataError(f"{header.path}: wrong shape for a {what} file: expected {expected}, "
                        f"got {header.shape}")
    if header.shape[0] == 0:
        raise DataError(f"{header.path}: {what} file holds no samples (shape {header.shape})")
    _check_dtype(header)
    return header


def _check_dtype(header: NpyHeader) -> None:
    if header.dtype.newbyteorder("=") not in ACCEPTED_DTYPES:
        raise DataError(f"{header.path}: wrong dtype: expected float32 or float16, got {header.dtype}")


# ------------------------------------------------------------------------------------------- discovery


def natural_key(text: str) -> list[int | str]:
    """Sort key that orders embedded numbers numerically: ``data2`` before ``data10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _has_data_files(folder: Path) -> bool:
    return any(any(folder.glob(pattern)) for naming in _NAMINGS for pattern in naming[:2])


def find_family_dirs(root: str | Path) -> list[Path]:
    """Family folders under ``root``, sorted by name.

    ``root`` may be the Kaggle root (holding ``train_samples/<family>/``), a folder of family folders, or
    one family folder. Raises :class:`DataError` naming ``root`` when it is missing or holds no
    training files.
    """
    root = Path(root).absolute()  # manifests hold absolute paths: usable from any working directory
    if not root.exists():
        raise DataError(f"data root not found: {root}")
    if not root.is_dir():
        raise DataError(f"data root is not a directory: {root}")
    if _has_data_files(root):
        return [root]
    base = root / TRAIN_SUBDIR if (root / TRAIN_SUBDIR).is_dir() else root
    dirs = [d for d in base.iterdir() if d.is_dir() and _has_data_files(d)]
    if not dirs:
        raise DataError(f"no training files found under {root} (expected {TRAIN_SUBDIR}/<family>/ holding "
                        "data/dataN.npy + model/modelN.npy or seisK.npy + velK.npy)")
    return sorted(dirs, key=lambda d: natural_key(d.name))


def pair_files(family_dir: str | Path) -> list[tuple[str, Path, Path]]:
    """``(key, seismic path, velocity path)`` for each pair in a family folder, in natural key order.

    Pairs by the name after the prefix (data1 <-> model1, seis2_1_0 <-> vel2_1_0). A seismic file without
    its velocity file or the reverse raises :class:`DataError` naming the file.
    """
    family_dir = Path(family_dir)
    pairs: list[tuple[str, Path, Path]] = []
    for seis_glob, vel_glob, seis_prefix, vel_prefix in _NAMINGS:
        seis = {p.stem[len(seis_prefix):]: p for p in family_dir.glob(seis_glob) if p.is_file()}
        vel = {p.stem[len(vel_prefix):]: p for p in family_dir.glob(vel_glob) if p.is_file()}
        for key in sorted(seis.keys() - vel.keys(), key=natural_key):
            expected = family_dir / vel_glob.replace("*", key)
            raise DataError(f"unpaired seismic file {seis[key]}: no velocity file {expected}")
        for key in sorted(vel.keys() - seis.keys(), key=natural_key):
            expected = family_dir / seis_glob.replace("*", key)
            raise DataError(f"unpaired velocity file {vel[key]}: no seismic file {expected}")
        pairs += [(key, seis[key], vel[key]) for key in seis]
    return sorted(pairs, key=lambda p: natural_key(p[0]))


def check_pair(family: str, key: str, seismic: Path, velocity: Path) -> FilePair:
    """Validate the headers of one pair (shapes, dtypes, equal sample counts) and describe it."""
    sh = check_header(seismic, SEISMIC_SHAPE, "seismic")
    vh = check_header(velocity, VELOCITY_SHAPE, "velocity")
    if sh.shape[0] != vh.shape[0]:
        raise DataError(f"sample-count mismatch: {seismic} has {sh.shape[0]} samples but {velocity} "
                        f"has {vh.shape[0]}")
    return FilePair(family, key, seismic, velocity, sh.shape[0], sh.dtype, vh.dtype)


def discover_families(
    root: str | Path | Sequence[str | Path],
    *,
    families: Sequence[str] | None = None,
    check_velocities: bool = True,
    check_values: bool = False,
) -> list[Family]:
    """Find, pair and validate the training files under ``root``, or under each of several roots
    (see :func:`find_family_dirs`; a family found under two roots appears twice).

    Headers of every file are always checked (shape, dtype, size, pairing). ``families`` keeps only those
    families (unknown names raise :class:`DataError` listing the found ones). ``check_velocities``
    (default) scans every velocity file for NaN/Inf and values outside [VMIN, VMAX] (cheap: ~10 MB a
    file). ``check_values`` also scans every seismic file for NaN/Inf (expensive: reads all the data,
    in chunks of :data:`SCAN_CHUNK` samples).
    """
    roots = [root] if isinstance(root, str | Path) else list(root)
    dirs = [d for r in roots for d in find_family_dirs(r)]
    if families is not None:
        found = [d.name for d in dirs]
        unknown = [f for f in families if f not in found]
        if unknown or not families:
            what = f"unknown families: {', '.join(unknown)}" if unknown else "no families selected"
            where = ", ".join(str(r) for r in roots)
            raise DataError(f"{what}; found under {where}: {', '.join(sorted(set(found)))}")
        dirs = [d for d in dirs if d.name in set(families)]
    out = []
    for d in dirs:
        triples = pair_files(d)
        pairs = tuple(check_pair(d.name, key, s, v) for key, s, v in triples)
        for p in pairs:
            if check_velocities or check_values:
                check_velocity_values(p.velocity)
            if check_values:
                scan_values(p.seismic)
        out.append(Family(d.name, d, pairs))
    return out


# ---------------------------------------------------------------------------------------------- values


def scan_values(path: str | Path, *, max_samples: int | None = None, chunk: int = SCAN_CHUNK) -> ValueStats:
    """Min, max and |max| of the first ``max_samples`` samples (all if None) of a data file.

    Reads through a memory map, ``chunk`` samples at a time, so RAM stays bounded. Raises
    :class:`DataError` naming the file and sample on NaN or Inf.
    """
    path = Path(path)
    read_npy_header(path)  # clear error on truncation before the memmap sees it
    arr = np.load(path, mmap_mode="r")
    n = arr.shape[0] if max_samples is None else min(max_samples, arr.shape[0])
    lo, hi = math.inf, -math.inf
    for start in range(0, n, chunk):
        block = np.asarray(arr[start:min(start + chunk, n)], dtype=np.float32)
        finite = np.isfinite(block)
        if not finite.all():
            bad = start + int(np.argmin(finite.reshape(len(block), -1).all(axis=1)))
            raise DataError(f"{path}: NaN or Inf in sample {bad}")
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    del arr
    return ValueStats(lo, hi, max(abs(lo), abs(hi)) if n else math.nan, n)


def check_velocity_values(path: str | Path) -> ValueStats:
    """:func:`scan_values` of a whole velocity file, plus the range check VMIN <= v <= VMAX (m/s)."""
    stats = scan_values(path)
    if stats.min < VMIN or stats.max > VMAX:
        raise DataError(f"{path}: velocities outside [{VMIN:g}, {VMAX:g}] m/s: "
                        f"min {stats.min:g}, max {stats.max:g}")
    return stats


# ------------------------------------------------------------------------------------------------ test


def list_test_files(test_dir: str | Path) -> list[tuple[str, Path]]:
    """``(oid, path)`` for every ``<oid>.npy`` in ``test_dir``, sorted by oid.

    The oid is the file stem (10 hex digits in the competition; any stem is accepted). Hidden files are
    skipped; any other entry that is not a ``.npy`` file raises :class:`DataError` naming it, as does an
    empty or missing folder.
    """
    test_dir = Path(test_dir)
    if not test_dir.is_dir():
        raise DataError(f"test directory not found: {test_dir}")
    out = []
    for p in test_dir.iterdir():
        if p.name.startswith("."):
            continue
        if p.suffix != ".npy" or not p.is_file():
            raise DataError(f"unexpected entry in test directory: {p} (expected only <oid>.npy files)")
        out.append((p.stem, p))
    if not out:
        raise DataError(f"no test files (<oid>.npy) in {test_dir}")
    return sorted(out)


def load_test_file(path: str | Path) -> np.ndarray:
    """One test sample as float32 ``[5, 1000, 70]`` (source, time step, receiver).

    Accepts float32 or float16 files of shape ``(5, 1000, 70)``; anything else, a truncated file, or
    NaN/Inf raises :class:`DataError` naming the file.
    """
    header = read_npy_header(path)
    if header.shape != SEISMIC_SHAPE:
        raise DataError(f"{header.path}: wrong shape for a test file: expected {SEISMIC_SHAPE}, "
                        f"got {header.shape}")
    _check_dtype(header)
    data = np.load(header.path).astype(np.float32, copy=False)
    if not np.isfinite(data).all():
        raise DataError(f"{header.path}: NaN or Inf in test data")
    return data
