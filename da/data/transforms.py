"""Batch augmentations driven by an explicit generator (so resumed runs redraw them exactly)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def jitter(x: torch.Tensor, g: torch.Generator, std: float) -> torch.Tensor:
    """Gaussian noise on coordinates / features."""
    return x + std * torch.randn(x.shape, generator=g, dtype=x.dtype)


def random_shift(images: torch.Tensor, g: torch.Generator, max_shift: int,
                 fill: float = 0.0) -> torch.Tensor:
    """Translate each image by up to max_shift pixels, padding with `fill` (the background
    value in the images' own normalisation), as MNIST nets usually are."""
    b, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4, value=fill)
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=g)
    return torch.stack([padded[i, :, r : r + h, c : c + w] for i, (r, c) in enumerate(offsets.tolist())])


def colour_jitter(images: torch.Tensor, g: torch.Generator, strength: float) -> torch.Tensor:
    """Per-image random gain and offset per channel (grey source digits get colour casts)."""
    b, c = images.shape[:2]
    gain = 1.0 + strength * (2 * torch.rand(b, c, 1, 1, generator=g) - 1)
    offset = strength * (2 * torch.rand(b, c, 1, 1, generator=g) - 1)
    return images * gain + offset
