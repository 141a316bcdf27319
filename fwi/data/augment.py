"""Seismic-aware training augmentation, built on albumentations.

A sample goes through albumentations as an image ``[1000, 70, 5]`` (H = time step, W = receiver,
C = source) with the velocity map ``[70, 70]`` (depth, x) as its mask:

* :class:`SeismicFlip` mirrors the survey left-right (:mod:`fwi.flip`, shared with the flip TTA and the synthetic
  maps): receivers reversed, source order reversed and the velocity map flipped. Exact only up to the middle
  source sitting at x = 34, not 34.5 (docs/physics.md).
* :class:`TraceNoise` adds Gaussian noise scaled to each trace's RMS amplitude.
* :class:`AmplitudeScale` multiplies a whole sample by a log-uniform factor.
* :class:`TraceDropout` zeroes a random fraction of traces (dead receivers).

Each item is augmented with a generator seeded by ``(seed, epoch, index)``, so a run is reproducible and a
resumed run sees exactly the samples an uninterrupted one would.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from fwi.flip import flip_seismic, flip_velocity


class SeismicFlip(A.DualTransform):
    """Left-right survey flip (:mod:`fwi.flip`): image ``[T, R, S]`` -> receivers and sources reversed; mask
    ``[Z, X]`` -> x reversed."""

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return np.ascontiguousarray(flip_seismic(img.transpose(2, 0, 1)).transpose(1, 2, 0))  # via [S, T, R]

    def apply_to_mask(self, mask: np.ndarray, **params: Any) -> np.ndarray:
        return np.ascontiguousarray(flip_velocity(mask))


class TraceNoise(A.ImageOnlyTransform):
    """Additive Gaussian noise with std = ``std`` x the RMS of each trace (one receiver of one shot)."""

    def __init__(self, std: float = 0.02, p: float = 0.5):
        super().__init__(p=p)
        self.std = std

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        rms = np.sqrt((img.astype(np.float64) ** 2).mean(axis=0, keepdims=True)).astype(np.float32)  # [1, R, S]
        noise = self.random_generator.standard_normal(img.shape, dtype=np.float32)
        return img + noise * (self.std * rms)


class AmplitudeScale(A.ImageOnlyTransform):
    """Multiply the sample by a factor drawn log-uniformly from ``[1 / max_factor, max_factor]``."""

    def __init__(self, max_factor: float = 1.2, p: float = 0.5):
        super().__init__(p=p)
        self.max_factor = max_factor

    def get_params(self) -> dict[str, Any]:
        log_max = float(np.log(self.max_factor))
        return {"factor": float(np.exp(self.py_random.uniform(-log_max, log_max)))}

    def apply(self, img: np.ndarray, factor: float = 1.0, **params: Any) -> np.ndarray:
        return img * np.float32(factor)


class TraceDropout(A.ImageOnlyTransform):
    """Zero each trace (receiver x source) independently with probability ``fraction``."""

    def __init__(self, fraction: float = 0.05, p: float = 0.5):
        super().__init__(p=p)
        self.fraction = fraction

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        keep = self.random_generator.random((1, *img.shape[1:])) >= self.fraction  # [1, R, S]
        return img * keep.astype(np.float32)


def build_augment(cfg) -> A.Compose | None:
    """The albumentations pipeline for an ``AugmentConfig``; ``None`` when every probability is 0."""
    steps = [
        SeismicFlip(p=cfg.flip_p),
        AmplitudeScale(cfg.scale_max, p=cfg.scale_p),
        TraceNoise(cfg.noise_std, p=cfg.noise_p),
        TraceDropout(cfg.dropout_fraction, p=cfg.dropout_p),
    ]
    steps = [t for t in steps if t.p > 0]
    # The mask (70 x 70 velocity) and the image (1000 x 70 seismic) differ in height by design.
    return A.Compose(steps, is_check_shapes=False) if steps else None


def apply_augment(transform: A.Compose, seismic: np.ndarray, velocity: np.ndarray,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Augment one sample, seismic ``[S, T, R]`` and velocity ``[1, Z, X]``, with generator seed ``seed``."""
    transform.set_random_seed(seed)
    out = transform(image=np.ascontiguousarray(seismic.transpose(1, 2, 0)), mask=velocity[0])
    return np.ascontiguousarray(out["image"].transpose(2, 0, 1)), np.ascontiguousarray(out["mask"][None])


class AugmentedDataset(Dataset):
    """Wrap a dataset of ``(seismic, velocity, family_id)`` items with seeded per-item augmentation.

    Call :meth:`set_epoch` before each epoch: item ``i`` of epoch ``e`` is augmented with seed
    ``hash(seed, e, i)``, independent of worker count and order.
    """

    def __init__(self, base: Dataset, transform: A.Compose, seed: int):
        self.base, self.transform, self.seed, self.epoch = base, transform, seed, 0
        self.family_names = getattr(base, "family_names", None)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        seismic, velocity, family = self.base[i]
        item_seed = int(np.random.SeedSequence([self.seed, self.epoch, i]).generate_state(1)[0])
        s, v = apply_augment(self.transform, seismic.numpy(), velocity.numpy(), item_seed)
        return torch.from_numpy(s), torch.from_numpy(v), family
