"""``python -m fwi.refine``: start maps + test seismic -> refined maps, log, submission; resume, shards, bad input.

The test files are the exact simulation (float16, like the competition's) of real OpenFWI maps from tests/data;
the starts are network-like errors of them. The fit is kept tiny (2 gradients over the first 80 time samples)
so a map costs ~2 s on one core, most of it the full-record misfit check.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fwi.physics.refine import ONE_SHOT_EVALS
from fwi.physics.simulator import simulate
from fwi.physics.starts import network_like_start
from fwi.refine import LOG_COLUMNS, main, parse_shard, plan, read_log
from fwi.submission import check_submission

DATA = Path(__file__).parent / "data"
FAST = ["refine.max_evals=2", "refine.window=80", "refine.workers=1"]
OIDS = ["0a00000001", "0a00000002", "0b00000003", "0b00000004"]


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict[str, Path]:
    """``maps/`` (starts) and ``test/`` (seismic) for two FlatVel_A and two FlatFault_A maps, and ``truth/``."""
    root = tmp_path_factory.mktemp("refine_case")
    flat = np.load(DATA / "velocity_FlatVelA.npz")["velocity"][[5, 7], 0]
    fault = np.load(DATA / "velocity_FlatFaultA.npz")["velocity"][[5, 7], 0]
    true = torch.from_numpy(np.concatenate([flat, fault]).astype(np.float32))
    start = network_like_start(true.double(), seed=4).float()
    with torch.no_grad():
        seismic = simulate(true)
    for name in ("maps", "test", "truth"):
        (root / name).mkdir()
    for i, oid in enumerate(OIDS):
        np.save(root / "maps" / f"{oid}.npy", start[i].numpy())
        np.save(root / "test" / f"{oid}.npy", seismic[i].numpy().astype(np.float16))
        np.save(root / "truth" / f"{oid}.npy", true[i].numpy())
    return {"root": root, "maps": root / "maps", "test": root / "test", "truth": root / "truth"}


def args(case: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["--maps", str(case["maps"]), "--test-dir", str(case["test"]), "--out", str(out), *extra]


def outputs(out: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.load(p) for p in sorted(out.glob("*.npy"))}


@pytest.fixture(scope="module")
def reference(case, tmp_path_factory) -> Path:
    """One uninterrupted run of the four maps, with a submission."""
    out = tmp_path_factory.mktemp("reference")
    assert main(args(case, out / "maps", "--submission", str(out / "sub.csv"), *FAST)) == 0
    return out


def test_refines_every_map_logs_it_and_writes_a_valid_submission(case, reference):
    got = outputs(reference / "maps")
    assert sorted(got) == OIDS
    log = read_log(reference / "maps" / "refine_log.csv")
    assert sorted(log) == OIDS
    with open(reference / "maps" / "refine_log.csv", newline="") as f:
        assert tuple(next(csv.reader(f))) == LOG_COLUMNS
    for oid in OIDS:
        row, start = log[oid], np.load(case["maps"] / f"{oid}.npy")
        assert got[oid].shape == (70, 70) and got[oid].dtype == np.float32
        assert float(row["misfit_after"]) <= float(row["misfit_before"])  # never worse than the start
        if oid.startswith("0a"):  # routed from the start map; the flat fit takes one-shot gradients
            assert (row["structure"], row["prior"]) == ("flat", "layers")
            assert int(row["gradients"]) <= 2 * ONE_SHOT_EVALS
        else:  # faulted maps are fitted under two priors, 2 gradients each; the lower misfit wins
            assert row["structure"] == "faulted" and row["prior"] in ("regions", "blocks")
            assert int(row["gradients"]) <= 2 * 2
        assert row["status"] in ("refined", "kept")
        if row["status"] == "kept":
            np.testing.assert_array_equal(got[oid], start)
    # even 2 x ONE_SHOT_EVALS one-shot gradients of the layer prior lower both the misfit and the error of the flat maps
    for oid in OIDS[:2]:
        true = np.load(case["truth"] / f"{oid}.npy")
        assert log[oid]["status"] == "refined"
        assert np.abs(got[oid] - true).mean() < np.abs(np.load(case["maps"] / f"{oid}.npy") - true).mean()
    info = check_submission(reference / "sub.csv", expected_oids=OIDS)
    assert info.oids == OIDS and info.n_rows == 4 * 70
    rows = {}
    with open(reference / "sub.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows[r["oid_ypos"]] = [float(r[f"x_{c}"]) for c in range(1, 70, 2)]
    np.testing.assert_allclose(rows[f"{OIDS[2]}_y_10"], got[OIDS[2]][10, 1::2], atol=0.005)


def test_a_killed_run_resumes_to_the_same_outputs(case, reference, tmp_path):
    out = tmp_path / "maps"
    cmd = [sys.executable, "-m", "fwi.refine", *args(case, out, *FAST)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(out.glob("*.npy"))) < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(out.glob("*.npy"))
    assert 1 <= len(done) < len(OIDS)  # killed mid-run
    assert all(np.load(p).shape == (70, 70) for p in done)  # no half-written map
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    resumed, expected = outputs(out), outputs(reference / "maps")
    assert sorted(resumed) == OIDS
    for oid in OIDS:
        np.testing.assert_array_equal(resumed[oid], expected[oid])
    assert sorted(read_log(out / "refine_log.csv")) == OIDS


def test_two_shards_cover_every_file_exactly_once(case, tmp_path):
    shards = [plan(case["maps"], case["test"], parse_shard(s), skip_bad=False)[0] for s in ("0/2", "1/2")]
    ids = [job.oid for jobs in shards for job in jobs]
    assert sorted(ids) == OIDS and len(set(ids)) == len(ids)
    out = tmp_path / "maps"
    for s in ("0/2", "1/2"):  # max_evals=0 copies the starts: the sharding alone
        assert main(args(case, out, "--shard", s, "refine.max_evals=0", "refine.workers=1")) == 0
    assert sorted(outputs(out)) == OIDS
    logs = [read_log(out / f"refine_log_{i}of2.csv") for i in range(2)]
    assert sorted([*logs[0], *logs[1]]) == OIDS and not logs[0].keys() & logs[1].keys()
    assert main(args(case, out, "--shard", "2/2")) == 1


def test_bad_shard_and_missing_folders_are_one_line_errors(case, tmp_path, capsys):
    assert main(args(case, tmp_path / "o", "--shard", "3/2")) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: bad shard '3/2' (refine.shard): use i/n with 0 <= i < n, e.g. 0/2 and 1/2"]
    assert main(["--maps", str(tmp_path / "none"), "--test-dir", str(case["test"]), "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == f"error: maps directory not found: {tmp_path / 'none'}"


def bad_folders(case, root: Path, bad: dict[str, np.ndarray], orphan: bool = False) -> dict[str, Path]:
    """``maps/`` and ``test/`` under ``root``: a good start ``a_good`` plus the start maps ``bad``, each with the
    same (good) test file; with ``orphan``, also a start map ``e_orphan`` that has no test file."""
    maps, test = root / "maps", root / "test"
    maps.mkdir(parents=True)
    test.mkdir()
    starts = {"a_good": np.load(case["maps"] / f"{OIDS[0]}.npy"), **bad}
    for oid, v in starts.items():
        np.save(maps / f"{oid}.npy", v)
        os.link(case["test"] / f"{OIDS[0]}.npy", test / f"{oid}.npy")
    if orphan:
        np.save(maps / "e_orphan.npy", starts["a_good"])
    return {"maps": maps, "test": test}


def good_map(case) -> np.ndarray:
    return np.load(case["maps"] / f"{OIDS[0]}.npy")


def bad_maps(case) -> dict[str, np.ndarray]:
    good = good_map(case)
    nan = good.copy()
    nan[3, 5] = np.nan
    return {"b_nan": nan, "c_shape": good[:, :60].copy(), "d_range": good / 1000}  # d: km/s


def test_unmatched_ids_stop_with_a_one_line_error_naming_the_file(case, tmp_path, capsys):
    d = bad_folders(case, tmp_path, {}, orphan=True)
    assert main(args(d, tmp_path / "out", "refine.max_evals=0", "refine.workers=1")) == 1
    assert capsys.readouterr().err.strip() == (
        f"error: {d['maps'] / 'e_orphan.npy'}: no test file {d['test'] / 'e_orphan.npy'} for this start map; "
        "pass --skip-bad to refine the matching files only")
    os.link(d["test"] / "a_good.npy", d["test"] / "f_nomap.npy")
    os.remove(d["maps"] / "e_orphan.npy")
    assert main(args(d, tmp_path / "out", "refine.max_evals=0", "refine.workers=1")) == 1
    assert capsys.readouterr().err.strip() == (
        f"error: {d['test'] / 'f_nomap.npy'}: no start map {d['maps'] / 'f_nomap.npy'} for this test file; "
        "pass --skip-bad to refine the matching files only")


@pytest.mark.parametrize(("oid", "message"), [
    ("b_nan", "{maps}/b_nan.npy: NaN or Inf in start map"),
    ("c_shape", "{maps}/c_shape.npy: wrong shape for a start map: expected (70, 70), got (70, 60)"),
    ("d_range", "{maps}/d_range.npy: start map outside [1500, 4500] m/s: min 2.63468, max 3.99794 (is it in m/s?)"),
])
def test_a_bad_start_map_stops_with_a_one_line_error_naming_it(case, tmp_path, capsys, oid, message):
    d = bad_folders(case, tmp_path, {oid: bad_maps(case)[oid]})
    assert main(args(d, tmp_path / "out", "refine.max_evals=0", "refine.workers=1")) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: " + message.format(maps=d["maps"])) and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out" / "a_good.npy").exists()  # checked before any map is refined


def test_skip_bad_keeps_the_start_maps_and_lists_the_files(case, tmp_path, capsys):
    d = bad_folders(case, tmp_path, bad_maps(case), orphan=True)
    out = tmp_path / "out"
    assert main(args(d, out, "--skip-bad", "refine.max_evals=0", "refine.workers=1")) == 0
    err = capsys.readouterr().err
    assert "warning: 4 bad files kept their start map (or have none):" in err
    for name in ("e_orphan", "b_nan", "c_shape", "d_range"):
        assert f"{d['maps'] / name}.npy" in err
    # the good map and the out-of-range one (clipped) are kept; a NaN or misshapen map has nothing to keep
    assert sorted(outputs(out)) == ["a_good", "d_range"]
    np.testing.assert_array_equal(np.load(out / "a_good.npy"), good_map(case))
    assert (np.load(out / "d_range.npy") == 1500.0).all()
    assert {oid: row["status"] for oid, row in read_log(out / "refine_log.csv").items()} == {
        "a_good": "kept", "b_nan": "bad", "c_shape": "bad", "d_range": "bad"}


@pytest.mark.parametrize("custom_log", [False, True])
def test_submission_after_skip_bad_names_the_skipped_file_not_the_shards(case, tmp_path, capsys, custom_log):
    d = bad_folders(case, tmp_path, {"b_nan": bad_maps(case)["b_nan"]})
    out = tmp_path / "out"
    log = [f"refine.log={tmp_path / 'elsewhere.csv'}"] if custom_log else []  # a log outside the maps folder
    assert main(args(d, out, "--skip-bad", "refine.max_evals=0", "refine.workers=1", *log)) == 0
    capsys.readouterr()
    assert main(args(d, out, "--skip-bad", "refine.max_evals=0", *log, "--submission", str(tmp_path / "s.csv"))) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"error: cannot write the submission: 1 of 2 test files were skipped as bad and have no map "
                   f"(first: {d['maps']}/b_nan.npy: NaN or Inf in start map); give them a usable start map and rerun")
    assert not (tmp_path / "s.csv").exists()
