"""Write synthetic data in the competition's exact layout (docs/data.md).

Each family gets ``train_samples/<family>/`` with the family's own file naming: ``data/dataK.npy`` +
``model/modelK.npy`` (FlatVel, CurveVel, Style) or ``seisK_1_0.npy`` + ``velK_1_0.npy`` (the Fault families; A
numbered 2, 4, ..., B numbered 6, 8, ... as in the real data). Seismic ``(N, 5, 1000, 70)`` and velocity
``(N, 1, 70, 70)`` are float32 (seismic float16 on request, as in the competition's test files). Every file is
written atomically and seeded on its own, so an interrupted run resumes by skipping the files that are already
complete; a tree remembers its settings in ``synth.json`` and refuses to be extended with different ones.

Bulk generation: a :class:`Job` says how to run the simulation (batch size, reduced-precision wavefield, seismic
dtype) and which share of the files to write: ``shard=(i, n)`` takes every n-th file of the job starting at
the i-th, so n processes (GPUs, machines, under any launcher) write disjoint sets whose union is exactly the
unsharded run, byte for byte (each file depends on its own seed only).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
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
from fwi.physics.simulator import resolve_backend, simulate
from fwi.submission import rows_frame
from fwi.synth.augment import VelocityAugment, augment
from fwi.synth.families import FAMILIES, generate

GENERATOR_VERSION = 5
"""Bumped whenever the generators change what a seed produces (invalidates cached trees)."""


def default_batch(device: torch.device) -> int:
    """Samples simulated at once: a few on a CPU, many on a GPU."""
    return 64 if device.type == "cuda" else 4


SEISMIC_DTYPES = ("float32", "float16")
"""Dtypes of written seismic files."""
WAVEFIELD_DTYPES = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}
"""Wavefield storage of the simulation (``simulate(wavefield_dtype=...)``): float32 is exact."""


@dataclass(frozen=True)
class Job:
    """How to simulate and which files to write (see the module docstring)."""

    batch: int | None = None
    """Samples simulated at once (None: :func:`default_batch`)."""
    shard: tuple[int, int] = (0, 1)
    """``(i, n)``: write files ``i, i + n, i + 2n, ...`` of the job."""
    seismic_dtype: str = "float32"
    """Dtype of the written seismic, one of :data:`SEISMIC_DTYPES` (velocity is always float32)."""
    wavefield_dtype: str = "float32"
    """One of :data:`WAVEFIELD_DTYPES`; float16/bfloat16 need the Triton backend (CUDA)."""

    def __post_init__(self):
        i, n = self.shard
        if not 0 <= i < n:
            raise FwiError(f"shard must be i/n with 0 <= i < n, got {i}/{n}")
        if self.batch is not None and self.batch < 1:
            raise FwiError(f"batch must be >= 1, got {self.batch}")
        if self.seismic_dtype not in SEISMIC_DTYPES:
            raise FwiError(f"unknown seismic dtype '{self.seismic_dtype}'; use one of {', '.join(SEISMIC_DTYPES)}")
        if self.wavefield_dtype not in WAVEFIELD_DTYPES:
            raise FwiError(f"unknown wavefield dtype '{self.wavefield_dtype}'; use one of "
                           f"{', '.join(WAVEFIELD_DTYPES)}")

    def mine(self, index: int) -> bool:
        """Whether this shard writes the job's ``index``-th file."""
        return index % self.shard[1] == self.shard[0]

    def settings(self) -> dict:
        """What changes the written bytes, for ``synth.json`` (only non-defaults: older trees stay valid)."""
        return {key: value for key, value in (("seismic_dtype", self.seismic_dtype),
                                              ("wavefield_dtype", self.wavefield_dtype)) if value != "float32"}

    def check(self, device: torch.device) -> None:
        if self.wavefield_dtype != "float32" and resolve_backend("auto", device) != "triton":
            raise FwiError(f"a {self.wavefield_dtype} wavefield needs the Triton backend: a CUDA device and the "
                           "triton package")


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


def simulate_batched(velocity: torch.Tensor, *, device: torch.device, acq: Acquisition = DEFAULT,
                     bar: tqdm | None = None, job: Job = Job()) -> np.ndarray:
    """Seismic ``[N, 5, nt, 70]`` numpy (``job.seismic_dtype``) for velocity ``[N, 70, 70]`` (m/s), ``job.batch``
    (or :func:`default_batch`) maps at a time."""
    batch = job.batch or default_batch(device)
    out = np.empty((len(velocity), acq.n_sources, acq.nt, acq.n_receivers), dtype=job.seismic_dtype)
    with torch.no_grad():
        for start in range(0, len(velocity), batch):
            v = velocity[start : start + batch].to(device, torch.float32)
            seismic = simulate(v, acq, wavefield_dtype=WAVEFIELD_DTYPES[job.wavefield_dtype])
            out[start : start + len(v)] = seismic.to(getattr(torch, job.seismic_dtype)).cpu().numpy()
            if bar is not None:
                bar.update(len(v))
    return out


def _claim(out: Path, settings: dict) -> None:
    """Record ``settings`` in ``out/synth.json``, or check they match the ones recorded there."""
    meta = out / "synth.json"
    if meta.is_file():
        try:
            recorded = json.loads(meta.read_text())
        except (ValueError, OSError) as exc:  # JSONDecodeError, UnicodeDecodeError, unreadable
            raise FwiError(f"{meta} is damaged ({type(exc).__name__}: {exc}); delete it (or the whole {out}) to "
                           "regenerate the tree") from None
        if recorded != settings:
            diff = {k: (recorded.get(k), settings.get(k)) for k in {**recorded, **settings}
                    if recorded.get(k) != settings.get(k)}
            raise FwiError(f"{out} was generated with other settings {diff} (recorded, requested); "
                           "use another --out")
    else:
        save_text(meta, json.dumps(settings, indent=1))


def write_tree(out: str | Path, families: Sequence[str], samples_per_family: int, *, samples_per_file: int = 500,
               seed: int = 0, device: str = "auto", test_samples: int = 0, progress: bool = True,
               job: Job = Job()) -> Path:
    """Generate and simulate a training tree (and optionally a test set) under ``out``; returns ``out``.

    ``train_samples/<family>/...`` for each family; with ``test_samples > 0`` also ``test/<oid>.npy``
    (``(5, 1000, 70)``, 10-hex-digit oids) and ``test_solution.csv`` (submission format plus a ``family``
    column, written by every shard). Complete files are skipped, so a rerun finishes an interrupted tree.
    """
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise FwiError(f"unknown families {unknown}; valid: {', '.join(FAMILIES)}")
    out = Path(out)
    dev = resolve_device(device)
    job.check(dev)
    _claim(out, {"families": list(families), "samples_per_family": samples_per_family,
                 "samples_per_file": samples_per_file, "seed": seed, "test_samples": test_samples,
                 "generator_version": GENERATOR_VERSION, **job.settings()})
    files = [(family, k, min(samples_per_file, samples_per_family - start))
             for family in families for k, start in enumerate(range(0, samples_per_family, samples_per_file))]
    jobs = []  # (family, k, n, seismic path, velocity path) still to write
    for index, (family, k, n) in enumerate(files):
        seis_rel, vel_rel = file_names(family, k)
        seis, vel = out / "train_samples" / family / seis_rel, out / "train_samples" / family / vel_rel
        if job.mine(index) and not is_complete(seis, vel, n):
            jobs.append((family, k, n, seis, vel))
    total = sum(job[2] for job in jobs)
    with tqdm(total=total, desc="simulating", unit="sample", disable=not progress or total == 0) as bar:
        for family, k, n, seis, vel in jobs:
            bar.set_postfix(file=f"{family}/{seis.name}")
            maps = generate(family, n, file_seed(seed, family, k), device=dev)  # [n, 70, 70] m/s
            save_npy(vel, maps.cpu().numpy()[:, None])
            save_npy(seis, simulate_batched(maps, device=dev, bar=bar, job=job))
    if test_samples > 0:
        write_test_set(out, families, test_samples, seed=seed, device=dev, progress=progress, job=job)
    return out


def write_test_set(out: Path, families: Sequence[str], n: int, *, seed: int, device: torch.device,
                   progress: bool = True, job: Job = Job()) -> None:
    """``n`` test files drawn round-robin over ``families`` and their solution CSV (with a family column).

    The shard writes test file ``i`` when ``job.mine(i)``; the CSV (cheap: maps only) always."""
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
    todo = [i for i in range(n) if job.mine(i) and not (out / "test" / f"{oids[i]}.npy").is_file()]
    with tqdm(total=len(todo), desc="test set", unit="sample", disable=not progress or not todo) as bar:
        for start in range(0, len(todo), 64):
            part = todo[start : start + 64]
            seismic = simulate_batched(maps[part], device=device, bar=bar, job=job)
            for i, s in zip(part, seismic, strict=True):
                save_npy(out / "test" / f"{oids[i]}.npy", s)
    solution = rows_frame(oids, maps.numpy()).with_columns(
        pl.Series("family", [f for f in owners for _ in range(VELOCITY_SHAPE[1])]))
    with atomic_path(out / "test_solution.csv") as tmp:
        solution.write_csv(tmp)


def _read_maps(path: Path) -> np.ndarray:
    """The array of a ``.npy`` file, or of a ``.npz`` file's ``velocity`` key (or its only array)."""
    try:
        loaded = np.load(path)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            return loaded
        with loaded:
            keys = list(loaded.keys())
            if "velocity" not in keys and len(keys) != 1:
                raise FwiError(f"{path}: expected a 'velocity' array or a single array, found {keys}")
            return loaded["velocity" if "velocity" in keys else keys[0]]
    except (ValueError, OSError, EOFError) as exc:
        raise FwiError(f"{path}: not a readable .npy/.npz file ({exc})") from None


def check_maps(path: Path, v: np.ndarray) -> np.ndarray:
    """``v`` as float32 ``[N, 70, 70]`` maps, from ``(N, 1, 70, 70)``, ``(N, 70, 70)`` or one ``(70, 70)`` map;
    shape, NaN/Inf and the [VMIN, VMAX] range are checked with errors naming ``path``."""
    nz, nx = VELOCITY_SHAPE[1:]
    if v.ndim == 2:
        v = v[None]
    elif v.ndim == 4 and v.shape[1] == 1:
        v = v[:, 0]
    if v.ndim != 3 or v.shape[1:] != (nz, nx) or len(v) == 0:
        raise FwiError(f"{path}: velocity must have shape (N, 1, {nz}, {nx}), (N, {nz}, {nx}) or ({nz}, {nx}), got "
                       f"{tuple(v.shape)}")
    v = v.astype(np.float32)
    if not np.isfinite(v).all():
        raise FwiError(f"{path}: velocity contains NaN or Inf")
    if v.min() < VMIN or v.max() > VMAX:
        raise FwiError(f"{path}: velocity must lie in [{VMIN:g}, {VMAX:g}] m/s, found min {v.min():g} max {v.max():g}")
    return v


def load_velocity(path: str | Path) -> np.ndarray:
    """Velocity maps ``[N, 70, 70]`` float32 (m/s) from a ``.npy``/``.npz`` file (key ``velocity``, or its only
    array) or from a folder of ``.npy`` maps taken in file-name order (``python -m fwi.predict --save-maps``
    writes one ``[70, 70]`` map per test file, ``<oid>.npy``). Every file is checked (:func:`check_maps`)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.npy"))
        if not files:
            raise FwiError(f"{path}: no .npy velocity maps in this folder")
        return np.concatenate([check_maps(f, _read_maps(f)) for f in files])
    if not path.is_file():
        raise FwiError(f"velocity file not found: {path}")
    return check_maps(path, _read_maps(path))


def write_from_velocity(path: str | Path, out: str | Path, *, samples_per_file: int = 500, device: str = "auto",
                        progress: bool = True, job: Job = Job()) -> Path:
    """Simulate the maps of ``path`` (a file or a folder of maps, see :func:`load_velocity`), in order, into the
    family folder ``out`` (``model/modelK.npy`` + ``data/dataK.npy``, ``samples_per_file`` maps each): training
    data as is (``data.root`` or ``data.extra_roots``; the family is the folder's name)."""
    maps = torch.from_numpy(load_velocity(path))
    out, dev = Path(out), resolve_device(device)
    job.check(dev)
    digest = hashlib.sha256(maps.numpy().tobytes()).hexdigest()[:16]
    _claim(out, {"velocity_file": str(Path(path).resolve()), "sha256_16": digest,
                 "samples_per_file": samples_per_file, "generator_version": GENERATOR_VERSION, **job.settings()})
    mine = [k for k in range(-(-len(maps) // samples_per_file)) if job.mine(k)]
    with tqdm(total=sum(len(maps[k * samples_per_file : (k + 1) * samples_per_file]) for k in mine),
              desc="simulating", unit="sample", disable=not progress) as bar:
        for k in mine:
            part = maps[k * samples_per_file : (k + 1) * samples_per_file]
            seis, vel = out / f"data/data{k + 1}.npy", out / f"model/model{k + 1}.npy"
            if is_complete(seis, vel, len(part)):
                bar.update(len(part))
                continue
            save_npy(vel, part.numpy()[:, None])
            save_npy(seis, simulate_batched(part, device=dev, bar=bar, job=job))
    return out


def write_from_root(manifest: pl.DataFrame, out: str | Path, copies: int, *, source: dict, seed: int = 0,
                    samples_per_file: int = 500, device: str = "auto", progress: bool = True, job: Job = Job(),
                    params: VelocityAugment | None = None) -> Path:
    """Re-simulate ``copies`` velocity-space augmentations (:func:`fwi.synth.augment.augment` with ``params``,
    default :class:`VelocityAugment`) of every *training* map of ``manifest`` into the tree ``out``.

    ``out/train_samples/<family>/`` gets the family's own file names (:func:`file_names`), ``samples_per_file``
    maps each: the training maps of the family in manifest order, copy after copy. File ``k`` of a family is
    augmented with seed :func:`file_seed` ``(seed, family, k)``, so it depends on nothing else; complete files are
    skipped (a rerun finishes an interrupted tree) and ``job.shard`` splits the files as in :func:`write_tree`.
    ``source`` (where the maps come from and how they were split) is recorded in ``synth.json`` with the other
    settings. Returns ``out``.
    """
    if copies < 1:
        raise FwiError(f"--copies must be >= 1, got {copies}")
    params = params or VelocityAugment()
    out, dev = Path(out), resolve_device(device)
    job.check(dev)
    train = manifest.filter(pl.col("split") == "train")
    families = sorted(train["family"].unique().to_list())
    _claim(out, {"from_root": source, "families": families, "copies": copies, "seed": seed,
                 "samples_per_file": samples_per_file, "augment": asdict(params),
                 "generator_version": GENERATOR_VERSION, **job.settings()})
    files = []  # (family, k, rows of that family's training maps it holds)
    for family in families:
        rows = train.filter(pl.col("family") == family).select("velocity_path", "index")
        total = copies * rows.height
        for k, start in enumerate(range(0, total, samples_per_file)):
            files.append((family, k, rows[np.arange(start, min(start + samples_per_file, total)) % rows.height]))
    todo = []
    for index, (family, k, rows) in enumerate(files):
        seis_rel, vel_rel = file_names(family, k)
        seis, vel = out / "train_samples" / family / seis_rel, out / "train_samples" / family / vel_rel
        if job.mine(index) and not is_complete(seis, vel, rows.height):
            todo.append((family, k, rows, seis, vel))
    with tqdm(total=sum(t[2].height for t in todo), desc="simulating", unit="sample",
              disable=not progress or not todo) as bar:
        for family, k, rows, seis, vel in todo:
            bar.set_postfix(file=f"{family}/{seis.name}")
            maps = torch.from_numpy(read_maps(rows)).to(dev)  # [n, 70, 70] m/s
            maps = augment(maps, torch.Generator(device=dev).manual_seed(file_seed(seed, family, k)), params)
            save_npy(vel, maps.cpu().numpy()[:, None])
            save_npy(seis, simulate_batched(maps, device=dev, bar=bar, job=job))
    return out


def read_maps(rows: pl.DataFrame) -> np.ndarray:
    """Float32 ``[n, 70, 70]`` maps (m/s) of manifest ``rows`` (columns ``velocity_path``, ``index``), in order;
    each file is memory-mapped and read once."""
    maps = np.empty((rows.height, *VELOCITY_SHAPE[1:]), dtype=np.float32)
    paths, indices = rows["velocity_path"].to_numpy(), rows["index"].to_numpy()
    for path in np.unique(paths):
        at = np.flatnonzero(paths == path)
        maps[at] = np.load(path, mmap_mode="r")[indices[at], 0]
    return maps


def prepare_synthetic(synth_cfg, progress: bool = True) -> Path:
    """The cached synthetic tree for a ``SynthConfig``, generated on first use (training's default data)."""
    key = json.dumps([synth_cfg.families, synth_cfg.samples_per_family, synth_cfg.samples_per_file,
                      synth_cfg.seed, GENERATOR_VERSION])
    out = Path(synth_cfg.cache_dir) / hashlib.sha256(key.encode()).hexdigest()[:12]
    return write_tree(out, synth_cfg.families, synth_cfg.samples_per_family,
                      samples_per_file=synth_cfg.samples_per_file, seed=synth_cfg.seed, device=synth_cfg.device,
                      progress=progress)
