"""``python -m fwi.refine``: start maps + test seismic -> physics-refined maps (and a submission CSV).

The stage between ``fwi.predict --save-maps DIR`` and submitting. For every test file ``<oid>.npy`` in the
test folder, the start map ``<maps>/<oid>.npy`` (70 x 70, m/s) is refined against that file's seismic by
:func:`fwi.physics.refine.refine_map` and written to ``<out>/<oid>.npy`` (float32, m/s).

- **Resumable**: each map is written atomically (whole or not at all) and maps already in ``out`` are
  skipped, so a killed run continues where it stopped; since a map's result depends only on its inputs and
  the config, the outputs equal those of an uninterrupted run.
- **Shardable**: ``--shard i/n`` takes every n-th test file (sorted by id) from the i-th, so n processes or
  machines cover the folder exactly once; each writes its own log.
- **Log**: one CSV row per map (structure and prior, misfits before/after, evaluations, seconds), appended
  as each map is written; a row of a map refined again after a crash replaces the earlier one on reading.
- **Bad input** (a map without a test file or the reverse, a map of the wrong shape or with NaN, a start
  outside [VMIN, VMAX], an unreadable test file): a one-line error naming the file; with ``--skip-bad`` the
  start map is kept instead (clipped to the range; nothing is written for an unreadable or NaN map) and the
  files are listed at the end.
- ``--submission FILE``: once every test file has its refined map, the submission CSV is written from them
  and validated like fwi.predict's (:func:`fwi.submission.check_submission`).
"""

from __future__ import annotations

import csv
import io
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fwi.cli import config_parser, main_guard, resolve_config
from fwi.config import RefineConfig
from fwi.data.layout import list_test_files, load_test_file, read_npy_header
from fwi.device import resolve_device
from fwi.errors import DataError, FwiError
from fwi.io import atomic_path, save_npy
from fwi.physics.acquisition import NX, NZ, VMAX, VMIN
from fwi.physics.refine import refine_map
from fwi.submission import check_submission

LOG_COLUMNS = ("oid", "status", "structure", "prior", "parameters", "window", "gradients", "forwards",
               "misfit_before", "misfit_after", "seconds", "timed_out", "error")
"""Columns of the per-map log. status: ``refined`` (lower misfit), ``kept`` (the start fitted best), ``bad``."""


@dataclass(frozen=True)
class Job:
    """One test file and its start map."""

    oid: str
    start: Path
    test: Path


@dataclass
class Outcome:
    """What refining one job produced: the map to write (None: nothing) and its log row."""

    velocity: np.ndarray | None
    row: dict[str, object] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------- input


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    i, _, n = text.partition("/")
    if not (i.isdigit() and n.isdigit()) or not 0 <= int(i) < int(n):
        raise FwiError(f"bad shard '{text}' (refine.shard): use i/n with 0 <= i < n, e.g. 0/2 and 1/2")
    return int(i), int(n)


def list_maps(maps_dir: Path) -> dict[str, Path]:
    """``oid -> path`` for every ``<oid>.npy`` in ``maps_dir`` (other files, e.g. a log, are ignored)."""
    if not maps_dir.is_dir():
        raise DataError(f"maps directory not found: {maps_dir}")
    maps = {p.stem: p for p in maps_dir.iterdir() if p.suffix == ".npy" and not p.name.startswith(".")}
    if not maps:
        raise DataError(f"no start maps (<oid>.npy) in {maps_dir}")
    return maps


def plan(maps_dir: Path, test_dir: Path, shard: tuple[int, int], skip_bad: bool) -> tuple[list[Job], list[str]]:
    """The jobs of ``shard`` and the one-line errors of its unmatched ids (raised unless ``skip_bad``)."""
    maps, tests = list_maps(maps_dir), dict(list_test_files(test_dir))
    oids = sorted(maps.keys() | tests.keys())[shard[0] :: shard[1]]
    jobs, bad = [], []
    for oid in oids:
        if oid not in tests:
            bad.append(f"{maps[oid]}: no test file {test_dir / (oid + '.npy')} for this start map")
        elif oid not in maps:
            bad.append(f"{tests[oid]}: no start map {maps_dir / (oid + '.npy')} for this test file")
        else:
            jobs.append(Job(oid, maps[oid], tests[oid]))
    if bad and not skip_bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DataError(f"{bad[0]}{more}; pass --skip-bad to refine the matching files only")
    return jobs, bad


def load_start_map(path: Path) -> np.ndarray:
    """A start map as float32 ``[70, 70]`` m/s; ``(70, 70)`` or ``(1, 70, 70)`` float files are accepted.

    Raises :class:`DataError` naming the file for a wrong shape or dtype, NaN/Inf, or values outside
    ``[VMIN, VMAX]`` (the latter after the map is read, so ``--skip-bad`` can still clip it).
    """
    header = read_npy_header(path)
    if header.shape not in ((NZ, NX), (1, NZ, NX)):
        raise DataError(f"{path}: wrong shape for a start map: expected ({NZ}, {NX}), got {header.shape}")
    if header.dtype.kind != "f":
        raise DataError(f"{path}: wrong dtype for a start map: expected float, got {header.dtype}")
    v = np.load(path).astype(np.float32).reshape(NZ, NX)
    if not np.isfinite(v).all():
        raise DataError(f"{path}: NaN or Inf in start map")
    return v


def check_range(path: Path, v: np.ndarray) -> None:
    """Raise :class:`DataError` naming ``path`` when start map ``v`` leaves ``[VMIN, VMAX]``."""
    lo, hi = float(v.min()), float(v.max())
    if lo < VMIN or hi > VMAX:
        raise DataError(f"{path}: start map outside [{VMIN:g}, {VMAX:g}] m/s: min {lo:g}, max {hi:g} "
                        f"(is it in m/s?)")


# ------------------------------------------------------------------------------------------------ worker


def refine_job(job: Job, cfg: RefineConfig, device: str, skip_bad: bool) -> Outcome:
    """Refine one job (runs in a worker process when ``workers > 1``); bad input -> :class:`DataError`
    unless ``skip_bad``, then an outcome with status ``bad`` and the start map (clipped) if it is usable."""
    started = time.monotonic()
    start: np.ndarray | None = None
    try:
        start = load_start_map(job.start)
        check_range(job.start, start)
        observed = load_test_file(job.test)
    except DataError as exc:
        if not skip_bad:
            raise
        kept = None if start is None else np.clip(start, VMIN, VMAX)
        return Outcome(kept, {"oid": job.oid, "status": "bad", "error": str(exc)})
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    if cfg.max_evals == 0:
        return Outcome(start, {"oid": job.oid, "status": "kept", "seconds": 0.0})
    r = refine_map(torch.from_numpy(start).to(device), torch.from_numpy(observed), prior=cfg.prior,
                   max_evals=cfg.max_evals, window=cfg.window, dtype=dtype, max_seconds=cfg.max_seconds)
    row = {"oid": job.oid, "status": "refined" if r.improved else "kept", "structure": r.structure,
           "prior": r.prior, "parameters": r.parameters, "window": r.window, "gradients": r.gradients,
           "forwards": r.forwards, "misfit_before": f"{r.misfit_before:.6e}", "misfit_after": f"{r.misfit_after:.6e}",
           "seconds": round(time.monotonic() - started, 2), "timed_out": r.timed_out}
    return Outcome(r.velocity.cpu().numpy(), row)


def _init_worker() -> None:
    torch.set_num_threads(1)  # one process per core beats threads on these small grids


def n_workers(cfg: RefineConfig, device: str) -> int:
    """``cfg.workers``, or for 0: one per CPU core this process may use on the CPU, one on a GPU."""
    if cfg.workers:
        return cfg.workers
    return len(os.sched_getaffinity(0)) if device == "cpu" else 1


def _outcomes(jobs: list[Job], cfg: RefineConfig, device: str, skip_bad: bool) -> Iterator[Outcome]:
    """Outcomes of ``jobs`` as they finish: in-process for one worker, else a pool of spawned processes."""
    workers = min(n_workers(cfg, device), len(jobs))
    if workers <= 1:
        for job in jobs:
            yield refine_job(job, cfg, device, skip_bad)
        return
    ctx = multiprocessing.get_context("spawn")  # fork + torch threads can deadlock
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
        queue = iter(jobs)
        running: set[Future] = set()
        try:
            while True:
                while len(running) < workers and (job := next(queue, None)) is not None:
                    running.add(pool.submit(refine_job, job, cfg, device, skip_bad))
                if not running:
                    return
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            for future in running:
                future.cancel()


# --------------------------------------------------------------------------------------------------- run


def log_path(cfg: RefineConfig, out: Path, shard: tuple[int, int]) -> Path:
    if cfg.log is not None:
        return cfg.log
    return out / ("refine_log.csv" if shard[1] == 1 else f"refine_log_{shard[0]}of{shard[1]}.csv")


def read_log(path: Path) -> dict[str, dict[str, str]]:
    """``oid -> row`` of a log; the last complete row of an oid wins (a map redone after a crash)."""
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        return {row["oid"]: row for row in csv.DictReader(f) if row.get("error") is not None}


def append_log(path: Path, row: dict[str, object]) -> None:
    """Append one row (header first if the file is new); one write + fsync, so a crash loses at most it."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if not path.exists() or path.stat().st_size == 0:
        writer.writerow(LOG_COLUMNS)
    writer.writerow([row.get(c, "") for c in LOG_COLUMNS])
    with open(path, "a", encoding="utf-8") as f:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())


def refine_folder(cfg: RefineConfig, test_dir: Path, *, progress: bool = True) -> tuple[int, list[str]]:
    """Refine the shard's maps of ``cfg.maps`` into ``cfg.out`` (see the module docstring).

    Returns ``(refined now, bad-file messages)``; maps already in ``out`` are skipped.
    """
    if cfg.maps is None or cfg.out is None:
        raise FwiError("no maps or output folder: pass --maps DIR and --out DIR (refine.maps, refine.out)")
    shard = parse_shard(cfg.shard)
    device = str(resolve_device(cfg.device))
    jobs, bad = plan(cfg.maps, test_dir, shard, cfg.skip_bad)
    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    log = log_path(cfg, out, shard)
    todo = [j for j in jobs if not (out / f"{j.oid}.npy").exists()]
    if not cfg.skip_bad:  # a bad start map stops the run now, not hours in (test files are checked as read)
        for job in todo:
            check_range(job.start, load_start_map(job.start))
    drops: list[float] = []
    with tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=f"refine {cfg.shard}", unit="map",
              disable=not progress, dynamic_ncols=True) as bar:
        for outcome in _outcomes(todo, cfg, device, cfg.skip_bad):
            row = outcome.row
            append_log(log, row)  # before the map: a crash in between redoes the map, the reader dedupes
            if outcome.velocity is not None:
                save_npy(out / f"{row['oid']}.npy", np.asarray(outcome.velocity, dtype=np.float32))
            if row["status"] == "bad":
                bad.append(str(row["error"]))
            elif "misfit_after" in row:
                drops.append(math.log10(float(row["misfit_before"]) / max(float(row["misfit_after"]), 1e-30)))
            if drops:
                bar.set_postfix_str(f"misfit drop x{10 ** (sum(drops) / len(drops)):.1f}")
            bar.update(1)
    return len(todo), bad


def write_submission(maps_dir: Path, test_dir: Path, path: Path, logs: tuple[Path, ...] = ()) -> Path:
    """The submission CSV of the refined maps ``<maps_dir>/<oid>.npy`` of every test file, validated.

    Files that a ``--skip-bad`` run left without a map are named from the refine logs (``refine_log*.csv`` in
    ``maps_dir`` and ``logs``)."""
    from fwi.predict import ChunkedCsvWriter  # the one CSV writer (chunked polars writes)

    oids = [oid for oid, _ in list_test_files(test_dir)]
    missing = [oid for oid in oids if not (maps_dir / f"{oid}.npy").exists()]
    bad = {oid: row["error"] for log in sorted({*maps_dir.glob("refine_log*.csv"), *logs})
           for oid, row in read_log(log).items() if row.get("status") == "bad"}
    skipped = [oid for oid in missing if oid in bad]
    if skipped:
        raise FwiError(f"cannot write the submission: {len(skipped)} of {len(oids)} test files were skipped as bad "
                       f"and have no map (first: {bad[skipped[0]]}); give them a usable start map and rerun")
    if missing:
        raise FwiError(f"cannot write the submission: {len(missing)} of {len(oids)} test files have no refined map "
                       f"in {maps_dir} (first: {missing[0]}); finish every shard first")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            writer = ChunkedCsvWriter(f)
            for oid in oids:
                writer.add([oid], np.clip(load_start_map(maps_dir / f"{oid}.npy"), VMIN, VMAX)[None])
            writer.flush()
        check_submission(tmp, expected_oids=oids, expected_source=str(test_dir))
    return path


@main_guard
def main(argv: list[str] | None = None) -> int:
    parser = config_parser(
        "python -m fwi.refine",
        "Refine start maps (e.g. predict --save-maps) against the test seismic with the exact simulator. "
        "Flags override the refine.* config keys (and data.test_dir).")
    parser.add_argument("--maps", type=Path, metavar="DIR", help="folder of start maps <oid>.npy (refine.maps)")
    parser.add_argument("--test-dir", type=Path, metavar="DIR", help="folder of test files <oid>.npy (data.test_dir)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="folder for the refined maps (refine.out)")
    parser.add_argument("--submission", type=Path, metavar="CSV", help="also write this submission (refine.submission)")
    parser.add_argument("--shard", metavar="I/N", help="refine every N-th test file from the I-th (refine.shard)")
    parser.add_argument("--skip-bad", action="store_true", default=None,
                        help="keep the start map of bad files instead of stopping (refine.skip_bad)")
    parser.add_argument("--prior", help="auto, layers, blocks, regions or smooth (refine.prior)")
    parser.add_argument("--workers", type=int, metavar="N", help="maps refined in parallel (refine.workers)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N (refine.device)")
    args = parser.parse_intermixed_args(argv)
    flags = {"refine.maps": args.maps, "data.test_dir": args.test_dir, "refine.out": args.out,
             "refine.submission": args.submission, "refine.shard": args.shard, "refine.skip_bad": args.skip_bad,
             "refine.prior": args.prior, "refine.workers": args.workers, "refine.device": args.device}
    cfg = resolve_config(args, {k: v for k, v in flags.items() if v is not None})
    if cfg.data.test_dir is None:
        raise FwiError("no test directory: pass --test-dir DIR (or data.test_dir=DIR)")
    r = cfg.refine
    done, bad = refine_folder(r, cfg.data.test_dir)
    log = log_path(r, r.out, parse_shard(r.shard))
    rows = [row for row in read_log(log).values() if row["misfit_after"]]
    drop = [math.log10(float(row["misfit_before"]) / max(float(row["misfit_after"]), 1e-30)) for row in rows]
    summary = f", mean misfit drop x{10 ** (sum(drop) / len(drop)):.1f} over {len(rows)} maps" if rows else ""
    print(f"refined {done} maps into {r.out}{summary}; log {log}", file=sys.stderr)
    if bad:
        print(f"warning: {len(bad)} bad files kept their start map (or have none):", file=sys.stderr)
        for error in bad:
            print(f"  {error}", file=sys.stderr)
    if r.submission is not None:
        print(write_submission(r.out, cfg.data.test_dir, r.submission, logs=(log,)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
