"""``python -m fwi.synth``: synthetic OpenFWI-faithful data in the exact competition layout.

    python -m fwi.synth --out DIR --families FlatVel_A,CurveFault_B --samples-per-family N
                        [--samples-per-file 500] [--seed S] [--device cuda] [--test-samples N]
    python -m fwi.synth --velocity MAPS --out DIR     # simulate given maps: a .npy/.npz file (N,1,70,70) or
                                                      # (N,70,70), or a folder of <oid>.npy maps (predict --save-maps)
    python -m fwi.synth --from-root DATA_ROOT --out DIR --copies K [--seed S]   # K augmented copies of the real
                                                      # training maps of a data root, re-simulated

``--velocity`` writes one family folder (``DIR/model/modelK.npy`` + ``DIR/data/dataK.npy``); ``--from-root`` and
generation write ``DIR/train_samples/<family>/``. Either is a training tree for ``data.root`` or
``data.extra_roots``. ``--from-root`` takes the training split of the root as ``data.val_fraction``,
``data.split_seed``, ``data.split_by`` and ``data.families`` draw it (give the training run's values), so no
validation map is copied into training data; the copies go through ``fwi.synth.augment`` (its defaults).

Bulk generation on GPUs: ``--device cuda --batch 256`` simulates 256 maps at once; ``--shard i/n`` writes every
n-th file starting at the i-th, so n processes (one per GPU or machine, under any launcher, e.g.
``CUDA_VISIBLE_DEVICES=$i python -m fwi.synth ... --shard $i/4``) split a job with no overlap; ``--dtype
float16`` writes half-size seismic (as the competition's test files); ``--wavefield-dtype float16`` simulates
with a reduced-precision wavefield (CUDA; faster, error in README).

Flags map onto the ``synth`` config section (``--print-config`` shows the result). Reruns skip complete
files, so an interrupted run is finished by running the same command again (with the same ``--shard``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from fwi.cli import config_parser, main_guard, resolve_config
from fwi.errors import FwiError


@main_guard
def main(argv: list[str] | None = None) -> int:
    parser = config_parser("python -m fwi.synth", __doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--out", required=True, help="output folder (gets train_samples/, test/)")
    parser.add_argument("--families", help="comma-separated families to generate (synth.families)")
    parser.add_argument("--samples-per-family", type=int, help="samples per family (synth.samples_per_family)")
    parser.add_argument("--samples-per-file", type=int, default=500,
                        help="samples per .npy file (default 500, as in the competition; sets synth.samples_per_file)")
    parser.add_argument("--seed", type=int, help="generator / augmentation seed (synth.seed)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N (synth.device)")
    parser.add_argument("--test-samples", type=int, default=0,
                        help="also write N test files and test_solution.csv")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--velocity", type=Path, metavar="MAPS",
                        help="simulate the maps of this .npy/.npz file or folder of .npy maps instead of generating")
    source.add_argument("--from-root", type=Path, metavar="DATA_ROOT",
                        help="re-simulate augmented copies of the training maps of this data root")
    parser.add_argument("--copies", type=int, default=1, help="--from-root: augmented copies of each map (default 1)")
    parser.add_argument("--batch", type=int, help="maps simulated at once (default 64 on CUDA, 4 on CPU)")
    parser.add_argument("--shard", default="0/1", metavar="I/N", help="write files I, I+N, I+2N, ... of the job")
    parser.add_argument("--dtype", default="float32", help="seismic file dtype: float32 or float16")
    parser.add_argument("--wavefield-dtype", default="float32",
                        help="simulation wavefield storage: float32 (exact), float16 or bfloat16 (CUDA)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_intermixed_args(argv)
    shard = args.shard.split("/")
    if len(shard) != 2 or not all(part.isdigit() for part in shard):
        raise FwiError(f"--shard must look like I/N (e.g. 0/4), got '{args.shard}'")
    given = [flag for flag, value in (("--families", args.families), ("--samples-per-family", args.samples_per_family),
                                      ("--test-samples", args.test_samples)) if value]
    if (args.velocity or args.from_root) and given:
        mode = "--velocity" if args.velocity else "--from-root (select the root's families with data.families=[...])"
        raise FwiError(f"{', '.join(given)}: only for generated data, not with {mode}")
    flags = {"synth.families": args.families.split(",") if args.families else None,
             "synth.samples_per_family": args.samples_per_family, "synth.samples_per_file": args.samples_per_file,
             "synth.seed": args.seed, "synth.device": args.device}
    cfg = resolve_config(args, {k: v for k, v in flags.items() if v is not None})
    synth = cfg.synth

    from fwi.synth.writer import Job, write_from_root, write_from_velocity, write_tree  # torch after argument errors

    job = Job(batch=args.batch, shard=(int(shard[0]), int(shard[1])), seismic_dtype=args.dtype,
              wavefield_dtype=args.wavefield_dtype)
    common = dict(samples_per_file=synth.samples_per_file, device=synth.device, progress=not args.quiet, job=job)
    if args.velocity:
        out = write_from_velocity(args.velocity, args.out, **common)
    elif args.from_root:
        from fwi.data.manifest import build_manifest

        d = cfg.data  # the same call as fwi.train.training_manifest on data.root: the same split
        manifest = build_manifest(args.from_root, val_fraction=d.val_fraction, seed=d.split_seed, families=d.families,
                                  split_by=d.split_by)
        source = {"root": str(args.from_root.resolve()), "val_fraction": d.val_fraction, "split_seed": d.split_seed,
                  "split_by": d.split_by, "families": d.families}
        out = write_from_root(manifest, args.out, args.copies, source=source, seed=synth.seed, **common)
    else:
        out = write_tree(args.out, synth.families, synth.samples_per_family, seed=synth.seed,
                         test_samples=args.test_samples, **common)
    print(f"wrote {out}  (check it with: python -m fwi.data --root {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
