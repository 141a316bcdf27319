"""Velocity-space augmentations keep maps valid and do what they say."""

from __future__ import annotations

import pytest
import torch

from fwi.flip import flip_velocity
from fwi.physics.acquisition import NX, NZ, VMAX, VMIN
from fwi.synth.augment import (
    STRONG,
    VelocityAugment,
    affine_warp,
    augment,
    blend,
    elastic_warp,
    scale_velocity,
    vertical_stretch,
)
from fwi.synth.families import generate


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    """Layered, faulted and textured maps plus the range extremes: ``[16, 70, 70]`` m/s."""
    parts = [generate(f, 3, 0) for f in ("FlatVel_A", "CurveVel_B", "FlatFault_A", "Style_B")]
    extremes = torch.stack([torch.full((NZ, NX), VMIN), torch.full((NZ, NX), VMAX)])
    ramp = torch.linspace(VMIN, VMAX, NX).expand(2, NZ, NX)
    return torch.cat([*parts, extremes, ramp])


def assert_valid(out: torch.Tensor, like: torch.Tensor) -> None:
    assert out.shape == like.shape and out.dtype == like.dtype
    assert torch.isfinite(out).all()
    assert out.min() >= VMIN and out.max() <= VMAX


ALL = VelocityAugment(
    p_blend=1,
    max_blend=1,
    p_elastic=1,
    elastic_alpha_px=4,
    p_affine=1,
    max_rotate_deg=10,
    p_stretch=1,
    max_stretch=0.3,
    p_scale=1,
    max_scale=0.2,
    p_flip=1,
)
"""Every op on every map, strong."""

OPS = {
    "flip_velocity": lambda x, g: flip_velocity(x),
    "affine": lambda x, g: affine_warp(x, g, max_rotate_deg=15, max_shear=0.2, max_translate_px=20),
    "affine_nearest": lambda x, g: affine_warp(x, g, 10, 0.1, 5, mode="nearest"),
    "elastic": lambda x, g: elastic_warp(x, g, alpha_px=4, sigma_px=8),
    "stretch": lambda x, g: vertical_stretch(x, g, max_stretch=0.4),
    "scale": lambda x, g: scale_velocity(x, g, max_scale=0.5),
    "augment": lambda x, g: augment(x, g),
    "augment_all": lambda x, g: augment(x, g, ALL),
}


@pytest.mark.parametrize("name", OPS)
def test_outputs_valid(name, batch):
    before = batch.clone()
    out = OPS[name](batch, gen())
    assert_valid(out, batch)
    assert torch.equal(batch, before)  # inputs untouched


@pytest.mark.parametrize("name", ["affine", "elastic", "stretch", "scale", "augment_all"])
def test_random_ops_seeded(name, batch):
    a, b = OPS[name](batch, gen(3)), OPS[name](batch, gen(3))
    assert torch.equal(a, b)
    assert not torch.equal(a, OPS[name](batch, gen(4)))
    assert not torch.equal(a, batch)


def test_flip_twice_is_identity(batch):
    assert torch.equal(flip_velocity(flip_velocity(batch)), batch)
    assert torch.equal(flip_velocity(batch)[..., 0], batch[..., -1])


def test_zero_strength_warps_are_identity(batch):
    g = gen()
    for out in (
        affine_warp(batch, g, 0, 0, 0),
        elastic_warp(batch, g, alpha_px=0),
        vertical_stretch(batch, g, max_stretch=0),
        scale_velocity(batch, g, max_scale=0),
    ):
        torch.testing.assert_close(out, batch, atol=0.05, rtol=0)


def test_warps_pad_with_edges_not_zeros():
    flat = torch.full((4, NZ, NX), 2500.0)
    out = affine_warp(flat, gen(), max_rotate_deg=30, max_shear=0.3, max_translate_px=30)
    torch.testing.assert_close(out, flat, atol=0.05, rtol=0)  # a constant map stays constant


def test_vertical_stretch_keeps_the_surface():
    m = generate("FlatVel_A", 8, 1)
    out = vertical_stretch(m, gen(), max_stretch=0.3, mode="nearest")
    torch.testing.assert_close(out[:, 0], m[:, 0])
    assert (out[:, 1:] >= out[:, :-1]).all()  # monotone layering survives a stretch


def test_blend(batch):
    a, b = batch, batch.flip(0)
    torch.testing.assert_close(blend(a, b, 0.0), a, atol=1e-3, rtol=0)
    torch.testing.assert_close(blend(a, b, 1.0), b, atol=1e-3, rtol=0)
    torch.testing.assert_close(blend(a, b, 0.5), (a + b) / 2)
    w = torch.linspace(0, 1, len(a))
    torch.testing.assert_close(blend(a, b, w), a + w.view(-1, 1, 1) * (b - a), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="blend weight"):
        blend(a, b, 1.5)


def test_scale_keeps_range_and_scales():
    m = torch.full((64, NZ, NX), 3000.0)
    out = scale_velocity(m, gen(), max_scale=0.2)
    factors = out[:, 0, 0] / 3000
    assert ((factors >= 0.8) & (factors <= 1.2)).all() and factors.std() > 0.05
    assert_valid(scale_velocity(torch.full((8, NZ, NX), VMAX), gen(), 0.5), m[:8])


def test_augment_probabilities(batch):
    none = VelocityAugment(p_blend=0, p_elastic=0, p_affine=0, p_stretch=0, p_scale=0, p_flip=0)
    assert torch.equal(augment(batch, gen(), none), batch)
    only_flip = VelocityAugment(p_blend=0, p_elastic=0, p_affine=0, p_stretch=0, p_scale=0, p_flip=1)
    assert torch.equal(augment(batch, gen(), only_flip), flip_velocity(batch))
    assert augment(batch[:0], gen()).shape == (0, NZ, NX)


@pytest.mark.parametrize(
    "kwargs", [{"p_flip": 1.5}, {"p_affine": -0.1}, {"max_shear": -1.0}, {"mode": "area"}, {"max_stretch": 1.0}]
)
def test_augment_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        VelocityAugment(**kwargs)


def test_default_augment_keeps_layered_maps_realistic():
    # no wavy flat layers, no in-between values: flat maps stay flat and integer-valued, faulted maps keep values
    flat = generate("FlatVel_A", 64, 3)
    out = augment(flat, gen(), VelocityAugment())
    assert (out == out[:, :, :1]).all() and torch.equal(out, out.round())
    assert not torch.equal(out, flat)
    strong = augment(flat, gen(), STRONG)
    assert not torch.equal(strong, strong.round())  # the strong warps leave in-between values


def test_default_augment_keeps_curvevel_orientation():
    # real CurveVel_A curves swing harder on the right in ~80 % of the maps: default augmentation must not flip
    # them (flipped maps raise the realism AUC from 0.66 to 0.77); the strong preset may
    def right_share(m):
        d = (m[:, :, 1:] - m[:, :, :-1]).abs()
        return (d[:, :, -23:].mean((1, 2)) > d[:, :, :23].mean((1, 2))).float().mean().item()

    curves = generate("CurveVel_A", 200, 3)
    assert right_share(curves) > 0.7
    assert right_share(augment(curves, gen(), VelocityAugment())) > 0.7
    assert right_share(augment(curves, gen(), STRONG)) < 0.65
