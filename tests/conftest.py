"""Shared fixtures: tiny fake competition trees in the exact Kaggle layout (both file namings)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from fwi.physics.acquisition import SEISMIC_SHAPE, VELOCITY_SHAPE, VMAX, VMIN

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(__file__).parent / "data"
BENCHMARKS = ROOT / "benchmarks"
REAL_TEST_FILE = DATA_DIR / "kaggle_test_000039dca2.npy"
"""A real competition test file, float16 (5, 1000, 70)."""

# family -> [(seismic path, velocity path, samples)], paths relative to the family folder.
DEFAULT_SPEC: dict[str, list[tuple[str, str, int]]] = {
    "FlatVel_A": [("data/data1.npy", "model/model1.npy", 3), ("data/data2.npy", "model/model2.npy", 3)],
    "CurveFault_A": [("seis2_1_0.npy", "vel2_1_0.npy", 2), ("seis4_1_0.npy", "vel4_1_0.npy", 2)],
}


@dataclass
class FakeTree:
    """A fake Kaggle competition folder: ``root/train_samples/<family>/...`` and ``root/test/<oid>.npy``."""

    root: Path
    arrays: dict[Path, np.ndarray] = field(default_factory=dict)
    """Content written to every file, keyed by its path."""

    @property
    def train(self) -> Path:
        return self.root / "train_samples"

    @property
    def test(self) -> Path:
        return self.root / "test"

    def family(self, name: str) -> Path:
        return self.train / name


def random_pair(n: int, rng: np.random.Generator, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Random seismic ``(n, 5, 1000, 70)`` and velocity ``(n, 1, 70, 70)`` (m/s, in range) arrays."""
    seismic = rng.standard_normal((n, *SEISMIC_SHAPE), dtype=np.float32).astype(dtype)
    velocity = rng.uniform(VMIN, VMAX, (n, *VELOCITY_SHAPE)).astype(dtype)
    return seismic, velocity


def build_kaggle_tree(
    root: Path,
    spec: dict[str, list[tuple[str, str, int]]] | None = None,
    *,
    dtype=np.float32,
    seed: int = 0,
    test_files: bool = True,
) -> FakeTree:
    """Write a fake competition tree under ``root`` following ``spec`` (default :data:`DEFAULT_SPEC`).

    Every file gets distinct random content (recorded in ``FakeTree.arrays``), so a mis-paired or
    mis-indexed read is caught. ``test_files`` adds ``test/000039dca2.npy`` (the real float16 file) and
    ``test/00a1b2c3d4.npy`` (random float32).
    """
    rng = np.random.default_rng(seed)
    tree = FakeTree(Path(root))
    for family, files in (spec or DEFAULT_SPEC).items():
        for seis_rel, vel_rel, n in files:
            seismic, velocity = random_pair(n, rng, dtype)
            for rel, arr in ((seis_rel, seismic), (vel_rel, velocity)):
                path = tree.family(family) / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, arr)
                tree.arrays[path] = arr
    if test_files:
        tree.test.mkdir(parents=True)
        shutil.copyfile(REAL_TEST_FILE, tree.test / "000039dca2.npy")
        tree.arrays[tree.test / "000039dca2.npy"] = np.load(REAL_TEST_FILE)
        arr = rng.standard_normal(SEISMIC_SHAPE, dtype=np.float32)
        np.save(tree.test / "00a1b2c3d4.npy", arr)
        tree.arrays[tree.test / "00a1b2c3d4.npy"] = arr
    return tree


@pytest.fixture(scope="session")
def kaggle_tree(tmp_path_factory) -> FakeTree:
    """A shared, read-only fake tree in :data:`DEFAULT_SPEC` layout (do not modify it in a test)."""
    return build_kaggle_tree(tmp_path_factory.mktemp("kaggle"))


@pytest.fixture
def make_tree(tmp_path):
    """Factory: ``make_tree(spec=None, *, dtype=np.float32, ...)`` builds a fresh tree a test may damage."""
    count = 0

    def make(spec=None, **kwargs) -> FakeTree:
        nonlocal count
        count += 1
        return build_kaggle_tree(tmp_path / f"tree{count}", spec, **kwargs)

    return make


def source_copy(dest: Path) -> Path:
    """The files a build of the package reads, copied to ``dest``: builds from the copy leave no ``build/`` in the
    repository (whose stale files setuptools would put into later wheels)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("fwi", "configs"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


def _load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` (scripts, not a package) as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_benchmark():
    """The loader of benchmark scripts: ``load_benchmark("realism")`` -> module."""
    return _load_benchmark
