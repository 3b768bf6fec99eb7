"""The one inference loop: batches in, features and logits out, the model in eval mode.

Every evaluation path - a task's metrics, summaries and predictions, the validators'
features and losses - runs the model through `forward_batches`, so inputs always take the
model's device and dtype, gradients are never kept and the train / eval mode is restored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


def model_dtype(module: nn.Module) -> torch.dtype:
    """The dtype inputs must take for this module (float32 when it has no parameters)."""
    first = next(module.parameters(), None)
    return torch.float32 if first is None else first.dtype


def to_device(batch: dict[str, torch.Tensor], device: torch.device,
              dtype: torch.dtype = torch.float32, channels_last: bool = False) -> dict[str, torch.Tensor]:
    """Moves a batch; floating inputs take the model's dtype (labels stay integers);
    channels_last: 4-D float inputs (images) in NHWC memory format."""
    out = {}
    for k, v in batch.items():
        v = v.to(device, dtype=dtype if v.is_floating_point() else None, non_blocking=True)
        if channels_last and v.dim() == 4 and v.is_floating_point():
            v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """The module in eval mode inside the block, its own mode restored after."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


@torch.no_grad()
def forward_batches(algorithm: nn.Module, batches: Iterable[dict[str, torch.Tensor]],
                    device: torch.device) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]]:
    """(batch on the device, features, logits) of each batch, in eval mode.

    `algorithm` is a da.algorithms.Algorithm: `features(batch)` then `head(features)`, so an
    algorithm's test-time correction (prior_em) applies on every path. A consumer that
    stops early should close the generator (contextlib.closing) so the mode is restored.
    """
    dtype = model_dtype(algorithm)
    with eval_mode(algorithm):
        for batch in batches:
            batch = to_device(batch, device, dtype)
            features = algorithm.features(batch)
            yield batch, features, algorithm.head(features)


def pooled(features: torch.Tensor) -> torch.Tensor:
    """One vector per sample: features averaged over pixels / points where dense."""
    return features.flatten(2).mean(-1) if features.dim() > 2 else features
