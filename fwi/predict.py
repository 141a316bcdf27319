"""``python -m fwi.predict``: checkpoints + test folder -> competition submission CSV.

Pipeline: test files (float16 or float32 ``<oid>.npy``) stream through a DataLoader; every checkpoint
applies its *own* saved normalization and model (:func:`fwi.checkpoint.restore_model`); the predictions
of the ensemble (and, with ``tta="flip"``, of the flipped survey flipped back along x) are averaged,
clipped to [VMIN, VMAX], and written as the odd x columns in chunks of ``chunk_files`` test files to a
temporary CSV. The file is validated in full (:func:`fwi.submission.check_submission`: header, 70 rows per
test file, ids equal to the test folder's, finite in-range values) and only then renamed onto ``out``:
a failed run leaves no output file.

Bad test files (truncated, wrong shape or dtype, NaN/Inf, unreadable) are caught inside the Dataset, so
a DataLoader worker never dies on one. By default the first one stops the run with a one-line error
naming the file. With ``skip_bad`` each bad file gets the **fallback prediction: the per-cell mean of
this run's (ensemble, TTA, clipped) predictions over all good test files**, its rows are written after
all good rows, and the bad files are listed on stderr at the end. If no file is good there is nothing to
fall back on and the run fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from fwi.checkpoint import load_checkpoint, restore_model
from fwi.cli import config_parser, main_guard, resolve_config
from fwi.config import Config
from fwi.data.dataset import TestDataset
from fwi.data.layout import load_test_file
from fwi.device import resolve_device
from fwi.engine import autocast
from fwi.errors import DataError, FwiError
from fwi.io import atomic_path
from fwi.physics.acquisition import NX, NZ, SEISMIC_SHAPE, VMAX, VMIN
from fwi.submission import check_submission, rows_frame

TTA = ("none", "flip")
"""Test-time augmentations: ``flip`` = left-right survey flip (see :func:`flip_seismic`)."""


# ----------------------------------------------------------------------------------------------- data


class CheckedTestDataset(TestDataset):
    """:class:`~fwi.data.dataset.TestDataset` whose items never raise on a bad file.

    Item ``i`` is ``(oid, seismic float32 [5, 1000, 70], error)``: ``error`` is ``""`` for a good file;
    for a bad one it is the one-line reason naming the file, and ``seismic`` is zeros. The main process
    decides what to do (stop or fall back), so a bad file can never kill a worker with a multi-line
    traceback.
    """

    def __getitem__(self, i: int) -> tuple[str, torch.Tensor, str]:  # type: ignore[override]
        oid, path = self.files[i]
        try:
            return oid, torch.from_numpy(load_test_file(path)), ""
        except DataError as exc:
            error = str(exc)
        except Exception as exc:  # OSError, ValueError from np.load, ...: still name the file
            error = f"{path}: unreadable test file ({type(exc).__name__}: {exc})"
        return oid, torch.zeros(SEISMIC_SHAPE), error


# ---------------------------------------------------------------------------------------------- model


@dataclass
class Member:
    """One ensemble member: a checkpoint's model and the normalizer it was trained with."""

    path: Path
    model: nn.Module
    normalizer: nn.Module
    cfg: Config


def load_ensemble(checkpoints: Sequence[str | Path], device: torch.device, *, use_ema: bool = True) -> list[Member]:
    """Restore every checkpoint (model in eval mode + its normalizer) onto ``device``."""
    if not checkpoints:
        raise FwiError("no checkpoints given (--checkpoint PATH or predict.checkpoints=[...])")
    members = []
    for path in checkpoints:
        model, normalizer, cfg = restore_model(load_checkpoint(path), use_ema=use_ema)
        members.append(Member(Path(path), model.to(device).eval(), normalizer.to(device).eval(), cfg))
    return members


def check_tta(tta: str) -> None:
    """Reject an unknown test-time augmentation name with a one-line error."""
    if tta not in TTA:
        raise FwiError(f"unknown tta '{tta}' (predict.tta): use one of {', '.join(TTA)}")


def flip_seismic(seismic: torch.Tensor) -> torch.Tensor:
    """Left-right survey flip of raw seismic ``[B, 5, 1000, 70]``: source order and receivers reversed.

    Same convention as :class:`fwi.data.augment.SeismicFlip`; the velocity map flips along x (last axis).
    """
    return seismic.flip(dims=(1, 3))


@torch.no_grad()
def predict_batch(members: Sequence[Member], seismic: torch.Tensor, *, tta: str = "none",
                  amp: bool = True) -> torch.Tensor:
    """Ensemble (+ TTA) prediction for raw seismic ``[B, 5, 1000, 70]`` on the members' device.

    Returns float32 ``[B, 70, 70]`` velocities in m/s clipped to [VMIN, VMAX]: the mean over members of
    each member's prediction (with ``tta="flip"``: the mean of the direct prediction and the prediction
    of the flipped survey, flipped back along x). Each member normalizes the raw input itself.
    """
    check_tta(tta)
    inputs = [seismic, flip_seismic(seismic)] if tta == "flip" else [seismic]
    total = torch.zeros(seismic.shape[0], NZ, NX, dtype=torch.float32, device=seismic.device)
    for m in members:
        for k, x in enumerate(inputs):
            with autocast(seismic.device, amp):
                pred = m.model(m.normalizer(x))  # [B, 1, 70, 70] m/s
            pred = pred.float().reshape(-1, NZ, NX)
            total += pred.flip(-1) if k == 1 else pred
    return (total / (len(members) * len(inputs))).clamp_(VMIN, VMAX)


# ------------------------------------------------------------------------------------------------ CSV


class ChunkedCsvWriter:
    """Append submission rows to an open binary file, ``chunk_files`` test files per polars write."""

    def __init__(self, f: BinaryIO, *, chunk_files: int = 2048, float_precision: int | None = 2):
        self.f, self.chunk_files, self.float_precision = f, chunk_files, float_precision
        self.oids: list[str] = []
        self.maps: list[np.ndarray] = []
        self.header_written = False
        self.n_files = 0

    def add(self, oids: Sequence[str], velocity: np.ndarray) -> None:
        """Queue test files ``oids`` with maps ``[N, 70, 70]`` (m/s); writes once a chunk is full."""
        if len(oids):
            self.oids.extend(oids)
            self.maps.append(np.asarray(velocity, dtype=np.float32).reshape(len(oids), NZ, NX))
        if len(self.oids) >= self.chunk_files:
            self.flush()

    def flush(self) -> None:
        """Write everything queued."""
        if not self.oids:
            return
        frame = rows_frame(self.oids, np.concatenate(self.maps))
        frame.write_csv(self.f, include_header=not self.header_written, float_precision=self.float_precision)
        self.header_written = True
        self.n_files += len(self.oids)
        self.oids, self.maps = [], []


# -------------------------------------------------------------------------------------------- predict


def predict(
    checkpoints: Sequence[str | Path],
    test_dir: str | Path,
    out: str | Path,
    *,
    batch_size: int = 32,
    device: str = "auto",
    workers: int = 2,
    tta: Literal["none", "flip"] = "none",
    skip_bad: bool = False,
    amp: bool = True,
    use_ema: bool = True,
    float_precision: int | None = 2,
    chunk_files: int = 2048,
    progress: bool = True,
) -> Path:
    """Predict every ``<oid>.npy`` in ``test_dir`` with the ensemble of ``checkpoints``; write ``out``.

    See the module docstring for the pipeline, the bad-file policy and the ``skip_bad`` fallback.
    ``float_precision``: decimals written per value (None: full float32). Returns ``out`` once it is
    written and validated; on any error ``out`` is left untouched (no partial file). Raises
    :class:`~fwi.errors.FwiError` (one line) for bad input.
    """
    check_tta(tta)
    out = Path(out)
    dev = resolve_device(device)
    dataset = CheckedTestDataset(test_dir)  # lists the folder first: a wrong path fails before any loading
    members = load_ensemble(checkpoints, dev, use_ema=use_ema)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=dev.type == "cuda", prefetch_factor=4 if workers > 0 else None)
    bad: list[tuple[str, str]] = []
    good_sum = torch.zeros(NZ, NX, dtype=torch.float64)
    n_good = 0
    started = time.monotonic()
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f, tqdm(total=len(dataset), desc="predict", unit="sample", disable=not progress,
                                         dynamic_ncols=True) as bar:
            writer = ChunkedCsvWriter(f, chunk_files=chunk_files, float_precision=float_precision)
            for oids, seismic, errors in loader:
                ok = [not e for e in errors]
                if not all(ok):
                    first = next(e for e in errors if e)
                    if not skip_bad:
                        raise DataError(f"{first} (pass --skip-bad to predict a fallback for bad test files)")
                    bad += [(o, e) for o, e in zip(oids, errors, strict=True) if e]
                    seismic = seismic[torch.tensor(ok)]
                    oids = [o for o, k in zip(oids, ok, strict=True) if k]
                if oids:
                    seismic = seismic.to(dev, non_blocking=True)
                    pred = predict_batch(members, seismic, tta=tta, amp=amp).cpu()
                    good_sum += pred.double().sum(0)
                    n_good += len(oids)
                    writer.add(oids, pred.numpy())
                bar.update(len(ok))
            if bad:
                if n_good == 0:
                    raise DataError(f"all {len(bad)} test files are bad, nothing to fall back on; first: {bad[0][1]}")
                fallback = (good_sum / n_good).float().numpy()
                writer.add([o for o, _ in bad], np.broadcast_to(fallback, (len(bad), NZ, NX)))
            writer.flush()
        check_submission(tmp, expected_oids=dataset.oids, expected_source=str(test_dir))
    elapsed = time.monotonic() - started
    if progress:
        print(f"wrote {out}: {len(dataset)} test files, {NZ * len(dataset)} rows in {elapsed:.1f}s "
              f"({len(dataset) / max(elapsed, 1e-9):.1f} samples/s)", file=sys.stderr)
    if bad:
        print(f"warning: {len(bad)} bad test files were given the fallback prediction (mean map of the "
              f"{n_good} good files' predictions):", file=sys.stderr)
        for _, error in bad:
            print(f"  {error}", file=sys.stderr)
    return out


@main_guard
def main(argv: list[str] | None = None) -> int:
    parser = config_parser(
        "python -m fwi.predict",
        "Predict the test set with one or more checkpoints (averaged) and write the submission CSV. Flags "
        "override the predict.* config keys (and data.test_dir).")
    parser.add_argument("--checkpoint", action="append", type=Path, metavar="PATH",
                        help="checkpoint to use; repeat to ensemble (predict.checkpoints)")
    parser.add_argument("--test-dir", type=Path, metavar="DIR", help="folder of <oid>.npy test files (data.test_dir)")
    parser.add_argument("--out", type=Path, metavar="CSV",
                        help="submission to write (predict.out; default submissions/<name>.csv)")
    parser.add_argument("--batch-size", type=int, metavar="N", help="test files per forward pass (predict.batch_size)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N (predict.device)")
    parser.add_argument("--workers", type=int, metavar="N", help="DataLoader workers (predict.workers)")
    parser.add_argument("--tta", choices=TTA, help="test-time augmentation (predict.tta)")
    parser.add_argument("--skip-bad", action=argparse.BooleanOptionalAction, default=None,
                        help="give bad test files the fallback prediction instead of stopping (predict.skip_bad)")
    args = parser.parse_intermixed_args(argv)
    flags = {
        "predict.checkpoints": [str(p) for p in args.checkpoint] if args.checkpoint else None,
        "data.test_dir": args.test_dir, "predict.out": args.out, "predict.batch_size": args.batch_size,
        "predict.device": args.device, "predict.workers": args.workers, "predict.tta": args.tta,
        "predict.skip_bad": args.skip_bad,
    }
    cfg = resolve_config(args, {k: v for k, v in flags.items() if v is not None})
    p = cfg.predict
    if cfg.data.test_dir is None:
        raise FwiError("no test directory: pass --test-dir DIR (or data.test_dir=DIR)")
    out = p.out if p.out is not None else Path("submissions") / f"{cfg.name}.csv"
    predict(p.checkpoints, cfg.data.test_dir, out, batch_size=p.batch_size, device=p.device, workers=p.workers,
            tta=p.tta, skip_bad=p.skip_bad, amp=p.amp, use_ema=p.use_ema, float_precision=p.float_precision,
            chunk_files=p.chunk_files)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
