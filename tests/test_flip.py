"""One survey flip (fwi.flip) for training augmentation, flip TTA and synthetic maps: all three agree with an
index-by-index reference."""

from types import SimpleNamespace

import numpy as np
import torch

from fwi.data.augment import apply_augment, build_augment
from fwi.data.normalize import Normalizer
from fwi.flip import flip_seismic, flip_velocity
from fwi.inference import Predictor
from fwi.synth.augment import VelocityAugment, augment

FLIP_ONLY = SimpleNamespace(flip_p=1.0, noise_p=0, noise_std=0, scale_p=0, scale_max=1, dropout_p=0,
                            dropout_fraction=0)
T = 40  # time steps: the flip never touches the time axis, any length shows it


def reference_seismic(x: np.ndarray) -> np.ndarray:
    """Mirrored survey of ``[B, 5, T, 70]``, written out: shot s -> 4 - s, receiver r -> 69 - r."""
    out = np.empty_like(x)
    for s in range(5):
        for r in range(70):
            out[:, 4 - s, :, 69 - r] = x[:, s, :, r]
    return out


def reference_velocity(v: np.ndarray) -> np.ndarray:
    """Mirrored ``[B, 70, 70]`` maps, written out: column x -> 69 - x."""
    out = np.empty_like(v)
    for x in range(70):
        out[:, :, 69 - x] = v[:, :, x]
    return out


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((2, 5, T, 70)).astype(np.float32),
            rng.uniform(1500, 4500, (2, 70, 70)).astype(np.float32))


def test_the_helper_flips_numpy_and_torch_like_the_reference_and_is_its_own_inverse():
    x, v = data()
    for flip, ref, a in ((flip_seismic, reference_seismic, x), (flip_velocity, reference_velocity, v)):
        np.testing.assert_array_equal(flip(a), ref(a))
        np.testing.assert_array_equal(flip(torch.from_numpy(a)).numpy(), ref(a))
        np.testing.assert_array_equal(flip(flip(a)), a)


def test_augmentation_tta_and_synthetic_maps_flip_alike():
    x, v = data()
    # Training augmentation (albumentations, [T, R, S] inside): seismic and its map.
    fs, fv = apply_augment(build_augment(FLIP_ONLY), x[0], v[:1], seed=0)
    np.testing.assert_array_equal(fs, reference_seismic(x)[0])
    np.testing.assert_array_equal(fv, reference_velocity(v)[:1])
    # Synthetic maps: the op and the composed augmentation with only the flip on.
    maps = torch.from_numpy(v)
    only_flip = VelocityAugment(p_blend=0, p_elastic=0, p_affine=0, p_stretch=0, p_scale=0, p_flip=1)
    np.testing.assert_array_equal(flip_velocity(maps).numpy(), reference_velocity(v))
    np.testing.assert_array_equal(augment(maps, torch.Generator().manual_seed(0), only_flip).numpy(),
                                  reference_velocity(v))

    # Flip TTA: the network sees the mirrored survey and its output is mirrored back.
    class Probe(torch.nn.Module):
        """Records its inputs; its output map depends on the input asymmetrically."""

        def __init__(self):
            super().__init__()
            self.seen = []

        def forward(self, s: torch.Tensor) -> torch.Tensor:
            self.seen.append(s.clone())
            m = s[:, 0, :1, :] * torch.arange(1.0, 71.0) + s[:, 1:, :35, :].sum(dim=(1, 2))[:, None]  # [B, 1, 70]
            return 3000 + 10 * m[:, :, None, :].expand(-1, 1, 70, 70)

    probe = Probe()
    identity = Normalizer("global", np.zeros(()), np.ones(()))
    pred = Predictor(probe, identity, tta="flip")(torch.from_numpy(x))
    direct, mirrored = probe.seen
    np.testing.assert_array_equal(direct.numpy(), x)
    np.testing.assert_array_equal(mirrored.numpy(), reference_seismic(x))
    with torch.no_grad():
        expected = (probe(torch.from_numpy(x))[:, 0].numpy()
                    + reference_velocity(probe(torch.from_numpy(reference_seismic(x)))[:, 0].numpy())) / 2
    np.testing.assert_allclose(pred[:, 0].numpy(), np.clip(expected, 1500, 4500), rtol=0, atol=1e-3)
    assert np.abs(expected - probe(torch.from_numpy(x))[:, 0].detach().numpy()).max() > 10  # TTA really mixes
