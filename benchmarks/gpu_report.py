"""GPU report: every GPU path of the project measured by one command, written as Markdown.

    python benchmarks/gpu_report.py                      # on a CUDA machine; sized for <= 8 minutes on one H100
    python benchmarks/gpu_report.py --out report.md --stages forward,gradient
    python benchmarks/gpu_report.py --smoke              # the same code paths on the CPU at toy sizes (CI runs it)

Stages, each one table with its baseline measured in the same run:

- ``forward``: simulator samples/s by batch size: PyTorch eager (the baseline), ``torch.compile``, the Triton
  kernels one step per launch, with CUDA graphs, several steps per launch, reduced-precision wavefields;
  relative L2 against the real OpenFWI CurveFault pair (sample 0 of every batch is its velocity map) and
  against the CPU result of the same maps;
- ``tuning``: the Triton backend's options (steps per launch, tile sizes, warps, chunk) at the largest batch;
- ``gradient``: simulator forward + gradient, samples/s, peak memory, gradient relative L2 against eager;
- ``training``: optimizer steps/s of the configs in :data:`TRAIN_CONFIGS` in fp32/fp16/bf16, compile on/off,
  channels_last on/off on a fixed batch (model only), then each config's own settings fed by on-the-fly
  simulated batches (:class:`fwi.synth.stream.SyntheticStream`) against the same step on a fixed batch;
- ``predict``: test files/s end to end (read, normalize, model with flip TTA, CSV) against the model alone;
- ``refine``: maps/s of :func:`fwi.physics.refine.refine_map` (``python -m fwi.refine``'s per-map function)
  against the simulator's forward + gradient of one map, and the projected cost of the 65,818 test maps.

With ``--smoke`` the Triton kernels run in Triton's CPU interpreter and ``torch.compile`` uses its ``eager``
backend (the inductor compiler would take minutes on a CPU); no number of a smoke run means anything. Each
stage is a small function of :class:`Sizes`; a stage that fails on a GPU is reported and the others still run.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"

TRAIN_CONFIGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("configs/inversionnet.yaml", ()),
    ("configs/convnext_unet.yaml", ()),
    ("configs/caformer_unet.yaml", ()),
)
"""Configs of the training and predict stages: (YAML file relative to the repository, overrides).
A new GPU config is one more line."""

TRAIN_VARIANTS: tuple[tuple[str, bool, bool], ...] = (
    ("fp32", False, False), ("fp16", False, False), ("bf16", False, False), ("bf16", False, True),
    ("bf16", True, False), ("bf16", True, True),
)
"""(precision, compile, channels_last) rows of the training table, plus each config's own settings; compiling
costs about a minute per row on a GPU, so only bf16 (the GPU configs' precision) is compiled."""

SMOKE_MODEL_OVERRIDES: dict[str, tuple[str, ...]] = {
    "inversionnet": ("model.width=4",),
    "timm_unet": ("model.encoder=resnet10t", "model.decoder_channels=[8, 8, 8, 8]"),
}
"""Toy models for ``--smoke``, by model name."""


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of a run (:func:`gpu_sizes` or :func:`smoke_sizes`)."""

    nt: int
    """Simulated time steps."""
    forward_batches: tuple[int, ...]
    eager_batches: tuple[int, ...]
    """Batches of the (slow) eager and compiled PyTorch rows."""
    grad_batches: tuple[int, ...]
    eager_grad_batches: tuple[int, ...]
    triton: object
    """Base TritonOptions of the Triton rows."""
    tuning: tuple
    """TritonOptions compared in the tuning table."""
    train_batch: int
    train_steps: int
    predict_files: int
    predict_batch: int
    refine_maps: int
    refine_steps: int
    """Maps refined one by one, and L-BFGS gradient evaluations per map."""
    repeats: int
    """Timed runs per cell (median)."""
    warmup: int
    """Untimed runs (training: steps) before them: compilation, graph capture, allocator."""
    compile_backend: str
    model_overrides: dict[str, tuple[str, ...]] = field(default_factory=dict)


def gpu_sizes() -> Sizes:
    from fwi.physics.triton_sim import TritonOptions

    base = TritonOptions()
    tuning = (
        TritonOptions(steps_per_launch=1, block=(16, 64)),
        TritonOptions(steps_per_launch=1, block=(32, 64)),
        TritonOptions(steps_per_launch=1, block=(16, 128), num_warps=4),
        TritonOptions(steps_per_launch=2, region=(32, 32), num_warps=4),
        TritonOptions(steps_per_launch=2, region=(64, 64), num_warps=16),
        TritonOptions(steps_per_launch=4, region=(64, 64), num_warps=16),
        TritonOptions(steps_per_launch=4, region=(64, 128), num_warps=16),
        replace(base, chunk=2), replace(base, chunk=8), replace(base, chunk=32),
    )
    return Sizes(nt=1000, forward_batches=(1, 8, 32, 128), eager_batches=(1, 32), grad_batches=(1, 8, 32),
                 eager_grad_batches=(1, 8), triton=base, tuning=(base, *tuning), train_batch=32, train_steps=20,
                 predict_files=2048, predict_batch=64, refine_maps=8, refine_steps=5, repeats=3, warmup=1,
                 compile_backend="inductor")


def smoke_sizes() -> Sizes:
    from fwi.physics.triton_sim import TritonOptions

    # One program covers the whole 310 x 310 grid: the interpreter runs programs one by one.
    base = TritonOptions(steps_per_launch=2, region=(512, 512), block=(512, 512))
    return Sizes(nt=4, forward_batches=(2,), eager_batches=(2,), grad_batches=(1,), eager_grad_batches=(1,),
                 triton=base, tuning=(base,), train_batch=2, train_steps=1, predict_files=4, predict_batch=2,
                 refine_maps=1, refine_steps=1, repeats=1, warmup=0, compile_backend="eager",
                 model_overrides=SMOKE_MODEL_OVERRIDES)


# ------------------------------------------------------------------------------------------------- report


class Report:
    """Markdown tables, each printed as soon as it is complete."""

    def __init__(self):
        self.parts: list[str] = []

    def add(self, text: str) -> None:
        self.parts.append(text)
        print(text, flush=True)

    def table(self, title: str, header: list[str], rows: list[list], note: str = "") -> None:
        lines = [f"## {title}", ""]
        if note:
            lines += [note, ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
        self.add("\n".join(lines) + "\n")

    def text(self) -> str:
        return "\n".join(self.parts)


def fmt(value) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return f"{value:.1e}"
    return str(value)


@dataclass
class Context:
    """What the stages share: sizes, device, report, data."""

    sizes: Sizes
    device: object
    report: Report
    maps: object = None  # [N, 70, 70] m/s on the device: the real CurveFault map first, then real CurveVel_A maps
    seismic: object = None  # real CurveFault seismic [1, 5, 1000, 70] (CPU)
    cpu_reference: object = None  # CPU eager traces of maps[:2]

    @property
    def acq(self):
        from fwi.physics.acquisition import DEFAULT

        return DEFAULT.with_(nt=self.sizes.nt)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], object], device, sizes: Sizes) -> tuple[float, object]:
    """Median wall time of ``sizes.repeats`` calls after ``sizes.warmup`` calls, and the last call's result."""
    for _ in range(sizes.warmup):
        fn()
    times, result = [], None
    for _ in range(sizes.repeats):
        sync(device)
        t0 = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), result


def rel_l2(a, b) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return ((a - b).norm() / b.norm()).item()


def peak_mib(device) -> float:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")


def reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


# ------------------------------------------------------------------------------------------------- stages


def forward_paths(sizes: Sizes) -> list[tuple[str, dict, tuple[int, ...]]]:
    """(name, simulate keyword arguments, batch sizes) of the forward table; the first row is the baseline."""
    import torch

    base = sizes.triton
    every = sizes.forward_batches
    return [
        ("torch eager (baseline)", {"backend": "torch"}, sizes.eager_batches),
        ("torch compiled", {"backend": "torch", "compile": True}, sizes.eager_batches),
        ("triton 1 step/launch", {"backend": "triton",
                                  "triton_options": replace(base, steps_per_launch=1, graphs=False)}, every),
        ("triton 1 step/launch + CUDA graph", {"backend": "triton",
                                               "triton_options": replace(base, steps_per_launch=1)}, every),
        (f"triton default ({base.steps_per_launch} steps/launch + graph)", {"backend": "triton",
                                                                            "triton_options": base}, every),
        ("triton default, float16 wavefield", {"backend": "triton", "triton_options": base,
                                               "wavefield_dtype": torch.float16}, every),
        ("triton default, bfloat16 wavefield", {"backend": "triton", "triton_options": base,
                                                "wavefield_dtype": torch.bfloat16}, every),
    ]


def simulate_fn(ctx: Context, kwargs: dict, batch: int):
    import torch

    from fwi.physics.simulator import simulate

    v = ctx.maps[:batch]

    def run():
        with torch.no_grad():
            return simulate(v, ctx.acq, **kwargs)

    return run


def accuracy(ctx: Context, out) -> tuple[float, float]:
    """Relative L2 of traces ``out`` (sample 0 = the real map) against the real data and the CPU result."""
    n = ctx.acq.nt - 1  # the last sample is zeroed in both
    real = rel_l2(out[:1, :, :n], ctx.seismic[:, :, :n])
    k = min(len(out), len(ctx.cpu_reference))
    cpu = rel_l2(out[:k], ctx.cpu_reference[:k])
    return real, cpu


def stage_forward(ctx: Context) -> None:
    rows, eager = [], {}
    for name, kwargs, batches in forward_paths(ctx.sizes):
        for batch in batches:
            if kwargs.get("compile") and ctx.sizes.compile_backend != "inductor":
                rows.append([name, batch, "skipped (smoke: no inductor)", "", "", ""])
                continue
            t, out = seconds(simulate_fn(ctx, kwargs, batch), ctx.device, ctx.sizes)
            rate = batch / t
            if name.startswith("torch eager"):
                eager[batch] = rate
            real, cpu = accuracy(ctx, out)
            rows.append([name, batch, rate, f"{rate / eager[batch]:.2f}x" if batch in eager else "",
                         real, cpu])
    ctx.report.table(
        "Simulator forward", ["path", "batch", "samples/s", "vs eager", "rel L2 vs real pair", "rel L2 vs CPU"],
        rows, f"`simulate` without gradient, {ctx.acq.nt} steps, {ctx.acq.n_sources} shots; median of "
        f"{ctx.sizes.repeats} runs after {ctx.sizes.warmup} warm-up runs. Real pair: tests/data CurveFault sample 0, "
        f"samples 0..{ctx.acq.nt - 2}. CPU: PyTorch eager on the CPU, first {len(ctx.cpu_reference)} maps.")


def stage_tuning(ctx: Context) -> None:
    import torch

    batch = max(ctx.sizes.forward_batches)
    rows = []
    for opts in ctx.sizes.tuning:
        t, out = seconds(simulate_fn(ctx, {"backend": "triton", "triton_options": opts}, batch), ctx.device, ctx.sizes)
        rows.append([opts.steps_per_launch, f"{opts.region}" if opts.steps_per_launch > 1 else f"{opts.block}",
                     opts.num_warps, opts.chunk or "auto", opts.graphs, batch / t, accuracy(ctx, out)[1]])
    best = max(rows, key=lambda r: r[5])  # samples/s
    ctx.report.table(
        "Triton options", ["steps/launch", "region or block", "warps", "chunk", "graphs", "samples/s",
                           "rel L2 vs CPU"], rows,
        f"Batch {batch}. Fastest: {best[0]} steps/launch, {best[1]}, {best[2]} warps, chunk {best[3]} "
        f"({fmt(best[5])} samples/s); the defaults are `fwi.physics.triton_sim.TritonOptions()`. torch "
        f"{torch.__version__}.")


def stage_gradient(ctx: Context) -> None:
    import torch

    from fwi.physics.simulator import simulate

    paths = [("torch eager (baseline)", {"backend": "torch"}),
             ("torch compiled", {"backend": "torch", "compile": True}),
             ("triton default", {"backend": "triton", "triton_options": ctx.sizes.triton})]
    rows = []
    for batch in ctx.sizes.grad_batches:
        eager_too = batch in ctx.sizes.eager_grad_batches
        v = ctx.maps[:batch]
        weights = torch.randn(batch, ctx.acq.n_sources, ctx.acq.nt, ctx.acq.n_receivers, device=ctx.device,
                              generator=torch.Generator(ctx.device).manual_seed(0))
        reference = reference_rate = None  # the eager row's (first path), if measured at this batch
        for name, kwargs in paths if eager_too else paths[2:]:
            if kwargs.get("compile") and ctx.sizes.compile_backend != "inductor":
                rows.append([name, batch, "skipped (smoke: no inductor)", "", "", ""])
                continue

            def run(kwargs=kwargs, v=v, weights=weights):
                x = v.clone().requires_grad_()
                (simulate(x, ctx.acq, **kwargs) * weights).sum().backward()
                return x.grad

            reset_peak(ctx.device)
            t, grad = seconds(run, ctx.device, ctx.sizes)
            rate = batch / t
            if reference is None:
                reference, reference_rate = grad, rate
            rows.append([name, batch, rate, peak_mib(ctx.device), rel_l2(grad, reference) if eager_too else "",
                         f"{rate / reference_rate:.2f}x" if eager_too else ""])
    ctx.report.table(
        "Simulator forward + gradient", ["path", "batch", "samples/s", "peak MiB", "grad rel L2 vs eager",
                                         "vs eager"], rows,
        f"`simulate(v).mul(w).sum().backward()` with random weights w, {ctx.acq.nt} steps, default checkpointing "
        f"(ceil(sqrt(nt)) segments); median of {ctx.sizes.repeats}; PyTorch rows at batches "
        f"{ctx.sizes.eager_grad_batches} only.")


def load_train_config(path: str, overrides: tuple[str, ...], sizes: Sizes):
    from fwi.config import load_config

    cfg = load_config(ROOT / path, list(overrides))
    extra = sizes.model_overrides.get(cfg.model.name, ())
    return load_config(ROOT / path, [*overrides, *extra]) if extra else cfg


def make_train_step(cfg, device, precision: str, compile: bool, channels_last: bool, compile_backend: str):
    """One optimizer step ``step(seismic, velocity)`` of ``cfg``'s model, as :mod:`fwi.engine` runs it (the forward
    of a :class:`fwi.inference.Predictor`), with fp16 (autocast + GradScaler), bf16 (autocast) or fp32;
    normalization by a unit :class:`Normalizer`."""
    import torch
    from torch import nn

    from fwi.data.normalize import Normalizer
    from fwi.inference import Predictor
    from fwi.losses import VelocityLoss
    from fwi.models import build_model

    model = build_model(cfg.model).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model, backend=compile_backend) if compile else model
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    learner = Predictor(net, Normalizer("global", np.zeros(()), np.ones(())).to(device), amp_dtype=dtype)
    loss_fn = VelocityLoss.from_config(cfg.loss)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def step(seismic, velocity) -> None:
        loss, _ = loss_fn(learner.single_pass(seismic), velocity, seismic, 0)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        if cfg.train.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        scaler.step(optimizer)
        scaler.update()

    return step


def fixed_batch(ctx: Context, batch: int):
    """A training batch of real-looking data: simulated maps would do too, only shapes and values' scale matter."""
    import torch

    g = torch.Generator(ctx.device).manual_seed(0)
    seismic = torch.randn(batch, 5, 1000, 70, device=ctx.device, generator=g)
    velocity = ctx.maps[:batch, None].clone()
    return seismic, velocity


def steps_per_second(step, batches, device, n: int, warmup: int) -> float:
    """Optimizer steps/s over ``n`` steps after ``warmup`` steps, batches drawn from the iterator ``batches``."""
    for _ in range(warmup):
        step(*next(batches))
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        step(*next(batches))
    sync(device)
    return n / (time.perf_counter() - t0)


def stage_training(ctx: Context) -> None:
    import itertools

    from fwi.synth.augment import VelocityAugment
    from fwi.synth.stream import SyntheticStream

    s = ctx.sizes
    rows, fly_rows = [], []
    for path, overrides in TRAIN_CONFIGS:
        cfg = load_train_config(path, overrides, s)
        seismic, velocity = fixed_batch(ctx, s.train_batch)
        own = ("bf16" if cfg.train.amp and ctx.device.type == "cuda" else "fp32", cfg.train.compile,
               cfg.train.channels_last)
        for variant in TRAIN_VARIANTS if own in TRAIN_VARIANTS else (*TRAIN_VARIANTS, own):
            step = make_train_step(cfg, ctx.device, *variant, s.compile_backend)
            rate = steps_per_second(step, itertools.repeat((seismic, velocity)), ctx.device, s.train_steps, s.warmup)
            rows.append([Path(path).stem, *variant, rate, rate * s.train_batch])
            if variant == own:  # the config's own settings, also fed by simulated batches (same compiled step)
                stream = SyntheticStream(cfg.synth.families, s.train_batch, s.train_steps + s.warmup,
                                         device=ctx.device,
                                         velocity_augment=VelocityAugment() if cfg.synth.stream_augment else None)
                simulated = ((seis, vel) for seis, vel, _family in stream)
                fly = steps_per_second(step, simulated, ctx.device, s.train_steps, s.warmup)
                fly_rows.append([Path(path).stem, *variant, rate, fly, f"{100 * fly / rate:.0f}%"])
    baseline = {r[0]: r[4] for r in rows if (r[1], r[2], r[3]) == ("fp32", False, False)}
    for row in rows:
        row.append(f"{row[4] / baseline[row[0]]:.2f}x")
    ctx.report.table(
        "Training step (model only)", ["config", "precision", "compile", "channels_last", "steps/s", "samples/s",
                                       "vs fp32 eager"], rows,
        f"AdamW step of batch {s.train_batch} on a fixed device batch (loss of the config, grad clipping), "
        f"{s.train_steps} timed steps after {s.warmup} warm-up steps.")
    ctx.report.table(
        "Training step: on-the-fly simulated batches vs model only",
        ["config", "precision", "compile", "channels_last", "fixed batch steps/s", "on-the-fly steps/s", "ratio"],
        fly_rows, "Each config's own settings. On-the-fly: `SyntheticStream` draws, augments and simulates every "
        "batch on the device (the next batch on a side stream while the step runs).")


def write_test_files(folder: Path, n: int) -> None:
    """``n`` float16 test files ``<oid>.npy`` of random seismic (the competition's test file format)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(n):
        np.save(folder / f"{i:010x}.npy", rng.standard_normal((5, 1000, 70), dtype=np.float32).astype(np.float16))


def stage_predict(ctx: Context) -> None:
    import torch

    from fwi.checkpoint import make_checkpoint_state, save_checkpoint
    from fwi.data.normalize import Normalizer
    from fwi.engine import resolve_amp
    from fwi.models import build_model
    from fwi.predict import load_ensemble, predict, predict_batch

    s, rows = ctx.sizes, []
    workers = 0 if ctx.device.type == "cpu" else min(8, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        test_dir = Path(tmp) / "test"
        write_test_files(test_dir, s.predict_files)
        for path, overrides in TRAIN_CONFIGS:
            cfg = load_train_config(path, overrides, s)
            ckpt = Path(tmp) / f"{Path(path).stem}.pt"
            save_checkpoint(ckpt, make_checkpoint_state(cfg, build_model(cfg.model), Normalizer(
                "global", np.zeros(()), np.ones(()))))
            t0 = time.perf_counter()
            predict([ckpt], test_dir, ckpt.with_suffix(".csv"), batch_size=s.predict_batch, device=str(ctx.device),
                    workers=workers, tta="flip", progress=False)
            end_to_end = s.predict_files / (time.perf_counter() - t0)
            # predict's defaults: flip TTA, amp_dtype auto (bf16 on an H100)
            members = load_ensemble([ckpt], ctx.device, tta="flip", amp_dtype=resolve_amp(True, "auto", ctx.device))
            seismic = torch.randn(s.predict_batch, 5, 1000, 70, device=ctx.device)
            t, _ = seconds(lambda members=members, seismic=seismic: predict_batch(members, seismic), ctx.device, s)
            model_only = s.predict_batch / t
            rows.append([Path(path).stem, s.predict_files, end_to_end, model_only, f"{end_to_end / model_only:.0%}",
                         65818 / end_to_end / 60])
    ctx.report.table(
        "Predict (flip TTA)", ["config", "test files", "files/s end to end", "files/s model only", "ratio",
                               "minutes for 65,818 files"], rows,
        f"`fwi.predict.predict` on float16 test files (DataLoader with {workers} workers, batch {s.predict_batch}, "
        "bf16 autocast on CUDA, CSV written and validated) vs `predict_batch` on a device batch (baseline).")


def stage_refine(ctx: Context) -> None:
    import torch

    from fwi.config import RefineConfig
    from fwi.physics.refine import refine_map, time_window
    from fwi.physics.simulator import simulate
    from fwi.physics.starts import network_like_start

    s = ctx.sizes
    truth = ctx.maps[: s.refine_maps]
    with torch.no_grad():
        observed = simulate(truth, ctx.acq)
    start = network_like_start(truth.cpu()).to(ctx.device)

    def run():  # what python -m fwi.refine does per map (one map per process)
        return [refine_map(v, obs, max_evals=s.refine_steps, acq=ctx.acq)
                for v, obs in zip(start, observed, strict=True)]

    t, results = seconds(run, ctx.device, s)
    window = time_window(start[0], ctx.acq)

    def grad():
        x = start[:1].clone().requires_grad_()
        simulate(x, ctx.acq.with_(nt=window, zero_last_sample=False), check_range=False).square().sum().backward()

    t_grad, _ = seconds(grad, ctx.device, s)
    evals = sum(r.gradients for r in results)
    default_evals = RefineConfig().max_evals
    per_map = t / len(results) * default_evals / max(evals / len(results), 1)
    ctx.report.table(
        "Refinement", ["maps", "gradients per map", "maps/s", "gradients/s", "fwd+grad/s of one map (baseline)",
                       "ratio", f"hours for 65,818 maps at {default_evals} gradients"],
        [[len(results), evals / len(results), len(results) / t, evals / t, 1 / t_grad,
          f"{evals / t * t_grad:.0%}", 65818 * per_map / 3600]],
        f"`fwi.physics.refine.refine_map` (the per-map function of `python -m fwi.refine`, default backend, "
        f"{ctx.acq.nt}-step records, network-like starts) one map at a time vs one simulator forward + gradient of "
        f"one map over the first start's window ({window} steps); the projection scales the time per map to "
        "refine.max_evals gradients and assumes one process per GPU (fwi.refine's workers run maps in parallel).")


STAGES: dict[str, Callable[[Context], None]] = {
    "forward": stage_forward, "tuning": stage_tuning, "gradient": stage_gradient, "training": stage_training,
    "predict": stage_predict, "refine": stage_refine,
}


# --------------------------------------------------------------------------------------------------- main


def header(ctx: Context, argv: list[str], smoke: bool) -> str:
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from simulator import cpu_name  # benchmarks/simulator.py

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    device = torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else f"CPU ({cpu_name()})"
    lines = [
        "# GPU report" + (" (smoke run: toy sizes on the CPU, numbers mean nothing)" if smoke else ""), "",
        f"- command: `python benchmarks/gpu_report.py {' '.join(argv)}`".rstrip() + "",
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- device: {device}" + (f", {torch.cuda.get_device_properties(ctx.device).L2_cache_size / 2**20:.0f} MiB L2"
                                 if ctx.device.type == "cuda" else ""),
        f"- torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
        f"triton {triton_version}, Python {platform.python_version()}, {os.cpu_count()} CPUs "
        f"({cpu_name()}), torch threads {torch.get_num_threads()}",
        "",
    ]
    return "\n".join(lines)


def load_data(ctx: Context) -> None:
    import torch

    from fwi.physics.simulator import simulate

    real_vel = torch.from_numpy(np.load(DATA / "curvefault_sample0_vel.npy"))[:, 0]  # [1, 70, 70]
    others = torch.from_numpy(np.load(DATA / "velocity_CurveVelA.npz")["velocity"][:, 0])  # [500, 70, 70]
    n = max(*ctx.sizes.forward_batches, *ctx.sizes.grad_batches, ctx.sizes.train_batch, ctx.sizes.refine_maps)
    ctx.maps = torch.cat([real_vel, others[: n - 1]]).to(ctx.device)
    ctx.seismic = torch.from_numpy(np.load(DATA / "curvefault_sample0_seis.npy"))
    with torch.no_grad():
        ctx.cpu_reference = simulate(ctx.maps[:2].cpu(), ctx.acq, backend="torch")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="every stage on the CPU at toy sizes (CI)")
    p.add_argument("--out", type=Path, help="also write the Markdown report to this file")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    args = p.parse_args(argv)
    args.stages = args.stages.split(",")
    unknown = [s for s in args.stages if s not in STAGES]
    if unknown:
        p.error(f"unknown stages {unknown}; valid: {', '.join(STAGES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.smoke:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton kernels on the CPU; before they are defined
    import torch

    from fwi.physics import triton_sim

    if args.smoke:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print("error: no CUDA device (use --smoke for the CPU run)", file=sys.stderr)
        return 1
    if not triton_sim.available():
        print("error: the triton package is not installed (pip install triton)", file=sys.stderr)
        return 1
    started = time.perf_counter()
    ctx = Context(sizes=smoke_sizes() if args.smoke else gpu_sizes(), device=device, report=Report())
    ctx.report.add(header(ctx, argv, args.smoke))
    load_data(ctx)
    failed = []
    for name in args.stages:
        t0 = time.perf_counter()
        try:
            STAGES[name](ctx)
        except Exception:
            if args.smoke:
                raise
            failed.append(name)  # a GPU session keeps the other stages' numbers
            ctx.report.add(f"## {name}: FAILED\n\n```\n{traceback.format_exc()}```\n")
        ctx.report.add(f"_{name}: {time.perf_counter() - t0:.0f} s_\n")
    ctx.report.add(f"Total {time.perf_counter() - started:.0f} s." + (f" Failed stages: {failed}." if failed else ""))
    if args.out:
        from fwi.io import save_text

        save_text(args.out, ctx.report.text())
        print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
