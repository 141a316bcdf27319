"""Seismic augmentation: flip consistency (algebra and physics), determinism, value effects."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import DATA_DIR

from fwi.config import load_config
from fwi.data.augment import AugmentedDataset, apply_augment, build_augment
from fwi.physics.acquisition import DEFAULT
from fwi.physics.simulator import simulate

FLIP = SimpleNamespace(flip_p=1.0, noise_p=0, noise_std=0, scale_p=0, scale_max=1, dropout_p=0, dropout_fraction=0)


def sample(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((5, 1000, 70)).astype(np.float32),
            rng.uniform(1500, 4500, (1, 70, 70)).astype(np.float32))


def test_flip_reverses_receivers_sources_and_velocity_and_twice_is_identity():
    s, v = sample()
    fs, fv = apply_augment(build_augment(FLIP), s, v, seed=0)
    np.testing.assert_array_equal(fs, s[::-1, :, ::-1])
    np.testing.assert_array_equal(fv, v[:, :, ::-1])
    ffs, ffv = apply_augment(build_augment(FLIP), fs, fv, seed=1)
    np.testing.assert_array_equal(ffs, s)
    np.testing.assert_array_equal(ffv, v)


def test_flipped_pair_is_consistent_under_the_simulator():
    """Flipping the data equals simulating the flipped map, except the middle shot (source at 34, not 34.5)."""
    acq = DEFAULT.with_(nt=250, nbc=20)  # a thin sponge keeps it fast; the symmetry argument is unchanged
    v = torch.from_numpy(np.load(DATA_DIR / "curvefault_sample0_vel.npy"))[:, 0]  # [1, 70, 70]
    both = simulate(torch.cat([v, v.flip(-1)]), acq)  # [2, 5, 300, 70]
    flipped_data = both[0].flip(0).flip(-1)  # sources and receivers reversed
    rel = [float((flipped_data[s] - both[1][s]).norm() / both[1][s].norm()) for s in range(5)]
    assert max(rel[:2] + rel[3:]) < 1e-5, rel  # shots at 0, 17, 52, 69 mirror onto each other exactly
    assert 1e-2 < rel[2] < 1.0, rel  # the middle shot moves by one cell: related, but far from exact


def test_six_source_survey_makes_the_flip_exact():
    acq = DEFAULT.with_(nt=250, nbc=20, source_x=(0, 17, 34, 35, 52, 69))
    v = torch.from_numpy(np.load(DATA_DIR / "curvefault_sample0_vel.npy"))[:, 0]
    both = simulate(torch.cat([v, v.flip(-1)]), acq)
    rel = float((both[0].flip(0).flip(-1) - both[1]).norm() / both[1].norm())
    assert rel < 1e-5


def test_augment_is_seeded_per_item_and_changes_values():
    cfg = load_config(None, ["augment.flip_p=0", "augment.noise_p=1", "augment.scale_p=1", "augment.dropout_p=1",
                             "augment.dropout_fraction=0.2"]).augment
    s, v = sample()
    t = build_augment(cfg)
    a, b, c = apply_augment(t, s, v, 3), apply_augment(t, s, v, 3), apply_augment(t, s, v, 4)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    np.testing.assert_array_equal(a[1], v)  # image-only ops leave the velocity alone
    dead = np.all(a[0] == 0, axis=1)  # [sources, receivers]: zeroed traces
    assert 0.1 < dead.mean() < 0.3


def test_no_augmentation_when_all_probabilities_are_zero():
    cfg = load_config(None, ["augment.flip_p=0"]).augment
    assert build_augment(cfg) is None


def test_augmented_dataset_depends_on_epoch_not_on_order():
    s, v = sample()
    base = [(torch.from_numpy(s), torch.from_numpy(v), 0)] * 3
    cfg = load_config(None, ["augment.noise_p=1"]).augment
    ds = AugmentedDataset(base, build_augment(cfg), seed=7)
    first = [ds[i][0] for i in (2, 0, 1)]
    assert torch.equal(ds[0][0], first[1])  # same item, same epoch: same draw, whatever the order
    ds.set_epoch(1)
    assert not torch.equal(ds[0][0], first[1])


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_flip_probability_is_respected(p):
    s, v = sample()
    cfg = SimpleNamespace(**{**vars(FLIP), "flip_p": p})
    t = build_augment(cfg)
    if t is None:
        assert p == 0.0
        return
    fs, _ = apply_augment(t, s, v, seed=0)
    assert np.array_equal(fs, s[::-1, :, ::-1])
