"""``python -m fwi.export CKPT --out slim.pt``: a small, inference-only copy of a training checkpoint.

It keeps what prediction needs: the resolved config, one set of weights (the EMA's when the checkpoint has
them, as ``fwi.predict`` would use), the normalization buffers and the family names. It drops the raw
weights next to the EMA ones, the optimizer state (AdamW keeps two moments per weight), the scheduler and
the history, so it is about a quarter of a training checkpoint with EMA. It is an ordinary fwi checkpoint
(weights-only ``torch.save``): ``python -m fwi.predict --checkpoint slim.pt`` loads it like any other and
predicts exactly what the training checkpoint predicts. It is what goes into a Kaggle dataset for the offline
notebook (docs/kaggle.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fwi.checkpoint import load_checkpoint, restore_model, save_checkpoint
from fwi.cli import main_guard
from fwi.errors import FwiError


def slim_state(state: dict[str, Any], *, use_ema: bool = True) -> dict[str, Any]:
    """The inference-only part of a checkpoint ``state`` (see the module docstring)."""
    ema = use_ema and state.get("ema") is not None
    return {"config": state["config"], "model": state["ema"] if ema else state["model"], "ema": None,
            "normalizer_mode": state["normalizer_mode"], "normalizer": state["normalizer"],
            "family_names": state.get("family_names"),
            "exported": {"weights": "ema" if ema else "raw", "epoch": state.get("epoch"), "best": state.get("best")}}


def export(checkpoint: str | Path, out: str | Path, *, use_ema: bool = True, force: bool = False) -> Path:
    """Write the slim copy of ``checkpoint`` to ``out`` (atomically; an existing ``out`` needs ``force``)."""
    checkpoint, out = Path(checkpoint), Path(out)
    if out.is_dir():
        raise FwiError(f"--out {out} is a directory: give the file to write, e.g. {out / 'slim.pt'}")
    if out.exists() and not force:
        raise FwiError(f"{out} exists: pass --force to overwrite it")
    slim = slim_state(load_checkpoint(checkpoint), use_ema=use_ema)
    restore_model(slim, source=checkpoint)  # the weights fit the config: a broken export fails here, not on Kaggle
    save_checkpoint(out, slim)
    return out


@main_guard
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fwi.export", description="Write a small inference-only copy "
                                     "of a checkpoint (config, EMA weights, normalization) for fwi.predict.")
    parser.add_argument("checkpoint", type=Path, metavar="CKPT", help="training checkpoint (runs/<name>/best.pt)")
    parser.add_argument("--out", type=Path, metavar="FILE", required=True, help="slim checkpoint to write")
    parser.add_argument("--raw", action="store_true", help="keep the raw weights instead of the EMA ones")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    args = parser.parse_args(argv)
    out = export(args.checkpoint, args.out, use_ema=not args.raw, force=args.force)
    before, after = args.checkpoint.stat().st_size, out.stat().st_size
    print(f"{out}: {after / 2**20:.1f} MiB ({after / before:.0%} of {args.checkpoint}, {before / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
