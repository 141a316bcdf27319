"""Capacity probe: how low does each model config drive the training MAE on 8 real CurveVel_A maps?

    python benchmarks/overfit.py [--steps 150] [--lr 1e-3] [--maps 8] [--only NAME,NAME] [--cache-dir cache/real]

Seismic comes from the exact simulator (``fwi.synth.writer.write_from_velocity``, cached in ``--cache-dir``).
Every probe trains from the same seed for the same number of full-batch AdamW steps (cosine schedule, L1 on the
unit velocity scale, pixel normalization of the 8 samples) and reports the training MAE in m/s (eval mode) at
a quarter, half and all of the steps. The timm configs run with a small encoder for CPU speed and a small
decoder (the same for all); the baseline is today's 72x18 head rebuilt on the same encoder and decoder
(seismic resized to 288x72, the decoder ending at the stride-4 map, 72x18, stretched bilinearly to 70x70), so
old and new differ only in their geometry.

First it prints the architectural floor: the MAE of the 1,500 real maps in tests/data resized (bilinear) to
each output grid and back to 70x70, the error a head on that grid makes even when everything before it is exact.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fwi.config import load_config
from fwi.data.normalize import Normalizer, accumulate_stats
from fwi.inference import Predictor
from fwi.models import build_model
from fwi.models.registry import count_parameters, to_velocity
from fwi.models.timm_unet import TimmUNet
from fwi.physics.acquisition import NX, NZ, velocity_to_unit
from fwi.train import make_scheduler

sys.path.insert(0, str(Path(__file__).parent))
from accuracy import FAMILY_FILES, ROOT, simulate_real  # noqa: E402

SMALL_DECODER = "model.decoder_channels=[64, 32, 16, 16]"


class OldHead(TimmUNet):
    """The timm U-Net before full resolution: seismic resized to 288x72, stock encoder stem, decoder ending at the
    first feature map (72x18 for a stride-4 stem), stretched bilinearly to 70x70, then the 3x3 head."""

    def __init__(self, encoder: str, decoder_channels: tuple[int, ...]):
        super().__init__(encoder, "resize", decoder_channels)

    def forward(self, seismic: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(seismic, size=(288, 72), mode="bilinear", antialias=True, align_corners=False)
        y = self.decoder(self.encoder(x))  # [B, C, 72, 18]
        y = F.interpolate(y, size=(NZ, NX), mode="bilinear", align_corners=False)
        return to_velocity(self.head(y))


# (label, config, overrides, output grid, model class: None = the registry's)
PROBES = [
    ("timm_unet as it was (72x18 head)", "convnext_unet", ["model.encoder=convnext_atto", SMALL_DECODER],
     "72x18 -> 70x70", OldHead),
    ("convnext_unet.yaml", "convnext_unet", ["model.encoder=convnext_atto", SMALL_DECODER], "72x72 crop", None),
    ("convnext_unet.yaml layout=shots_square", "convnext_unet",
     ["model.encoder=convnext_atto", "model.layout=shots_square", SMALL_DECODER], "72x72 crop", None),
    ("convnext_unet.yaml layout=resize", "convnext_unet",
     ["model.encoder=convnext_atto", "model.layout=resize", SMALL_DECODER], "72x72 crop", None),
    ("caformer_unet.yaml", "caformer_unet", ["model.encoder=edgenext_xx_small", SMALL_DECODER], "72x72 crop", None),
    ("inversionnet.yaml", "inversionnet", ["model.width=8"], "80x80 crop", None),
    ("quickstart.yaml", "quickstart", [], "80x80 crop", None),
]


def resize_floor() -> list[tuple[str, dict[str, float]]]:
    """MAE (m/s) per family of real maps resized (bilinear) to a grid and back to 70x70."""
    grids = [("72x18 (convnext_unet.yaml before: 288x72 input, stride 4)", (72, 18)),
             ("128x36 (timm_unet default before: 256x72 input, stride 2)", (128, 36)),
             ("72x72 resized instead of cropped", (72, 72))]
    data = ROOT / "tests" / "data"
    maps = {f: torch.from_numpy(np.load(data / name)["velocity"]).double() for f, name in FAMILY_FILES.items()}
    rows = []
    for label, size in grids:
        errs = {}
        for family, v in maps.items():
            back = F.interpolate(F.interpolate(v, size=size, mode="bilinear", align_corners=False), size=(NZ, NX),
                                 mode="bilinear", align_corners=False)
            errs[family] = float((back - v).abs().mean())
        rows.append((label, errs))
    rows.append(("72x72 or 80x80 cropped (every head now)", dict.fromkeys(maps, 0.0)))
    return rows


def probe_data(n: int, cache_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` real CurveVel_A maps ``[n, 1, 70, 70]`` and their simulated seismic ``[n, 5, 1000, 70]``."""
    family = simulate_real("CurveVel_A", n, cache_dir, device="cpu")
    return (torch.from_numpy(np.load(family / "model" / "model1.npy")),
            torch.from_numpy(np.load(family / "data" / "data1.npy")))


def train_probe(learner: Predictor, cfg, seismic: torch.Tensor, velocity: torch.Tensor, steps: int,
                checkpoints: list[int]) -> tuple[list[float], float]:
    """Full-batch AdamW steps of ``learner``'s network on raw ``seismic``; training MAE (m/s, eval mode) after each
    step in ``checkpoints``; s/step."""
    model = learner.model
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=0.0)
    sched = make_scheduler(opt, cfg.train, steps)
    maes, t0 = [], time.monotonic()
    for step in range(1, steps + 1):
        learner.train()
        loss = F.l1_loss(velocity_to_unit(learner.single_pass(seismic)), velocity_to_unit(velocity))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step in checkpoints:
            maes.append(float((learner.eval()(seismic) - velocity).abs().mean()))
    return maes, (time.monotonic() - t0) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps per probe (full batch)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (cosine, 5%% warmup)")
    parser.add_argument("--maps", type=int, default=8, help="real CurveVel_A maps to overfit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default=None, help="comma-separated probe labels to run (default: all)")
    parser.add_argument("--cache-dir", type=Path, default=Path("cache/real"))
    args = parser.parse_args()

    floor = resize_floor()
    print("Architectural floor: MAE (m/s) of the real maps in tests/data resized to the head's grid and back\n")
    print("| output grid | " + " | ".join(FAMILY_FILES) + " |\n|---|" + "---|" * len(FAMILY_FILES))
    for label, errs in floor:
        print(f"| {label} | " + " | ".join(f"{errs[f]:.1f}" for f in FAMILY_FILES) + " |")

    velocity, seismic = probe_data(args.maps, args.cache_dir)
    normalizer = Normalizer.from_stats("pixel", accumulate_stats([seismic.numpy()]))
    checkpoints = sorted({max(1, args.steps // 4), max(1, args.steps // 2), args.steps})
    only = set(args.only.split(",")) if args.only else None
    print(f"\nTraining MAE (m/s) on {args.maps} real CurveVel_A maps after "
          f"{' / '.join(map(str, checkpoints))} full-batch steps (lr {args.lr:g}, seed {args.seed}); "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)\n")
    print("| config | model | output grid | parameters | " + " | ".join(f"MAE @{c}" for c in checkpoints)
          + " | s/step |\n|---|---|---|---|" + "---|" * len(checkpoints) + "---|")
    for label, name, overrides, grid, cls in PROBES:
        if only is not None and label not in only:
            continue
        cfg = load_config(ROOT / "configs" / f"{name}.yaml",
                          [*overrides, f"train.lr={args.lr}", "train.schedule=cosine", "train.warmup_fraction=0.05"])
        torch.manual_seed(args.seed)
        m = cfg.model
        model = cls(m.encoder, tuple(m.decoder_channels)) if cls else build_model(m)
        layout = "288x72 resize" if cls is OldHead else getattr(m, "layout", "")
        what = f"{m.encoder}, {layout}" if m.name == "timm_unet" else f"inversionnet width {m.width}"
        maes, per_step = train_probe(Predictor(model, normalizer), cfg, seismic, velocity, args.steps, checkpoints)
        print(f"| {label} | {what} | {grid} | {count_parameters(model) / 1e6:.1f} M | "
              + " | ".join(f"{v:.1f}" for v in maes) + f" | {per_step:.2f} |", flush=True)


if __name__ == "__main__":
    main()
