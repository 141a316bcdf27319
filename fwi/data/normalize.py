"""Seismic normalization (pixel-wise or global).

One streaming pass over the memory-mapped training files gives, for every (source, time step, receiver)
pixel, the mean and standard deviation (float64 accumulators, Chan's parallel update, bounded RAM); the
global mean/std follow exactly from them. The stats are cached on disk and saved inside every checkpoint
(as :class:`Normalizer` buffers), so training, validation and prediction apply the very same transform.

The pass reads every training sample, so it is also where NaN/Inf in the training seismic is caught: a
one-line :class:`~fwi.errors.DataError` names the file and the sample, before any training (and nothing
is cached). A damaged cache file is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fwi.errors import DataError
from fwi.io import atomic_write
from fwi.physics.acquisition import SEISMIC_SHAPE

MODES = ("pixel", "global", "log")
"""``pixel``: per-pixel standardisation; ``global``: one mean/std; ``log``: sign(x) log1p(|x| / std)."""

CHUNK = 32
"""Samples read at a time while accumulating stats (32 float32 samples = 45 MiB)."""

STD_FLOOR = 1e-3
"""Pixel std is floored at this fraction of the global std (the last time sample is always 0)."""


@dataclass(frozen=True)
class SeismicStats:
    """Per-pixel statistics of raw seismic amplitudes over a training set."""

    mean: np.ndarray
    """float64 ``[5, 1000, 70]``."""
    std: np.ndarray
    """float64 ``[5, 1000, 70]`` (population std)."""
    count: int
    """Samples accumulated."""

    @property
    def global_mean(self) -> float:
        return float(self.mean.mean())

    @property
    def global_std(self) -> float:
        # Every pixel has the same count, so the pooled variance is the mean of E[x^2] minus mean^2.
        second_moment = (self.std**2 + self.mean**2).mean()
        return float(np.sqrt(max(second_moment - self.global_mean**2, 0.0)))

    def save(self, path: str | Path) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, mean=self.mean, std=self.std, count=self.count)

        atomic_write(path, write)

    @classmethod
    def load(cls, path: str | Path) -> SeismicStats:
        """Read saved stats; :class:`DataError` if the file is damaged (unreadable, wrong shapes, non-finite)."""
        try:
            with np.load(path) as z:
                stats = cls(mean=z["mean"], std=z["std"], count=int(z["count"]))
        except Exception as exc:  # zipfile.BadZipFile, KeyError, ValueError, EOFError, OSError, ...
            raise DataError(f"{path}: unreadable normalization stats ({type(exc).__name__}: {exc})") from None
        if stats.mean.shape != SEISMIC_SHAPE or stats.std.shape != SEISMIC_SHAPE or stats.count < 1:
            raise DataError(f"{path}: normalization stats of shape {stats.mean.shape}, expected {SEISMIC_SHAPE}")
        if not (np.isfinite(stats.mean).all() and np.isfinite(stats.std).all()):
            raise DataError(f"{path}: normalization stats hold NaN or Inf")
        return stats


def accumulate_stats(chunks: Iterable[np.ndarray]) -> SeismicStats:
    """Per-pixel mean/std over chunks ``[n, 5, 1000, 70]`` (any float dtype), merged with Chan's update."""
    count, mean, m2 = 0, np.zeros(SEISMIC_SHAPE), np.zeros(SEISMIC_SHAPE)
    for chunk in chunks:
        x = np.asarray(chunk, dtype=np.float64)
        n = x.shape[0]
        if n == 0:
            continue
        chunk_mean = x.mean(axis=0)
        chunk_m2 = ((x - chunk_mean) ** 2).sum(axis=0)
        delta = chunk_mean - mean
        total = count + n
        mean = mean + delta * (n / total)
        m2 = m2 + chunk_m2 + delta**2 * (count * n / total)
        count = total
    if count == 0:
        raise ValueError("no samples to compute normalization stats from")
    return SeismicStats(mean=mean, std=np.sqrt(m2 / count), count=count)


def sourced_chunks(files: dict[str, list[int]], chunk: int = CHUNK) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield ``(path, sample indices, data [<=chunk, 5, 1000, 70])`` over the given samples of each file.

    Files are memory-mapped and visited in sorted path order, so the float64 sums (and the stats) do not depend
    on the order the caller's dict happens to have (polars' group_by, for one, does not keep an order).
    """
    for path in sorted(files):
        data = np.load(path, mmap_mode="r")
        idx = np.sort(np.asarray(files[path]))
        for start in range(0, len(idx), chunk):
            part = idx[start : start + chunk]
            if len(part) and part[-1] - part[0] + 1 == len(part):  # contiguous: one slice read
                yield path, part, data[part[0] : part[-1] + 1]
            else:
                yield path, part, data[part]


def file_chunks(files: dict[str, list[int]], chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """The data of :func:`sourced_chunks`: ``[<=chunk, 5, 1000, 70]`` arrays."""
    for _, _, data in sourced_chunks(files, chunk):
        yield data


def finite_chunks(files: dict[str, list[int]], chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """:func:`file_chunks`, checked: NaN or Inf is a :class:`DataError` naming the file and the first bad sample.

    The check is one float64 sum per chunk (NaN and Inf propagate into it; float16/32 data cannot overflow it);
    only a bad chunk is scanned sample by sample.
    """
    for path, part, data in sourced_chunks(files, chunk):
        if not np.isfinite(np.sum(data, dtype=np.float64)):
            bad = ~np.isfinite(np.asarray(data)).reshape(len(data), -1).all(axis=1)
            sample = int(part[int(np.argmax(bad))])
            raise DataError(f"{path}: sample {sample} of the training seismic contains NaN or Inf ({int(bad.sum())} "
                            f"bad samples in this chunk of {len(part)}); fix or remove the file")
        yield data


def cached_stats(files: dict[str, list[int]], cache_dir: str | Path, progress: bool = True) -> SeismicStats:
    """Stats of the given samples (``{seismic path: [indices]}``), computed once and cached.

    The cache key hashes each file's path, size, modification time and the chosen indices, so editing
    or replacing a file invalidates it. NaN/Inf in a sample is a :class:`DataError` naming the file and the
    sample; a damaged cache file is recomputed (with a warning).
    """
    key = hashlib.sha256()
    for path in sorted(files):
        st = Path(path).stat()
        key.update(json.dumps([str(Path(path).resolve()), st.st_size, st.st_mtime_ns,
                               sorted(int(i) for i in files[path])]).encode())
    cache = Path(cache_dir) / f"seismic_stats_{key.hexdigest()[:16]}.npz"
    if cache.is_file():
        try:
            return SeismicStats.load(cache)
        except DataError as exc:  # damaged (a copy cut short, a full disk, edited by hand): recompute it
            print(f"warning: {exc}; recomputing it", file=sys.stderr)
    chunks = finite_chunks(files)
    if progress:
        from tqdm import tqdm

        total = sum(-(-len(v) // CHUNK) for v in files.values())
        chunks = tqdm(chunks, total=total, desc="normalization stats", unit="chunk", leave=False)
    stats = accumulate_stats(chunks)
    stats.save(cache)
    return stats


class Normalizer(nn.Module):
    """Seismic transform applied on the training device; its buffers travel inside the checkpoint.

    ``forward(seismic [B, 5, 1000, 70]) -> [B, 5, 1000, 70]`` normalized float32.
    """

    def __init__(self, mode: str, mean: np.ndarray | torch.Tensor, std: np.ndarray | torch.Tensor):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"normalization mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(np.asarray(std), dtype=torch.float32))

    @classmethod
    def from_stats(cls, mode: str, stats: SeismicStats) -> Normalizer:
        """Build the ``mode`` transform from per-pixel stats."""
        if mode == "pixel":
            std = np.maximum(stats.std, STD_FLOOR * stats.global_std)
            return cls(mode, stats.mean, std)
        mean = 0.0 if mode == "log" else stats.global_mean  # log keeps zero at zero
        return cls(mode, np.array(mean), np.array(stats.global_std))

    def forward(self, seismic: torch.Tensor) -> torch.Tensor:
        if self.mode == "log":
            return torch.sign(seismic) * torch.log1p(seismic.abs() / self.std)
        return (seismic - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mode={self.mode}"
