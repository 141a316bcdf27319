"""Discovery, pairing and validation of competition files (fwi.data.layout) and the manifest."""

from __future__ import annotations

import re
from contextlib import contextmanager

import numpy as np
import polars as pl
import pytest
from conftest import DATA_DIR, REAL_TEST_FILE

from fwi.data.layout import (
    check_velocity_values,
    discover_families,
    find_family_dirs,
    list_test_files,
    load_test_file,
    natural_key,
    read_npy_header,
    scan_values,
)
from fwi.data.manifest import (
    MANIFEST_SCHEMA,
    build_manifest,
    n_val_files,
    split_summary,
    too_few_files,
    val_file_mask,
)
from fwi.errors import DataError


def one_family(name: str, files: list[tuple[str, str, int]]) -> dict:
    return {name: files}


@contextmanager
def raises_naming(path, match: str = ""):
    """Expect a DataError whose message names ``path`` and matches the regex ``match``."""
    with pytest.raises(DataError) as info:
        yield info
    message = str(info.value)
    assert str(path) in message, message
    assert re.search(match, message), message


# ------------------------------------------------------------------------------------------- discovery


def test_discovers_both_namings_from_kaggle_root(kaggle_tree):
    fams = discover_families(kaggle_tree.root)
    assert [f.name for f in fams] == ["CurveFault_A", "FlatVel_A"]
    fault, flat = fams
    assert [p.key for p in flat.pairs] == ["1", "2"]
    assert [(p.seismic.name, p.velocity.name) for p in flat.pairs] == [
        ("data1.npy", "model1.npy"), ("data2.npy", "model2.npy")]
    assert [(p.seismic.name, p.velocity.name) for p in fault.pairs] == [
        ("seis2_1_0.npy", "vel2_1_0.npy"), ("seis4_1_0.npy", "vel4_1_0.npy")]
    assert (flat.n_files, flat.n_samples, fault.n_samples) == (2, 6, 4)
    assert flat.pairs[0].seismic_dtype == np.float32


def test_real_openfwi_pair_is_accepted(tmp_path, monkeypatch):
    fam = tmp_path / "CurveFault_A"
    fam.mkdir()
    for kind, stem in (("seis", "seis2_1_0"), ("vel", "vel2_1_0")):
        (fam / f"{stem}.npy").write_bytes((DATA_DIR / f"curvefault_sample0_{kind}.npy").read_bytes())
    monkeypatch.chdir(tmp_path)
    (found,) = discover_families("CurveFault_A", check_values=True)  # a relative root
    assert found.n_samples == 1 and found.pairs[0].seismic == fam / "seis2_1_0.npy"  # absolute paths


def test_root_may_be_train_samples_or_one_family(kaggle_tree):
    assert [d.name for d in find_family_dirs(kaggle_tree.train)] == ["CurveFault_A", "FlatVel_A"]
    only = discover_families(kaggle_tree.family("CurveFault_A"))
    assert [f.name for f in only] == ["CurveFault_A"] and only[0].n_files == 2


def test_pairs_by_name_in_natural_order(make_tree):
    files = [(f"data/data{k}.npy", f"model/model{k}.npy", 1) for k in (10, 2, 1)]
    files += [(f"seis{k}_1_0.npy", f"vel{k}_1_0.npy", 1) for k in (12, 4)]
    tree = make_tree(one_family("Mixed", files), test_files=False)
    (fam,) = discover_families(tree.root)
    assert [p.key for p in fam.pairs] == ["1", "2", "4_1_0", "10", "12_1_0"]
    for p in fam.pairs:
        assert p.velocity.stem.removeprefix("model").removeprefix("vel") == p.key
        assert p.seismic.stem.removeprefix("data").removeprefix("seis") == p.key
    assert natural_key("data2") < natural_key("data10")


def test_unpaired_seismic_and_velocity(make_tree):
    tree = make_tree(one_family("F", [("data/data1.npy", "model/model1.npy", 1)]), test_files=False)
    (tree.family("F") / "model/model1.npy").rename(tree.family("F") / "model/model3.npy")
    with raises_naming(tree.family("F") / "data/data1.npy", "unpaired|no velocity"):
        discover_families(tree.root)
    tree = make_tree(one_family("G", [("seis2_1_0.npy", "vel2_1_0.npy", 1)]), test_files=False)
    (tree.family("G") / "seis2_1_0.npy").unlink()
    with pytest.raises(DataError, match=r"unpaired velocity file .*vel2_1_0\.npy"):
        discover_families(tree.root)


def test_empty_or_missing_root_names_it(tmp_path):
    with raises_naming(tmp_path, "no training files"):
        discover_families(tmp_path)
    (tmp_path / "train_samples" / "FlatVel_A").mkdir(parents=True)
    with pytest.raises(DataError, match="no training files found under " + re.escape(str(tmp_path))):
        discover_families(tmp_path)
    with pytest.raises(DataError, match="not found"):
        discover_families(tmp_path / "nope")


def test_family_filter(kaggle_tree):
    assert [f.name for f in discover_families(kaggle_tree.root, families=["FlatVel_A"])] == ["FlatVel_A"]
    with pytest.raises(DataError, match=r"unknown families: Style_B; found under .*: CurveFault_A, FlatVel_A"):
        discover_families(kaggle_tree.root, families=["FlatVel_A", "Style_B"])


# ------------------------------------------------------------------------------------------ validation


def test_wrong_shape_says_expected_and_got(make_tree):
    tree = make_tree(test_files=False)
    bad = tree.family("FlatVel_A") / "data/data2.npy"
    np.save(bad, np.zeros((3, 5, 999, 70), np.float32))
    with pytest.raises(DataError, match=re.escape(f"{bad}: wrong shape for a seismic file: expected "
                                                  "(N, 5, 1000, 70), got (3, 5, 999, 70)")):
        discover_families(tree.root)
    bad = tree.family("CurveFault_A") / "vel4_1_0.npy"
    np.save(bad, np.full((2, 70, 70), 2000, np.float32))
    with raises_naming(bad, re.escape("expected (N, 1, 70, 70), got (2, 70, 70)")):
        discover_families(tree.root, families=["CurveFault_A"])


def test_wrong_dtype(make_tree):
    tree = make_tree(test_files=False)
    bad = tree.family("CurveFault_A") / "vel2_1_0.npy"
    np.save(bad, np.full((2, 1, 70, 70), 2000, np.float64))
    with raises_naming(bad, "expected float32 or float16, got float64"):
        discover_families(tree.root)


def test_truncated_npy_is_detected_from_the_header(make_tree):
    tree = make_tree(test_files=False)
    bad = tree.family("FlatVel_A") / "data/data1.npy"
    with open(bad, "r+b") as f:
        f.truncate(bad.stat().st_size - 1000)
    with raises_naming(bad, "truncated"):
        read_npy_header(bad)
    with raises_naming(bad, "truncated"):
        discover_families(tree.root)


def test_garbage_and_padded_files(tmp_path):
    garbage = tmp_path / "x.npy"
    garbage.write_bytes(b"not a numpy file at all")
    with raises_naming(garbage, "not a valid .npy"):
        read_npy_header(garbage)
    padded = tmp_path / "y.npy"
    np.save(padded, np.zeros(10, np.float32))
    with open(padded, "ab") as f:
        f.write(b"\0" * 8)
    with raises_naming(padded, "8 bytes after"):
        read_npy_header(padded)


def test_sample_count_mismatch(make_tree):
    tree = make_tree(test_files=False)
    vel = tree.family("FlatVel_A") / "model/model2.npy"
    np.save(vel, np.full((2, 1, 70, 70), 2000, np.float32))
    with pytest.raises(DataError, match=r"sample-count mismatch: .*data2\.npy has 3 samples but .*model2\.npy has 2"):
        discover_families(tree.root)


def test_nan_and_out_of_range_velocity(make_tree):
    tree = make_tree(test_files=False)
    vel = tree.family("CurveFault_A") / "vel4_1_0.npy"
    arr = tree.arrays[vel].copy()
    arr[1, 0, 5, 5] = np.nan
    np.save(vel, arr)
    with raises_naming(vel, "NaN or Inf in sample 1"):
        discover_families(tree.root)
    discover_families(tree.root, check_velocities=False)  # headers alone are fine
    arr[1, 0, 5, 5] = 5000.0
    np.save(vel, arr)
    with raises_naming(vel, r"outside \[1500, 4500\]"):
        discover_families(tree.root)


def test_seismic_nan_only_with_check_values(make_tree):
    tree = make_tree(test_files=False)
    seis = tree.family("FlatVel_A") / "data/data2.npy"
    arr = tree.arrays[seis].copy()
    arr[2, 4, 999, 69] = np.inf
    np.save(seis, arr)
    discover_families(tree.root)  # default: seismic values are not scanned
    with raises_naming(seis, "NaN or Inf in sample 2"):
        discover_families(tree.root, check_values=True)


def test_scan_values_chunked_and_bounded(kaggle_tree):
    path = kaggle_tree.family("FlatVel_A") / "data/data1.npy"
    arr = kaggle_tree.arrays[path]
    full = scan_values(path, chunk=2)
    assert full.n_scanned == 3
    assert (full.min, full.max, full.absmax) == (arr.min(), arr.max(), np.abs(arr).max())
    first = scan_values(path, max_samples=1)
    assert first.n_scanned == 1 and first.absmax == np.abs(arr[0]).max()
    vel = kaggle_tree.family("FlatVel_A") / "model/model1.npy"
    assert check_velocity_values(vel).max == kaggle_tree.arrays[vel].max()


def test_float16_tree_is_accepted(make_tree):
    tree = make_tree(dtype=np.float16, test_files=False)
    fams = discover_families(tree.root, check_values=True)
    assert {p.seismic_dtype for f in fams for p in f.pairs} == {np.dtype(np.float16)}


# ---------------------------------------------------------------------------------------------- test set


def test_list_and_load_test_files(kaggle_tree):
    files = list_test_files(kaggle_tree.test)
    assert [oid for oid, _ in files] == ["000039dca2", "00a1b2c3d4"]
    real = load_test_file(files[0][1])
    assert real.shape == (5, 1000, 70) and real.dtype == np.float32
    np.testing.assert_array_equal(real, np.load(REAL_TEST_FILE).astype(np.float32))
    np.testing.assert_array_equal(load_test_file(files[1][1]), kaggle_tree.arrays[files[1][1]])


def test_test_dir_errors(tmp_path):
    with pytest.raises(DataError, match="test directory not found"):
        list_test_files(tmp_path / "missing")
    with raises_naming(tmp_path, "no test files"):
        list_test_files(tmp_path)
    (tmp_path / ".DS_Store").write_text("")  # hidden files are skipped
    np.save(tmp_path / "abc.npy", np.zeros((5, 1000, 69), np.float32))
    assert [oid for oid, _ in list_test_files(tmp_path)] == ["abc"]
    with raises_naming(tmp_path / "abc.npy", re.escape("expected (5, 1000, 70), got (5, 1000, 69)")):
        load_test_file(tmp_path / "abc.npy")
    (tmp_path / "notes.txt").write_text("x")
    with raises_naming(tmp_path / "notes.txt", "unexpected entry"):
        list_test_files(tmp_path)


# ---------------------------------------------------------------------------------------------- manifest


def test_manifest_rows_and_columns(kaggle_tree):
    m = build_manifest(kaggle_tree.root, val_fraction=0.0)
    assert dict(m.schema) == MANIFEST_SCHEMA
    assert m.height == 10 and set(m["split"]) == {"train"}
    flat = m.filter(pl.col("family") == "FlatVel_A")
    assert flat["index"].to_list() == [0, 1, 2, 0, 1, 2]
    assert flat["seismic_path"].str.ends_with("data1.npy").sum() == 3
    for s, v in zip(m["seismic_path"], m["velocity_path"], strict=True):
        assert s.endswith(("data1.npy", "data2.npy", "seis2_1_0.npy", "seis4_1_0.npy"))
        key = s.split("/")[-1].removeprefix("data").removeprefix("seis")
        assert v.split("/")[-1].removeprefix("model").removeprefix("vel") == key


def test_split_is_grouped_by_file_seeded_and_deterministic(kaggle_tree, capsys):
    m = build_manifest(kaggle_tree.root, val_fraction=0.5, seed=3)
    assert m.equals(build_manifest(kaggle_tree.root, val_fraction=0.5, seed=3))
    per_file = m.group_by("seismic_path").agg(pl.col("split").n_unique())
    assert per_file["split"].to_list() == [1] * 4  # no file is split
    summary = split_summary(m)
    # every family (2 files each) gets exactly one validation file
    assert summary.filter(pl.col("split") == "val")["files"].to_list() == [1, 1]
    # filtering families does not change the split of the others
    only = build_manifest(kaggle_tree.root, val_fraction=0.5, seed=3, families=["FlatVel_A"])
    assert only.equals(m.filter(pl.col("family") == "FlatVel_A"))
    assert capsys.readouterr().err == ""  # no family needed the sample split


def test_too_few_files_are_split_by_sample_with_a_one_line_note(make_tree, capsys):
    """Kaggle's layout (2 files per family): a file split at 0.1 would hold out half of each family."""
    spec = {"FlatVel_A": [(f"data/data{i}.npy", f"model/model{i}.npy", 10) for i in (1, 2)],
            "Style_A": [(f"data/data{i}.npy", f"model/model{i}.npy", 2) for i in range(1, 11)]}
    tree = make_tree(spec, test_files=False)
    m = build_manifest(tree.root, val_fraction=0.1, seed=3)
    assert capsys.readouterr().err.splitlines() == [
        "note: FlatVel_A: too few files to hold out val_fraction=0.1 by file; their samples are split instead"]
    flat = m.filter(pl.col("family") == "FlatVel_A")
    assert flat.equals(build_manifest(tree.root, val_fraction=0.1, seed=3, split_by="sample",
                                      families=["FlatVel_A"]))
    assert (flat["split"] == "val").sum() == 2  # 10 % of 20 samples, not one of the two files (50 %)
    style = m.filter(pl.col("family") == "Style_A").group_by("seismic_path").agg(pl.col("split").first())
    assert (style["split"] == "val").sum() == 1  # 10 files: one whole file held out, as asked
    assert [too_few_files(n, 0.1) for n in (1, 2, 3, 4, 5, 10)] == [True, True, True, True, False, False]
    assert not too_few_files(2, 0.5) and not too_few_files(1, 0.0)


def test_split_by_sample_holds_out_a_fraction_of_each_family(make_tree):
    tree = make_tree({"FlatVel_A": [("data/data1.npy", "model/model1.npy", 10),
                                    ("data/data2.npy", "model/model2.npy", 10)]}, test_files=False)
    m = build_manifest(tree.root, val_fraction=0.1, seed=3, split_by="sample")
    assert m.equals(build_manifest(tree.root, val_fraction=0.1, seed=3, split_by="sample"))
    assert (m["split"] == "val").sum() == 2  # 10 % of 20 samples, not one of the two files (50 %)
    assert m["index"].to_list() == list(range(10)) * 2  # rows still list every sample once, in file order
    other = build_manifest(tree.root, val_fraction=0.1, seed=4, split_by="sample")
    assert not other["split"].equals(m["split"])
    with pytest.raises(ValueError, match="split_by must be one of"):
        build_manifest(tree.root, split_by="row")


def test_val_file_selection_rules():
    assert [n_val_files(n, 0.1) for n in (1, 2, 10, 20, 100)] == [0, 1, 1, 2, 10]
    assert n_val_files(2, 0.9) == 1 and n_val_files(10, 0.0) == 0
    with pytest.raises(ValueError):
        n_val_files(10, 1.0)
    masks = {tuple(val_file_mask("Style_A", 20, 0.25, seed)) for seed in range(10)}
    assert len(masks) > 1 and all(sum(m) == 5 for m in masks)
    assert tuple(val_file_mask("Style_A", 20, 0.25, 4)) == tuple(val_file_mask("Style_A", 20, 0.25, 4))


def test_single_sample_family_goes_to_train_with_warning(make_tree, capsys):
    tree = make_tree(one_family("Solo", [("seis1.npy", "vel1.npy", 1)]), test_files=False)
    with pytest.warns(UserWarning, match="Solo has only 1 sample"):
        m = build_manifest(tree.root, val_fraction=0.2)
    assert set(m["split"]) == {"train"}
    tree = make_tree(one_family("Pair", [("seis1.npy", "vel1.npy", 2)]), test_files=False)
    m = build_manifest(tree.root, val_fraction=0.2)  # one file: split by sample, one of its two samples held out
    assert m["split"].to_list().count("val") == 1 and "note: Pair: too few files" in capsys.readouterr().err


def test_manifest_family_filter_error(kaggle_tree):
    with pytest.raises(DataError, match="unknown families: Nope; found under .*: CurveFault_A, FlatVel_A"):
        build_manifest(kaggle_tree.root, families=["Nope"])
