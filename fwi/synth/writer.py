"""Write synthetic data in the competition's exact layout (DESIGN.md §1).

Each family gets ``train_samples/<family>/`` with the family's own file naming: ``data/dataK.npy`` +
``model/modelK.npy`` (FlatVel, CurveVel, Style) or ``seisK_1_0.npy`` + ``velK_1_0.npy`` (the Fault families; A
numbered 2, 4, ..., B numbered 6, 8, ... as in the real data). Seismic ``(N, 5, 1000, 70)`` and velocity
``(N, 1, 70, 70)`` are float32. Every file is written atomically and seeded on its own, so an interrupted
run resumes by skipping the files that are already complete; a tree remembers its settings in ``synth.json``
and refuses to be extended with different ones.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import torch
from tqdm import tqdm

from fwi.data.layout import check_header
from fwi.device import resolve_device
from fwi.errors import FwiError
from fwi.io import atomic_path, save_npy, save_text
from fwi.physics.acquisition import DEFAULT, SEISMIC_SHAPE, VELOCITY_SHAPE, VMAX, VMIN, Acquisition
from fwi.physics.simulator import simulate
from fwi.submission import rows_frame
from fwi.synth.families import FAMILIES, generate

GENERATOR_VERSION = 3
"""Bumped whenever the generators change what a seed produces (invalidates cached trees)."""


def default_batch(device: torch.device) -> int:
    """Samples simulated at once: a few on a CPU, many on a GPU."""
    return 64 if device.type == "cuda" else 4


def file_names(family: str, k: int) -> tuple[str, str]:
    """Relative (seismic, velocity) paths of the ``k``-th file (0-based) of ``family``."""
    if "Fault" in family:
        number = 2 * (k + 1) if family.endswith("_A") else 6 + 2 * k
        return f"seis{number}_1_0.npy", f"vel{number}_1_0.npy"
    return f"data/data{k + 1}.npy", f"model/model{k + 1}.npy"


def file_seed(seed: int, family: str, k: int) -> int:
    """Independent seed of one file's velocity maps."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, zlib.crc32(family.encode()), k]).generate_state(1)[0])


def is_complete(seismic: Path, velocity: Path, n: int) -> bool:
    """Both files exist with headers announcing ``n`` samples and the right shapes (no truncation)."""
    try:
        return (check_header(velocity, VELOCITY_SHAPE, "velocity").shape[0] == n
                and check_header(seismic, SEISMIC_SHAPE, "seismic").shape[0] == n)
    except FwiError:
        return False


def simulate_batched(velocity: torch.Tensor, *, device: torch.device, batch: int, acq: Acquisition = DEFAULT,
                     bar: tqdm | None = None) -> np.ndarray:
    """Seismic ``[N, 5, nt, 70]`` float32 numpy for velocity ``[N, 70, 70]`` (m/s), ``batch`` maps at a time."""
    out = np.empty((len(velocity), acq.n_sources, acq.nt, acq.n_receivers), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(velocity), batch):
            v = velocity[start : start + batch].to(device, torch.float32)
            out[start : start + len(v)] = simulate(v, acq).cpu().numpy()
            if bar is not None:
                bar.update(len(v))
    return out


def _claim(out: Path, settings: dict) -> None:
    """Record ``settings`` in ``out/synth.json``, or check they match the ones recorded there."""
    meta = out / "synth.json"
    if meta.is_file():
        recorded = json.loads(meta.read_text())
        if recorded != settings:
            diff = {k: (recorded.get(k), v) for k, v in settings.items() if recorded.get(k) != v}
            raise FwiError(f"{out} was generated with other settings {diff} (recorded, requested); "
                           "use another --out")
    else:
        save_text(meta, json.dumps(settings, indent=1))


def write_tree(out: str | Path, families: Sequence[str], samples_per_family: int, *, samples_per_file: int = 500,
               seed: int = 0, device: str = "auto", test_samples: int = 0, progress: bool = True) -> Path:
    """Generate and simulate a training tree (and optionally a test set) under ``out``; returns ``out``.

    ``train_samples/<family>/...`` for each family; with ``test_samples > 0`` also ``test/<oid>.npy``
    (float32 ``(5, 1000, 70)``, 10-hex-digit oids) and ``test_solution.csv`` (submission format plus a
    ``family`` column). Complete files are skipped, so a rerun finishes an interrupted tree.
    """
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise FwiError(f"unknown families {unknown}; valid: {', '.join(FAMILIES)}")
    out = Path(out)
    dev = resolve_device(device)
    _claim(out, {"families": list(families), "samples_per_family": samples_per_family,
                 "samples_per_file": samples_per_file, "seed": seed, "test_samples": test_samples,
                 "generator_version": GENERATOR_VERSION})
    jobs = []  # (family, k, n, seismic path, velocity path) still to write
    for family in families:
        for k, start in enumerate(range(0, samples_per_family, samples_per_file)):
            n = min(samples_per_file, samples_per_family - start)
            seis_rel, vel_rel = file_names(family, k)
            seis, vel = out / "train_samples" / family / seis_rel, out / "train_samples" / family / vel_rel
            if not is_complete(seis, vel, n):
                jobs.append((family, k, n, seis, vel))
    total = sum(job[2] for job in jobs)
    with tqdm(total=total, desc="simulating", unit="sample", disable=not progress or total == 0) as bar:
        for family, k, n, seis, vel in jobs:
            bar.set_postfix(file=f"{family}/{seis.name}")
            maps = generate(family, n, file_seed(seed, family, k), device=dev)  # [n, 70, 70] m/s
            save_npy(vel, maps.cpu().numpy()[:, None])
            save_npy(seis, simulate_batched(maps, device=dev, batch=default_batch(dev), bar=bar))
    if test_samples > 0:
        write_test_set(out, families, test_samples, seed=seed, device=dev, progress=progress)
    return out


def write_test_set(out: Path, families: Sequence[str], n: int, *, seed: int, device: torch.device,
                   progress: bool = True) -> None:
    """``n`` test files drawn round-robin over ``families`` and their solution CSV (with a family column)."""
    rng = np.random.default_rng([seed & 0xFFFFFFFF, 0x7E57])
    oids: list[str] = []
    while len(oids) < n:  # unique 10-hex-digit ids, like the real test set's
        oid = f"{int(rng.integers(0, 16**10)):010x}"
        if oid not in oids:
            oids.append(oid)
    owners = [families[i % len(families)] for i in range(n)]
    maps = torch.empty(n, *VELOCITY_SHAPE[1:])
    for family in families:
        idx = [i for i, f in enumerate(owners) if f == family]
        if idx:
            maps[idx] = generate(family, len(idx), file_seed(seed, f"test/{family}", 0), device=device).cpu()
    todo = [i for i in range(n) if not (out / "test" / f"{oids[i]}.npy").is_file()]
    with tqdm(total=len(todo), desc="test set", unit="sample", disable=not progress or not todo) as bar:
        for start in range(0, len(todo), 64):
            part = todo[start : start + 64]
            seismic = simulate_batched(maps[part], device=device, batch=default_batch(device), bar=bar)
            for i, s in zip(part, seismic, strict=True):
                save_npy(out / "test" / f"{oids[i]}.npy", s)
    solution = rows_frame(oids, maps.numpy()).with_columns(
        pl.Series("family", [f for f in owners for _ in range(VELOCITY_SHAPE[1])]))
    with atomic_path(out / "test_solution.csv") as tmp:
        solution.write_csv(tmp)


def load_velocity_file(path: str | Path) -> np.ndarray:
    """Velocity maps from ``.npy`` or ``.npz`` (key ``velocity``, or its only array): ``[N, 70, 70]`` float32.

    Accepts ``(N, 1, 70, 70)`` or ``(N, 70, 70)``; shape, NaN/Inf and the [VMIN, VMAX] range are checked
    with errors naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FwiError(f"velocity file not found: {path}")
    try:
        loaded = np.load(path)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                keys = list(loaded.keys())
                if "velocity" not in keys and len(keys) != 1:
                    raise FwiError(f"{path}: expected a 'velocity' array or a single array, found {keys}")
                v = loaded["velocity" if "velocity" in keys else keys[0]]
        else:
            v = loaded
    except (ValueError, OSError, EOFError) as exc:
        raise FwiError(f"{path}: not a readable .npy/.npz file ({exc})") from None
    nz, nx = VELOCITY_SHAPE[1:]
    if v.ndim == 4 and v.shape[1] == 1:
        v = v[:, 0]
    if v.ndim != 3 or v.shape[1:] != (nz, nx) or len(v) == 0:
        raise FwiError(f"{path}: velocity must have shape (N, 1, {nz}, {nx}) or (N, {nz}, {nx}), got {tuple(v.shape)}")
    v = v.astype(np.float32)
    if not np.isfinite(v).all():
        raise FwiError(f"{path}: velocity contains NaN or Inf")
    if v.min() < VMIN or v.max() > VMAX:
        raise FwiError(f"{path}: velocity must lie in [{VMIN:g}, {VMAX:g}] m/s, found min {v.min():g} max {v.max():g}")
    return v


def write_from_velocity(path: str | Path, out: str | Path, *, samples_per_file: int = 500, device: str = "auto",
                        progress: bool = True) -> Path:
    """Simulate the maps of ``path`` into the family folder ``out`` (``model/modelK.npy`` + ``data/dataK.npy``)."""
    maps = torch.from_numpy(load_velocity_file(path))
    out, dev = Path(out), resolve_device(device)
    digest = hashlib.sha256(maps.numpy().tobytes()).hexdigest()[:16]
    _claim(out, {"velocity_file": str(Path(path).resolve()), "sha256_16": digest,
                 "samples_per_file": samples_per_file, "generator_version": GENERATOR_VERSION})
    with tqdm(total=len(maps), desc="simulating", unit="sample", disable=not progress) as bar:
        for k, start in enumerate(range(0, len(maps), samples_per_file)):
            part = maps[start : start + samples_per_file]
            seis, vel = out / f"data/data{k + 1}.npy", out / f"model/model{k + 1}.npy"
            if is_complete(seis, vel, len(part)):
                bar.update(len(part))
                continue
            save_npy(vel, part.numpy()[:, None])
            save_npy(seis, simulate_batched(part, device=dev, batch=default_batch(dev), bar=bar))
    return out


def prepare_synthetic(synth_cfg, progress: bool = True) -> Path:
    """The cached synthetic tree for a ``SynthConfig``, generated on first use (training's default data)."""
    key = json.dumps([synth_cfg.families, synth_cfg.samples_per_family, synth_cfg.samples_per_file,
                      synth_cfg.seed, GENERATOR_VERSION])
    out = Path(synth_cfg.cache_dir) / hashlib.sha256(key.encode()).hexdigest()[:12]
    return write_tree(out, synth_cfg.families, synth_cfg.samples_per_family,
                      samples_per_file=synth_cfg.samples_per_file, seed=synth_cfg.seed, device=synth_cfg.device,
                      progress=progress)
