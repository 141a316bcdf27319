"""Competition data: file discovery and validation (:mod:`.layout`), the sample manifest and its split
(:mod:`.manifest`), and torch Datasets over memory-mapped files (:mod:`.dataset`).

``python -m fwi.data --root DIR`` validates a data folder and prints a summary.
"""

from fwi.data.layout import (
    Family,
    FilePair,
    discover_families,
    list_test_files,
    load_test_file,
    read_npy_header,
    scan_values,
)
from fwi.data.manifest import build_manifest, manifest_from_families, split_summary

__all__ = [
    "Family",
    "FilePair",
    "SeismicDataset",
    "TestDataset",
    "build_manifest",
    "discover_families",
    "list_test_files",
    "load_test_file",
    "manifest_from_families",
    "read_npy_header",
    "scan_values",
    "split_summary",
]


def __getattr__(name: str):
    # The Datasets import torch (~1.5 s): load them on first use so `python -m fwi.data` starts fast.
    if name in ("SeismicDataset", "TestDataset"):
        from fwi.data import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
