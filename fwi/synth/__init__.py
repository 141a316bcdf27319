"""Synthetic velocity maps for re-simulation: the ten OpenFWI-like families and velocity-space augmentations.

- :mod:`fwi.synth.families`: seeded, vectorised generators, ``generate(family, n, seed, device) -> [n, 70, 70]`` m/s.
- :mod:`fwi.synth.augment`: flips, warps, stretches, blends and scalings of ``[B, 70, 70]`` maps that keep them valid.

Nothing is imported here, so ``import fwi.synth`` stays cheap; import the submodules you need.
"""
