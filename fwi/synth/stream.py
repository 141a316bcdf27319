"""On-the-fly training data: velocity maps generated, augmented and simulated on the training device.

``SyntheticStream`` yields ``(seismic [B, 5, 1000, 70], velocity [B, 1, 70, 70] m/s, family_id [B])`` batches,
already on its device, with no disk in between: the data source of unlimited exact training pairs. Batch ``i``
of epoch ``e`` depends only on ``(seed, e, i)``, so a resumed run replays the same stream.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from fwi.physics.acquisition import DEFAULT, Acquisition
from fwi.physics.simulator import simulate
from fwi.synth.augment import VelocityAugment, augment
from fwi.synth.families import generate


class SyntheticStream:
    """``batches_per_epoch`` batches of ``batch_size`` fresh samples per epoch, families drawn uniformly."""

    def __init__(self, families: Sequence[str], batch_size: int, batches_per_epoch: int, *, seed: int = 0,
                 device: torch.device | str = "cpu", velocity_augment: VelocityAugment | None = None,
                 acquisition: Acquisition = DEFAULT):
        self.families = list(families)
        self.batch_size, self.batches_per_epoch = batch_size, batches_per_epoch
        self.seed, self.device = seed, torch.device(device)
        self.velocity_augment, self.acquisition = velocity_augment, acquisition
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches_per_epoch

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch ``index`` of the current epoch."""
        seed = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
        rng = np.random.default_rng(seed)
        family_ids = torch.from_numpy(rng.integers(0, len(self.families), self.batch_size))
        maps = torch.empty(self.batch_size, self.acquisition.nz, self.acquisition.nx, device=self.device)
        for fid in family_ids.unique().tolist():
            sel = (family_ids == fid).nonzero()[:, 0]
            maps[sel.to(self.device)] = generate(self.families[fid], len(sel), seed + fid, device=self.device)
        if self.velocity_augment is not None:
            g = torch.Generator(device=self.device).manual_seed(seed)
            maps = augment(maps, g, self.velocity_augment)
        with torch.no_grad():
            seismic = simulate(maps, self.acquisition)  # [B, 5, nt, 70]
        return seismic, maps[:, None], family_ids

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if self.device.type != "cuda":
            for index in range(self.batches_per_epoch):
                yield self.batch(index)
            return
        # On a GPU the next batch is drawn and simulated on a side stream while the consumer's work (a
        # training step: compute-bound, where the simulator is memory-bound) runs on the current one.
        main, side = torch.cuda.current_stream(self.device), torch.cuda.Stream(self.device)

        def launch(index: int):
            side.wait_stream(main)
            with torch.cuda.stream(side):
                return self.batch(index)

        pending = launch(0) if self.batches_per_epoch else None
        for index in range(self.batches_per_epoch):
            ready = pending
            main.wait_stream(side)
            for tensor in ready:
                if tensor.is_cuda:
                    tensor.record_stream(main)  # freed only after the main stream's use
            pending = launch(index + 1) if index + 1 < self.batches_per_epoch else None
            yield ready
