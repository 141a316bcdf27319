"""Throughput of the PyTorch simulator path: samples/s, forward and forward+gradient, eager vs compiled step.

    python benchmarks/simulator.py                          # CPU defaults: batches 1,2, ~2-3 minutes
    python benchmarks/simulator.py --device cuda --batch-sizes 1,4,16,64

Each cell is the best of ``--repeats`` timed runs after one short warm-up run (which also pays for
``torch.compile``). The eager time step is the baseline; ``compiled`` is ``simulate(..., compile=True)``
and its ratio is against eager in the same run. Velocities are real OpenFWI maps from ``tests/data``.
Both columns are ``backend="torch"``; the GPU's Triton backend is measured by ``benchmarks/gpu_report.py``.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from fwi.physics.acquisition import DEFAULT
from fwi.physics.simulator import simulate

MAPS = Path(__file__).parents[1] / "tests" / "data" / "velocity_CurveVelA.npz"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch-sizes", default=None, help="comma-separated; default 1,2 on CPU, 1,4,16,64 on CUDA")
    p.add_argument("--nt", type=int, default=DEFAULT.nt, help="time steps per simulation (default 1000)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per cell; default 2 on CPU, 5 on CUDA")
    p.add_argument("--no-compile", action="store_true", help="only the eager baseline")
    args = p.parse_args(argv)
    cpu = args.device == "cpu"
    args.batch_sizes = [int(b) for b in (args.batch_sizes or ("1,2" if cpu else "1,4,16,64")).split(",")]
    args.repeats = args.repeats or (2 if cpu else 5)
    return args


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def timed(fn, args: tuple, repeats: int, device: torch.device) -> tuple[float, torch.Tensor]:
    """Best wall time of ``repeats`` calls of ``fn(*args)``, seconds, and the last call's result."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        result = fn(*args)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return min(times), result


def forward(v: torch.Tensor, acq, compile: bool) -> torch.Tensor:
    with torch.no_grad():
        return simulate(v, acq, compile=compile, backend="torch")


def forward_backward(v: torch.Tensor, acq, compile: bool) -> torch.Tensor:
    x = v.clone().requires_grad_()
    simulate(x, acq, compile=compile, backend="torch").square().sum().backward()
    return x.grad


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    acq = DEFAULT.with_(nt=args.nt)
    warm = DEFAULT.with_(nt=min(args.nt, 20))
    maps = torch.from_numpy(np.load(MAPS)["velocity"][:, 0]).to(device)  # [500, 70, 70], m/s
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    print(f"device: {device.type} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"grid {acq.padded_shape}, {acq.n_sources} shots, nt {acq.nt}; best of {args.repeats} runs\n")

    modes = [("forward", forward), ("fwd+grad", forward_backward)]
    paths = [False] if args.no_compile else [False, True]
    header = f"{'batch':>5} {'mode':>9} {'eager samples/s':>16}"
    if not args.no_compile:
        header += f" {'compiled samples/s':>19} {'ratio':>6} {'max rel diff':>13}"
    if device.type == "cuda":
        header += f" {'peak MiB':>9}"  # of the eager path
    print(header)
    for batch in args.batch_sizes:
        v = maps[:batch]
        for mode, fn in modes:
            rates, results, peaks = [], [], []
            for compile in paths:
                fn(v, warm, compile)  # warm-up: compilation, allocator, first touch of memory
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                seconds, result = timed(fn, (v, acq, compile), args.repeats, device)
                rates.append(batch / seconds)
                results.append(result)
                if device.type == "cuda":
                    peaks.append(torch.cuda.max_memory_allocated(device) / 2**20)
            row = f"{batch:>5} {mode:>9} {rates[0]:>16.2f}"
            if not args.no_compile:
                diff = ((results[-1] - results[0]).abs().max() / results[0].abs().max()).item()
                row += f" {rates[1]:>19.2f} {rates[1] / rates[0]:>5.2f}x {diff:>13.1e}"
            if device.type == "cuda":
                row += f" {peaks[0]:>9.0f}"  # eager
            print(row, flush=True)


if __name__ == "__main__":
    main()
