"""Endless, resumable batch streams.

The order of every epoch and the augmentation of every batch are functions of
(seed, epoch, batch index) alone, so a run stopped mid-epoch resumes on exactly the batch
it would have drawn next: the loader's state is just (epoch, batches taken).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset


class EpochBatchSampler:
    """Yields lists of (index, batch_seed) keys; a fresh permutation per epoch."""

    def __init__(self, size: int, batch_size: int, seed: int, shuffle: bool = True,
                 epoch: int = 0, skip: int = 0):
        if size < batch_size:
            raise ValueError(f"dataset of {size} samples is smaller than batch size {batch_size}")
        self.size, self.batch_size, self.seed, self.shuffle = size, batch_size, seed, shuffle
        self.epoch, self.skip = epoch, skip

    def batches_per_epoch(self) -> int:
        return self.size // self.batch_size  # drop_last: every batch has the same size

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, skip = self.epoch, self.skip
        while True:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            order = torch.randperm(self.size, generator=g) if self.shuffle else torch.arange(self.size)
            batch_seeds = torch.randint(0, 2**62, (self.batches_per_epoch(),), generator=g)
            for b in range(skip, self.batches_per_epoch()):
                idx = order[b * self.batch_size : (b + 1) * self.batch_size].tolist()
                yield [(i, int(batch_seeds[b])) for i in idx]
            epoch, skip = epoch + 1, 0


def _passthrough(batch):
    return batch


class EndlessLoader:
    """Infinite iterator of batch dicts over a dataset that implements __getitems__(keys)."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, shuffle: bool = True,
                 num_workers: int = 0):
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.shuffle, self.num_workers = shuffle, num_workers
        self.epoch, self.taken = 0, 0
        self._iter: Iterator | None = None

    def _start(self) -> None:
        sampler = EpochBatchSampler(len(self.dataset), self.batch_size, self.seed, self.shuffle,
                                    self.epoch, self.taken)
        # A private generator: DataLoader draws a base seed when an iterator starts, and
        # drawing it from the global RNG would shift dropout after a resume.
        loader = DataLoader(self.dataset, batch_sampler=sampler, collate_fn=_passthrough,
                            num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
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
