"""Prediction throughput, stage by stage, so you can see which one limits ``python -m fwi.predict``.

    python benchmarks/predict.py [--files 128] [--batch-size 8] [--device auto] [--workers 2] [--tta none|flip]
                                 [--repeats 10] [--config FILE] [section.key=value ...]

Writes ``--files`` random float16 test files to a temporary folder and a checkpoint of an *untrained*
model built through the config system (default ``model.name=inversionnet model.width=8``, which runs in
about a minute on two CPU cores; give ``--config`` or ``model.*`` overrides to measure a real architecture),
then reports samples/s for:

- read:       DataLoader over the test files only (np.load + checks in the workers, collate);
- model:      the forward passes only (ensemble of one, TTA as chosen), input already on the device;
- csv:        writing the rows for ``--files`` maps (polars, chunked) plus the full validation of the file;
- end to end: :func:`fwi.predict.predict`, from reading the files to the validated CSV.

End to end is at most the slowest stage; the model stage is the ceiling a faster disk or more workers
cannot lift.
"""

from __future__ import annotations

import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from fwi.checkpoint import make_checkpoint_state, save_checkpoint
from fwi.cli import config_parser, main_guard, resolve_config
from fwi.data.normalize import Normalizer
from fwi.device import resolve_device
from fwi.engine import resolve_amp
from fwi.inference import TTA
from fwi.models import build_model
from fwi.models.registry import count_parameters
from fwi.physics.acquisition import NX, NZ, SEISMIC_SHAPE, VMAX, VMIN
from fwi.predict import CheckedTestDataset, ChunkedCsvWriter, load_ensemble, predict, predict_batch
from fwi.submission import check_submission

SMALL_MODEL = ["model.name=inversionnet", "model.width=8"]
"""Model used when neither --config nor model.* overrides are given."""


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def write_test_files(folder: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        np.save(folder / f"{i:010x}.npy", rng.standard_normal(SEISMIC_SHAPE, dtype=np.float32).astype(np.float16))


@main_guard
def main(argv: list[str] | None = None) -> int:
    parser = config_parser("python benchmarks/predict.py", "Prediction throughput: read, model, CSV, end to end.")
    parser.add_argument("--files", type=int, default=128, help="random test files to generate (default 128)")
    parser.add_argument("--batch-size", type=int, default=8, help="test files per forward pass (default 8)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    parser.add_argument("--tta", choices=TTA, default="none")
    parser.add_argument("--repeats", type=int, default=10, help="timed model batches (after one warm-up)")
    args = parser.parse_intermixed_args(argv)
    if args.config is None and not any(o.startswith("model.") for o in args.overrides):
        args.overrides = [*SMALL_MODEL, *args.overrides]
    cfg = resolve_config(args)
    device = resolve_device(args.device)
    bs = args.batch_size

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model)
    rng = np.random.default_rng(cfg.seed)
    normalizer = Normalizer("pixel", rng.normal(0, 0.1, SEISMIC_SHAPE), rng.uniform(0.5, 2.0, SEISMIC_SHAPE))
    print(f"command:    {shlex.join([sys.executable, *sys.argv])}")
    print(f"device:     {device_name(device)}")
    print(f"torch:      {torch.__version__}   python {platform.python_version()}")
    variant = f"width {cfg.model.width}" if cfg.model.name == "inversionnet" else f"encoder {cfg.model.encoder}"
    print(f"model:      {cfg.model.name} ({variant}; {count_parameters(model) / 1e6:.2f} M parameters, untrained)")
    print(f"batch size: {bs}   workers: {args.workers}   tta: {args.tta}   files: {args.files} (float16)")

    rows = []
    with tempfile.TemporaryDirectory(prefix="fwi_bench_predict_") as tmp:
        tmp = Path(tmp)
        test_dir = tmp / "test"
        test_dir.mkdir()
        write_test_files(test_dir, args.files)
        ckpt = tmp / "model.pt"
        save_checkpoint(ckpt, make_checkpoint_state(cfg, model, normalizer))

        # read: the DataLoader alone
        loader = DataLoader(
            CheckedTestDataset(test_dir), batch_size=bs, num_workers=args.workers, pin_memory=device.type == "cuda"
        )
        t = time.perf_counter()
        n = sum(len(oids) for oids, _, _ in loader)
        rows.append(("read", n, time.perf_counter() - t))

        # model: forward passes on device-resident input
        amp_dtype = resolve_amp(True, "auto", device)  # what fwi.predict uses by default
        members = load_ensemble([ckpt], device, tta=args.tta, amp_dtype=amp_dtype)
        x = torch.randn(bs, *SEISMIC_SHAPE, device=device)
        predict_batch(members, x)
        sync(device)
        t = time.perf_counter()
        for _ in range(args.repeats):
            predict_batch(members, x)
        sync(device)
        rows.append(("model", bs * args.repeats, time.perf_counter() - t))

        # csv: write + validate the rows of --files maps
        maps = np.random.default_rng(1).uniform(VMIN, VMAX, (args.files, NZ, NX)).astype(np.float32)
        oids = [f"{i:010x}" for i in range(args.files)]
        t = time.perf_counter()
        with open(tmp / "rows.csv", "wb") as f:
            writer = ChunkedCsvWriter(f)
            for start in range(0, args.files, bs):
                writer.add(oids[start : start + bs], maps[start : start + bs])
            writer.flush()
        check_submission(tmp / "rows.csv", expected_oids=oids)
        rows.append(("csv", args.files, time.perf_counter() - t))

        # end to end
        t = time.perf_counter()
        predict(
            [ckpt],
            test_dir,
            tmp / "submission.csv",
            batch_size=bs,
            device=str(device),
            workers=args.workers,
            tta=args.tta,
            progress=False,
        )
        rows.append(("end to end", args.files, time.perf_counter() - t))

    print(f"\n{'stage':<11} {'samples':>8} {'seconds':>8} {'samples/s':>10}")
    for name, count, seconds in rows:
        print(f"{name:<11} {count:>8} {seconds:>8.2f} {count / seconds:>10.1f}")
    slowest = min(rows[:3], key=lambda r: r[1] / r[2])[0]
    print(
        f"\nslowest stage: {slowest}. Full test set (65,818 files) at the end-to-end rate: "
        f"{65_818 / (rows[-1][1] / rows[-1][2]) / 60:.0f} min"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
