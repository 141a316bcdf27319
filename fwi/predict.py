"""``python -m fwi.predict``: checkpoints + test folder -> competition submission CSV.

Pipeline: test files (float16 or float32 ``<oid>.npy``) stream through a DataLoader; every checkpoint
becomes a :class:`fwi.inference.Predictor` (its *own* saved normalization and model, the TTA, clipping to
[VMIN, VMAX]: what validation scores with ``train.val_tta``); the predictions of the ensemble (each, with
``tta="flip"``, the mean of the direct prediction and the mirrored survey's mirrored back) are averaged and
written as the odd x columns in chunks of ``chunk_files`` test files to a temporary CSV. The file is
validated in full (:func:`fwi.submission.check_submission`: header, 70 rows per test file, ids equal to the
test folder's, finite in-range values) and only then renamed onto ``out``: a failed run leaves no output
file. With ``save_maps`` the full 70 x 70 map of every good test file is also written, as it goes, to
``<save_maps>/<oid>.npy`` (float32 m/s, each file atomic): the pseudo-labels that ``python -m fwi.synth
--velocity <save_maps>`` re-simulates into training data (and ``python -m fwi.refine`` reads).

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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from fwi.cli import config_parser, main_guard, resolve_config
from fwi.config import Config
from fwi.data.dataset import TestDataset
from fwi.data.layout import load_test_file
from fwi.device import resolve_device
from fwi.engine import amp_note, resolve_amp
from fwi.errors import DataError, FwiError
from fwi.inference import TTA, Predictor, check_tta
from fwi.io import atomic_path, save_npy
from fwi.physics.acquisition import NX, NZ, SEISMIC_SHAPE
from fwi.submission import check_submission, rows_frame

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
    """One ensemble member: a checkpoint, its config and its predictor (its own model and normalization)."""

    path: Path
    cfg: Config
    predictor: Predictor


def load_ensemble(checkpoints: Sequence[str | Path], device: torch.device, *, use_ema: bool = True,
                  tta: str = "none", amp_dtype: torch.dtype | None = None) -> list[Member]:
    """Restore every checkpoint as a :class:`~fwi.inference.Predictor` on ``device`` (eval mode, TTA ``tta``,
    autocast to ``amp_dtype``)."""
    if not checkpoints:
        raise FwiError("no checkpoints given (--checkpoint PATH or predict.checkpoints=[...])")
    check_tta(tta)
    members = []
    for path in checkpoints:
        predictor, cfg = Predictor.from_checkpoint(path, device=device, use_ema=use_ema, tta=tta, amp_dtype=amp_dtype)
        members.append(Member(Path(path), cfg, predictor))
    return members


def predict_batch(members: Sequence[Member], seismic: torch.Tensor) -> torch.Tensor:
    """Ensemble prediction for raw seismic ``[B, 5, 1000, 70]``: float32 ``[B, 70, 70]`` m/s in [VMIN, VMAX], the
    mean over members of each member's prediction (its own normalization, TTA and autocast)."""
    total = sum(m.predictor(seismic) for m in members)  # [B, 1, 70, 70]
    return (total / len(members)).reshape(-1, NZ, NX)


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


class MapWriter:
    """``<folder>/<oid>.npy`` maps written by ``threads`` threads, each file atomically (:func:`fwi.io.save_npy`), so
    the two fsyncs per file overlap inference instead of adding to it (one file at a time made ~120 files/s on this
    project's CPU machine, 8 threads ~10 times as many). ``folder`` None: writes nothing. A failed write (a full
    disk) is raised by a later :meth:`add` or on leaving the ``with`` block."""

    def __init__(self, folder: Path | None, threads: int = 8):
        self.folder = folder
        self.pool = ThreadPoolExecutor(threads) if folder is not None else None
        self.pending: list[Future] = []

    def add(self, oids: Sequence[str], maps: np.ndarray) -> None:
        """Queue ``maps`` ``[N, 70, 70]`` (m/s) of test files ``oids``."""
        if self.pool is None:
            return
        running = []
        for future in self.pending:
            if future.done():
                future.result()  # re-raises the write's error
            else:
                running.append(future)
        self.pending = running + [self.pool.submit(save_npy, self.folder / f"{oid}.npy", m)
                                  for oid, m in zip(oids, maps, strict=True)]

    def __enter__(self) -> MapWriter:
        return self

    def __exit__(self, kind, *_) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            if kind is None:
                for future in self.pending:
                    future.result()


# -------------------------------------------------------------------------------------------- predict


def default_out(members: Sequence[Member]) -> Path:
    """``submissions/<run>.csv`` after the members' run names (``name`` in their configs), joined by ``+``."""
    names = dict.fromkeys(m.cfg.name.replace("/", "_") for m in members)
    return Path("submissions") / f"{'+'.join(names)}.csv"


def check_out(out: Path, force: bool) -> None:
    """Refuse, up front, an output that is a directory, sits under a file, or exists (unless ``force``)."""
    if out.is_dir():
        raise FwiError(f"--out {out} is a directory: give the CSV file to write, e.g. {out / 'submission.csv'}")
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise FwiError(f"--out {out}: {blocking} is a file, not a folder")
    if out.exists() and not force:
        raise FwiError(f"{out} exists: pass --force to overwrite it, or --out another file")


def check_maps_dir(folder: Path, force: bool) -> None:
    """Refuse, up front, a ``--save-maps`` folder that is a file or already holds maps (unless ``force``)."""
    if folder.exists() and not folder.is_dir():
        raise FwiError(f"--save-maps {folder} is a file: give a folder to write <oid>.npy maps into")
    if folder.is_dir() and not force and next(folder.glob("*.npy"), None) is not None:
        raise FwiError(f"--save-maps {folder} already holds maps: pass --force to overwrite them, or give another "
                       "folder")


def predict(
    checkpoints: Sequence[str | Path],
    test_dir: str | Path,
    out: str | Path | None = None,
    *,
    force: bool = False,
    batch_size: int = 32,
    device: str = "auto",
    workers: int = 2,
    tta: Literal["none", "flip"] = "none",
    skip_bad: bool = False,
    amp: bool = True,
    amp_dtype: Literal["auto", "bf16", "fp16"] = "auto",
    use_ema: bool = True,
    float_precision: int | None = 2,
    chunk_files: int = 2048,
    progress: bool = True,
    save_maps: str | Path | None = None,
) -> Path:
    """Predict every ``<oid>.npy`` in ``test_dir`` with the ensemble of ``checkpoints``; write ``out``.

    ``out`` None: :func:`default_out`. An existing ``out`` is refused unless ``force``, before any inference.
    ``amp``/``amp_dtype``: mixed precision of the forward passes (:func:`fwi.engine.resolve_amp`).
    See the module docstring for the pipeline, the bad-file policy and the ``skip_bad`` fallback.
    ``float_precision``: decimals written per value (None: full float32). ``save_maps``: a folder that gets
    ``<oid>.npy``, the full float32 ``[70, 70]`` map (m/s) written to the CSV, of every good test file (bad files
    skipped with ``skip_bad`` get none); a folder already holding maps needs ``force``. Returns ``out`` once it is
    written and validated; on any error ``out`` is left untouched (no partial file). Raises
    :class:`~fwi.errors.FwiError` (one line) for bad input.
    """
    check_tta(tta)
    if out is not None:
        out = Path(out)
        check_out(out, force)
    if save_maps is not None:
        save_maps = Path(save_maps)
        check_maps_dir(save_maps, force)
    dev = resolve_device(device)
    dataset = CheckedTestDataset(test_dir)  # lists the folder first: a wrong path fails before any loading
    members = load_ensemble(checkpoints, dev, use_ema=use_ema, tta=tta, amp_dtype=resolve_amp(amp, amp_dtype, dev))
    if out is None:
        out = default_out(members)
        check_out(out, force)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=dev.type == "cuda", prefetch_factor=4 if workers > 0 else None)
    bad: list[tuple[str, str]] = []
    good_sum = torch.zeros(NZ, NX, dtype=torch.float64)
    n_good = 0
    started = time.monotonic()
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f, MapWriter(save_maps) as maps_out, tqdm(
                total=len(dataset), desc="predict", unit="sample", disable=not progress, dynamic_ncols=True) as bar:
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
                    pred = predict_batch(members, seismic).cpu()
                    good_sum += pred.double().sum(0)
                    n_good += len(oids)
                    writer.add(oids, pred.numpy())
                    maps_out.add(oids, pred.numpy())
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
                        help="submission to write (predict.out; default submissions/<run>.csv after the checkpoints' "
                        "run names)")
    parser.add_argument("--force", action="store_true", help="overwrite the output file (and --save-maps maps) if "
                        "they exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no timing line")
    parser.add_argument("--batch-size", type=int, metavar="N", help="test files per forward pass (predict.batch_size)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N (predict.device)")
    parser.add_argument("--workers", type=int, metavar="N", help="DataLoader workers (predict.workers)")
    parser.add_argument("--tta", choices=TTA, help="test-time augmentation (predict.tta)")
    parser.add_argument("--save-maps", type=Path, metavar="DIR", help="also write every test file's full 70x70 map "
                        "as DIR/<oid>.npy (float32 m/s), e.g. pseudo-labels for python -m fwi.synth --velocity DIR "
                        "(predict.save_maps)")
    parser.add_argument("--skip-bad", action=argparse.BooleanOptionalAction, default=None,
                        help="give bad test files the fallback prediction instead of stopping (predict.skip_bad)")
    args = parser.parse_intermixed_args(argv)
    flags = {
        "predict.checkpoints": [str(p) for p in args.checkpoint] if args.checkpoint else None,
        "data.test_dir": args.test_dir, "predict.out": args.out, "predict.batch_size": args.batch_size,
        "predict.device": args.device, "predict.workers": args.workers, "predict.tta": args.tta,
        "predict.skip_bad": args.skip_bad, "predict.save_maps": args.save_maps,
    }
    cfg = resolve_config(args, {k: v for k, v in flags.items() if v is not None},
                         notes=lambda c: [amp_note("predict", c.predict)])
    p = cfg.predict
    if cfg.data.test_dir is None:
        raise FwiError("no test directory: pass --test-dir DIR (or data.test_dir=DIR)")
    out = predict(p.checkpoints, cfg.data.test_dir, p.out, force=args.force, batch_size=p.batch_size,
                  device=p.device, workers=p.workers, tta=p.tta, skip_bad=p.skip_bad, amp=p.amp,
                  amp_dtype=p.amp_dtype, use_ema=p.use_ema, float_precision=p.float_precision,
                  chunk_files=p.chunk_files, progress=not args.quiet, save_maps=p.save_maps)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
