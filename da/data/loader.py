"""Endless, resumable batch streams.

The order of every epoch and the augmentation of every batch are functions of
(seed, epoch, batch index) alone, so a run stopped mid-epoch resumes on exactly the batch
it would have drawn next: the loader's state is just (epoch, batches taken).

Under torchrun every rank computes the same global permutation and takes its own slice of
each global batch (rank r: positions r*B/K ... (r+1)*B/K), so the ranks see disjoint
samples, their union is exactly the single-process batch, and (epoch, taken) - identical
on every rank - still says where to resume.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

# Mixed into the batch seed of ranks > 0: a batch-level augmentation generator (one noise
# tensor per batch) would otherwise give every rank's slice the same noise.
RANK_SEED_STRIDE = 0x9E3779B97F4A7C15


class EpochBatchSampler:
    """Yields lists of (index, batch_seed) keys; a fresh permutation per epoch.

    batch_size is the global batch; with world > 1 each rank yields its slice of it."""

    def __init__(self, size: int, batch_size: int, seed: int, shuffle: bool = True,
                 epoch: int = 0, skip: int = 0, rank: int = 0, world: int = 1):
        if size < batch_size:
            raise ValueError(f"dataset of {size} samples is smaller than batch size {batch_size}")
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} does not split over {world} processes "
                             "(train.batch_size is the global batch per domain)")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside a world of {world}")
        self.size, self.batch_size, self.seed, self.shuffle = size, batch_size, seed, shuffle
        self.epoch, self.skip, self.rank, self.world = epoch, skip, rank, world

    def batches_per_epoch(self) -> int:
        return self.size // self.batch_size  # drop_last: every batch has the same size

    def epoch_keys(self, epoch: int) -> list[list[tuple[int, int]]]:
        """Every batch of one epoch, as this rank's keys."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(self.size, generator=g) if self.shuffle else torch.arange(self.size)
        batch_seeds = torch.randint(0, 2**62, (self.batches_per_epoch(),), generator=g)
        part = self.batch_size // self.world
        out = []
        for b in range(self.batches_per_epoch()):
            start = b * self.batch_size + self.rank * part
            idx = order[start : start + part].tolist()
            bs = (int(batch_seeds[b]) + self.rank * RANK_SEED_STRIDE) % 2**62
            out.append([(i, bs) for i in idx])
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, skip = self.epoch, self.skip
        while True:
            yield from self.epoch_keys(epoch)[skip:]
            epoch, skip = epoch + 1, 0


def _passthrough(batch):
    return batch


class EndlessLoader:
    """Infinite iterator of batch dicts over a dataset that implements __getitems__(keys)."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, shuffle: bool = True,
                 num_workers: int = 0, rank: int = 0, world: int = 1, pin_memory: bool = False):
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.shuffle, self.num_workers, self.pin_memory = shuffle, num_workers, pin_memory
        self.rank, self.world = rank, world
        self.epoch, self.taken = 0, 0
        self._iter: Iterator | None = None
        # Check the sizes now (a clear error before training starts, not at the first batch).
        EpochBatchSampler(len(dataset), batch_size, seed, shuffle, rank=rank, world=world)

    def _start(self) -> None:
        sampler = EpochBatchSampler(len(self.dataset), self.batch_size, self.seed, self.shuffle,
                                    self.epoch, self.taken, self.rank, self.world)
        # A private generator: DataLoader draws a base seed when an iterator starts, and
        # drawing it from the global RNG would shift dropout after a resume.
        loader = DataLoader(self.dataset, batch_sampler=sampler, collate_fn=_passthrough,
                            num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                            pin_memory=self.pin_memory,
                            generator=torch.Generator().manual_seed(self.seed))
        self._per_epoch = sampler.batches_per_epoch()
        self._iter = iter(loader)

    def __iter__(self) -> EndlessLoader:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self._iter is None:
            self._start()
        batch = next(self._iter)
        # Count consumption here, not in the sampler, which runs ahead when workers prefetch.
        self.taken += 1
        if self.taken == self._per_epoch:
            self.epoch, self.taken = self.epoch + 1, 0
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "taken": self.taken}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.taken = int(state["epoch"]), int(state["taken"])
        self._iter = None  # restart the stream at the saved position
