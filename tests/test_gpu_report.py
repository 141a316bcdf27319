"""``benchmarks/gpu_report.py --smoke``: every stage of the GPU report runs on the CPU and prints its table.

The smoke run goes through the same code as the GPU run (Triton kernels in the interpreter), so the report
cannot rot between GPU sessions; its accuracy columns are checked here, its speeds mean nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def tables(markdown: str) -> dict[str, list[dict[str, str]]]:
    """``{title: rows}`` of the report's Markdown tables, each row a dict keyed by the header."""
    out, title = {}, None
    for block in markdown.split("\n## "):
        lines = block.strip().splitlines()
        title = lines[0].removeprefix("## ")
        rows = [line.strip("|").split(" | ") for line in lines if line.startswith("| ")]
        if rows:
            header = [h.strip() for h in rows[0]]
            out[title] = [dict(zip(header, (c.strip() for c in row), strict=True)) for row in rows[1:]]
    return out


@pytest.mark.slow
def test_smoke_run_prints_every_table(tmp_path):
    pytest.importorskip("triton")
    report = tmp_path / "report.md"
    run = subprocess.run([sys.executable, "benchmarks/gpu_report.py", "--smoke", "--out", str(report)], cwd=ROOT,
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-4000:]
    found = tables(report.read_text())
    assert list(found) == ["Simulator forward", "Triton options", "Simulator forward + gradient",
                           "Training step (model only)", "Training step: on-the-fly simulated batches vs model only",
                           "Predict (flip TTA)", "Refinement"]
    assert "## Simulator forward\n" in run.stdout  # printed as well as written

    forward = found["Simulator forward"]
    exact = [r for r in forward if r["path"] != "torch compiled" and "wavefield" not in r["path"]]
    assert len(exact) == 4 and all(r["rel L2 vs real pair"] == "0" and r["rel L2 vs CPU"] == "0" for r in exact)
    rounded = [r for r in forward if "wavefield" in r["path"]]
    assert len(rounded) == 2 and all(0 < float(r["rel L2 vs CPU"]) < 1e-2 for r in rounded)
    assert all(r["rel L2 vs CPU"] == "0" for r in found["Triton options"])

    gradient = {r["path"]: r for r in found["Simulator forward + gradient"]}
    assert float(gradient["triton default"]["grad rel L2 vs eager"]) <= 1e-5

    training = found["Training step (model only)"]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gpu_report import TRAIN_VARIANTS

    for config in ("inversionnet", "convnext_unet", "caformer_unet"):
        measured = {(r["precision"], r["compile"], r["channels_last"]) for r in training if r["config"] == config}
        assert {(p, str(c), str(cl)) for p, c, cl in TRAIN_VARIANTS} <= measured
    assert all(float(r["steps/s"]) > 0 for r in training)
    assert {r["config"] for r in found["Training step: on-the-fly simulated batches vs model only"]} == {
        "inversionnet", "convnext_unet", "caformer_unet"}
    assert all(r["test files"] == "4" for r in found["Predict (flip TTA)"])
    refine = found["Refinement"][0]
    assert float(refine["maps/s"]) > 0 and refine["gradients per map"] == "1"
