"""The project installs like a library: a torch range (not a pin), every package listed, and a non-editable
install that finds the shipped configs by name from any folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import source_copy
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirement(name: str) -> Requirement:
    found = [Requirement(r) for r in PYPROJECT["project"]["dependencies"] if Requirement(r).name == name]
    assert len(found) == 1, name
    return found[0]


def test_torch_is_a_range_that_the_ci_build_satisfies():
    torch_req = requirement("torch")
    assert torch_req.specifier, "torch needs a lower bound"
    assert all(spec.operator not in ("==", "===", "~=") for spec in torch_req.specifier), str(torch_req)
    assert "2.13.0" in torch_req.specifier and "2.4.0" in torch_req.specifier  # CI's build; the oldest supported
    assert "2.3.1" not in torch_req.specifier  # no torch.amp.GradScaler("cpu") before 2.3, nor the rest before 2.4


def test_every_package_folder_is_listed():
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "fwi").rglob("__init__.py")}
    assert set(PYPROJECT["tool"]["setuptools"]["packages"]) == on_disk | {"fwi.configs"}


@pytest.mark.slow
def test_non_editable_install_finds_the_shipped_configs(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(target), str(source_copy(tmp_path / "src"))], check=True, capture_output=True,
                   timeout=300)
    installed = {p.relative_to(target / "fwi").as_posix() for p in (target / "fwi").rglob("*")
                 if p.suffix in (".py", ".yaml")}
    shipped = {p.relative_to(ROOT / "fwi").as_posix() for p in (ROOT / "fwi").rglob("*.py")}
    shipped |= {f"configs/{p.name}" for p in (ROOT / "configs").glob("*.yaml")}
    assert installed == shipped
    elsewhere = tmp_path / "elsewhere"  # no configs/ folder and no fwi/ source here
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1"}
    show = "import fwi.config as c; print(c.__file__); print(c.packaged_configs())"
    out = subprocess.run([sys.executable, "-c", show], capture_output=True, text=True, cwd=elsewhere, env=env,
                         check=True)
    assert out.stdout.splitlines() == [str(target / "fwi" / "config.py"), str(target / "fwi" / "configs")]
    out = subprocess.run([sys.executable, "-m", "fwi.train", "--config", "inversionnet", "--print-config"],
                         capture_output=True, text=True, cwd=elsewhere, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "name: inversionnet" in out.stdout
