"""fwi.score (metric vs an independent numpy MAE, id checks) and fwi.submit (validation, the kaggle call)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from fwi import submit as submit_module
from fwi.errors import FwiError
from fwi.physics.acquisition import NX, NZ, VMAX, VMIN
from fwi.score import main as score_main
from fwi.score import score
from fwi.submission import COLUMNS, FAMILY_COLUMN, ID_COLUMN, X_COLUMNS, SubmissionError, check_submission, rows_frame
from fwi.submit import main as submit_main

OIDS = [f"{i:010x}" for i in (1, 2, 3, 10, 11, 200)]
FAMILIES = ["FlatVel_A", "FlatVel_A", "Style_B", "CurveFault_A", "Style_B", "FlatVel_A"]


def write_csv(path: Path, oids, maps, families=None, shuffle_seed=None) -> Path:
    frame = rows_frame(oids, maps)
    if families is not None:
        frame = frame.with_columns(pl.Series(FAMILY_COLUMN, [f for f in families for _ in range(NZ)]))
    if shuffle_seed is not None:  # row order must not matter
        frame = frame.sample(fraction=1.0, shuffle=True, seed=shuffle_seed)
    frame.write_csv(path)
    return path


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(0)
    # Two decimals (float64): the CSV holds exactly these decimals, so numpy can reproduce the score to 1e-12.
    truth = np.round(rng.uniform(VMIN, VMAX, (len(OIDS), NZ, NX)), 2)
    pred = np.round(np.clip(truth + rng.normal(0, 80, truth.shape), VMIN, VMAX), 2)
    sol = write_csv(tmp_path / "solution.csv", OIDS, truth, FAMILIES)
    sub = write_csv(tmp_path / "sub.csv", OIDS, pred, shuffle_seed=1)
    return sub, sol, pred, truth


def test_score_equals_numpy_mae_per_family(pair):
    sub, sol, pred, truth = pair
    err = np.abs(pred - truth)[:, :, 1::2]  # odd x columns only
    fam = np.array(FAMILIES)
    expected = {f: err[fam == f].mean() for f in sorted(set(FAMILIES))}
    expected["all"] = err.mean()
    got = score(sub, sol)
    assert list(got) == [*sorted(set(FAMILIES)), "all"]
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12)
    assert not np.isclose(err.mean(), np.abs(pred - truth).mean(), rtol=1e-6)  # full-map MAE differs


def test_score_without_family_column_and_cli(pair, tmp_path, capsys):
    sub, _, pred, truth = pair
    sol = write_csv(tmp_path / "plain_solution.csv", OIDS, truth)
    expected = np.abs(pred - truth)[:, :, 1::2].mean()
    assert score(sub, sol) == {"all": pytest.approx(expected, rel=1e-12)}
    assert score_main(["--submission", str(sub), "--solution", str(sol)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split() == ["all", f"{expected:.3f}"]


def test_score_ids_must_match(pair, tmp_path, capsys):
    sub, sol, pred, _ = pair
    short = write_csv(tmp_path / "short.csv", OIDS[1:], pred[1:])
    with pytest.raises(SubmissionError, match=rf"ids differ from .*solution.csv: 1 test files missing \('{OIDS[0]}'\)"):
        score(short, sol)
    extra = write_csv(tmp_path / "extra.csv", [*OIDS, "abcdef0123"], np.concatenate([pred, pred[:1]]))
    assert score_main(["--submission", str(extra), "--solution", str(sol)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "1 unexpected ('abcdef0123')" in err


# ---------------------------------------------------------------------------------------- validation


def damaged(path: Path, how: str) -> Path:
    lines = path.read_text().splitlines()
    if how == "missing row":
        del lines[5]
    elif how == "duplicate row":
        lines[5] = lines[6]
    elif how == "nan":
        lines[3] = lines[3].rsplit(",", 1)[0] + ",nan"
    elif how == "empty value":
        lines[3] = lines[3].rsplit(",", 1)[0] + ","
    elif how == "wrong header":
        lines[0] = lines[0].replace("x_3,", "x_2,")
    elif how == "too high":
        lines[4] = lines[4].rsplit(",", 1)[0] + ",4500.5"
    elif how == "too low":
        lines[9] = lines[9].split(",", 1)[0] + ",1499.9," + lines[9].split(",", 2)[2]
    elif how == "bad id":
        lines[2] = "nonsense" + lines[2][lines[2].index(","):]
    elif how == "text value":
        lines[2] = lines[2].rsplit(",", 1)[0] + ",abc"
    out = path.with_name(f"damaged_{how.replace(' ', '_')}.csv")
    out.write_text("\n".join(lines) + "\n")
    return out


DAMAGE = {
    "missing row": "lack exactly one row for each of y_0..y_69",
    "duplicate row": "lack exactly one row for each of y_0..y_69",
    "nan": "0 missing and 1 NaN/Inf values",
    "empty value": "1 missing and 0 NaN/Inf values",
    "wrong header": "header column 3 is 'x_2', expected 'x_3'",
    "too high": r"velocities outside \[1500, 4500\] m/s",
    "too low": r"velocities outside \[1500, 4500\] m/s",
    "bad id": "ids must be <oid>_y_<row>, got 'nonsense'",
    "text value": "malformed CSV: could not parse `abc`",
}


@pytest.mark.parametrize("how", list(DAMAGE))
def test_check_submission_refuses_damage(pair, how):
    sub = damaged(pair[0], how)
    with pytest.raises(SubmissionError, match=DAMAGE[how]) as info:
        check_submission(sub)
    assert str(sub) in str(info.value) and "\n" not in str(info.value)


def test_check_submission_accepts_valid_and_reports(pair):
    info = check_submission(pair[0], expected_oids=OIDS)
    assert info.n_rows == NZ * len(OIDS) and info.oids == OIDS and info.columns == COLUMNS
    assert VMIN <= info.min <= info.max <= VMAX


# -------------------------------------------------------------------------------------------- submit


@pytest.fixture
def fake_kaggle(tmp_path, monkeypatch):
    """A fake ``kaggle`` package first on PYTHONPATH (``python -m kaggle`` records its arguments, one per line),
    no ``kaggle`` on PATH, and fake credentials. Returns (the package's ``__main__.py``, the record)."""
    package = tmp_path / "pkgs" / "kaggle"
    package.mkdir(parents=True)
    record = tmp_path / "kaggle_argv.txt"
    (package / "__init__.py").write_text("")
    script = package / "__main__.py"
    script.write_text(f"import sys\nopen({str(record)!r}, 'w').write(''.join(a + '\\n' for a in sys.argv[1:]))\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "pkgs"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty_bin"))  # 'kaggle' not on PATH: not needed
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("KAGGLE_CONFIG_DIR", "KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "0123")
    return script, record


def test_submit_calls_kaggle_with_exact_arguments(pair, fake_kaggle, capsys):
    _, record = fake_kaggle
    sub = pair[0]
    assert submit_main([str(sub), "-m", "tiny model, flip TTA", "--allow-partial"]) == 0, capsys.readouterr().err
    assert record.read_text().splitlines() == ["competitions", "submit", "-c", "waveform-inversion", "-f", str(sub),
                                               "-m", "tiny model, flip TTA"]


@pytest.mark.parametrize("how", ["missing row", "nan", "wrong header", "too high", "too low"])
def test_submit_refuses_invalid_csv_without_calling_kaggle(pair, fake_kaggle, capsys, how):
    _, record = fake_kaggle
    assert submit_main([str(damaged(pair[0], how)), "-m", "x", "--allow-partial"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert not record.exists()


def test_submit_needs_full_test_set_unless_partial(pair, fake_kaggle, capsys):
    _, record = fake_kaggle
    assert submit_main([str(pair[0]), "-m", "x"]) == 1
    assert "4,607,260" in capsys.readouterr().err and not record.exists()


def test_submit_checks_ids_against_test_dir(pair, fake_kaggle, tmp_path, capsys):
    _, record = fake_kaggle
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    for oid in [*OIDS[1:], "0000000fff"]:
        np.save(test_dir / f"{oid}.npy", np.zeros(1, np.float32))  # only the names matter here
    assert submit_main([str(pair[0]), "-m", "x", "--allow-partial", "--test-dir", str(test_dir)]) == 1
    err = capsys.readouterr().err
    assert "1 test files missing ('0000000fff')" in err and f"1 unexpected ('{OIDS[0]}')" in err
    assert not record.exists()


def test_submit_missing_credentials(pair, fake_kaggle, monkeypatch, tmp_path, capsys):
    _, record = fake_kaggle
    monkeypatch.delenv("KAGGLE_KEY")
    assert submit_main([str(pair[0]), "-m", "x", "--allow-partial"]) == 1
    assert capsys.readouterr().err.splitlines()[-1].startswith("error: no Kaggle credentials")
    assert not record.exists()
    config_dir = tmp_path / "kcfg"  # kaggle.json in $KAGGLE_CONFIG_DIR is enough
    config_dir.mkdir()
    (config_dir / "kaggle.json").write_text('{"username": "u", "key": "k"}')
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config_dir))
    assert submit_main([str(pair[0]), "-m", "x", "--allow-partial"]) == 0
    assert record.exists()


def test_submit_without_the_kaggle_package(pair, fake_kaggle, monkeypatch, capsys):
    _, record = fake_kaggle
    monkeypatch.setattr(submit_module, "kaggle_installed", lambda: False)
    assert submit_main([str(pair[0]), "-m", "x", "--allow-partial"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: the kaggle package is not installed for {sys.executable}: pip install kaggle (or use --dry-run to "
        "validate only)")
    assert not record.exists()


def test_dry_run_validates_without_kaggle_or_credentials(pair, fake_kaggle, monkeypatch, capsys):
    _, record = fake_kaggle
    monkeypatch.setattr(submit_module, "kaggle_installed", lambda: False)
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(var)
    assert submit_main([str(pair[0]), "-m", "tiny, flip", "--allow-partial", "--dry-run"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == [f"dry run, nothing uploaded; would run: python -m kaggle competitions submit -c "
                                    f"waveform-inversion -f {pair[0]} -m 'tiny, flip'"]
    assert out.err.startswith(f"{pair[0]}: valid, 420 rows (6 test files)")
    assert submit_main([str(damaged(pair[0], "nan")), "-m", "x", "--allow-partial", "--dry-run"]) == 1  # validated
    assert capsys.readouterr().err.startswith("error: ")
    assert not record.exists()


def test_the_csv_is_validated_before_credentials_are_checked(pair, fake_kaggle, monkeypatch, capsys):
    monkeypatch.delenv("KAGGLE_KEY")
    assert submit_main([str(damaged(pair[0], "nan")), "-m", "x", "--allow-partial"]) == 1
    assert "NaN/Inf values" in capsys.readouterr().err  # the file's problem, not the missing credentials


def test_submit_reports_kaggle_failure(pair, fake_kaggle, capsys):
    script, _ = fake_kaggle
    script.write_text("import sys\nprint('uploading...', file=sys.stderr)\n"
                      "print('403 - Forbidden: rules not accepted', file=sys.stderr)\nsys.exit(1)\n")
    with pytest.raises(FwiError, match=r"failed \(exit 1\): 403 - Forbidden: rules not accepted$"):
        submit_module.submit(pair[0], "x", allow_partial=True)
    assert submit_main([str(pair[0]), "-m", "x", "--allow-partial"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: kaggle competitions submit failed (exit 1): 403 - Forbidden: rules not accepted")


def test_submit_cli_argument_handling(pair, fake_kaggle, capsys):
    _, record = fake_kaggle
    # Options may come before the CSV, and overrides may follow it.
    assert submit_main(["-m", "msg", str(pair[0]), "--allow-partial", "--competition", "other-comp", "seed=3"]) == 0
    assert record.read_text().splitlines()[:4] == ["competitions", "submit", "-c", "other-comp"]
    with pytest.raises(SystemExit):
        submit_main(["-m", "msg"])  # no CSV
    assert "exactly one submission CSV" in capsys.readouterr().err
    assert submit_main([str(pair[0]), "-m", "  ", "--allow-partial"]) == 1
    assert "empty submission message" in capsys.readouterr().err
    assert submit_main([str(pair[0].with_name("nope.csv")), "-m", "x", "--allow-partial"]) == 1
    assert capsys.readouterr().err.strip() == f"error: submission file not found: {pair[0].with_name('nope.csv')}"


def test_full_row_count_constant():
    assert submit_module.FULL_ROWS == 4_607_260
    assert ID_COLUMN == COLUMNS[0] and len(X_COLUMNS) == 35
