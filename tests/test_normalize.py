"""Normalization statistics against a direct numpy computation, and the transforms they define."""

import numpy as np
import pytest
import torch

from fwi.data.normalize import (
    STD_FLOOR,
    Normalizer,
    SeismicStats,
    accumulate_stats,
    cached_stats,
    file_chunks,
)
from fwi.errors import DataError
from fwi.physics.acquisition import unit_to_velocity, velocity_to_unit


def test_streaming_stats_equal_direct_computation():
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((11, 5, 1000, 70)) * rng.uniform(0.1, 5, (1, 5, 1000, 70)) + 3).astype(np.float32)
    stats = accumulate_stats([data[:4], data[4:5], data[5:]])  # uneven chunks
    np.testing.assert_allclose(stats.mean, data.astype(np.float64).mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.std, data.astype(np.float64).std(0), rtol=1e-10)
    assert stats.count == 11
    assert stats.global_mean == pytest.approx(data.astype(np.float64).mean(), rel=1e-12)
    assert stats.global_std == pytest.approx(data.astype(np.float64).std(), rel=1e-10)


def test_file_chunks_and_cache(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((6, 5, 1000, 70)).astype(np.float16)
    np.save(tmp_path / "a.npy", a)
    files = {str(tmp_path / "a.npy"): [5, 0, 2, 3]}  # unsorted, non-contiguous
    stats = cached_stats(files, tmp_path / "cache", progress=False)
    chosen = a[[0, 2, 3, 5]].astype(np.float64)
    np.testing.assert_allclose(stats.mean, chosen.mean(0), atol=1e-12)
    cached = list((tmp_path / "cache").glob("seismic_stats_*.npz"))
    assert len(cached) == 1
    again = cached_stats(files, tmp_path / "cache", progress=False)  # served from the cache
    np.testing.assert_array_equal(again.std, stats.std)
    assert sum(len(c) for c in file_chunks(files, chunk=3)) == 4


def test_normalizer_modes():
    mean = np.zeros((5, 1000, 70))
    mean[:, 0] = 2.0
    std = np.ones((5, 1000, 70))
    std[:, -1] = 0.0  # the always-zero last sample
    stats = SeismicStats(mean=mean, std=std, count=10)
    x = torch.ones(2, 5, 1000, 70)
    pixel = Normalizer.from_stats("pixel", stats)(x)
    assert torch.all(pixel[:, :, 0] == -1) and torch.all(pixel[:, :, 1:-1] == 1)
    assert torch.isfinite(pixel).all()  # zero std floored at STD_FLOOR x global std
    assert float(Normalizer.from_stats("pixel", stats).std.min()) == pytest.approx(STD_FLOOR * stats.global_std)
    glob = Normalizer.from_stats("global", stats)(x)
    assert torch.allclose(glob, (x - stats.global_mean) / stats.global_std)
    log = Normalizer.from_stats("log", stats)(torch.tensor([-3.0, 0.0, 3.0]))
    expected = torch.tensor([-1.0, 0.0, 1.0]) * np.log1p(3.0 / stats.global_std)
    assert torch.allclose(log, expected.float())
    with pytest.raises(ValueError, match="normalization mode must be one of"):
        Normalizer("median", mean, std)


def test_normalizer_rebuilt_from_its_buffers_is_identical():
    """What a checkpoint stores (mode, mean, std) rebuilds exactly the same transform."""
    stats = SeismicStats(mean=np.random.rand(5, 1000, 70), std=np.random.rand(5, 1000, 70) + 1, count=3)
    a = Normalizer.from_stats("pixel", stats)
    state = {k: v.clone() for k, v in a.state_dict().items()}
    x = torch.randn(1, 5, 1000, 70)
    assert torch.equal(Normalizer(a.mode, state["mean"], state["std"])(x), a(x))


def test_velocity_unit_scale_round_trip():
    v = torch.tensor([1500.0, 3000.0, 4500.0])
    assert torch.allclose(velocity_to_unit(v), torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(unit_to_velocity(velocity_to_unit(v)), v)


def test_stats_do_not_depend_on_file_order(tmp_path):
    rng = np.random.default_rng(2)
    files = {}
    for name in ("b.npy", "a.npy", "c.npy"):
        np.save(tmp_path / name, (rng.standard_normal((3, 5, 1000, 70)) * rng.uniform(1, 100)).astype(np.float32))
        files[str(tmp_path / name)] = [0, 1, 2]
    forward = accumulate_stats(file_chunks(files, chunk=2))
    backward = accumulate_stats(file_chunks(dict(reversed(files.items())), chunk=2))
    np.testing.assert_array_equal(forward.mean, backward.mean)
    np.testing.assert_array_equal(forward.std, backward.std)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_training_seismic_names_the_file_and_sample(tmp_path, bad):
    rng = np.random.default_rng(2)
    good = rng.standard_normal((3, 5, 1000, 70)).astype(np.float32)
    broken = rng.standard_normal((40, 5, 1000, 70)).astype(np.float16)
    broken[37, 2, 500, 10] = bad  # in the second chunk of 32
    np.save(tmp_path / "a.npy", good)
    np.save(tmp_path / "b.npy", broken)
    files = {str(tmp_path / "a.npy"): [0, 1, 2], str(tmp_path / "b.npy"): list(range(40))}
    with pytest.raises(DataError) as info:
        cached_stats(files, tmp_path / "cache", progress=False)
    assert str(info.value) == (f"{tmp_path / 'b.npy'}: sample 37 of the training seismic contains NaN or Inf (1 bad "
                               "samples in this chunk of 8); fix or remove the file")
    assert not (tmp_path / "cache").exists()  # nothing cached
    files[str(tmp_path / "b.npy")] = [0, 36, 38]  # the bad sample not in the split: fine
    assert cached_stats(files, tmp_path / "cache", progress=False).count == 6


@pytest.mark.parametrize("damage", ["truncated", "text", "nan"])
def test_damaged_stats_cache_is_recomputed(tmp_path, capsys, damage):
    rng = np.random.default_rng(3)
    np.save(tmp_path / "a.npy", rng.standard_normal((4, 5, 1000, 70)).astype(np.float32))
    files = {str(tmp_path / "a.npy"): [0, 1, 2, 3]}
    stats = cached_stats(files, tmp_path / "cache", progress=False)
    (cache,) = (tmp_path / "cache").iterdir()
    if damage == "truncated":
        cache.write_bytes(cache.read_bytes()[:1000])
    elif damage == "text":
        cache.write_text("not a zip")
    else:
        SeismicStats(mean=np.full((5, 1000, 70), np.nan), std=stats.std, count=4).save(cache)
    again = cached_stats(files, tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(again.mean, stats.mean)
    assert capsys.readouterr().err.startswith(f"warning: {cache}: ")
    np.testing.assert_array_equal(SeismicStats.load(cache).mean, stats.mean)  # the cache was rewritten whole
