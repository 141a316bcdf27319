"""Accuracy on real maps: simulate real OpenFWI velocity maps, train a named config for a fixed time budget,
report the MAE per family on held-out maps.

    python benchmarks/accuracy.py --config caformer_unet [--minutes 20] [--maps-per-family 500] [k=v ...]   # GPU
    python benchmarks/accuracy.py --config inversionnet --smoke                                           # CPU, CI

The 1,500 real maps in tests/data (FlatVel_A, CurveVel_A, FlatFault_A; 500 each) are simulated with the exact
simulator into a family-folder tree (``--cache-dir``, reused by later runs), split by sample
(``--val-fraction`` of each family held out, seeded), and the config trains on it through ``fwi.train``.
The schedule is fitted to the budget: a 2-epoch calibration run times one epoch, then the run gets as many
epochs as fit in ``--minutes`` (``train.max_minutes`` stops it there in any case). The table gives the best
epoch's validation MAE per family, and the same-run baseline of predicting the training split's mean map.
``--smoke`` shrinks everything for a CPU (4 maps per family, a tiny model, a few seconds of training): it checks
the pipeline, its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from fwi.config import load_config
from fwi.synth.writer import write_from_velocity
from fwi.train import train

sys.path.insert(0, str(Path(__file__).parent))
from normalization import mean_map_baseline  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAMILY_FILES = {"FlatVel_A": "velocity_FlatVelA.npz", "CurveVel_A": "velocity_CurveVelA.npz",
                "FlatFault_A": "velocity_FlatFaultA.npz"}
SMOKE_MODEL = {"inversionnet": ["model.width=4"],
               "timm_unet": ["model.encoder=resnet10t", "model.decoder_channels=[8, 8, 8, 8]"]}
SMOKE_TRAIN = ["train.batch_size=3", "train.workers=0", "train.compile=false", "train.channels_last=false",
               "train.device=cpu", "synth.stream_batches=0"]


def simulate_real(family: str, n: int, cache_dir: Path, device: str) -> Path:
    """The family folder ``cache_dir/real_<n>/<family>`` holding the first ``n`` real maps of ``family`` and their
    exactly simulated seismic (one file pair; computed once, then reused)."""
    maps = cache_dir / "maps" / f"{family}_{n}.npy"
    if not maps.is_file():
        maps.parent.mkdir(parents=True, exist_ok=True)
        np.save(maps, np.load(ROOT / "tests" / "data" / FAMILY_FILES[family])["velocity"][:n])
    return write_from_velocity(maps, cache_dir / f"real_{n}" / family, samples_per_file=n, device=device)


def real_tree(n: int, cache_dir: Path, device: str) -> Path:
    """A tree of family folders with the first ``n`` real maps of each family and their simulated seismic."""
    for family in FAMILY_FILES:
        simulate_real(family, n, cache_dir, device)
    return cache_dir / f"real_{n}"


def config_path(name: str) -> Path:
    """A config file by path, or by name from configs/ (``caformer_unet`` -> configs/caformer_unet.yaml)."""
    return Path(name) if Path(name).is_file() else ROOT / "configs" / f"{name}.yaml"


def best_row(cfg) -> dict:
    metrics = pl.read_csv(cfg.train.out_dir / cfg.name / "metrics.csv")
    return metrics.filter(pl.col("val_mae") == metrics["val_mae"].min()).row(0, named=True) | {
        "epochs": metrics.height}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="config name in configs/ (or a YAML path)")
    parser.add_argument("--minutes", type=float, default=None, help="training budget (default 20; smoke 0.15)")
    parser.add_argument("--maps-per-family", type=int, default=None, help="real maps per family (default 500; "
                        "smoke 4)")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="maps of each family held out")
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run that checks the pipeline")
    parser.add_argument("--cache-dir", type=Path, default=Path("cache/real"))
    parser.add_argument("--out-dir", type=Path, default=Path("runs"))
    parser.add_argument("overrides", nargs="*", help="section.key=value applied to the config")
    args = parser.parse_args()
    minutes = args.minutes or (0.15 if args.smoke else 20.0)
    n = args.maps_per_family or (4 if args.smoke else 500)
    if args.smoke:
        args.val_fraction = 0.25

    base = load_config(config_path(args.config), args.overrides)
    smoke = [*SMOKE_MODEL[base.model.name], *SMOKE_TRAIN] if args.smoke else []
    device = "cpu" if args.smoke else base.train.device
    started = time.monotonic()
    root = real_tree(n, args.cache_dir, "cpu" if device == "cpu" else "auto")
    simulated = time.monotonic() - started
    name = f"bench-acc-{base.name}"
    common = [*smoke, *args.overrides, f"data.root={root}", "data.split_by=sample",
              f"data.val_fraction={args.val_fraction}", "data.split_seed=0", "data.extra_roots=[]",
              f"train.out_dir={args.out_dir}", "train.plot=false", "train.tensorboard=false"]

    calib = load_config(config_path(args.config), [*common, f"name={name}-calib", "train.epochs=2"])
    shutil.rmtree(calib.train.out_dir / calib.name, ignore_errors=True)
    train(calib, progress=False)
    epoch_s = pl.read_csv(calib.train.out_dir / calib.name / "metrics.csv")["seconds"][-1]
    epochs = max(1, int(60 * minutes / epoch_s))
    cfg = load_config(config_path(args.config), [*common, f"name={name}", f"train.epochs={epochs}",
                                                 f"train.max_minutes={minutes}"])
    shutil.rmtree(cfg.train.out_dir / cfg.name, ignore_errors=True)
    t0 = time.monotonic()
    train(cfg, progress=not args.smoke)
    trained = time.monotonic() - t0

    row = best_row(cfg)
    baseline = mean_map_baseline(cfg)
    model = cfg.model
    what = f"{model.name} ({model.encoder}, {model.layout})" if model.name == "timm_unet" else \
        f"{model.name} (width {model.width})"
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() and device != "cpu" else "cpu"
    print(f"\nconfig {config_path(args.config).name}{' (smoke)' if args.smoke else ''}: {what}; device {dev}, "
          f"torch {torch.__version__}; {n} real maps per family, {args.val_fraction:g} held out (by sample); "
          f"budget {minutes:g} min: {row['epochs']} of {epochs} epochs in {trained / 60:.1f} min (simulation "
          f"{simulated / 60:.1f} min)")
    print("| predictor | val MAE | " + " | ".join(FAMILY_FILES) + " |\n|---|---|" + "---|" * len(FAMILY_FILES))
    for label, scores in ((f"{base.name}, best epoch {row['epoch'] + 1}", {"val MAE": row["val_mae"], **{
            f: row[f"val_mae_{f}"] for f in FAMILY_FILES}}), ("mean training map", baseline)):
        print(f"| {label} | {scores['val MAE']:.1f} | " + " | ".join(f"{scores[f]:.1f}" for f in FAMILY_FILES) + " |")


if __name__ == "__main__":
    main()
