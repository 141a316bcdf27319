"""Torch Datasets over the memory-mapped competition files (fwi.data.dataset)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from conftest import REAL_TEST_FILE
from torch.utils.data import DataLoader

from fwi.data import SeismicDataset, TestDataset, build_manifest


@pytest.fixture(scope="module")
def manifest(kaggle_tree) -> pl.DataFrame:
    return build_manifest(kaggle_tree.root, val_fraction=0.5, seed=0)


def assert_items_match_files(ds: SeismicDataset, rows: pl.DataFrame, arrays: dict[Path, np.ndarray]) -> None:
    assert len(ds) == rows.height
    for i, row in enumerate(rows.iter_rows(named=True)):
        seis, vel, fam = ds[i]
        assert seis.shape == (5, 1000, 70) and seis.dtype == torch.float32
        assert vel.shape == (1, 70, 70) and vel.dtype == torch.float32
        j = row["index"]
        np.testing.assert_array_equal(seis.numpy(), arrays[Path(row["seismic_path"])][j].astype(np.float32))
        np.testing.assert_array_equal(vel.numpy(), arrays[Path(row["velocity_path"])][j].astype(np.float32))
        assert ds.family_names[fam] == row["family"] == ds.family_of(i)


def test_items_equal_file_contents(kaggle_tree, manifest):
    for split in ("train", "val", None):
        rows = manifest if split is None else manifest.filter(pl.col("split") == split)
        assert_items_match_files(SeismicDataset(manifest, split), rows, kaggle_tree.arrays)


def test_float16_files_come_back_as_float32(make_tree):
    tree = make_tree(dtype=np.float16, test_files=False)
    m = build_manifest(tree.root, val_fraction=0.0)
    assert_items_match_files(SeismicDataset(m, None), m, tree.arrays)


def test_family_ids_agree_across_splits(manifest):
    train, val = SeismicDataset(manifest, "train"), SeismicDataset(manifest, "val")
    assert train.family_names == val.family_names == ["CurveFault_A", "FlatVel_A"]
    assert len(train) + len(val) == manifest.height
    assert train.family_ids.dtype == np.int64


def test_pickles_without_open_maps_and_with_few_open_files(kaggle_tree, manifest):
    ds = SeismicDataset(manifest, None, max_open=1)
    first = ds[0]
    blob = pickle.dumps(ds)
    assert len(blob) < 100_000  # paths only, no array data
    clone = pickle.loads(blob)
    for i in (0, len(ds) - 1, 0):  # LRU of one map: reopen after eviction
        for a, b in zip(clone[i], ds[i], strict=True):
            assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    assert torch.equal(clone[0][0], first[0])


def test_dataloader_with_workers(manifest):
    ds = SeismicDataset(manifest, None)
    ds[0]  # open a map in the parent before the workers start
    batches = list(DataLoader(ds, batch_size=4, num_workers=2))
    seis = torch.cat([b[0] for b in batches])
    fams = torch.cat([b[2] for b in batches])
    assert seis.shape == (len(ds), 5, 1000, 70) and fams.dtype == torch.int64
    assert torch.equal(seis[3], ds[3][0])


def test_bad_manifest_or_split(manifest):
    with pytest.raises(ValueError, match="split must be"):
        SeismicDataset(manifest, "test")
    with pytest.raises(ValueError, match="lacks columns"):
        SeismicDataset(manifest.drop("index"))


def test_test_dataset(kaggle_tree):
    ds = TestDataset(kaggle_tree.test)
    assert len(ds) == 2 and ds.oids == ["000039dca2", "00a1b2c3d4"]
    oid, seis = ds[0]
    assert oid == "000039dca2" and seis.dtype == torch.float32 and seis.shape == (5, 1000, 70)
    np.testing.assert_array_equal(seis.numpy(), np.load(REAL_TEST_FILE).astype(np.float32))
    oids, batch = next(iter(DataLoader(ds, batch_size=2)))
    assert list(oids) == ds.oids and batch.shape == (2, 5, 1000, 70)
