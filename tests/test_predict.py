"""fwi.predict: CSV format, ensemble and flip-TTA arithmetic, atomic output, bad test files.

Checkpoints hold a tiny untrained InversionNet (width 2) with a made-up pixel normalizer; expected values
are computed independently here (numpy flips, direct model calls) and compared with the written CSV.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from fwi import predict as predict_module
from fwi.checkpoint import load_checkpoint, make_checkpoint_state, restore_model, save_checkpoint
from fwi.config import load_config
from fwi.data.normalize import Normalizer
from fwi.inference import Predictor
from fwi.models import build_model
from fwi.physics.acquisition import NX, NZ, SEISMIC_SHAPE, VMAX, VMIN
from fwi.predict import main, predict
from fwi.submission import COLUMNS, ID_COLUMN, X_COLUMNS

REAL_TEST_FILE = Path(__file__).parent / "data" / "kaggle_test_000039dca2.npy"
"""A real competition test file, float16 (5, 1000, 70)."""
OIDS = ["000039dca2", "00a1b2c3d4", "ffee000001"]
ATOL = 0.5
"""m/s. oneDNN picks different convolution algorithms per batch size, so batched and one-at-a-time forward
passes differ by float32 round-off, which the deep untrained net amplifies to up to ~0.2 m/s at ~3000 m/s; a
wrong flip, source order, normalizer or average moves predictions by 10s-100s of m/s."""


def make_checkpoint(path: Path, seed: int) -> Path:
    """A checkpoint of an untrained width-2 InversionNet with a random pixel normalizer."""
    cfg = load_config(None, {"model.name": "inversionnet", "model.width": 2, "seed": seed})
    torch.manual_seed(seed)
    model = build_model(cfg.model)
    rng = np.random.default_rng(seed)
    normalizer = Normalizer("pixel", rng.normal(0, 0.1, SEISMIC_SHAPE), rng.uniform(0.5, 2.0, SEISMIC_SHAPE))
    # Untrained, the net's output hardly depends on its input (BatchNorm running stats 0/1 let the signal
    # fade): calibrate the running stats on random data so the output moves by ~100s of m/s with the input,
    # and a wrong flip, source order or normalizer shows in the comparisons below.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average
    with torch.no_grad():
        Predictor(model, normalizer).train().single_pass(torch.randn(2, *SEISMIC_SHAPE))
    model.eval()
    save_checkpoint(path, make_checkpoint_state(cfg, model, normalizer))
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("ckpt")
    return [make_checkpoint(d / "a.pt", 1), make_checkpoint(d / "b.pt", 2)]


def write_test_dir(d: Path, seed: int = 0) -> Path:
    """The real float16 test file plus two random ones (float32 and float16)."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shutil.copyfile(REAL_TEST_FILE, d / f"{OIDS[0]}.npy")
    np.save(d / f"{OIDS[1]}.npy", rng.standard_normal(SEISMIC_SHAPE, dtype=np.float32) * 0.5)
    np.save(d / f"{OIDS[2]}.npy", (rng.standard_normal(SEISMIC_SHAPE) * 2).astype(np.float16))
    return d


@pytest.fixture(scope="module")
def test_dir(tmp_path_factory) -> Path:
    return write_test_dir(tmp_path_factory.mktemp("test"))


_REFERENCE: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}


def reference(ckpt: Path, test_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Independent reference for one checkpoint: ``(direct, flipped back)``, each ``[len(OIDS), 70, 70]`` m/s.

    ``direct`` = model(normalizer(x)); ``flipped back`` = the prediction for the survey flipped with numpy
    (source order and receivers reversed), reversed along x. Wired by hand on purpose, sharing no code with
    fwi.inference.Predictor, which fwi.predict runs. Cached per (checkpoint, folder).
    """
    key = (str(ckpt), str(test_dir))
    if key not in _REFERENCE:
        model, normalizer, _ = restore_model(load_checkpoint(ckpt))
        direct, back = [], []
        for oid in OIDS:  # one file at a time: no batching logic shared with fwi.predict
            x = np.load(test_dir / f"{oid}.npy").astype(np.float32)  # [5, 1000, 70]
            flipped = np.ascontiguousarray(x[::-1, :, ::-1])
            with torch.no_grad():
                direct.append(model(normalizer(torch.from_numpy(x)[None]))[0, 0].numpy())
                back.append(model(normalizer(torch.from_numpy(flipped)[None]))[0, 0].numpy()[:, ::-1])
        _REFERENCE[key] = np.stack(direct), np.stack(back)
    return _REFERENCE[key]


def odd(maps: np.ndarray) -> dict[str, np.ndarray]:
    """``[N, 70, 70]`` in OIDS order -> oid -> the submitted ``[70, 35]`` (clipped) values."""
    return {oid: np.clip(m[:, 1::2], VMIN, VMAX) for oid, m in zip(OIDS, maps, strict=True)}


def read_maps(csv: Path) -> dict[str, np.ndarray]:
    """oid -> [70, 35] submitted values, rows in y order."""
    df = pl.read_csv(csv).with_columns(
        pl.col(ID_COLUMN).str.extract(r"^(.+)_y_(\d+)$", 1).alias("oid"),
        pl.col(ID_COLUMN).str.extract(r"^(.+)_y_(\d+)$", 2).cast(pl.Int64).alias("y"),
    ).sort("oid", "y")
    return {oid: part.select(X_COLUMNS).to_numpy() for (oid,), part in df.group_by("oid", maintain_order=True)}


def run(ckpt_paths, test_dir, out, **kw) -> dict[str, np.ndarray]:
    kw = {"batch_size": 2, "device": "cpu", "workers": 0, "float_precision": None, "progress": False, **kw}
    predict(ckpt_paths, test_dir, out, **kw)
    return read_maps(out)


def test_cli_writes_exact_competition_csv(ckpts, test_dir, tmp_path, capsys):
    out = tmp_path / "submissions" / "s.csv"
    rc = main(["--checkpoint", str(ckpts[0]), "--test-dir", str(test_dir), "--out", str(out), "--batch-size", "2",
               "--device", "cpu", "--workers", "0"])
    assert rc == 0, capsys.readouterr().err
    lines = out.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS) == "oid_ypos," + ",".join(f"x_{x}" for x in range(1, 70, 2))
    df = pl.read_csv(out)
    assert df.columns == COLUMNS and len(df) == NZ * len(OIDS)
    assert sorted(df[ID_COLUMN].to_list()) == sorted(f"{o}_y_{y}" for o in OIDS for y in range(NZ))
    values = df.select(X_COLUMNS).to_numpy()
    assert np.isfinite(values).all() and values.min() >= VMIN and values.max() <= VMAX
    expected = odd(reference(ckpts[0], test_dir)[0])
    got = read_maps(out)
    for oid in OIDS:  # float32 round-off (batched differently) at ~3000 m/s, plus float_precision=2 rounding
        np.testing.assert_allclose(got[oid], expected[oid], atol=ATOL, rtol=0)
    assert [ln for ln in capsys.readouterr().out.splitlines()] == [str(out)]


def test_ensemble_is_mean_of_members(ckpts, test_dir, tmp_path):
    both = run(ckpts, test_dir, tmp_path / "ab.csv")
    a, b = (reference(c, test_dir)[0] for c in ckpts)
    assert np.abs(a - b).mean() > 10.0  # the members really differ
    expected = odd((a + b) / 2)
    for oid in OIDS:
        np.testing.assert_allclose(both[oid], expected[oid], atol=ATOL, rtol=0)


def test_flip_tta_averages_direct_and_flipped_back(ckpts, test_dir, tmp_path):
    tta = run(ckpts[:1], test_dir, tmp_path / "tta.csv", tta="flip")
    direct, back = reference(ckpts[0], test_dir)
    assert np.abs(direct - back).mean() > 10.0  # the flipped survey really predicts differently
    expected = odd((direct + back) / 2)
    for oid in OIDS:
        np.testing.assert_allclose(tta[oid], expected[oid], atol=ATOL, rtol=0)


def test_failure_mid_write_leaves_no_output(ckpts, test_dir, tmp_path, monkeypatch):
    real_flush = predict_module.ChunkedCsvWriter.flush

    def flaky_flush(self):
        real_flush(self)  # the header and first rows reach the temporary file ...
        raise RuntimeError("disk full")  # ... then the write fails

    monkeypatch.setattr(predict_module.ChunkedCsvWriter, "flush", flaky_flush)
    kw = {"batch_size": 1, "device": "cpu", "workers": 0, "chunk_files": 1, "progress": False}
    out = tmp_path / "new" / "s.csv"
    with pytest.raises(RuntimeError, match="disk full"):
        predict(ckpts[:1], test_dir, out, **kw)
    assert list(out.parent.iterdir()) == []  # no output, no temporary file left behind
    old = tmp_path / "old" / "s.csv"
    old.parent.mkdir()
    old.write_text("previous submission\n")
    with pytest.raises(RuntimeError, match="disk full"):
        predict(ckpts[:1], test_dir, old, force=True, **kw)
    assert old.read_text() == "previous submission\n" and list(old.parent.iterdir()) == [old]  # untouched


@pytest.fixture
def bad_test_dir(tmp_path) -> Path:
    d = write_test_dir(tmp_path / "bad_test")
    np.save(d / "0badshape0.npy", np.zeros((5, 999, 70), np.float32))  # wrong shape
    good = (d / f"{OIDS[1]}.npy").read_bytes()
    (d / "0truncated.npy").write_bytes(good[: len(good) // 2])  # truncated
    return d


def test_bad_test_file_stops_with_one_line_error_naming_it(ckpts, bad_test_dir, tmp_path, capsys):
    out = tmp_path / "s.csv"
    rc = main(["--checkpoint", str(ckpts[0]), "--test-dir", str(bad_test_dir), "--out", str(out), "--device", "cpu",
               "--workers", "1", "--batch-size", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert err[-1].startswith("error: ") and "0badshape0.npy" in err[-1] and "--skip-bad" in err[-1]
    assert "wrong shape" in err[-1]
    assert not out.exists()


def test_skip_bad_writes_fallback_rows_and_lists_files(ckpts, bad_test_dir, tmp_path, capsys):
    out = tmp_path / "s.csv"
    predict(ckpts[:1], bad_test_dir, out, batch_size=2, device="cpu", workers=1, skip_bad=True,
            float_precision=None, progress=False)
    maps = read_maps(out)
    assert sorted(maps) == sorted([*OIDS, "0badshape0", "0truncated"])
    fallback = np.mean([maps[o] for o in OIDS], axis=0)  # documented: mean of the good files' predictions
    for oid in ("0badshape0", "0truncated"):
        np.testing.assert_allclose(maps[oid], fallback, atol=ATOL, rtol=0)
    err = capsys.readouterr().err
    assert "2 bad test files" in err
    assert str(bad_test_dir / "0badshape0.npy") in err and str(bad_test_dir / "0truncated.npy") in err


def test_all_bad_with_skip_bad_is_an_error(ckpts, tmp_path):
    d = tmp_path / "t"
    d.mkdir()
    np.save(d / "a.npy", np.zeros((5, 1000, 69), np.float32))
    with pytest.raises(predict_module.FwiError, match="all 1 test files are bad"):
        predict(ckpts[:1], d, tmp_path / "s.csv", device="cpu", workers=0, skip_bad=True, progress=False)
    assert not (tmp_path / "s.csv").exists()


def test_cli_config_keys_and_missing_inputs(ckpts, test_dir, capsys, tmp_path):
    assert main(["--checkpoint", str(ckpts[0]), "--device", "cpu"]) == 1
    assert capsys.readouterr().err.strip() == "error: no test directory: pass --test-dir DIR (or data.test_dir=DIR)"
    assert main(["--test-dir", str(test_dir)]) == 1
    assert "no checkpoints given" in capsys.readouterr().err
    assert main(["--checkpoint", str(tmp_path / "nope.pt"), "--test-dir", str(test_dir), "--device", "cpu"]) == 1
    assert capsys.readouterr().err.strip() == f"error: checkpoint not found: {tmp_path / 'nope.pt'}"
    with pytest.raises(SystemExit) as info:
        main(["--print-config", "--checkpoint", "x.pt", "--tta", "flip", "predict.batch_size=7", "--no-skip-bad"])
    assert info.value.code == 0
    printed = capsys.readouterr().out
    assert "checkpoints: [x.pt]" in printed and "tta: flip" in printed and "batch_size: 7" in printed


def test_predict_batch_shapes_and_clip(ckpts):
    members = predict_module.load_ensemble(ckpts, torch.device("cpu"), tta="flip")
    x = torch.randn(1, *SEISMIC_SHAPE) * 100
    pred = predict_module.predict_batch(members, x)
    assert pred.shape == (1, NZ, NX) and pred.dtype == torch.float32
    assert float(pred.min()) >= VMIN and float(pred.max()) <= VMAX


def test_default_output_is_named_after_the_runs_and_never_overwritten(ckpts, test_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["--test-dir", str(test_dir), "--device", "cpu", "--workers", "0", "--quiet"]
    assert main(["--checkpoint", str(ckpts[0]), "--checkpoint", str(ckpts[1]), *args]) == 0
    out = Path("submissions") / "quickstart+quickstart.csv"
    # both test checkpoints come from runs named 'quickstart': one name, once
    assert capsys.readouterr().out.strip() == str(Path("submissions") / "quickstart.csv")
    assert not out.exists() and (tmp_path / "submissions" / "quickstart.csv").is_file()
    written = (tmp_path / "submissions" / "quickstart.csv").read_bytes()
    assert main(["--checkpoint", str(ckpts[0]), *args]) == 1
    assert capsys.readouterr().err.strip() == (f"error: {Path('submissions') / 'quickstart.csv'} exists: pass --force "
                                               "to overwrite it, or --out another file")
    assert (tmp_path / "submissions" / "quickstart.csv").read_bytes() == written
    assert main(["--checkpoint", str(ckpts[0]), *args, "--force"]) == 0


def test_default_name_joins_distinct_runs(ckpts, tmp_path):
    members = predict_module.load_ensemble(ckpts, torch.device("cpu"))
    members[1].cfg = members[1].cfg.model_copy(update={"name": "convnext_b"})
    assert predict_module.default_out(members) == Path("submissions") / "quickstart+convnext_b.csv"


def test_output_that_is_a_directory_fails_before_inference(ckpts, test_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(predict_module, "load_ensemble", lambda *a, **k: pytest.fail("loaded the models"))
    assert main(["--checkpoint", str(ckpts[0]), "--test-dir", str(test_dir), "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == (f"error: --out {tmp_path} is a directory: give the CSV file to write, "
                                               f"e.g. {tmp_path / 'submission.csv'}")
    (tmp_path / "afile").write_text("")
    assert main(["--checkpoint", str(ckpts[0]), "--test-dir", str(test_dir), "--out", str(tmp_path / "afile" / "s.csv")
                 ]) == 1
    assert capsys.readouterr().err.strip() == (f"error: --out {tmp_path / 'afile' / 's.csv'}: {tmp_path / 'afile'} is "
                                               "a file, not a folder")


def test_fp16_autocast_runs_the_convolutions_in_half_precision(ckpts, test_dir, tmp_path, monkeypatch):
    seen = []
    real = predict_module.predict_batch

    def spy(members, seismic):
        conv = next(m for m in members[0].predictor.model.modules() if isinstance(m, torch.nn.Conv2d))
        handle = conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        try:
            return real(members, seismic)
        finally:
            handle.remove()

    monkeypatch.setattr(predict_module, "predict_batch", spy)
    half = run(ckpts[:1], test_dir, tmp_path / "fp16.csv", amp_dtype="fp16")  # the CSV passed validation
    assert seen and set(seen) == {torch.float16}
    assert all(np.isfinite(m).all() and VMIN <= m.min() and m.max() <= VMAX for m in half.values())
    seen.clear()
    run(ckpts[:1], test_dir, tmp_path / "auto.csv")  # auto is off on the CPU
    assert set(seen) == {torch.float32}


def test_print_config_shows_the_amp_choice(capsys):
    with pytest.raises(SystemExit):
        main(["--print-config", "predict.amp_dtype=fp16", "predict.device=cpu"])
    lines = capsys.readouterr().out.splitlines()
    assert "  amp_dtype: fp16  # auto: bf16 on GPUs" in "\n".join(lines)
    assert lines[-1] == "# predict.amp_dtype=fp16 here: fp16 autocast on cpu"
