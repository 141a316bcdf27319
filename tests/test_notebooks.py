"""The notebooks run headless, top to bottom, on a tiny fake tree and a tiny run, and are committed clean; the
Kaggle notebook installs the project from a freshly built wheel and predicts a tiny fake test folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import build_kaggle_tree, source_copy
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from fwi.config import load_config
from fwi.train import train

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
EDA, RESULTS, KAGGLE = NOTEBOOKS / "eda.ipynb", NOTEBOOKS / "results.ipynb", NOTEBOOKS / "kaggle_submit.ipynb"
CELL_TIMEOUT = 120  # seconds per cell


def test_committed_notebooks_have_no_outputs():
    for path in (EDA, RESULTS, KAGGLE):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory) -> KernelSpecManager:
    """A ``python3`` kernelspec that runs this interpreter (the venv's), whatever else is installed."""
    kernels = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(kernels / "python3")  # argv: [sys.executable, -m, ipykernel_launcher, ...]
    return KernelSpecManager(kernel_dirs=[str(kernels)])


def execute(path: Path, kernel_specs: KernelSpecManager, **env: str) -> nbformat.NotebookNode:
    """Run the notebook at ``path`` in a fresh kernel (cwd: notebooks/, as in Jupyter) with ``env`` added."""
    nb = nbformat.read(path, as_version=4)
    km = KernelManager(kernel_name="python3", kernel_spec_manager=kernel_specs)
    client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute(env={**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
                        **env})
    assert km.kernel_spec.argv[0] == sys.executable
    return nb


def images(nb: nbformat.NotebookNode) -> int:
    """Number of PNG figures in the executed notebook's outputs."""
    return sum("image/png" in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
               for out in cell.outputs)


def test_notebooks_run_on_a_tiny_tree_and_run(tmp_path, kernel_specs):
    tree = build_kaggle_tree(tmp_path / "kaggle", test_files=False)
    stats = tmp_path / "stats"
    cfg = load_config(None, [f"data.root={tree.root}", f"train.out_dir={tmp_path / 'runs'}",
                             f"normalize.cache_dir={stats}", "name=nb", "model.width=2",
                             "train.batch_size=2", "train.workers=0", "train.epochs=2", "train.tensorboard=false",
                             "train.plot=false"])
    train(cfg, progress=False)

    eda = execute(EDA, kernel_specs, FWI_DATA_ROOT=str(tree.root), FWI_STATS_CACHE=str(stats))
    # families, real maps, data-root maps, gathers, its velocity, trace, amplitudes, normalization
    assert images(eda) >= 8
    assert len(list(stats.iterdir())) == 1  # the notebook reused training's normalization stats

    results = execute(RESULTS, kernel_specs, FWI_RUN_DIR=str(tmp_path / "runs" / "nb"))
    assert images(results) >= 3  # curves, per-family bars, predictions
    table = results.cells[-1].outputs[0]["data"]["text/plain"]
    assert "FlatVel_A" in table and "CurveFault_A" in table and "all" in table


def test_results_notebook_says_to_train_first_without_a_run(tmp_path, kernel_specs):
    with pytest.raises(CellExecutionError, match="run `python -m fwi.train` first"):
        execute(RESULTS, kernel_specs, FWI_RUN_DIR=str(tmp_path / "no_run"))


def test_kaggle_notebook_installs_the_wheel_and_writes_the_submission(tmp_path, kernel_specs):
    from test_predict import OIDS, make_checkpoint, read_maps, write_test_dir

    from fwi.export import export
    from fwi.predict import predict

    wheels, models, site = tmp_path / "wheel", tmp_path / "model", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(wheels), str(source_copy(tmp_path / "src"))], check=True, capture_output=True,
                   timeout=300)
    export(make_checkpoint(tmp_path / "best.pt", 1), models / "run_a.pt")
    test_dir = write_test_dir(tmp_path / "test")
    out = tmp_path / "working" / "submission.csv"
    site.mkdir()
    # pip installs into site/ (not over this environment's editable fwi), which the kernel imports first; the
    # dependencies are this environment's, as the Kaggle image's are on Kaggle.
    nb = execute(KAGGLE, kernel_specs, FWI_WHEELS=str(wheels), FWI_MODELS=str(models), FWI_TEST_DIR=str(test_dir),
                 FWI_OUT=str(out), FWI_BATCH_SIZE="2", PIP_TARGET=str(site), PIP_NO_DEPS="1", PYTHONPATH=str(site),
                 CUDA_VISIBLE_DEVICES="")
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert f"fwi from {site / 'fwi'}" in printed  # the wheel's copy ran, not the repository's
    assert f"{out}: 210 rows, 3 test files" in printed and "partial: the full test set has 4,607,260 rows" in printed
    expected = predict([models / "run_a.pt"], test_dir, tmp_path / "direct.csv", tta="flip", batch_size=2,
                       device="cpu", workers=0, progress=False)
    got, want = read_maps(out), read_maps(expected)
    assert sorted(got) == sorted(OIDS)
    for oid in OIDS:
        assert (got[oid] == want[oid]).all()
