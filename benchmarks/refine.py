"""Does test-time physics refinement lower the MAE? Real OpenFWI maps, network-like starts, ``fwi.refine``'s path.

    OMP_NUM_THREADS=1 python benchmarks/refine.py                       # CPU, the defaults of python -m fwi.refine
    OMP_NUM_THREADS=1 python benchmarks/refine.py --indices 0,2,4,6 refine.max_evals=10   # tuning maps
    python benchmarks/refine.py --device cuda --indices 1,3,5,7,9,11,13,15
    python benchmarks/refine.py --file FlatFault_A=vmodel12.npy --indices 0,1   # other maps [N, 1, 70, 70]

For each family (FlatVel_A, CurveVel_A, FlatFault_A: the 500 real maps of each in tests/data), the maps at
``--indices`` are the truth; their exact simulation, stored as float16 like the competition's test files, is
the observed seismic; the start is :func:`fwi.physics.starts.network_like_start` (blurred interfaces plus a
smooth velocity error, seeded). Start maps and seismic are written to a temporary folder as ``<oid>.npy`` and
refined by :func:`fwi.refine.refine_folder`, the function ``python -m fwi.refine`` runs, with the ``refine.*``
config (defaults, ``--config FILE``, ``refine.key=value`` overrides): the numbers are those of the CLI.

The refinement was tuned on even indices; report on odd ones (the default, 1 and 3: 6 maps).
Prints one row per map and per family: competition MAE (odd columns, m/s) of the start and of the refined
map, the MAE ratio, the data misfit before/after (normalized L2 over the full record), L-BFGS gradient
evaluations, seconds per map, the routed prior; then the wall time of the whole run and the CPU time used.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fwi.config import load_config
from fwi.metrics import competition_mae
from fwi.physics.simulator import simulate
from fwi.physics.starts import network_like_start
from fwi.refine import log_path, parse_shard, read_log, refine_folder

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
FAMILIES = {"FlatVel_A": DATA / "velocity_FlatVelA.npz", "CurveVel_A": DATA / "velocity_CurveVelA.npz",
            "FlatFault_A": DATA / "velocity_FlatFaultA.npz"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", default=",".join(FAMILIES), help="comma-separated (default: all three)")
    p.add_argument("--indices", default="1,3", help="map indices per family (default 1,3: held out from tuning)")
    p.add_argument("--file", action="append", default=[], metavar="FAMILY=PATH",
                   help="take FAMILY's maps from this .npy [N, 1, 70, 70] (or .npz with 'velocity') instead")
    p.add_argument("--blur", type=float, default=1.0, help="Gaussian blur of the start, cells (default 1)")
    p.add_argument("--smooth-error", type=float, default=20.0, help="smooth error of the start, m/s rms (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the start's error (default 0)")
    p.add_argument("--device", default="cpu", help="refine.device (default cpu)")
    p.add_argument("--config", help="YAML config whose refine section to use")
    p.add_argument("overrides", nargs="*", metavar="refine.key=value")
    return p.parse_args(argv)


def load_maps(path: Path, indices: list[int]) -> torch.Tensor:
    """``[len(indices), 70, 70]`` float32 m/s from an OpenFWI ``.npy`` or a tests/data ``.npz``."""
    data = np.load(path)
    maps = data["velocity"] if path.suffix == ".npz" else data
    return torch.from_numpy(np.asarray(maps[indices]).reshape(len(indices), 70, 70).astype(np.float32))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sources = dict(FAMILIES, **{k: Path(v) for k, v in (f.split("=", 1) for f in args.file)})
    families = args.families.split(",")
    indices = [int(i) for i in args.indices.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="refine_bench_"))
    maps_dir, test_dir, out = tmp / "maps", tmp / "test", tmp / "out"
    maps_dir.mkdir()
    test_dir.mkdir()
    truth, starts = {}, {}
    for fi, family in enumerate(families):
        true = load_maps(sources[family], indices)
        start = network_like_start(true.double(), blur=args.blur, smooth_error=args.smooth_error,
                                   seed=args.seed + fi).float()
        with torch.no_grad():
            observed = simulate(true)
        for i, idx in enumerate(indices):
            oid = f"{family}_{idx:03d}"
            truth[oid], starts[oid] = true[i].numpy(), start[i].numpy()
            np.save(maps_dir / f"{oid}.npy", starts[oid])
            np.save(test_dir / f"{oid}.npy", observed[i].numpy().astype(np.float16))
    overrides = [f"refine.maps={maps_dir}", f"refine.out={out}", f"refine.device={args.device}", *args.overrides]
    cfg = load_config(args.config, overrides).refine
    print(f"refine: max_evals={cfg.max_evals} prior={cfg.prior} dtype={cfg.dtype} window={cfg.window} "
          f"max_seconds={cfg.max_seconds} workers={cfg.workers} device={args.device} "
          f"threads={torch.get_num_threads()}; start: blur {args.blur} cells + {args.smooth_error} m/s smooth, "
          f"seed {args.seed}; indices {args.indices}; seismic float16", flush=True)
    cpu0 = time.process_time() + resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    t0 = time.perf_counter()
    refine_folder(cfg, test_dir)
    wall = time.perf_counter() - t0
    cpu = time.process_time() + resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - cpu0
    log = read_log(log_path(cfg, out, parse_shard(cfg.shard)))

    header = (f"{'map':<16}{'prior':>8}{'MAE start':>10}{'MAE after':>10}{'ratio':>7}{'misfit start':>13}"
              f"{'misfit after':>13}{'grads':>6}{'s/map':>7}")
    print(header)
    print("-" * len(header))
    summary = []
    for family in families:
        rows = []
        for idx in indices:
            oid = f"{family}_{idx:03d}"
            row, refined = log[oid], np.load(out / f"{oid}.npy")
            m0, m1 = competition_mae(starts[oid], truth[oid]), competition_mae(refined, truth[oid])
            rows.append((m0, m1, float(row["misfit_before"]), float(row["misfit_after"]), int(row["gradients"]),
                         float(row["seconds"])))
            print(f"{oid:<16}{row['prior']:>8}{m0:>10.2f}{m1:>10.2f}{m0 / max(m1, 1e-9):>6.1f}x{rows[-1][2]:>13.2e}"
                  f"{rows[-1][3]:>13.2e}{rows[-1][4]:>6}{rows[-1][5]:>7.0f}", flush=True)
        mean = np.array(rows).mean(axis=0)
        worse = sum(r[1] > r[0] for r in rows)
        summary.append(f"{family:<16}{'':>8}{mean[0]:>10.2f}{mean[1]:>10.2f}{mean[0] / max(mean[1], 1e-9):>6.1f}x"
                       f"{mean[2]:>13.2e}{mean[3]:>13.2e}{mean[4]:>6.0f}{mean[5]:>7.0f}  ({worse} worse)")
    print("-" * len(header))
    print("\n".join(summary))
    n = len(families) * len(indices)
    print(f"{n} maps in {wall:.0f} s wall ({wall / n:.0f} s/map), {cpu:.0f} s CPU, device {args.device}; "
          f"maps and log in {tmp}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
