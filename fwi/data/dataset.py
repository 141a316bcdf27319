"""Torch Datasets over the memory-mapped competition files.

Files are opened lazily in ``__getitem__`` and kept open per process (an LRU of at most ``max_open``
memory maps), never pickled: a Dataset sent to DataLoader workers carries paths only, and each worker
opens its own maps on first use.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch.utils.data import Dataset

from fwi.data.layout import list_test_files, load_test_file
from fwi.data.manifest import MANIFEST_SCHEMA, SPLITS


class _MemmapCache:
    """Per-process LRU of read-only memory maps, keyed by path; empty again after pickling."""

    def __init__(self, max_open: int) -> None:
        self.max_open = max_open
        self._maps: OrderedDict[str, np.ndarray] = OrderedDict()

    def get(self, path: str) -> np.ndarray:
        arr = self._maps.get(path)
        if arr is None:
            arr = np.load(path, mmap_mode="r")
            self._maps[path] = arr
            if len(self._maps) > self.max_open:
                self._maps.popitem(last=False)
        else:
            self._maps.move_to_end(path)
        return arr

    def __getstate__(self) -> dict:
        return {"max_open": self.max_open}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_open"])


class SeismicDataset(Dataset):
    """Training samples listed in a manifest (see :mod:`fwi.data.manifest`), one split or all.

    Item ``i`` is a tuple ``(seismic, velocity, family_id)``:

    * ``seismic``: float32 tensor ``[5, 1000, 70]`` (source, time step, receiver), raw amplitudes;
    * ``velocity``: float32 tensor ``[1, 70, 70]`` (1, depth, x), m/s;
    * ``family_id``: int, index into :attr:`family_names`; the default collate turns it into an int64
      tensor ``[B]``, ready for :class:`fwi.metrics.MAEAccumulator` or per-family losses.

    :attr:`family_names` lists every family of the *whole* manifest in sorted order, so the train and
    validation Datasets built from one manifest agree on the ids. float16 files are returned as float32.
    """

    def __init__(self, manifest: pl.DataFrame, split: str | None = "train", *, max_open: int = 256) -> None:
        missing = [c for c in MANIFEST_SCHEMA if c not in manifest.columns]
        if missing:
            raise ValueError(f"manifest lacks columns {missing}; has {manifest.columns}")
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
        self.family_names: list[str] = sorted(manifest["family"].unique().to_list())
        rows = manifest if split is None else manifest.filter(pl.col("split") == split)
        self.split = split
        ids = {name: i for i, name in enumerate(self.family_names)}
        self._seismic_paths: list[str] = rows["seismic_path"].to_list()
        self._velocity_paths: list[str] = rows["velocity_path"].to_list()
        self._index = rows["index"].to_numpy().astype(np.int64)
        self.family_ids = np.array([ids[f] for f in rows["family"].to_list()], dtype=np.int64)
        """int64 ``[len(self)]``: family id of each item (for samplers and per-family metrics)."""
        self._cache = _MemmapCache(max_open)

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        j = int(self._index[i])
        seismic = np.array(self._cache.get(self._seismic_paths[i])[j], dtype=np.float32)
        velocity = np.array(self._cache.get(self._velocity_paths[i])[j], dtype=np.float32)
        return torch.from_numpy(seismic), torch.from_numpy(velocity), int(self.family_ids[i])

    def family_of(self, i: int) -> str:
        """Family name of item ``i``."""
        return self.family_names[self.family_ids[i]]


class TestDataset(Dataset):
    """The competition test set: item ``i`` is ``(oid, seismic)``, seismic float32 ``[5, 1000, 70]``.

    Items are sorted by oid (the file stem). Each item reads and checks its file
    (:func:`fwi.data.layout.load_test_file`), raising :class:`~fwi.errors.DataError` naming a bad one.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, test_dir: str | Path) -> None:
        self.files = list_test_files(test_dir)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[str, torch.Tensor]:
        oid, path = self.files[i]
        return oid, torch.from_numpy(load_test_file(path))

    @property
    def oids(self) -> list[str]:
        """Test ids in item order."""
        return [oid for oid, _ in self.files]
