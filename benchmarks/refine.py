"""Does test-time physics refinement (``fwi.physics.refine``) lower the MAE? A synthetic holdout.

    OMP_NUM_THREADS=2 python benchmarks/refine.py                  # CPU defaults: 4 families x 2 samples
    python benchmarks/refine.py --device cuda --samples 16 refine.steps=100 refine.misfit_nt=null
    python benchmarks/refine.py --checkpoint runs/x/best.pt        # start from a real model's prediction

For each family, true maps come from ``fwi.synth.families.generate`` (seed ``--seed``) and the observed
seismic is their exact simulation. The starting guess emulates a network prediction: the true map blurred
by a Gaussian of ``--blur`` px (default 2) plus a smooth random perturbation (a 4 x 4 grid of N(0, 1)
values, bicubically upsampled to 70 x 70, scaled to ``--perturb`` m/s rms, default 30), clipped to
[VMIN, VMAX]; or, with ``--checkpoint``, the checkpoint's prediction of the observed seismic. Refinement
uses the ``refine.*`` config values (defaults, ``--config FILE`` and ``refine.key=value`` overrides;
``steps=0`` here means the benchmark's own default of 10).

Prints one row per family: competition MAE (odd columns, m/s) before and after, the mean normalized L2
misfit before and after (over the compared window), seconds per sample, and the device.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from fwi.config import load_config
from fwi.metrics import competition_mae
from fwi.physics.acquisition import DEFAULT, VMAX, VMIN
from fwi.physics.refine import refine
from fwi.physics.simulator import simulate
from fwi.synth.families import generate

FAMILIES = "FlatVel_A,CurveVel_A,FlatFault_A,Style_A"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", default=FAMILIES, help=f"comma-separated (default {FAMILIES})")
    p.add_argument("--samples", type=int, default=2, help="maps per family (default 2)")
    p.add_argument("--seed", type=int, default=123, help="seed of the true maps and perturbations")
    p.add_argument("--blur", type=float, default=2.0, help="Gaussian blur of the starting guess, px")
    p.add_argument("--perturb", type=float, default=30.0, help="rms of the smooth perturbation, m/s")
    p.add_argument("--checkpoint", action="append", help="start from this checkpoint's prediction (repeat: ensemble)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=2, help="maps refined together")
    p.add_argument("--config", help="YAML config whose refine section to use")
    p.add_argument("overrides", nargs="*", metavar="refine.key=value")
    return p.parse_args(argv)


def gaussian_blur(v: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[B, H, W]`` maps, edge-replicated, radius ``3 sigma``."""
    if sigma <= 0:
        return v
    r = max(1, round(3 * sigma))
    x = torch.arange(-r, r + 1, dtype=v.dtype, device=v.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    y = F.pad(v[:, None], (r, r, r, r), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    return y[:, 0]


def degraded(true: torch.Tensor, blur: float, perturb: float, seed: int) -> torch.Tensor:
    """The emulated network prediction of ``true`` ``[B, 70, 70]`` (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(true.shape[0], 1, 4, 4, generator=g).to(true.device)
    smooth = F.interpolate(coarse, size=true.shape[-2:], mode="bicubic", align_corners=True)[:, 0]
    smooth = smooth / smooth.pow(2).mean(dim=(1, 2), keepdim=True).sqrt().clamp_min(1e-12)
    return (gaussian_blur(true, blur) + perturb * smooth).clamp(VMIN, VMAX)


def network_guess(checkpoints: list[str], seismic: torch.Tensor, device: torch.device) -> torch.Tensor:
    from fwi.predict import load_ensemble, predict_batch

    return predict_batch(load_ensemble(checkpoints, device), seismic)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides).refine
    steps = cfg.steps or 10
    device = torch.device(args.device)
    start = "checkpoint" if args.checkpoint else f"blur {args.blur} px + {args.perturb} m/s smooth"
    print(f"refine: steps={steps} lr={cfg.lr} tv_weight={cfg.tv_weight} prior={cfg.prior} "
          f"misfit_nt={cfg.misfit_nt}; start={start}; {args.samples} samples/family; "
          f"threads={torch.get_num_threads()}")
    header = (f"{'family':<14}{'MAE before':>11}{'MAE after':>10}{'misfit before':>15}{'misfit after':>13}"
              f"{'s/sample':>10}  device")
    print(header)
    print("-" * len(header))
    totals = [0.0, 0.0]
    for fi, family in enumerate(args.families.split(",")):
        true = generate(family, args.samples, seed=args.seed + fi).to(device)
        with torch.no_grad():
            observed = simulate(true, DEFAULT)
        if args.checkpoint:
            v0 = network_guess(args.checkpoint, observed, device)
        else:
            v0 = degraded(true, args.blur, args.perturb, seed=args.seed + 1000 + fi)
        refined, before, after = [], [], []
        t0 = time.perf_counter()
        for i in range(0, args.samples, args.batch_size):
            sl = slice(i, i + args.batch_size)
            v, hist = refine(v0[sl], observed[sl], steps=steps, lr=cfg.lr, tv_weight=cfg.tv_weight,
                             prior=cfg.prior, misfit_nt=cfg.misfit_nt)
            refined.append(v)
            before.append(hist["misfit"][0])
            after.append(hist["misfit"][hist["best_step"], torch.arange(v.shape[0])])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = (time.perf_counter() - t0) / args.samples
        v = torch.cat(refined)
        mae0, mae1 = competition_mae(v0, true), competition_mae(v, true)
        totals[0] += mae0
        totals[1] += mae1
        m0, m1 = float(torch.cat(before).mean()), float(torch.cat(after).mean())
        print(f"{family:<14}{mae0:>11.2f}{mae1:>10.2f}{m0:>15.4f}{m1:>13.4f}{seconds:>10.1f}  {device}", flush=True)
    n = len(args.families.split(","))
    print(f"{'mean':<14}{totals[0] / n:>11.2f}{totals[1] / n:>10.2f}")


if __name__ == "__main__":
    main()
