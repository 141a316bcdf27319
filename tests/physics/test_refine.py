"""fwi.physics refinement: segmentation, routing, parametrisations, L-BFGS wrapper, refine_map.

Physics runs on a toy survey (a 10-cell sponge, 3 sources, short records) so each simulation takes
milliseconds to a tenth of a second on one CPU core; the refinement code never assumes the 70 x 70 grid.
Routing is checked on the real OpenFWI maps in tests/data.
"""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fwi.physics.acquisition import DEFAULT, VMAX, VMIN
from fwi.physics.optimize import minimize
from fwi.physics.parametrize import VALUE_UNIT, Blocks, Layers, Regions, Smooth
from fwi.physics.refine import ONE_SHOT_EVALS, data_misfit, refine_map, time_window
from fwi.physics.routing import classify, tilt
from fwi.physics.segment import fault_blocks, line_columns, potts_1d, segment_regions, velocity_levels
from fwi.physics.simulator import simulate
from fwi.physics.starts import gaussian_blur, network_like_start

DATA = Path(__file__).parents[1] / "data"
N = 32
TOY = DEFAULT.with_(nz=N, nx=N, nbc=10, nt=300, source_x=(0, 16, 31), receiver_x=tuple(range(N)))


def real_maps(family: str, idx: list[int]) -> torch.Tensor:
    """``[len(idx), 70, 70]`` real OpenFWI velocity maps (m/s) of ``FlatVelA``, ``CurveVelA`` or ``FlatFaultA``."""
    return torch.from_numpy(np.load(DATA / f"velocity_{family}.npz")["velocity"][idx, 0])


def layered(depths: list[int], values: list[float], n: int = N) -> torch.Tensor:
    """A flat-layered ``[n, n]`` map: ``values[k]`` from row ``depths[k-1]`` (depths of the interfaces)."""
    v = torch.full((n, n), values[0])
    for d, c in zip(depths, values[1:], strict=True):
        v[d:] = c
    return v


def faulted(n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat layers (interfaces at rows 8 and 20) whose block right of the fault line from column 20 at row 0
    to column 12 at row ``n - 1`` dropped 4 rows: the ``[n, n]`` map (m/s) and the right block's mask."""
    values = [1900.0, 2500.0, 3200.0]
    right = torch.from_numpy(np.arange(n)[None, :] >= line_columns(np.array([[20.0, 12.0]]), n, n)[0][:, None])
    return torch.where(right, layered([12, 24], values, n), layered([8, 20], values, n)), right


def mae(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().mean())


# ---------------------------------------------------------------------------------------- segmentation


def test_potts_1d_finds_the_steps_of_a_noisy_profile():
    rng = np.random.default_rng(0)
    profile = np.repeat([2000.0, 2300.0, 2350.0, 3000.0], [10, 7, 8, 5]) + rng.normal(0, 5, 30)
    # splitting n1 | n2 rows at a step h saves n1 n2 / (n1 + n2) h^2: 9,333 for the 50 m/s step (7 | 8 rows),
    # ~640,000 for the 2000 -> 2327 step (10 | 15), ~2.7 million for the last one (25 | 5)
    assert potts_1d(profile, penalty=5e3) == [0, 10, 17, 25, 30]
    assert potts_1d(profile, penalty=2e4) == [0, 10, 25, 30]
    assert potts_1d(profile, penalty=1e6) == [0, 25, 30]
    assert potts_1d(np.full(5, 1800.0), penalty=1.0) == [0, 5]


def test_potts_1d_is_the_exact_optimum_on_a_small_case():
    profile = np.array([0.0, 0.0, 10.0, 10.0, 11.0])
    penalty = 3.0

    def cost(edges: list[int]) -> float:
        return sum(((profile[a:b] - profile[a:b].mean()) ** 2).sum() + penalty for a, b in itertools.pairwise(edges))

    best = min(([0, *c, 5] for r in range(5) for c in itertools.combinations(range(1, 5), r)), key=cost)
    assert potts_1d(profile, penalty) == best == [0, 2, 5]


def test_velocity_levels_split_between_the_modes():
    v = np.concatenate([np.full(300, 2000.0), np.full(300, 2600.0), np.full(10, 2300.0)])
    levels = velocity_levels(v)
    assert len(levels) == 2  # three modes, the small one at 2300 included
    assert 2000 < levels[0] < 2300 < levels[1] < 2600


@pytest.mark.parametrize("blur", [1.0, 1.5])
def test_segment_regions_puts_blurred_interfaces_at_the_midpoint_and_drops_ramps(blur):
    true = layered([13, 40], [2000.0, 3000.0, 3400.0], n=64)
    true[:, 40:] = layered([18, 45], [2000.0, 3000.0, 3400.0], n=64)[:, 40:]  # a vertical fault, throw 5 cells
    v = gaussian_blur(true[None].double(), blur)[0].numpy()
    labels = segment_regions(v)
    assert labels.max() + 1 == 3  # three layers; no region left for the ramps between them
    values = np.array([np.median(v[labels == k]) for k in range(3)])
    np.testing.assert_allclose(values, [2000.0, 3000.0, 3400.0], atol=1e-9)
    # measured 0.68 m/s (the cells where the fault meets the interfaces), from 17 (blur 1) and 27 (blur 1.5)
    assert np.abs(values[labels] - true.numpy()).mean() < 1.0


# --------------------------------------------------------------------------------------------- routing


@pytest.mark.parametrize(("family", "structure", "others"), [("FlatVelA", "flat", set()),
                                                             ("FlatFaultA", "faulted", {"flat"}),
                                                             ("CurveVelA", "curved", {"faulted"})])
def test_routing_of_real_maps_from_network_like_starts(family, structure, others):
    true = real_maps(family, list(range(300, 320))).double()
    starts = network_like_start(true, blur=1.0, smooth_error=20.0, seed=3)
    got = [classify(s.numpy())[0] for s in starts]
    # over all 500 maps: 100 % flat, 95 % faulted (5 % flat: faults with no visible throw), 98 % curved
    assert got.count(structure) >= 17 and set(got) <= {structure, *others}, got


def test_routing_sends_textures_to_the_smooth_prior():
    from fwi.synth.families import generate

    starts = network_like_start(generate("Style_A", 10, seed=1).double(), seed=3)
    assert [classify(s.numpy())[0] for s in starts] == ["smooth"] * 10


def test_tilt_is_zero_for_flat_layers_and_large_for_dipping_ones():
    flat = layered([10, 20], [2000.0, 2500.0, 3000.0]).numpy()
    assert tilt(flat) == 0.0
    z, x = np.mgrid[0:N, 0:N]
    dipping = np.where(z > 5 + 0.8 * x, 3000.0, 2000.0)
    assert tilt(dipping) > 0.5
    assert tilt(np.full((N, N), 2500.0)) == 0.0


# ------------------------------------------------------------------------------------- parametrisations


def test_layers_map_sharp_at_integer_depths_and_blended_between():
    v0 = layered([10, 20], [2000.0, 2500.0, 3000.0])
    p = Layers.from_map(v0)
    assert p.n_layers == 3 and p.x0.tolist() == [20.0, 25.0, 30.0, 10.0, 20.0]
    torch.testing.assert_close(p.velocity(p.x0), v0)
    x = p.x0.clone()
    x[3] = 9.75  # interface 0 3/4 into row 9 (rows span [z, z + 1)): row 9 is 3/4 layer 0, 1/4 layer 1
    v = p.velocity(x)
    assert float(v[9, 0]) == pytest.approx(0.75 * 2000 + 0.25 * 2500)
    assert float(v[8, 5]) == 2000.0 and float(v[10, 5]) == 2500.0
    torch.testing.assert_close(p.velocity(p.rounded(x)), v0)
    x[3] = 9.25
    torch.testing.assert_close(p.velocity(p.rounded(x)), layered([9, 20], [2000.0, 2500.0, 3000.0]))
    assert (p.velocity(x * 0 + 100.0) == VMAX).all()  # clamped to the range


def test_regions_warp_moves_interfaces_and_hardens():
    v0 = layered([12], [2000.0, 3000.0])
    p = Regions.from_map(v0)
    assert p.n_regions == 2 and p.x0.numel() == 2 + 2 * 8 * 8
    torch.testing.assert_close(p.velocity(p.x0), v0, atol=1e-3, rtol=0)
    x = p.x0.clone()
    x[2 : 2 + 64] = 1.0  # u_z = 1 cell everywhere: sample one row up, the interface moves down a row
    torch.testing.assert_close(p.hardened(x), layered([13], [2000.0, 3000.0]))
    x[2 : 2 + 64] = 0.5
    assert float(p.velocity(x)[12, 7]) == pytest.approx(2500.0, abs=1e-2)  # half-way: blended
    sizes = torch.tensor([12.0 * N, 20.0 * N]).sqrt()
    torch.testing.assert_close(p.weight, sizes / sizes.mean())  # parameters scaled by sqrt(region size)
    torch.testing.assert_close(p.values(p.x0), torch.tensor([2000.0, 3000.0]))
    assert Regions.from_map(v0, scaled=False).weight.tolist() == [1.0, 1.0]
    x[:2] = torch.tensor([21.0, 29.0]) * p.weight
    assert float(p.velocity(x)[0, 0]) == pytest.approx(21 * VALUE_UNIT, abs=1e-2)


def test_smooth_starts_at_the_map_and_corrects_smoothly():
    v0 = layered([10], [2000.0, 3000.0])
    p = Smooth.from_map(v0)
    torch.testing.assert_close(p.velocity(p.x0), v0)
    x = torch.ones_like(p.x0)
    torch.testing.assert_close(p.velocity(x), v0 + VALUE_UNIT)  # a constant grid is a constant correction


# ---------------------------------------------------------------------------------------------- L-BFGS


def test_minimize_solves_a_badly_scaled_quadratic_and_keeps_the_best_point():
    scale = torch.tensor([1.0, 100.0, 0.01], dtype=torch.float64)
    target = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    values = []

    def f(x):
        value = (scale * (x - target) ** 2).sum() + 5.0
        values.append(float(value.detach()))
        return value

    result = minimize(f, torch.zeros(3, dtype=torch.float64), max_evals=40)
    assert result.evaluations == len(values) <= 40 and not result.timed_out
    assert result.value == min(values) == pytest.approx(5.0, abs=1e-8)
    torch.testing.assert_close(result.x, target, atol=1e-4, rtol=0)


def test_minimize_stops_at_the_deadline_with_the_best_point_so_far():
    def slow(x):
        time.sleep(0.05)
        return ((x - 3.0) ** 2).sum()

    result = minimize(slow, torch.zeros(4, dtype=torch.float64), max_evals=100, deadline=time.monotonic() + 0.12)
    assert result.timed_out and 1 <= result.evaluations <= 4
    assert result.value <= 36.0  # never worse than the start


# -------------------------------------------------------------------------------------------- refine_map


def test_line_columns_put_each_cell_on_the_side_of_its_centre():
    # column 2.5 at row 0 to column -1.5 at row 4 (the line leaves the map): x = 2.5, 1.5, 0.5, -0.5, -1.5
    assert line_columns(np.array([[2.5, -1.5]]), 5, 4).tolist() == [[2, 1, 0, 0, 0]]
    assert line_columns(np.array([[9.0, 9.0]]), 2, 4).tolist() == [[4, 4]]  # right of the map: all left


def test_fault_blocks_finds_the_fault_of_a_faulted_map_and_none_in_flat_layers():
    true, right = faulted()
    lines, labels = fault_blocks(true.numpy())
    assert lines.tolist() == [[20.0, 12.0]]
    np.testing.assert_array_equal(labels, right.numpy())  # block 0 holds the first cell (top left)
    lines, labels = fault_blocks(layered([8, 20], [1900.0, 2500.0, 3200.0]).numpy())
    assert lines.shape == (0, 2) and (labels == 0).all()
    # a real FlatFault_A map with two faults, one leaving through the left side (tests/data index 2): one
    # velocity per row of each of its 3 blocks is within 1.22 m/s of the map (the fault planes' blur), one per
    # row of the whole map 24.7 m/s
    true = real_maps("FlatFaultA", [2])[0].double()
    lines, labels = fault_blocks(true.numpy())
    assert lines.tolist() == [[11.0, 11.0], [34.0, -17.0]]
    fit = torch.zeros_like(true)
    for b, r in itertools.product(range(int(labels.max()) + 1), range(70)):
        inside = torch.from_numpy(labels[r] == b)
        fit[r, inside] = true[r, inside].median() if inside.any() else 0
    assert mae(fit, true) < 1.3


def test_blocks_reproduce_a_sharp_faulted_map_with_its_own_layers_per_block():
    true, right = faulted()
    p = Blocks.from_map(true)
    # per block: 3 velocities / VALUE_UNIT, then 2 interface depths (left block 8 and 20, right 12 and 24)
    assert p.x0.tolist() == [19.0, 25.0, 32.0, 8.0, 20.0, 19.0, 25.0, 32.0, 12.0, 24.0]
    torch.testing.assert_close(p.velocity(p.x0), true, rtol=0, atol=1e-3)
    moved = p.x0.clone()
    moved[8] += 0.4  # the right block's first interface 0.4 rows lower: row 12 is 40 % the upper layer
    v = p.velocity(moved)
    assert float(v[12, 31]) == pytest.approx(0.4 * 1900 + 0.6 * 2500) and torch.equal(v[12, 0], true[12, 0])
    assert p.rounded(moved).tolist() == p.x0.tolist()


def test_time_window_is_the_slowest_two_way_time_plus_the_margin():
    v = torch.full((70, 70), 2000.0, dtype=torch.float64)
    v[:, 5] = 1500.0  # the slowest column
    two_way = 2 * 70 * 10.0 / 1500.0  # 0.933 s
    assert time_window(v) == min(1000, math.ceil((two_way + 0.15) / 1e-3))  # capped at the record
    assert time_window(torch.full((70, 70), 4000.0)) == math.ceil((2 * 700 / 4000 + 0.15) / 1e-3)  # 500


def test_misfit_window_uses_only_the_first_samples():
    true = layered([10, 20], [2000.0, 2500.0, 3000.0])[None]
    observed = simulate(true, TOY)
    spoiled = observed.clone()
    spoiled[:, :, 60:] = 0  # the data after sample 60 must not matter
    torch.testing.assert_close(data_misfit(true + 50, observed, TOY, misfit_nt=60),
                               data_misfit(true + 50, spoiled, TOY, misfit_nt=60))
    assert float(data_misfit(true, observed, TOY)[0]) < 1e-10  # exact simulator: zero at the truth


def test_refine_map_recovers_flat_layers_from_a_blurred_start():
    true = layered([9, 17, 24], [1800.0, 2300.0, 2700.0, 3400.0])
    observed = simulate(true[None], TOY)[0]
    start = network_like_start(true[None], blur=1.0, smooth_error=30.0, seed=1)[0]
    r = refine_map(start, observed, max_evals=12, acq=TOY)
    assert (r.structure, r.prior, r.improved) == ("flat", "layers", True)
    assert r.misfit_after < 0.01 * r.misfit_before
    assert mae(r.velocity, true) < 0.12 * mae(start, true)  # measured: 4.2 m/s from 52.7 (the deepest layer is off)
    assert r.velocity.dtype == torch.float32 and float(r.velocity.min()) >= VMIN
    assert r.gradients <= 12 * ONE_SHOT_EVALS and r.window == TOY.nt  # one-shot gradients


def test_refine_map_lowers_the_error_of_a_faulted_map():
    true = layered([8, 20], [1900.0, 2500.0, 3200.0])
    true[8:20, 18:] = 2200.0  # a fault: the middle layer's right half is different
    observed = simulate(true[None], TOY)[0]
    start = network_like_start(true[None], blur=1.0, smooth_error=30.0, seed=2)[0]
    r = refine_map(start, observed, max_evals=12, acq=TOY, prior="regions")
    assert (r.structure, r.prior, r.improved) == ("forced", "regions", True)
    # measured: misfit 3.2e-3 -> 3.8e-4, MAE 49.1 -> 36.2 m/s (the toy's 10-cell sponge and 32 x 32 grid leave
    # the segmentation 10 regions for 4 true ones; the real maps do better, see benchmarks/refine.py)
    assert r.misfit_after < 0.2 * r.misfit_before
    assert mae(r.velocity, true) < 0.8 * mae(start, true)


def test_refine_map_fits_fault_blocks_and_keeps_the_better_of_two_priors():
    true, _ = faulted()
    observed = simulate(true[None], TOY)[0]
    start = network_like_start(true[None], blur=1.0, smooth_error=30.0, seed=2)[0]
    blocks = refine_map(start, observed, max_evals=12, acq=TOY, prior="blocks")
    assert (blocks.structure, blocks.prior, blocks.improved) == ("forced", "blocks", True)
    assert blocks.parameters == 10  # 2 blocks x (3 velocities + 2 depths)
    # measured: misfit 3.1e-3 -> 2.6e-6, MAE 52.2 -> 8.8 m/s
    assert blocks.misfit_after < 0.01 * blocks.misfit_before
    assert mae(blocks.velocity, true) < 0.25 * mae(start, true)
    regions = refine_map(start, observed, max_evals=12, acq=TOY, prior="regions")
    auto = refine_map(start, observed, max_evals=12, acq=TOY)
    assert auto.structure == "faulted" and auto.gradients == blocks.gradients + regions.gradients
    winner = min((blocks, regions), key=lambda r: r.misfit_after)
    assert auto.prior == winner.prior and torch.equal(auto.velocity, winner.velocity)


def test_refine_map_never_returns_a_worse_fit_than_the_start():
    true = layered([10, 20], [2000.0, 2500.0, 3000.0])
    observed = simulate(true[None], TOY)[0]
    r = refine_map(true, observed, max_evals=3, acq=TOY)  # the start is exact: nothing can fit better
    assert not r.improved and r.misfit_after == r.misfit_before
    assert torch.equal(r.velocity, true)
    full = float(data_misfit(true[None], observed[None], TOY)[0])
    assert r.misfit_before == pytest.approx(full, abs=1e-12)


def test_refine_map_checks_its_arguments():
    v = layered([10], [2000.0, 3000.0])
    obs = simulate(v[None], TOY)[0]
    with pytest.raises(ValueError, match="unknown prior 'tv3d'"):
        refine_map(v, obs, prior="tv3d", acq=TOY)
    with pytest.raises(ValueError, match=r"expected v0 \[nz, nx\]"):
        refine_map(v[None], obs, acq=TOY)


def test_refine_map_gives_each_fit_its_own_time_budget(monkeypatch):
    import fwi.physics.optimize as optimize_module
    import fwi.physics.refine as refine_module

    class Clock:  # the refinement's clock; the routing below takes an hour of it
        offset = 0.0

        def monotonic(self) -> float:
            return time.monotonic() + self.offset

    clock = Clock()

    def slow_classify(v):
        clock.offset += 3600.0
        return classify(v)

    monkeypatch.setattr(refine_module, "time", clock)
    monkeypatch.setattr(optimize_module, "time", clock)
    monkeypatch.setattr(refine_module, "classify", slow_classify)
    true = layered([10, 20], [2000.0, 2500.0, 3000.0])
    observed = simulate(true[None], TOY)[0]
    r = refine_map(true + 40, observed, max_evals=1, acq=TOY, max_seconds=60.0)
    assert r.prior == "layers" and not r.timed_out  # the fit's minute starts when the fit does
