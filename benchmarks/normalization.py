"""Pixel-wise vs global (vs log) seismic normalization: same data, seed and budget, val MAE per family.

    python benchmarks/normalization.py [--config configs/quickstart.yaml] [--modes pixel,global,log] [--seeds 0,1,2]
                                       [k=v ...]
    python benchmarks/normalization.py --modes none       # only the mean-map baseline of the config's split

Each mode trains one run per seed (``runs/bench-norm-<mode>-<seed>/``, replaced on every call) with the given
config; the table lists the best validation competition MAE (m/s), overall (per seed, and the mean) and per
family (mean over seeds), and the mean wall time per run; the last row is the trivial baseline of predicting the
training split's mean velocity map.
"""

from __future__ import annotations

import argparse
import shutil
import time

import numpy as np
import polars as pl
import torch

from fwi.config import load_config
from fwi.metrics import MAEAccumulator
from fwi.train import train, training_manifest


def mean_map_baseline(cfg) -> dict:
    """Best-val-MAE row of the trivial predictor: the training split's mean velocity map, for every sample."""
    manifest = training_manifest(cfg)

    def maps(split: str) -> tuple[np.ndarray, list[str]]:
        rows = manifest.filter(pl.col("split") == split)
        vel = np.stack([np.load(p, mmap_mode="r")[i] for p, i in zip(rows["velocity_path"], rows["index"],
                                                                       strict=True)])
        return vel.astype(np.float64), rows["family"].to_list()

    train_maps, _ = maps("train")
    val_maps, families = maps("val")
    acc = MAEAccumulator()
    acc.update(np.repeat(train_maps.mean(axis=0)[None], len(val_maps), axis=0), val_maps, families)
    scores = acc.compute()
    return {"val MAE": scores.pop("all"), **scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="base config (default: the built-in quickstart)")
    parser.add_argument("--modes", default="pixel,global", help="comma-separated normalize.mode values, "
                        "or none (train nothing: the mean-map baseline alone)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds; each mode trains once per seed")
    parser.add_argument("overrides", nargs="*", help="section.key=value applied to every run")
    args = parser.parse_args()
    rows = []
    for mode in [] if args.modes == "none" else args.modes.split(","):
        runs = []
        for seed in map(int, args.seeds.split(",")):
            cfg = load_config(args.config, [*args.overrides, f"normalize.mode={mode}", f"seed={seed}",
                                            f"name=bench-norm-{mode}-{seed}"])
            shutil.rmtree(cfg.train.out_dir / cfg.name, ignore_errors=True)
            t0 = time.monotonic()
            best = train(cfg, progress=False)
            metrics = pl.read_csv(cfg.train.out_dir / cfg.name / "metrics.csv")
            best_row = metrics.filter(pl.col("val_mae") == metrics["val_mae"].min()).row(0, named=True)
            families = {k.removeprefix("val_mae_"): v for k, v in best_row.items() if k.startswith("val_mae_")}
            runs.append({"val MAE": best, **families, "seconds": time.monotonic() - t0})
        mean = {key: sum(r[key] for r in runs) / len(runs) for key in runs[0]}
        per_seed = " / ".join(f"{r['val MAE']:.1f}" for r in runs)
        rows.append({"mode": mode, "val MAE per seed": per_seed, **mean})
    baseline = mean_map_baseline(load_config(args.config, args.overrides))
    rows.append({"mode": "(mean training map)", "val MAE per seed": "-", **baseline, "seconds": 0.0})
    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = f"{args.config or 'built-in quickstart'} {' '.join(args.overrides)}"
    print(f"\ndevice: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}; config: {config}")
    header = list(rows[0])
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
