"""PointNet for per-point segmentation (Qi et al., CVPR 2017), without the T-nets.

Point batches are dicts {"coord": (B, N, 3), "feat": (B, N, C)}; every point model reads
coord and feat, concatenated, as 3 + C input channels and returns per-point features
(B, num_features, N). The task head (`point_head`) maps them to (B, K, N) logits.

The input and feature transform nets (T-nets) are left out: blocks are already gravity-
aligned and centred, and the PointNet paper's own ablation credits them with under one
point of accuracy, while they double the cost on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from da.config_schema import ModelConfig
from da.models import MODELS, ModelParts
from da.registry import register


def point_inputs(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, 3 + C, N) channels-first input from a point batch."""
    return torch.cat([batch["coord"], batch["feat"]], dim=-1).transpose(1, 2).contiguous()


def shared_mlp(widths: list[int], in_channels: int) -> nn.Sequential:
    """1x1 convolutions with BatchNorm and ReLU: the same MLP applied to every point."""
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Conv1d(in_channels, w, 1, bias=False), nn.BatchNorm1d(w), nn.ReLU(inplace=True)]
        in_channels = w
    return nn.Sequential(*layers)


def point_head(in_features: int, hidden: list[int], num_classes: int, dropout: float = 0.0) -> nn.Sequential:
    """Per-point classifier: (B, in_features, N) -> (B, num_classes, N) logits."""
    layers: list[nn.Module] = [shared_mlp(hidden, in_features)]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Conv1d(hidden[-1] if hidden else in_features, num_classes, 1))
    return nn.Sequential(*layers)


@dataclass
class PointNetConfig(ModelConfig):
    name: str = "pointnet"
    local: list[int] = field(default_factory=lambda: [64, 64, 64, 128])  # per-point MLP
    global_width: int = 1024  # width of the max-pooled cloud feature
    fuse: list[int] = field(default_factory=lambda: [512, 256, 128])  # on [local, global]
    head_hidden: list[int] = field(default_factory=lambda: [128])
    dropout: float = 0.3


class PointNetFeatures(nn.Module):
    """Per-point features = MLP over [local feature, max-pooled global feature]."""

    def __init__(self, in_channels: int, local: list[int], global_width: int, fuse: list[int]):
        super().__init__()
        self.local = shared_mlp(local, in_channels)
        self.to_global = shared_mlp([global_width], local[-1])
        self.fuse = shared_mlp(fuse, local[-1] + global_width)
        self.num_features = fuse[-1]

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        local = self.local(point_inputs(batch))
        pooled = self.to_global(local).amax(dim=2, keepdim=True)
        return self.fuse(torch.cat([local, pooled.expand(-1, -1, local.shape[2])], dim=1))


@register(MODELS, "pointnet", PointNetConfig)
def build_pointnet(cfg: PointNetConfig, data) -> ModelParts:
    if not cfg.local or not cfg.fuse:
        raise ValueError("pointnet: local and fuse need at least one width each")
    features = PointNetFeatures(data.input_shape[0], list(cfg.local), cfg.global_width, list(cfg.fuse))
    return ModelParts(features, point_head(features.num_features, list(cfg.head_hidden),
                                           data.num_classes, cfg.dropout))
