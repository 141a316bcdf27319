"""Pseudo-label cycles: predict --save-maps -> synth --velocity -> train with data.extra_roots, and re-simulated
augmentations of a data root's training maps (synth --from-root)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from conftest import DEFAULT_SPEC, ROOT, build_kaggle_tree
from test_predict import make_checkpoint, read_maps

from fwi.config import load_config
from fwi.data.manifest import build_manifest
from fwi.errors import FwiError
from fwi.physics.simulator import simulate
from fwi.predict import predict
from fwi.synth import writer
from fwi.synth.__main__ import main as synth_main
from fwi.synth.augment import VelocityAugment, augment
from fwi.train import training_manifest


@pytest.fixture
def fake_simulate(monkeypatch):
    """A cheap stand-in for the simulator: every trace holds the map's mean velocity."""

    def fake(velocity, acq=writer.DEFAULT, **kwargs):
        mean = velocity.mean(dim=(1, 2))[:, None, None, None]
        return mean.expand(len(velocity), acq.n_sources, acq.nt, acq.n_receivers).clone()

    monkeypatch.setattr(writer, "simulate", fake)


def test_saved_maps_round_trip_through_synth_velocity(tmp_path, capsys):
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    rng = np.random.default_rng(0)
    oids = ["00000000b2", "00000000a1"]
    for oid in oids:
        np.save(test_dir / f"{oid}.npy", rng.standard_normal((5, 1000, 70), dtype=np.float32))
    maps_dir = tmp_path / "maps"
    csv = predict([make_checkpoint(tmp_path / "a.pt", 1)], test_dir, tmp_path / "s.csv", device="cpu", workers=0,
                  tta="flip", float_precision=None, progress=False, save_maps=maps_dir)
    assert sorted(p.name for p in maps_dir.iterdir()) == ["00000000a1.npy", "00000000b2.npy"]
    maps = np.stack([np.load(maps_dir / f"{oid}.npy") for oid in sorted(oids)])
    assert maps.shape == (2, 70, 70) and maps.dtype == np.float32
    submitted = read_maps(csv)
    for oid, m in zip(sorted(oids), maps, strict=True):
        np.testing.assert_array_equal(m[:, 1::2], submitted[oid].astype(np.float32))  # the map the CSV holds

    assert synth_main(["--velocity", str(maps_dir), "--out", str(tmp_path / "tree"), "--device", "cpu", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'tree'}")
    np.testing.assert_array_equal(np.load(tmp_path / "tree/model/model1.npy"), maps[:, None])  # oid order
    with torch.no_grad():
        expected = simulate(torch.from_numpy(maps)).numpy()
    np.testing.assert_array_equal(np.load(tmp_path / "tree/data/data1.npy"), expected)
    manifest = build_manifest(tmp_path / "tree", val_fraction=0.0)
    assert manifest["family"].unique().to_list() == ["tree"] and manifest.height == 2


def test_save_maps_folder_is_checked_before_predicting(tmp_path):
    ckpt, test_dir = make_checkpoint(tmp_path / "a.pt", 1), tmp_path / "test"
    test_dir.mkdir()
    np.save(test_dir / "0000000001.npy", np.zeros((5, 1000, 70), np.float32))
    kw = {"device": "cpu", "workers": 0, "progress": False}
    (tmp_path / "afile").write_text("")
    with pytest.raises(FwiError, match=r"^--save-maps .*afile is a file: give a folder to write <oid>.npy maps into$"):
        predict([ckpt], test_dir, tmp_path / "s.csv", save_maps=tmp_path / "afile", **kw)
    held = tmp_path / "held"
    held.mkdir()
    np.save(held / "old.npy", np.zeros((70, 70), np.float32))
    with pytest.raises(FwiError, match=r"^--save-maps .*held already holds maps: pass --force to overwrite them"):
        predict([ckpt], test_dir, tmp_path / "s.csv", save_maps=held, **kw)
    assert not (tmp_path / "s.csv").exists()
    predict([ckpt], test_dir, tmp_path / "s.csv", save_maps=held, force=True, **kw)
    assert sorted(p.name for p in held.iterdir()) == ["0000000001.npy", "old.npy"]


def test_a_failed_map_write_fails_the_run_and_leaves_no_csv(tmp_path, monkeypatch):
    from fwi import predict as predict_module

    def full_disk(path, array):
        raise FwiError(f"no space left on the device of {path} while writing it")

    monkeypatch.setattr(predict_module, "save_npy", full_disk)
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    np.save(test_dir / "0000000001.npy", np.zeros((5, 1000, 70), np.float32))
    with pytest.raises(FwiError, match=r"^no space left on the device of .*maps/0000000001.npy while writing it$"):
        predict([make_checkpoint(tmp_path / "a.pt", 1)], test_dir, tmp_path / "s.csv", device="cpu", workers=0,
                progress=False, save_maps=tmp_path / "maps")
    assert not (tmp_path / "s.csv").exists()


def test_a_folder_of_bad_maps_names_the_file(tmp_path, capsys):
    maps = tmp_path / "maps"
    maps.mkdir()
    np.save(maps / "a.npy", np.full((70, 70), 2000.0, np.float32))
    np.save(maps / "b.npy", np.full((70, 70), 9000.0, np.float32))
    assert synth_main(["--velocity", str(maps), "--out", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"error: {maps / 'b.npy'}: velocity must lie in [1500, 4500] m/s, found min 9000 max 9000"]
    (tmp_path / "empty").mkdir()
    assert synth_main(["--velocity", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'empty'}: no .npy velocity maps in this folder"


def tree_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_from_root_copies_the_training_maps_only_seeded_resumable_sharded(make_tree, tmp_path, fake_simulate,
                                                                           capsys):
    tree = make_tree(test_files=False)  # FlatVel_A 3 + 3 samples, CurveFault_A 2 + 2
    split = ["data.val_fraction=0.5", "data.split_by=sample"]
    args = ["--from-root", str(tree.root), "--copies", "3", "--samples-per-file", "4", "--seed", "7", "--device",
            "cpu", "--quiet", *split]
    assert synth_main(["--out", str(tmp_path / "whole"), *args]) == 0
    whole = tmp_path / "whole"
    assert sorted(tree_files(whole)) == [
        "synth.json",
        "train_samples/CurveFault_A/seis2_1_0.npy", "train_samples/CurveFault_A/seis4_1_0.npy",
        "train_samples/CurveFault_A/vel2_1_0.npy", "train_samples/CurveFault_A/vel4_1_0.npy",
        "train_samples/FlatVel_A/data/data1.npy", "train_samples/FlatVel_A/data/data2.npy",
        "train_samples/FlatVel_A/data/data3.npy",
        "train_samples/FlatVel_A/model/model1.npy", "train_samples/FlatVel_A/model/model2.npy",
        "train_samples/FlatVel_A/model/model3.npy"]
    # The copies are augmentations of the training split's maps (the one training draws), copy after copy.
    manifest = build_manifest(tree.root, val_fraction=0.5, split_by="sample")
    train = manifest.filter(pl.col("split") == "train")
    for family, first in (("FlatVel_A", "model/model1.npy"), ("CurveFault_A", "vel2_1_0.npy")):
        rows = train.filter(pl.col("family") == family)
        maps = torch.from_numpy(writer.read_maps(rows[np.arange(4) % rows.height]))
        expected = augment(maps, torch.Generator().manual_seed(writer.file_seed(7, family, 0)), VelocityAugment())
        got = np.load(whole / "train_samples" / family / first)[:, 0]
        np.testing.assert_array_equal(got, expected.numpy())
        assert not np.array_equal(got, maps.numpy())  # really augmented
    assert sum(len(np.load(p)) for p in whole.rglob("vel*.npy")) == 3 * 2  # CurveFault_A: 2 training maps x 3
    meta = json.loads((whole / "synth.json").read_text())
    assert meta["copies"] == 3 and meta["from_root"]["split_by"] == "sample"
    assert meta["augment"] == asdict(VelocityAugment())  # the defaults it used, so a changed default is noticed

    # With the augmentation off the copies are the training maps themselves: no validation map is among them.
    plain = VelocityAugment(p_blend=0, p_elastic=0, p_affine=0, p_stretch=0, p_scale=0, p_flip=0)
    out = writer.write_from_root(manifest, tmp_path / "plain", 2, source={}, samples_per_file=100, device="cpu",
                                 progress=False, params=plain)
    copied = np.load(out / "train_samples/FlatVel_A/model/model1.npy")
    flat = train.filter(pl.col("family") == "FlatVel_A")
    np.testing.assert_array_equal(copied, np.concatenate([writer.read_maps(flat)] * 2)[:, None])

    # Two shards write the same bytes as one run; a rerun skips complete files; other settings are refused.
    for i in range(2):
        assert synth_main(["--out", str(tmp_path / "shards"), *args, "--shard", f"{i}/2"]) == 0
    assert tree_files(tmp_path / "shards") == tree_files(whole)
    before = {p: p.stat().st_mtime_ns for p in whole.rglob("*.npy")}
    assert synth_main(["--out", str(whole), *args]) == 0
    assert {p: p.stat().st_mtime_ns for p in whole.rglob("*.npy")} == before
    capsys.readouterr()
    assert synth_main(["--out", str(whole), *args, "--copies", "2"]) == 1
    assert "was generated with other settings {'copies': (3, 2)}" in capsys.readouterr().err


def test_synth_flags_after_overrides_and_mode_conflicts(tmp_path, capsys):
    with pytest.raises(SystemExit):  # flags may follow key=value overrides, as in train and predict
        synth_main(["synth.seed=3", "--out", str(tmp_path), "--print-config"])
    assert "seed: 3" in capsys.readouterr().out
    assert synth_main(["--out", str(tmp_path / "o"), "--from-root", str(tmp_path), "--families", "FlatVel_A"]) == 1
    assert capsys.readouterr().err.strip() == ("error: --families: only for generated data, not with --from-root "
                                               "(select the root's families with data.families=[...])")


def test_data_cli_takes_flags_after_overrides(kaggle_tree, capsys):
    from fwi.data.__main__ import main as data_main

    assert data_main(["data.val_fraction=0.5", "--root", str(kaggle_tree.root)]) == 0
    assert "split: val_fraction=0.5" in capsys.readouterr().out


def test_extra_roots_train_only_unless_asked(make_tree, tmp_path):
    real = make_tree(test_files=False)
    extra = make_tree({"Style_B": [("data/data1.npy", "model/model1.npy", 2), ("data/data2.npy", "model/model2.npy",
                                                                            2)]}, test_files=False, seed=1)
    base = [f"data.root={real.root}", f"data.extra_roots=[{extra.root}]", "data.val_fraction=0.5"]
    manifest = training_manifest(load_config(None, base))
    counts = manifest.group_by("family", "split").len().sort("family", "split").rows()
    assert counts == [("CurveFault_A", "train", 2), ("CurveFault_A", "val", 2), ("FlatVel_A", "train", 3),
                      ("FlatVel_A", "val", 3), ("Style_B", "train", 4)]
    validated = training_manifest(load_config(None, [*base, "data.validate_extra_roots=true"]))
    assert validated.filter(pl.col("family") == "Style_B")["split"].value_counts().sort("split").rows() == [
        ("train", 2), ("val", 2)]
    assert manifest.filter(pl.col("family") != "Style_B").equals(validated.filter(pl.col("family") != "Style_B"))


# --- the README's cycle ---------------------------------------------------------------------------------------

TOY = {
    "fwi.train": ["model.encoder=resnet10t", "model.decoder_channels=[8, 8, 8, 8]", "train.epochs=1",
                  "train.batch_size=2", "train.workers=0", "train.device=cpu", "train.compile=false",
                  "train.tensorboard=false", "train.plot=false"],
    "fwi.predict": ["--device", "cpu", "--workers", "0", "--batch-size", "2"],
    "fwi.synth": ["--device", "cpu", "--quiet"],
}
"""Toy-size settings appended to each README command (later flags and overrides win)."""


def readme_cycle() -> list[list[str]]:
    """The commands of the README's pseudo-label cycle (its first bash block), without the optional refinement."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Pseudo-label cycles", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)[1]
    return [shlex.split(line) for line in block.splitlines() if line.startswith("python -m ")]


@pytest.mark.slow
def test_the_readme_cycle_runs_at_toy_size(tmp_path, monkeypatch):
    commands = readme_cycle()
    assert [c[2] for c in commands] == ["fwi.synth", "fwi.train", "fwi.predict", "fwi.synth", "fwi.train",
                                        "fwi.predict"]
    tree = build_kaggle_tree(tmp_path / "kaggle", DEFAULT_SPEC)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "waveform-inversion").symlink_to(tree.root)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for i, command in enumerate(commands):
        extra = TOY[command[2]]
        if i == 0:  # the copies: one of one family keeps the simulation short
            extra = [*extra, "--copies", "1", "data.families=[CurveFault_A]"]
        run = subprocess.run([sys.executable, *command[1:], *extra], cwd=tmp_path, capture_output=True, text=True,
                             timeout=900, env=env)
        assert run.returncode == 0, f"{shlex.join(command)}\n{run.stderr[-3000:]}"

    maps = sorted((tmp_path / "pseudo" / "maps0").iterdir())
    assert [p.stem for p in maps] == ["000039dca2", "00a1b2c3d4"]  # the fake tree's test files
    pseudo = np.load(tmp_path / "pseudo/tree0/model/model1.npy")
    np.testing.assert_array_equal(pseudo[:, 0], np.stack([np.load(p) for p in maps]))
    assert np.load(tmp_path / "pseudo/tree0/data/data1.npy").shape == (2, 5, 1000, 70)
    # Round 1 trained on the real data, the copies and the pseudo-labels, and validated on the real data only.
    cfg = load_config(tmp_path / "runs/round1/config.yaml")
    monkeypatch.chdir(tmp_path)  # the config's paths are relative to where the commands ran
    manifest = training_manifest(cfg)
    assert manifest.filter(pl.col("family") == "tree0")["split"].to_list() == ["train", "train"]
    copies = manifest.filter(pl.col("seismic_path").str.contains("real_x4"))
    assert copies["split"].unique().to_list() == ["train"] and copies.height == 3  # CurveFault_A's 3 training maps
    metrics = pl.read_csv(tmp_path / "runs/round1/metrics.csv")
    assert {c for c in metrics.columns if c.startswith("val_mae_")} == {"val_mae_CurveFault_A", "val_mae_FlatVel_A"}
    assert len(list((tmp_path / "pseudo" / "maps1").iterdir())) == 2
    assert (tmp_path / "submissions" / "round1.csv").is_file()
