"""Checkpoints load weights-only: a pickle gadget runs nothing, damaged or foreign files are one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_predict import make_checkpoint, write_test_dir

from fwi.checkpoint import load_checkpoint, restore_model
from fwi.errors import FwiError


class Gadget:
    """Pickles as a call of ``os.system(command)``: what an attacker puts in a shared checkpoint."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def evil_checkpoint(path: Path, marker: Path) -> Path:
    """A file that looks like an fwi checkpoint and creates ``marker`` when unpickled without weights_only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format_version": 1, "config": {}, "model": Gadget(f"touch {marker}"), "normalizer_mode": "pixel",
                "normalizer": {}}, path)
    return path


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_the_gadget_does_run_code_when_loaded_unsafely(tmp_path):
    """The fixture is a real attack: an ordinary torch.load executes it (so the refusals below mean something)."""
    marker = tmp_path / "marker"
    torch.load(evil_checkpoint(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.exists()


def test_predict_refuses_a_pickle_gadget_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = evil_checkpoint(tmp_path / "evil.pt", marker)
    test_dir = write_test_dir(tmp_path / "test")
    out = run_cli("fwi.predict", "--checkpoint", str(evil), "--test-dir", str(test_dir), "--out", "s.csv",
                  "--device", "cpu", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"error: checkpoint {evil} refused: it holds a Python object (posix.system); loading it could run code, "
        "so only weights-only checkpoints load (re-export it from a trusted copy with python -m fwi.export)"]
    assert not marker.exists() and not (tmp_path / "s.csv").exists()


def test_train_resume_refuses_a_pickle_gadget_and_runs_nothing(tmp_path, kaggle_tree):
    marker = tmp_path / "pwned"
    run_dir = tmp_path / "runs" / "shared"
    evil_checkpoint(run_dir / "last.pt", marker)
    out = run_cli("fwi.train", "--resume", "name=shared", f"train.out_dir={tmp_path / 'runs'}",
                  f"data.root={kaggle_tree.root}", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"error: checkpoint {run_dir / 'last.pt'} refused: it holds a Python object (posix.system); loading it could "
        "run code, so only weights-only checkpoints load (re-export it from a trusted copy with python -m fwi.export)"]
    assert not marker.exists()
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "last.pt"]  # nothing written


def test_saved_checkpoints_are_plain_tensors_and_values(tmp_path):
    path = make_checkpoint(tmp_path / "a.pt", 1)
    state = torch.load(path, weights_only=True)  # what load_checkpoint does; would raise on any other object
    assert state["format_version"] == 1 and state["config"]["model"]["name"] == "inversionnet"


def test_damaged_and_foreign_files_are_one_line_errors(tmp_path):
    good = make_checkpoint(tmp_path / "good.pt", 1)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:5000])
    damaged = rf"^checkpoint {truncated} is unreadable, truncated or not a torch file \("
    with pytest.raises(FwiError, match=damaged) as info:
        load_checkpoint(truncated)
    assert "\n" not in str(info.value)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(FwiError, match=rf"^checkpoint {text} is unreadable, truncated or not a torch file"):
        load_checkpoint(text)
    foreign = tmp_path / "resnet.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), foreign)  # someone else's weights
    with pytest.raises(FwiError, match=rf"^checkpoint {foreign} is not an fwi checkpoint \(format 1\)$"):
        load_checkpoint(foreign)
    partial = tmp_path / "partial.pt"
    torch.save({"format_version": 1, "config": {}}, partial)
    with pytest.raises(FwiError, match=rf"^checkpoint {partial} is incomplete: no model, normalizer_mode, normalizer$"):
        load_checkpoint(partial)
    state = load_checkpoint(good)
    state["config"]["model"]["width"] = 4  # weights of a width-2 net
    with pytest.raises(FwiError, match=r"^x.pt: its weights do not fit its model config \(Error\(s\) in loading "):
        restore_model(state, source="x.pt")
    state["config"]["train"]["nope"] = 1
    with pytest.raises(FwiError, match=r"^x.pt: its saved config does not fit this version of fwi \(train.nope: "):
        restore_model(state, source="x.pt")
