"""The competition metric (fwi.metrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fwi.metrics import MAEAccumulator, competition_mae, full_mae, per_family_mae


def maps_with_column_errors(b: int = 2, odd: float = 10.0, even: float = 100.0):
    """``true`` [b,1,70,70] and ``pred`` off by ``odd`` on odd x columns and ``-even`` on even ones."""
    rng = np.random.default_rng(0)
    true = rng.uniform(1500, 4500, (b, 1, 70, 70)).astype(np.float32)
    delta = np.empty((70, 70), np.float32)
    delta[:, 1::2] = odd
    delta[:, 0::2] = -even
    return true + delta, true


def test_competition_mae_scores_odd_columns_only():
    pred, true = maps_with_column_errors()
    assert competition_mae(pred, true) == pytest.approx(10.0, abs=1e-3)
    assert full_mae(pred, true) == pytest.approx(55.0, abs=1e-3)


def test_matches_a_hand_computation_on_random_maps():
    rng = np.random.default_rng(1)
    pred, true = rng.uniform(1500, 4500, (2, 3, 1, 70, 70)), rng.uniform(1500, 4500, (2, 3, 1, 70, 70))
    cells = [abs(pred[a, b, 0, y, x] - true[a, b, 0, y, x])
             for a in range(2) for b in range(3) for y in range(70) for x in range(1, 70, 2)]
    assert len(cells) == 2 * 3 * 70 * 35
    assert competition_mae(pred, true) == pytest.approx(sum(cells) / len(cells), rel=1e-12)
    assert full_mae(pred, true) == pytest.approx(np.abs(pred - true).mean(), rel=1e-12)


def test_accepts_numpy_torch_mixed_and_single_maps():
    pred, true = maps_with_column_errors()
    expected = competition_mae(pred, true)
    assert competition_mae(torch.from_numpy(pred), torch.from_numpy(true)) == pytest.approx(expected)
    assert competition_mae(torch.from_numpy(pred).requires_grad_(), true) == pytest.approx(expected)
    assert competition_mae(pred[0, 0], true[0, 0]) == pytest.approx(expected)
    assert competition_mae(pred.astype(np.float16), true) == pytest.approx(expected, abs=2.0)
    assert isinstance(expected, float)


def test_shape_errors_name_both_shapes():
    a, b = np.zeros((2, 1, 70, 70)), np.zeros((2, 70, 70))
    with pytest.raises(ValueError, match=r"pred \(2, 1, 70, 70\) vs true \(2, 70, 70\)"):
        competition_mae(a, b)
    with pytest.raises(ValueError, match=r"\[\.\.\., 70, 70\]"):
        full_mae(np.zeros((70, 69)), np.zeros((70, 69)))


def test_per_family_mae():
    pred, true = maps_with_column_errors(b=3)
    pred[2] += 5.0  # third sample: odd-column error 15
    out = per_family_mae(pred, true, ["B", "A", "B"])
    assert list(out) == ["A", "B", "all"]
    assert out["A"] == pytest.approx(10.0, abs=1e-3)
    assert out["B"] == pytest.approx(12.5, abs=1e-3)
    assert out["all"] == pytest.approx(competition_mae(pred, true))
    full = per_family_mae(pred, true, np.array(["B", "A", "B"]), odd_columns=False)
    assert full["all"] == pytest.approx(full_mae(pred, true))


def test_accumulator_over_batches_equals_one_shot():
    rng = np.random.default_rng(2)
    pred, true = rng.uniform(1500, 4500, (7, 1, 70, 70)), rng.uniform(1500, 4500, (7, 1, 70, 70))
    ids = np.array([0, 1, 1, 0, 2, 1, 0])
    names = ["CurveFault_A", "FlatVel_A", "Style_B"]
    acc = MAEAccumulator(names)
    for s in (slice(0, 3), slice(3, 5), slice(5, 7)):
        acc.update(torch.from_numpy(pred[s]), torch.from_numpy(true[s]), torch.from_numpy(ids[s]))
    out = acc.compute()
    expected = per_family_mae(pred, true, [names[i] for i in ids])
    assert out.keys() == expected.keys()
    for k in out:
        assert out[k] == pytest.approx(expected[k], rel=1e-12)
    acc.reset()
    assert math.isnan(acc.compute()["all"])
    plain = MAEAccumulator()
    plain.update(pred, true, ids.tolist())
    plain.update(pred, true)  # no labels: counted under "all" only
    assert set(plain.compute()) == {"0", "1", "2", "all"}
    with pytest.raises(ValueError, match="2 family labels for a batch of 7"):
        plain.update(pred, true, ["a", "b"])
