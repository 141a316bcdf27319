"""Import timm where torchvision's compiled ops cannot load.

The PyPI torchvision wheels are linked against the CUDA build of torch; next to a CPU-only torch build
(as on CI) their C++ ops fail to load, and torchvision's import then dies registering fake kernels
for ``torchvision::nms``/``qnms``. timm only needs torchvision's Python parts, so we declare those two
op schemas (never called) and import again. With a matching torch/torchvision pair nothing is changed.
"""

from __future__ import annotations

import sys
from types import ModuleType

_MISSING_OPS = ("nms", "qnms")


def import_timm() -> ModuleType:
    """``import timm``, working around a torchvision build that does not match the installed torch."""
    try:
        import timm
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
        import torch

        for name in list(sys.modules):
            if name.split(".")[0] in ("torchvision", "timm"):
                del sys.modules[name]
        for op in _MISSING_OPS:
            if not torch._C._dispatch_has_kernel(f"torchvision::{op}"):
                try:
                    torch.library.define(f"torchvision::{op}",
                                         "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
                except RuntimeError:
                    pass  # already defined by an earlier attempt
        import timm
    return timm
