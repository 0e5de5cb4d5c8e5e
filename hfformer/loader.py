"""Training windows as tensors: data_loaders.windows.Windows (numpy) served to PyTorch.

Batches are made whole (Windows.batch, vectorised) and handed over with torch.from_numpy, no copy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from data_loaders.windows import Windows


class WindowDataset(Windows, Dataset):
    """Windows whose items and batches are tensors: item i (z-scored window (T, F), target (H,)),
    float32. Indexing with a sequence of indices returns a batch ((B, T, F), (B, H)), which is what
    make_loader's DataLoader relies on."""

    def __getitem__(self, i: int | Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if np.ndim(i) != 0:
            return self.get_batch(i)
        x, y = self.item(i)
        return torch.from_numpy(x), torch.from_numpy(y)

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Vectorised batch: xb (B, T, F) float32 z-scored, yb (B, H) float32."""
        x, y = self.batch(indices)
        return torch.from_numpy(x), torch.from_numpy(y)


class BatchIndices(Sampler):
    """Batches of dataset indices as int64 arrays, reshuffled each epoch (seed, epoch) when shuffle.

    Numpy index arrays instead of torch's RandomSampler, which lists every index as a Python int
    (hundreds of MB for millions of windows).
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        self.n, self.batch_size, self.shuffle, self.seed, self.drop_last = n, batch_size, shuffle, seed, drop_last
        self.epoch = 0

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self):
        order = (np.random.default_rng((self.seed, self.epoch)).permutation(self.n) if self.shuffle
                 else np.arange(self.n))
        self.epoch += 1
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield order[start : start + self.batch_size]


def make_loader(ds: WindowDataset, batch_size: int = 256, shuffle: bool = True, seed: int = 0,
                drop_last: bool = False, num_workers: int = 0) -> DataLoader:
    """A DataLoader that serves whole batches through ds.get_batch (no per-item collate)."""
    return DataLoader(ds, batch_size=None, sampler=BatchIndices(len(ds), batch_size, shuffle, seed, drop_last),
                      num_workers=num_workers)
